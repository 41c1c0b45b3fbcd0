"""Adversarial inputs: each is refused with exit code 2 and one ``aebook: error:`` line, before any
work and without writing or changing anything; or, for a legitimate large image, decoded in tiles.

Each section is one group of failures found by trying the command line as an attacker would:
decompression bombs, model configs trusted before being checked, a hash check that could be
switched off, tracebacks instead of one line, ``train --out`` overwriting folders, unchecked
numbers, an output path equal to the input, files ignoring the umask, and an unhelpful message
for weights that do not fit their config.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import aebook.codecs.bitstream as bitstream
import aebook.checkpoint as checkpoint
import aebook.codecs.conv as codec_module
from aebook.codecs.bitstream import MAGIC, AebFile, check_header, read_aeb, read_aeb_header, write_aeb
from aebook.checkpoint import check_sizes, load_run, save_run
from aebook.cli import main
from aebook.codecs.coding import check_fits, compress, load_codec, save_codec
from aebook.codecs.conv import ConvCodec
from aebook.imageio import MAX_PIXELS, file_mode, image_format, write_image
from aebook.restoration.inference import tile_boxes
from aebook.restoration.nets import ResidualCNN, load_restorer, save_restorer
from aebook.codecs.klt import KLTCodec


# ------------------------------------------------------------------ helpers

def refused(capsys, args: list[str], *fragments: str) -> str:
    """Run the CLI in-process; assert exit 2, exactly one ``aebook: error:`` line naming ``fragments``."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("aebook: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its SHA-256 and permission bits (to show nothing changed)."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode & 0o777)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG that declares a ``width x height`` grayscale image (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def ans_bomb(height: int, width: int, model_id: str) -> bytes:
    """A valid version-2 .aeb file for a ``height x width`` image whose 64 channels are all zero:
    a few hundred bytes, whatever the size it declares."""
    shape = (64, -(-height // 8), -(-width // 8))
    mid = model_id.encode()
    body = (MAGIC + struct.pack(">BIIBB", 2, height, width, 0, len(mid)) + mid + struct.pack(">BB3I", 4, 3, *shape)
            + struct.pack(">f", 0.1) + struct.pack(">BBH", 255, 1, 0) * 64
            + struct.pack(">II", math.prod(shape), 0))
    return body + struct.pack(">I", zlib.crc32(body))


def never(*args, **kwargs):
    raise AssertionError("this work must not start: the input should have been refused first")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny run folders of every loadable kind: restorer, both codecs, autoencoder."""
    from aebook.models import build_model

    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    return {
        "restorer": save_restorer(root / "restorer", ResidualCNN(1, 1, 3, 4), "denoise"),
        "codec": save_codec(root / "codec", ConvCodec(channels=1, latent_channels=4, widths=(8, 8, 8))),
        "kltcodec": save_codec(root / "kltcodec", KLTCodec(depth=2, width=4)),
        "autoencoder": save_run(root / "autoencoder", build_model("linear", (1, 8, 8), 4)),
    }


def copy_run(run: Path, dest: Path, **model_changes) -> Path:
    """A copy of a run folder whose config's model settings are changed."""
    dest.mkdir()
    for f in run.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    config = json.loads((dest / "config.json").read_text())
    config["model"].update(model_changes)
    (dest / "config.json").write_text(json.dumps(config))
    return dest


LOADERS = {"restorer": load_restorer, "codec": load_codec, "kltcodec": load_codec, "autoencoder": load_run}


@pytest.fixture()
def photo(tmp_path) -> Path:
    from aebook.data import load_photo

    return write_image(tmp_path / "in.png", load_photo("camera", gray=True)[:40, :48])


# ------------------------------------------------------------------ 1. decompression bombs

def test_a_tiny_aeb_declaring_a_huge_image_is_refused_before_decoding(tmp_path, capsys, monkeypatch):
    bomb = tmp_path / "bomb.aeb"
    bomb.write_bytes(ans_bomb(7000, 7000, "kltcodec-000000000000"))
    header = read_aeb_header(bomb)  # a well-formed file: only the limit refuses it
    assert len(bomb.read_bytes()) < 400 and header.pixels == 49_000_000 > MAX_PIXELS
    assert header.n_symbols == 49_000_000 and header.coder == "ans"
    monkeypatch.setattr(bitstream, "ans_decode_channels", never)  # nothing of the declared size is decoded
    before = snapshot(tmp_path)
    start = time.perf_counter()
    refused(capsys, ["decompress", bomb, tmp_path / "out.png"], "7000 x 7000", "max_pixels=16777216", "--max-pixels")
    assert time.perf_counter() - start < 5
    refused(capsys, ["decompress", bomb, tmp_path / "out.png", "--max-pixels", "1000"], "max_pixels=1000")
    with pytest.raises(ValueError, match="max_pixels=100"):
        read_aeb(bomb, max_pixels=100)
    assert snapshot(tmp_path) == before


def test_a_latent_shape_the_codec_would_not_produce_is_refused_before_decoding(tmp_path, capsys, monkeypatch, runs):
    codec, _ = load_codec(runs["codec"])
    # 16 x 16 pixels, but 4 x 50 x 50 symbols: the codec makes 4 x 2 x 2 for that size
    liar = AebFile(16, 16, "L", codec.model_id, 4, (4, 50, 50), 1.0, np.zeros((4, 50, 50), np.int64))
    write_aeb(tmp_path / "liar.aeb", liar)
    monkeypatch.setattr(bitstream.HuffmanCode, "decode", never)
    with pytest.raises(ValueError, match=r"latent shape \(4, 50, 50\) does not fit a 16 x 16 image .* \(4, 2, 2\)"):
        read_aeb(tmp_path / "liar.aeb", latent_shape=codec.latent_shape)
    with pytest.raises(ValueError, match="latent shape"):
        check_fits(read_aeb_header(tmp_path / "liar.aeb"), codec)
    refused(capsys, ["decompress", tmp_path / "liar.aeb", tmp_path / "out.png", "--model", runs["codec"]],
            "latent shape (4, 50, 50)", "expected (4, 2, 2)")
    assert not (tmp_path / "out.png").exists()


def test_huffman_files_have_a_symbol_cap_too(monkeypatch):
    data = AebFile(8, 8, "L", "m", 4, (4, 10, 10), 1.0, np.zeros((4, 10, 10), np.int64)).to_bytes()
    assert AebFile.from_bytes(data).symbols.size == 400
    monkeypatch.setattr(bitstream, "MAX_SYMBOLS", 399)
    monkeypatch.setattr(bitstream.HuffmanCode, "decode", never)
    with pytest.raises(ValueError, match="400 symbols is more than this reader accepts"):
        AebFile.from_bytes(data)


def test_header_checks_take_the_codec_shape_and_a_pixel_cap(tmp_path):
    aeb = AebFile(20, 30, "L", "m", 4, (8, 3, 4), 1.0, np.zeros((8, 3, 4), np.int64))
    write_aeb(tmp_path / "a.aeb", aeb)
    header = read_aeb_header(tmp_path / "a.aeb")
    assert (header.height, header.width, header.latent_shape, header.n_symbols) == (20, 30, (8, 3, 4), 96)
    check_header(header, max_pixels=600, latent_shape=ConvCodec(1, 8).latent_shape)  # exactly at the limits
    with pytest.raises(ValueError, match="600 pixels"):
        check_header(header, max_pixels=599)
    with pytest.raises(ValueError, match=r"expected \(4, 3, 4\)"):
        check_header(aeb, latent_shape=ConvCodec(1, 4).latent_shape)


@pytest.mark.parametrize("balanced", [False, True])
def test_tile_boxes_cover_the_grid_keeping_only_tile_interiors(balanced):
    for h, w, tile, overlap in [(1, 1, 8, 2), (37, 50, 16, 3), (64, 17, 20, 6), (200, 9, 13, 6), (129, 256, 128, 6)]:
        cover = np.zeros((h, w), int)
        for y0, y1, x0, x1, ty, by, tx, bx in tile_boxes(h, w, tile, overlap, balanced):
            assert y1 - y0 <= tile and x1 - x0 <= tile
            # what is kept lies `overlap` cells inside every edge of the tile that is not the grid's edge
            assert (ty >= overlap or y0 == 0) and (by <= y1 - y0 - overlap or y1 == h)
            assert (tx >= overlap or x0 == 0) and (bx <= x1 - x0 - overlap or x1 == w)
            cover[y0 + ty : y0 + by, x0 + tx : x0 + bx] += 1
        assert (cover >= 1).all(), (h, w, tile, overlap)
    with pytest.raises(ValueError, match="twice the overlap"):
        list(tile_boxes(10, 10, 12, 6))


def test_balanced_tiles_compute_fewer_cells_twice():
    def computed(balanced: bool) -> int:
        return sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1, *_ in tile_boxes(256, 256, 128, 6, balanced))

    assert computed(False) == 9 * 128 * 128  # three tiles per axis, the last moved back over the second
    assert computed(True) == 9 * 94 * 94 < 1.25 * 256 * 256  # three tiles of 94 per axis


def test_the_convolutional_codec_encodes_and_decodes_large_images_in_tiles(monkeypatch):
    torch.manual_seed(0)
    codec = ConvCodec(channels=1, latent_channels=4, widths=(8, 8, 8)).eval()
    x = torch.rand(1, 1, 150, 203)
    with torch.no_grad():
        whole_z = codec.encode(x)  # 19 x 26 cells: in one piece
        whole = codec.decode(whole_z, (150, 203))
        monkeypatch.setattr(codec_module, "TILE_CELLS", 16)  # 128-pixel tiles: 8 of them here
        seen: list[tuple[int, int]] = []
        hook = codec.decoder.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
        z = codec.encode(x)
        tiled = codec.decode(z, (150, 203))
        hook.remove()
        assert max(max(s) for s in seen) <= 16 and len(seen) == 8  # the decoder only ever saw small tiles
        assert (z - whole_z).abs().max() < 1e-5 and (tiled - whole).abs().max() < 1e-5
        # an overlap below the decoder's receptive field leaves seams: the overlap is what makes it exact
        seams = codec_module._tiled(lambda t: torch.sigmoid(codec.decoder(t) + codec.block_decoder(t)), z, 1, 8,
                                    tile=8, overlap=0)[..., :150, :203]
        assert (seams - whole).abs().max() > 1e-4


# ------------------------------------------------------------------ 2. model configs checked before anything is built

@pytest.mark.parametrize("kind, changes, message", [
    ("restorer", {"width": 200000}, "width must be an integer in [1, 1024], got 200000"),
    ("restorer", {"depth": 30000}, "depth must be an integer in [2, 256], got 30000"),
    ("restorer", {"depth": True}, "depth must be an integer"),
    ("codec", {"latent_channels": 200000}, "latent_channels must be an integer in [1, 1024]"),
    ("codec", {"widths": [8, 8, 200000]}, "widths must be an integer in [1, 1024]"),
    ("codec", {"lmbda": float("nan")}, "lmbda must be a number"),
    ("kltcodec", {"width": 200000}, "width must be an integer in [1, 1024]"),
    ("kltcodec", {"depth": 30000}, "depth must be an integer in [0, 256]"),
    ("autoencoder", {"latent_dim": 10**9}, "latent_dim must be an integer in [1, 65536]"),
    ("autoencoder", {"shape": [1, 8, 10**7]}, "shape must be an integer in [1, 4096]"),
])
def test_model_sizes_are_bounded_before_anything_is_built(tmp_path, monkeypatch, runs, kind, changes, message):
    run = copy_run(runs[kind], tmp_path / "run", **changes)
    monkeypatch.setattr(checkpoint, "load_file", never)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="config.json: the model's " + message.replace("[", r"\[").replace("]", r"\]")):
        LOADERS[kind](run)
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize("kind, changes, fragments", [
    ("restorer", {"width": 8}, ["shapes differ: body.0.weight (file [4, 2, 3, 3], config [8, 2, 3, 3])"]),
    ("restorer", {"depth": 5}, ["missing body.6.weight, body.6.bias, body.8.weight, body.8.bias",
                                "shapes differ: body.4.weight (file [1, 4, 3, 3], config [4, 4, 3, 3])"]),
    ("restorer", {"depth": 2}, ["unexpected body.4.bias, body.4.weight"]),
    ("codec", {"widths": [8, 8, 16]}, ["shapes differ: encoder.8.weight (file [8, 8, 5, 5], config [16, 8, 5, 5])",
                                       "and"]),
    ("kltcodec", {"width": 5}, ["refine.body.0.weight (file [4, 2, 3, 3], config [5, 2, 3, 3])"]),
    ("autoencoder", {"latent_dim": 9}, ["(file [4, 64], config [9, 64])"]),
])
def test_weights_are_checked_against_the_config_from_the_safetensors_header(tmp_path, capsys, monkeypatch, runs,
                                                                            photo, kind, changes, fragments):
    run = copy_run(runs[kind], tmp_path / "run", **changes)
    monkeypatch.setattr(checkpoint, "load_file", never)  # refused from the header: no tensor is read
    with pytest.raises(ValueError, match="does not match its config.json") as info:
        LOADERS[kind](run)
    for fragment in fragments:
        assert fragment in str(info.value)
    if kind == "restorer":  # the message reaches the user whole, on one line
        refused(capsys, ["denoise", photo, tmp_path / "y.png", "--model", run], *fragments)
        assert not (tmp_path / "y.png").exists()


def test_weights_tied_under_two_names_are_stored_once_and_load(tmp_path):
    class Tied(torch.nn.Module):
        name = "tied"

        def __init__(self) -> None:
            super().__init__()
            self.first = torch.nn.Linear(3, 2)
            self.second = self.first  # the same weights under a second name
            self.config = {"model": "tied"}

    model = Tied()
    run = save_run(tmp_path / "tied", model)  # type: ignore[arg-type]
    from safetensors import safe_open

    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        assert sorted(f.keys()) == ["first.bias", "first.weight"]
    loaded, _ = checkpoint.load_module(run, lambda cfg: Tied())
    assert torch.equal(loaded.second.weight, model.first.weight) and loaded.second is loaded.first


def test_check_sizes_accepts_exactly_the_bounds():
    check_sizes({"a": 1, "b": [1, 8], "c": 0.5}, "cfg", a=(1, 8), b=(1, 8), c=(0.0, 1.0))
    for bad in ({"a": 9}, {"a": 1.0}, {"a": False}, {"a": [1, 9]}, {"a": "3"}, {"a": 10**400}, {}):
        with pytest.raises(ValueError, match="cfg"):
            check_sizes(bad, "cfg", a=(1, 8))
    for bad in (float("inf"), float("nan"), 10**400):
        with pytest.raises(ValueError, match="must be a number"):
            check_sizes({"c": bad}, "cfg", c=(0.0, 1e9))


# ------------------------------------------------------------------ 3. a missing hash is refused like a wrong one

@pytest.mark.parametrize("kind", ["restorer", "codec", "kltcodec", "autoencoder"])
@pytest.mark.parametrize("hash_value", [None, ""])
def test_weights_without_a_recorded_hash_are_refused(tmp_path, runs, kind, hash_value):
    run = copy_run(runs[kind], tmp_path / "run")
    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x40  # a corrupted weight: the header still reads
    weights.write_bytes(bytes(data))
    config = json.loads((run / "config.json").read_text())
    if hash_value is None:
        del config["weights_sha256"]
    else:
        config["weights_sha256"] = hash_value
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="records no weights_sha256"):
        LOADERS[kind](run)


def test_a_restorer_without_its_hash_is_refused_by_the_cli(tmp_path, capsys, photo, runs):
    run = copy_run(runs["restorer"], tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    del config["weights_sha256"]
    (run / "config.json").write_text(json.dumps(config))
    refused(capsys, ["denoise", photo, tmp_path / "out.png", "--model", run], "records no weights_sha256")
    assert not (tmp_path / "out.png").exists()


# ------------------------------------------------------------------ 4. one line and exit 2, never a traceback

@pytest.mark.parametrize("command", ["denoise", "enhance", "upscale", "compress", "inpaint-mask"])
def test_pillow_decompression_bombs_are_one_line(tmp_path, capsys, photo, command):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(100_000, 100_000))  # 10**10 pixels: Pillow's own DecompressionBombError
    out = tmp_path / ("out.aeb" if command == "compress" else "out.png")
    args = {"denoise": ["denoise", bomb, out], "enhance": ["enhance", bomb, out],
            "upscale": ["upscale", bomb, out, "--scale", "2"], "compress": ["compress", bomb, out],
            "inpaint-mask": ["inpaint", photo, bomb, out]}[command]
    refused(capsys, args, "bomb.png", "decompression bomb")
    assert not out.exists()


def test_an_image_above_max_pixels_is_refused_from_its_header(tmp_path, capsys, photo, monkeypatch):
    big = tmp_path / "big.png"
    big.write_bytes(png_header(5000, 4000))  # 20 million pixels: more than the default, less than Pillow's limit
    monkeypatch.setattr("aebook.restoration.nets.load_restorer", never)
    refused(capsys, ["denoise", big, tmp_path / "o.png"], "5000 x 4000 = 20000000 pixels", "max_pixels=16777216")
    refused(capsys, ["denoise", photo, tmp_path / "o.png", "--max-pixels", "100"], "48 x 40 = 1920 pixels")
    refused(capsys, ["upscale", photo, tmp_path / "o.png", "--scale", "4", "--max-pixels", "5000"],
            "x4 upscaled", "192 x 160 = 30720 pixels")
    assert not (tmp_path / "o.png").exists()


def test_a_bomb_png_gives_one_line_from_the_real_program_without_pillow_warnings(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(10_000, 10_000))  # 10**8: Pillow would only warn, on stderr
    r = subprocess.run([sys.executable, "-m", "aebook", "denoise", str(bomb), str(tmp_path / "o.png")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("aebook: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "max_pixels" in r.stderr and not (tmp_path / "o.png").exists()


def test_a_bomb_in_a_training_folder_is_one_line(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a_bomb.png").write_bytes(png_header(100_000, 100_000))
    for i in range(3):
        write_image(folder / f"b{i}.png", np.full((12, 12), i / 3, np.float32))
    refused(capsys, ["train", "--dataset", "folder", "--data-dir", folder, "--epochs", "1", "--quiet",
                     "--out", tmp_path / "run"], "decompression bomb")
    assert not (tmp_path / "run").exists()


def test_an_output_that_is_a_folder_is_refused(tmp_path, capsys, photo, runs):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    before = snapshot(folder)
    refused(capsys, ["compress", photo, folder, "--model", runs["codec"]], "is a folder")
    assert main(["compress", str(photo), str(tmp_path / "x.aeb"), "--model", str(runs["codec"])]) == 0
    capsys.readouterr()
    refused(capsys, ["decompress", tmp_path / "x.aeb", folder, "--model", runs["codec"]], "is a folder")
    refused(capsys, ["denoise", photo, folder, "--model", runs["restorer"]], "is a folder")
    with pytest.raises(ValueError, match="is a folder"):
        write_aeb(folder, AebFile(1, 1, "L", "m", 1, (1,), 1.0, np.zeros(1, np.int64)))
    assert snapshot(folder) == before


def test_a_read_only_output_folder_is_one_line(tmp_path, capsys, photo, runs, monkeypatch):
    out_dir = tmp_path / "ro"
    out_dir.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == out_dir else real_access(p, mode))
    monkeypatch.setattr("aebook.codecs.coding.load_codec", never)
    refused(capsys, ["compress", photo, out_dir / "x.aeb"], "cannot write to folder", "permission denied")
    refused(capsys, ["train-restorer", "denoise", "--out", out_dir / "run"], "permission denied")
    monkeypatch.undo()
    # and when the operating system refuses the write itself: one line, no temporary file left
    def deny(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", deny)
    refused(capsys, ["compress", photo, out_dir / "x.aeb", "--model", runs["codec"]], "x.aeb: Permission denied")
    refused(capsys, ["denoise", photo, out_dir / "y.png", "--model", runs["restorer"]], "y.png: Permission denied")
    assert list(out_dir.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_really_read_only_folder(tmp_path, capsys, photo, runs):
    out_dir = tmp_path / "ro"
    out_dir.mkdir()
    out_dir.chmod(0o555)
    try:
        refused(capsys, ["compress", photo, out_dir / "x.aeb", "--model", runs["codec"]], "permission denied")
    finally:
        out_dir.chmod(0o755)


def test_an_aeb_input_that_is_a_folder_or_unreadable_is_one_line(tmp_path, capsys):
    refused(capsys, ["decompress", tmp_path, tmp_path / "o.png"], "is a folder, not an .aeb file")
    if Path("/proc/self/mem").exists():  # exists, but reading it fails even for root
        refused(capsys, ["decompress", "/proc/self/mem", tmp_path / "o.png"], "cannot read /proc/self/mem")
    refused(capsys, ["denoise", tmp_path, tmp_path / "o.png"], "is a folder, not an image file")
    assert not (tmp_path / "o.png").exists()


def test_train_out_an_existing_file_is_refused_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("aebook.data.load_dataset", never)
    monkeypatch.setattr("aebook.train.fit", never)
    monkeypatch.setattr("aebook.restoration.training.train_restorer", never)
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    refused(capsys, ["train", "--out", existing], "is a file, not a run folder")
    refused(capsys, ["train-restorer", "denoise", "--out", existing], "is a file, not a run folder")
    refused(capsys, ["train", "--out", existing / "run"], "is a file")
    assert existing.read_text() == "keep me"


def test_a_restorer_config_with_train_null_is_one_line(tmp_path, capsys, photo, runs):
    run = copy_run(runs["restorer"], tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["train"] = None
    (run / "config.json").write_text(json.dumps(config))
    refused(capsys, ["denoise", photo, tmp_path / "o.png", "--model", run], "not a valid aebook config",
            "'train' must be an object")
    assert not (tmp_path / "o.png").exists()


# ------------------------------------------------------------------ 5. train --out and existing folders

def test_train_out_refuses_a_folder_that_is_not_a_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("aebook.data.load_dataset", never)
    monkeypatch.setattr("aebook.restoration.training.train_restorer", never)
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"my": "settings"}')
    before = snapshot(tmp_path)
    refused(capsys, ["train", "--out", project], "neither empty nor an aebook run")
    refused(capsys, ["train", "--out", project, "--overwrite"], "neither empty nor an aebook run")
    refused(capsys, ["train-restorer", "denoise", "--out", project, "--overwrite"], "neither empty nor an aebook run")
    assert snapshot(tmp_path) == before


def test_train_replaces_a_run_only_with_overwrite(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()  # an empty folder is fine
    args = ["train", "--dataset", "digits", "--model", "linear", "--latent-dim", "4", "--epochs", "1",
            "--limit", "64", "--quiet", "--out", str(run)]
    assert main(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    before = snapshot(run)
    monkeypatch.setattr("aebook.data.load_dataset", never)
    refused(capsys, args, "already holds a run", "--overwrite")
    refused(capsys, ["train-restorer", "denoise", "--out", run], "already holds a run")
    assert snapshot(run) == before
    monkeypatch.undo()
    assert main([*args[:-3], "--seed", "1", "--quiet", "--out", str(run), "--overwrite"]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == 1


# ------------------------------------------------------------------ 6. every number checked before any work

@pytest.mark.parametrize("args, message", [
    (["train", "--lr", "inf"], "--lr must be a finite number in (0, 1], got inf"),
    (["train", "--lr", "nan"], "--lr must be a finite number"),
    (["train", "--lr", "0"], "--lr must be"),
    (["train", "--lr", "-0.001"], "--lr must be"),
    (["train", "--epochs", "0"], "--epochs must be an integer in [1, 1000000], got 0"),
    (["train", "--batch-size", "0"], "--batch-size must be"),
    (["train", "--latent-dim", "0"], "--latent-dim must be"),
    (["train", "--seed", "-1"], "--seed must be"),
    (["train", "--limit", "0"], "--limit must be an integer in [1, "),
    (["train-restorer", "denoise", "--lr", "inf"], "--lr must be"),
    (["train-restorer", "denoise", "--epochs", "0"], "--epochs must be"),
    (["train-restorer", "denoise", "--depth", "1"], "--depth must be"),
    (["train-restorer", "denoise", "--width", "0"], "--width must be"),
    (["train-restorer", "denoise", "--patch-size", "0"], "--patch-size must be"),
    (["train-restorer", "denoise", "--n-patches", "0"], "--n-patches must be"),
    (["denoise", "{photo}", "{tmp}/o.png", "--sigma", "1e30"], "--sigma must be a finite number in [0, 255], got 1e+30"),
    (["denoise", "{photo}", "{tmp}/o.png", "--sigma", "nan"], "--sigma must be a finite number"),
    (["denoise", "{photo}", "{tmp}/o.png", "--sigma", "-5"], "--sigma must be"),
    (["denoise", "{photo}", "{tmp}/o.png", "--tile", "0"], "--tile must be"),
    (["compress", "{photo}", "{tmp}/o.aeb", "--quality", "0"], "--quality must be an integer in [1, 8]"),
    (["decompress", "{tmp}/x.aeb", "{tmp}/o.png", "--max-pixels", "0"], "--max-pixels must be"),
    (["evaluate", "{tmp}/run", "--limit", "0"], "--limit must be"),
])
def test_numbers_out_of_range_are_refused_before_any_work(tmp_path, capsys, monkeypatch, photo, args, message):
    for name in ("aebook.data.load_dataset", "aebook.restoration.training.train_restorer",
                 "aebook.restoration.nets.load_restorer", "aebook.codecs.coding.load_codec",
                 "aebook.checkpoint.load_run"):
        monkeypatch.setattr(name, never)
    args = [a.replace("{photo}", str(photo)).replace("{tmp}", str(tmp_path)) for a in args]
    if args[0].startswith("train"):
        args += ["--out", str(tmp_path / "run")]
    before = snapshot(tmp_path)
    refused(capsys, args, message)
    assert snapshot(tmp_path) == before


def test_a_diverged_training_is_not_saved(tmp_path, capsys, monkeypatch):
    from aebook.train import History

    monkeypatch.setattr("aebook.train.fit", lambda *a, **k: History(train_loss=[0.5, float("nan")],
                                                                    val_loss=[0.4, float("nan")]))
    refused(capsys, ["train", "--dataset", "digits", "--model", "linear", "--latent-dim", "4", "--limit", "32",
                     "--out", tmp_path / "run"], "training diverged", "nan", "--lr")
    monkeypatch.setattr("aebook.restoration.training.train_restorer",
                        lambda *a, **k: (ResidualCNN(1, 1, 3, 4), [float("inf")]))
    refused(capsys, ["train-restorer", "denoise", "--out", tmp_path / "run"], "training diverged")
    assert not (tmp_path / "run").exists()


def test_the_last_line_stays_json_when_a_number_is_not_finite(capsys, monkeypatch):
    import aebook.cli as cli

    monkeypatch.setitem(cli.COMMANDS, "evaluate", lambda args: {"psnr": float("inf"), "n": [float("nan"), 1.0]})
    assert main(["evaluate", "anything"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"psnr": None, "n": [None, 1.0]}


# ------------------------------------------------------------------ 7. output != input

def test_an_output_that_is_the_input_is_refused(tmp_path, capsys, photo, runs, monkeypatch):
    os.link(photo, tmp_path / "hardlink.png")
    (tmp_path / "symlink.png").symlink_to(photo)
    mask = write_image(tmp_path / "mask.png", np.zeros((40, 48), np.float32))
    before = snapshot(tmp_path)
    for out in (photo, f"{tmp_path}/./in.png", tmp_path / "hardlink.png", tmp_path / "symlink.png"):
        refused(capsys, ["compress", photo, out, "--model", runs["codec"]], "is the input", "destroy")
        refused(capsys, ["denoise", photo, out, "--model", runs["restorer"]], "is the input")
    refused(capsys, ["inpaint", photo, mask, mask], "is the input")
    assert main(["compress", str(photo), str(tmp_path / "x.aeb"), "--model", str(runs["codec"])]) == 0
    capsys.readouterr()
    written = snapshot(tmp_path)
    refused(capsys, ["decompress", tmp_path / "x.aeb", tmp_path / "x.aeb", "--model", runs["codec"]], "is the input")
    assert snapshot(tmp_path) == written and {k: v for k, v in written.items() if k != "x.aeb"} == before


def test_an_unknown_output_format_is_refused_before_any_work(tmp_path, capsys, photo, monkeypatch):
    monkeypatch.setattr("aebook.restoration.nets.load_restorer", never)
    refused(capsys, ["denoise", photo, tmp_path / "o.xyz"], "unknown image format for o.xyz")
    assert image_format("a.PNG") == "PNG" and image_format(Path("b.jpeg")) == "JPEG"


# ------------------------------------------------------------------ 8. the umask

@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_written_images_aeb_files_and_runs_respect_the_umask(tmp_path, umask, runs):
    old = os.umask(umask)
    try:
        assert file_mode() == 0o666 & ~umask and file_mode(directory=True) == 0o777 & ~umask
        img = write_image(tmp_path / "a.png", np.zeros((4, 4), np.float32))
        write_aeb(tmp_path / "a.aeb", AebFile(1, 1, "L", "m", 1, (1,), 1.0, np.zeros(1, np.int64)))
        run = save_restorer(tmp_path / "run", ResidualCNN(1, 1, 3, 4), "denoise")
    finally:
        os.umask(old)
    assert img.stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "a.aeb").stat().st_mode & 0o777 == 0o666 & ~umask
    assert run.stat().st_mode & 0o777 == 0o777 & ~umask
    assert {f.stat().st_mode & 0o777 for f in run.iterdir()} == {0o666 & ~umask}


# ------------------------------------------------------------------ a legitimate image still decodes

def test_a_file_within_the_limits_still_round_trips(tmp_path, capsys, photo, runs):
    assert main(["compress", str(photo), str(tmp_path / "x.aeb"), "--model", str(runs["codec"]),
                 "--max-pixels", str(40 * 48)]) == 0
    assert main(["decompress", str(tmp_path / "x.aeb"), str(tmp_path / "o.png"), "--model", str(runs["codec"]),
                 "--max-pixels", str(40 * 48)]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (info["height"], info["width"]) == (40, 48) and (tmp_path / "o.png").is_file()
    codec, _ = load_codec(runs["codec"])
    aeb = compress(np.zeros((40, 48), np.float32), codec)
    check_fits(aeb, codec, codec.model_id, max_pixels=40 * 48)
