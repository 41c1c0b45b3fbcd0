"""Tests for aebook.codecs.bitstream: the .aeb format, its error messages and atomic writes."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aebook.codecs.bitstream import MAGIC, AebFile, read_aeb, write_aeb
from aebook.codecs.entropy import HuffmanCode

FAST = settings(max_examples=80, deadline=None)


def make_aeb(mode: str = "RGB", shape: tuple[int, ...] = (6, 4, 5), seed: int = 0) -> AebFile:
    rng = np.random.default_rng(seed)
    symbols = np.round(rng.laplace(0.0, 2.0, size=shape)).astype(np.int64)
    return AebFile(32, 48, mode, "conv-ae-v1", 3, shape, 0.5, symbols)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def parse(data: bytes) -> AebFile:
    return AebFile.from_bytes(data)


@pytest.fixture(scope="module")
def sample() -> tuple[AebFile, bytes]:
    aeb = make_aeb()
    return aeb, aeb.to_bytes()


def test_round_trip_restores_header_and_symbols(sample: tuple[AebFile, bytes]) -> None:
    aeb, data = sample
    back = parse(data)
    assert back == aeb
    assert (back.height, back.width, back.mode, back.model_id) == (32, 48, "RGB", "conv-ae-v1")
    assert (back.quality, back.latent_shape, back.step) == (3, (6, 4, 5), 0.5)
    assert back.symbols.dtype == np.int64 and back.symbols.shape == (6, 4, 5)
    np.testing.assert_array_equal(back.symbols, aeb.symbols)


def test_layout_starts_with_magic_and_ends_with_crc(sample: tuple[AebFile, bytes]) -> None:
    _, data = sample
    assert data[:5] == MAGIC + b"\x01"
    assert struct.unpack(">IIB", data[5:14]) == (32, 48, 1)
    assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])


@FAST
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple),
    low=st.integers(-(2**31), 2**31 - 1),
    spread=st.integers(0, 2**31),
    mode=st.sampled_from(["L", "RGB"]),
    model_id=st.text(max_size=60),
    quality=st.integers(0, 255),
    step=st.floats(1e-6, 1e6),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_for_arbitrary_headers_and_symbols(
    shape: tuple[int, ...], low: int, spread: int, mode: str, model_id: str,
    quality: int, step: float, seed: int,
) -> None:
    high = min(low + spread, 2**31 - 1)
    symbols = np.random.default_rng(seed).integers(low, high, size=shape, endpoint=True)
    aeb = AebFile(7, 9, mode, model_id, quality, shape, step, symbols)
    assert aeb.step == np.float32(step)  # the step is stored (and normalised) as float32
    assert parse(aeb.to_bytes()) == aeb


def test_file_round_trip_leaves_no_temporary_files(tmp_path: Path) -> None:
    aeb = make_aeb(mode="L")
    path = tmp_path / "image.aeb"
    write_aeb(path, aeb)
    write_aeb(str(path), aeb)  # overwriting works too
    assert read_aeb(path) == aeb
    assert os.listdir(tmp_path) == ["image.aeb"]


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_aeb(tmp_path / "missing.aeb")


def test_every_truncation_is_rejected(sample: tuple[AebFile, bytes]) -> None:
    _, data = sample
    for n in range(len(data)):
        with pytest.raises(ValueError, match="truncated|not an .aeb file"):
            parse(data[:n])


def test_every_single_byte_change_is_rejected(sample: tuple[AebFile, bytes]) -> None:
    _, data = sample
    for i in range(len(data)):
        for flip in (0x01, 0xFF):
            corrupted = bytearray(data)
            corrupted[i] ^= flip
            with pytest.raises(ValueError):
                parse(bytes(corrupted))


def test_specific_error_messages(sample: tuple[AebFile, bytes]) -> None:
    _, data = sample
    with pytest.raises(ValueError, match="not an .aeb file"):
        parse(b"")
    with pytest.raises(ValueError, match="not an .aeb file"):
        parse(b"\x89PNG\r\n\x1a\n" + data[8:])
    with pytest.raises(ValueError, match="unsupported .aeb format version 3"):
        parse(MAGIC + b"\x03" + data[5:])
    with pytest.raises(ValueError, match="corrupted: CRC-32 mismatch"):
        parse(data[:-5] + bytes([data[-5] ^ 0x10]) + data[-4:])
    with pytest.raises(ValueError, match="unexpected bytes after"):
        parse(data + b"\x00")


def payload_length_of(aeb: AebFile) -> int:
    flat = aeb.symbols.ravel()
    return len(HuffmanCode.from_symbols(flat).encode(flat)[0])


def test_inconsistent_symbol_count_is_rejected(sample: tuple[AebFile, bytes]) -> None:
    aeb, data = sample
    body = data[:-4]
    offset = len(body) - payload_length_of(aeb) - 8  # the n_symbols field
    bad = body[:offset] + struct.pack(">I", aeb.symbols.size + 1) + body[offset + 4 :]
    with pytest.raises(ValueError, match="inconsistent .aeb file"):
        parse(with_crc(bad))


def test_undecodable_payload_is_rejected(sample: tuple[AebFile, bytes]) -> None:
    aeb, data = sample
    body, payload_length = data[:-4], payload_length_of(aeb)
    start = len(body) - payload_length
    shortened = body[: start - 4] + struct.pack(">I", payload_length - 1) + body[start:-1]
    with pytest.raises(ValueError, match="payload fails to decode"):
        parse(with_crc(shortened))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=80), st.binary(max_size=80).map(lambda b: MAGIC + b"\x01" + b)))
def test_random_bytes_raise_only_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.data())
def test_random_fields_with_valid_crc_raise_only_value_error(
    tail: bytes, draw: st.DataObject
) -> None:
    """Past the CRC check, the meaning of every field is still validated."""
    data = make_aeb(shape=(3,)).to_bytes()
    cut = draw.draw(st.integers(5, len(data) - 4))
    candidate = with_crc(data[:cut] + tail)
    try:
        aeb = parse(candidate)
    except ValueError:
        return
    assert parse(aeb.to_bytes()) == aeb  # whatever is accepted is a coherent file


@pytest.mark.parametrize(
    "field, value",
    [
        ("height", 0),
        ("width", 2**32),
        ("mode", "CMYK"),
        ("model_id", "x" * 256),
        ("model_id", "\u00e9" * 128),  # 256 UTF-8 bytes
        ("quality", 256),
        ("latent_shape", (6, 4, 4)),
        ("latent_shape", ()),
        ("step", 0.0),
        ("step", float("nan")),
        ("step", 1e40),
        ("symbols", np.full((6, 4, 5), 2**31)),
        ("symbols", np.zeros((6, 4, 5))),
    ],
)
def test_invalid_fields_are_rejected(field: str, value: object) -> None:
    fields = dict(make_aeb().__dict__, **{field: value})
    with pytest.raises(ValueError):
        AebFile(**fields)


def test_write_aeb_with_invalid_data_leaves_no_file(tmp_path: Path) -> None:
    aeb = make_aeb()
    aeb.model_id = "x" * 300  # made invalid after construction
    with pytest.raises(ValueError, match="model_id"):
        write_aeb(tmp_path / "bad.aeb", aeb)
    assert os.listdir(tmp_path) == []


def test_write_aeb_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "image.aeb"
    write_aeb(path, make_aeb(seed=1))
    old = path.read_bytes()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_aeb(path, make_aeb(seed=2))
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["image.aeb"]


def test_huge_declared_symbol_count_fails_fast() -> None:
    shape = (65535, 65535)  # 4.29e9 symbols declared, but only a 1-byte payload
    body = (
        MAGIC + struct.pack(">BIIBB", 1, 8, 8, 0, 1) + b"m" + struct.pack(">BB2I", 0, 2, *shape)
        + struct.pack(">fI", 1.0, 1) + struct.pack(">iB", 0, 1)
        + struct.pack(">II", 65535 * 65535, 1) + b"\x00"
    )
    with pytest.raises(ValueError, match="payload fails to decode.*too short"):
        parse(with_crc(body))


# ------------------------------------------------------------------ version 2: ANS-coded payload

def make_ans(shape: tuple[int, ...] = (6, 4, 5), seed: int = 0, scale: float = 2.0) -> AebFile:
    rng = np.random.default_rng(seed)
    symbols = np.round(rng.laplace(0.0, scale, size=shape)).astype(np.int64)
    symbols[-1] = 0  # an all-zero channel costs nothing
    return AebFile(32, 48, "L", "klt-codec-v1", 5, shape, 0.25, symbols, coder="ans")


def test_ans_version_round_trips_and_is_marked_version_2() -> None:
    aeb = make_ans()
    data = aeb.to_bytes()
    assert data[:5] == MAGIC + b"\x02"
    back = parse(data)
    assert back == aeb and back.coder == "ans"
    np.testing.assert_array_equal(back.symbols, aeb.symbols)
    huffman = AebFile(**dict(aeb.__dict__, coder="huffman"))
    assert parse(huffman.to_bytes()) == back  # same contents, either coder


def test_ans_version_beats_huffman_on_mostly_zero_channels() -> None:
    """Huffman spends at least one bit per symbol; a mostly-zero latent costs ANS far less."""
    aeb = make_ans(shape=(16, 40, 40), scale=0.15)
    ans_bytes = len(aeb.to_bytes())
    huffman_bytes = len(AebFile(**dict(aeb.__dict__, coder="huffman")).to_bytes())
    assert huffman_bytes >= aeb.symbols.size / 8
    assert ans_bytes < 0.5 * huffman_bytes


@FAST
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple),
    bound=st.integers(0, 65535),
    seed=st.integers(0, 2**32 - 1),
)
def test_ans_round_trip_for_arbitrary_symbols(shape: tuple[int, ...], bound: int, seed: int) -> None:
    symbols = np.random.default_rng(seed).integers(-bound, bound, size=shape, endpoint=True)
    aeb = AebFile(7, 9, "L", "m", 1, shape, 0.5, symbols, coder="ans")
    assert parse(aeb.to_bytes()) == aeb


def test_ans_symbols_beyond_the_channel_bound_are_refused() -> None:
    symbols = np.array([[0, 70000]])
    with pytest.raises(ValueError, match="exceeds the channel model's bound"):
        AebFile(1, 2, "L", "m", 1, (1, 2), 1.0, symbols, coder="ans").to_bytes()


def test_ans_version_rejects_truncation_and_byte_changes() -> None:
    data = make_ans(shape=(3, 4, 4)).to_bytes()
    for n in range(len(data)):
        with pytest.raises(ValueError, match="truncated|not an .aeb file"):
            parse(data[:n])
    for i in range(len(data)):
        corrupted = bytearray(data)
        corrupted[i] ^= 0x01
        with pytest.raises(ValueError):
            parse(bytes(corrupted))


def test_unknown_coder_is_rejected() -> None:
    with pytest.raises(ValueError, match="coder must be one of"):
        AebFile(**dict(make_aeb().__dict__, coder="lzma"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.data())
def test_ans_random_fields_with_valid_crc_raise_only_value_error(tail: bytes, draw: st.DataObject) -> None:
    """Garbage channel models, counts and words past a valid CRC: a ValueError or a coherent file."""
    data = make_ans(shape=(3, 2, 2)).to_bytes()
    cut = draw.draw(st.integers(5, len(data) - 4))
    try:
        aeb = parse(with_crc(data[:cut] + tail))
    except ValueError:
        return
    assert parse(aeb.to_bytes()) == aeb


def test_ans_huge_declared_symbol_count_fails_fast() -> None:
    shape = (1, 65535, 65535)
    body = (
        MAGIC + struct.pack(">BIIBB", 2, 8, 8, 0, 1) + b"m" + struct.pack(">BB3I", 0, 3, *shape)
        + struct.pack(">f", 1.0) + struct.pack(">BBH", 0, 0, 0)
        + struct.pack(">II", 65535 * 65535, 0)
    )
    with pytest.raises(ValueError, match="more than this reader accepts"):
        parse(with_crc(body))
