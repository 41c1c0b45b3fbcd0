"""The ``.aeb`` file format: a compressed image stored as Huffman-coded quantised latents.

All integers are big-endian (``struct`` formats ``>B``, ``>I``, ``>i``, ``>f``):

=========  ============  =================================================================
Size       Field         Meaning
=========  ============  =================================================================
4          magic         ``b"AEBK"``
1          version       format version: 1 (Huffman, below) or 2 (ANS, after the table)
4          height        image height in pixels (uint32, >= 1)
4          width         image width in pixels (uint32, >= 1)
1          mode          colour mode: 0 = grayscale ``"L"``, 1 = ``"RGB"``
1 + m      model id      m (uint8), then m bytes of UTF-8 naming the autoencoder
1          quality       quality level (uint8)
1 + 4 d    latent shape  d (uint8, >= 1), then d sizes (uint32, each >= 1)
4          step          quantisation step (float32, finite, > 0)
4 + 5 t    code table    t (uint32), then t entries: symbol (int32), code length (uint8)
4          n_symbols     number of coded symbols (uint32), = product of the latent shape
4 + p      payload       p (uint32), then the Huffman-coded symbols, zero-padded to bytes
4          crc32         ``zlib.crc32`` of every byte before it (uint32)
=========  ============  =================================================================

The code table is the canonical Huffman code of :mod:`aebook.codecs.entropy`, so (symbol,
length) pairs suffice.

Version 2 codes the symbols with ANS instead (``coder="ans"``): the fields up to ``step``
are those of version 1; then, instead of the code table, one channel model per entry of
the latent's first dimension (its channels), and the payload in 32-bit words:

=========  ============  =================================================================
4 c        models        per channel: zero (uint8), decay (uint8), bound (uint16): the
                         model of :func:`aebook.codecs.ans.zero_geometric_frequencies`
4          n_symbols     number of coded symbols (uint32), = product of the latent shape
4 + 4 w    payload       w (uint32), then w big-endian uint32 words of ANS
4          crc32         ``zlib.crc32`` of every byte before it (uint32)
=========  ============  =================================================================

Reading checks, in order: magic, version, that the declared
lengths fit the data exactly, the CRC-32, then the meaning of every header field (a cap of
:data:`MAX_SYMBOLS` symbols, at least one bit per Huffman symbol) and the reader's own
limits (``max_pixels``, the latent shape the codec expects), and only then decodes the
payload, so any bad input gives one ``ValueError`` naming the problem before anything of
the declared size is allocated.
"""

from __future__ import annotations

import math
import os
import secrets
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from aebook.codecs.ans import ans_decode_channels, ans_encode_channels, fit_zero_geometric
from aebook.codecs.entropy import HuffmanCode
from aebook.imageio import naming_output

MAGIC = b"AEBK"
VERSIONS = {1: "huffman", 2: "ans"}  # format version -> entropy coder of its payload
_VERSION_OF = {coder: version for version, coder in VERSIONS.items()}
MODES = ("L", "RGB")  # the mode byte is the index into this tuple
_UINT32_MAX = (1 << 32) - 1
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
#: A file declaring more latent symbols is refused before its payload is decoded (8 bytes of memory each).
MAX_SYMBOLS = 50_000_000
MAX_ANS_SYMBOLS = MAX_SYMBOLS  # the former name, when only ANS files had a cap
_TABLE_ENTRY = np.dtype([("symbol", ">i4"), ("length", "u1")])  # 5 bytes, no padding


def _check_int(value: object, name: str, low: int, high: int) -> int:
    """Return ``value`` as an int in [low, high], or raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


@dataclass(eq=False)
class AebFile:
    """Contents of an ``.aeb`` file: image header plus the quantised latent symbols.

    Construction validates and normalises every field (``ValueError`` if invalid):
    ``step`` is rounded to float32 (as stored) and ``symbols`` becomes an ``int64``
    array of shape ``latent_shape``.

    Parameters
    ----------
    height, width : int
        Image size in pixels (1 to 2**32 - 1).
    mode : str
        ``"L"`` (grayscale) or ``"RGB"``.
    model_id : str
        Name of the autoencoder that decodes the latents (at most 255 UTF-8 bytes).
    quality : int
        Quality level, 0 to 255.
    latent_shape : tuple[int, ...]
        Shape of the latent tensor (1 to 255 dimensions, each at least 1).
    step : float
        Quantisation step: latent ~= symbol * step.
    symbols : np.ndarray
        Quantised latents: integers in the int32 range, ``prod(latent_shape)`` of them.
    coder : str
        ``"huffman"`` (format version 1, the default) or ``"ans"`` (version 2: one small
        model per channel, no one-bit floor per symbol). Not part of equality: two files
        with the same contents are equal whichever coder wrote them.
    """

    height: int
    width: int
    mode: str
    model_id: str
    quality: int
    latent_shape: tuple[int, ...]
    step: float
    symbols: np.ndarray
    coder: str = "huffman"

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        """Check all fields and normalise them in place."""
        self.height = _check_int(self.height, "height", 1, _UINT32_MAX)
        self.width = _check_int(self.width, "width", 1, _UINT32_MAX)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.model_id, str) or len(self.model_id.encode("utf-8")) > 255:
            raise ValueError("model_id must be a string of at most 255 UTF-8 bytes")
        self.quality = _check_int(self.quality, "quality", 0, 255)
        try:
            shape = tuple(self.latent_shape)
        except TypeError:
            message = f"latent_shape must be a tuple of ints, not {self.latent_shape!r}"
            raise ValueError(message) from None
        if not 1 <= len(shape) <= 255:
            raise ValueError(f"latent_shape must have 1 to 255 dimensions, got {len(shape)}")
        self.latent_shape = tuple(_check_int(n, "latent size", 1, _UINT32_MAX) for n in shape)
        try:
            step = struct.unpack(">f", struct.pack(">f", float(self.step)))[0]
        except (OverflowError, TypeError, ValueError):
            message = f"step must be a float32-representable number, not {self.step!r}"
            raise ValueError(message) from None
        if not (math.isfinite(step) and step > 0):
            raise ValueError(f"step must be finite and > 0 (as float32), got {self.step!r}")
        self.step = step
        self.symbols = _check_symbols(self.symbols, self.latent_shape)
        if self.coder not in VERSIONS.values():
            raise ValueError(f"coder must be one of {tuple(VERSIONS.values())}, got {self.coder!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AebFile):
            return NotImplemented
        header = ("height", "width", "mode", "model_id", "quality", "latent_shape", "step")
        return all(getattr(self, f) == getattr(other, f) for f in header) and np.array_equal(
            self.symbols, other.symbols
        )

    def to_bytes(self) -> bytes:
        """Serialise to the ``.aeb`` layout, Huffman- or ANS-coding the symbols (``coder``)."""
        self._validate()
        flat = self.symbols.ravel()
        if flat.size > _UINT32_MAX:
            raise ValueError("too many symbols for an .aeb file")
        if self.coder == "huffman":
            code = HuffmanCode.from_symbols(flat)
            payload, _ = code.encode(flat)
            table = np.array(code.to_table(), dtype=_TABLE_ENTRY)
            coded = struct.pack(">I", len(table)) + table.tobytes() + struct.pack(">II", flat.size, len(payload)) + payload
        else:
            rows = self.symbols.reshape(self.latent_shape[0], -1)
            models = [fit_zero_geometric(row) for row in rows]
            words = ans_encode_channels(rows, models)
            coded = b"".join([
                b"".join(struct.pack(">BBH", *m) for m in models),
                struct.pack(">II", flat.size, words.size), words.astype(">u4").tobytes(),
            ])
        if len(coded) > _UINT32_MAX:
            raise ValueError("too many symbols for an .aeb file")
        version = _VERSION_OF[self.coder]
        model_id = self.model_id.encode("utf-8")
        shape = self.latent_shape
        body = b"".join([
            MAGIC,
            struct.pack(">BIIB", version, self.height, self.width, MODES.index(self.mode)),
            struct.pack(">B", len(model_id)) + model_id,
            struct.pack(f">BB{len(shape)}I", self.quality, len(shape), *shape),
            struct.pack(">f", self.step), coded,
        ])
        return body + struct.pack(">I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes, max_pixels: int | None = None,
                   latent_shape: Callable[[int, int], tuple[int, ...]] | None = None) -> AebFile:
        """Parse an ``.aeb`` file; ``ValueError`` with one clear message if it is invalid.

        Every header field is checked before the payload is decoded, and so are the caller's
        limits (:func:`check_header`): at most ``max_pixels`` pixels, and a latent shape equal
        to ``latent_shape(height, width)`` (pass the decoding codec's ``latent_shape`` method).
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected bytes, got {type(data).__name__}")
        return _parse(bytes(data), max_pixels, latent_shape)


def _check_symbols(symbols: object, shape: tuple[int, ...]) -> np.ndarray:
    """Return ``symbols`` as an int64 array of the given shape, or raise ``ValueError``."""
    arr = np.asarray(symbols)
    if arr.size != math.prod(shape):
        raise ValueError(f"latent_shape {shape} needs {math.prod(shape)} symbols, got {arr.size}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"symbols must be integers, got dtype {arr.dtype}")
    if arr.min() < _INT32_MIN or arr.max() > _INT32_MAX:
        raise ValueError("symbols must fit in a signed 32-bit integer")
    return arr.astype(np.int64, copy=False).reshape(shape)


class _Reader:
    """Reads consecutive big-endian fields; running out of data means the file is truncated."""

    def __init__(self, data: bytes, position: int) -> None:
        self.data, self.position = data, position

    def take(self, n: int, what: str) -> bytes:
        if self.position + n > len(self.data):
            raise ValueError(
                f"truncated .aeb file: {what} needs {n} bytes at offset {self.position}, "
                f"only {len(self.data) - self.position} left"
            )
        self.position += n
        return self.data[self.position - n : self.position]

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


@dataclass(frozen=True)
class AebHeader:
    """What an ``.aeb`` file declares, read and checked without decoding its payload
    (:func:`read_aeb_header`): enough to refuse a file that claims a huge image, or a latent
    that its codec would not produce, before anything of that size is allocated."""

    height: int
    width: int
    mode: str
    model_id: str
    quality: int
    latent_shape: tuple[int, ...]
    step: float
    coder: str
    n_symbols: int

    @property
    def pixels(self) -> int:
        """Number of pixels of the declared image."""
        return self.height * self.width


def check_header(header: AebHeader | AebFile, max_pixels: int | None = None,
                 latent_shape: Callable[[int, int], tuple[int, ...]] | None = None) -> None:
    """Refuse (``ValueError``) a file whose image has more than ``max_pixels`` pixels, or whose
    latent shape is not ``latent_shape(height, width)``: the shape the decoding codec produces
    for an image of the declared size (e.g. :meth:`aebook.codecs.conv.ConvCodec.latent_shape`)."""
    if max_pixels is not None and header.height * header.width > max_pixels:
        raise ValueError(f"the file declares a {header.width} x {header.height} image "
                         f"({header.height * header.width} pixels), more than max_pixels={max_pixels} "
                         "(a tiny file can claim a huge image: raise the limit, e.g. --max-pixels, "
                         "only for a file you trust)")
    if latent_shape is not None:
        want = tuple(int(n) for n in latent_shape(header.height, header.width))
        if tuple(header.latent_shape) != want:
            raise ValueError(f"latent shape {tuple(header.latent_shape)} does not fit a {header.height} x "
                             f"{header.width} image for this codec (expected {want})")


def _read_fields(data: bytes) -> tuple[AebHeader, tuple]:
    """Check the framing, the CRC and every header field; return the header and the coded
    payload's parts (not decoded)."""
    if not data.startswith(MAGIC):
        if data and MAGIC.startswith(data):
            raise ValueError("truncated .aeb file: incomplete magic bytes")
        raise ValueError("not an .aeb file (missing magic bytes b'AEBK')")
    reader = _Reader(data, len(MAGIC))
    (version,) = reader.unpack(">B", "version")
    if version not in VERSIONS:
        raise ValueError(f"unsupported .aeb format version {version} (this reader knows "
                         f"{', '.join(map(str, VERSIONS))})")
    height, width, mode_byte, id_length = reader.unpack(">IIBB", "image header")
    model_id = reader.take(id_length, "model id")
    quality, ndim = reader.unpack(">BB", "quality and number of latent dimensions")
    shape = reader.unpack(f">{ndim}I", "latent shape")
    coder = VERSIONS[version]
    if coder == "huffman":
        step, table_size = reader.unpack(">fI", "step and code-table size")
        table_bytes = reader.take(table_size * _TABLE_ENTRY.itemsize, "code table")
        table = np.frombuffer(table_bytes, dtype=_TABLE_ENTRY)
        n_symbols, payload_length = reader.unpack(">II", "symbol count and payload length")
        coded: tuple = (table, reader.take(payload_length, "payload"))
    else:
        (step,) = reader.unpack(">f", "step")
        if ndim == 0:
            raise ValueError("inconsistent .aeb file: an ANS-coded latent needs at least one dimension")
        models = [reader.unpack(">BBH", "channel models") for _ in range(shape[0])]
        n_symbols, n_words = reader.unpack(">II", "symbol count and payload length")
        coded = (models, reader.take(4 * n_words, "payload"))
    body_end = reader.position
    (crc,) = reader.unpack(">I", "CRC-32")
    if reader.position != len(data):
        raise ValueError(f"{len(data) - reader.position} unexpected bytes after the .aeb CRC-32")
    if zlib.crc32(data[:body_end]) != crc:
        raise ValueError("corrupted: CRC-32 mismatch")

    # The bytes are what was written; now check that they make sense, before decoding anything.
    if mode_byte >= len(MODES):
        raise ValueError(f"invalid .aeb header: unknown colour mode byte {mode_byte}")
    try:
        model_name = model_id.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("invalid .aeb header: model id is not valid UTF-8") from None
    if ndim == 0 or n_symbols != math.prod(shape):
        raise ValueError(f"inconsistent .aeb file: {n_symbols} symbols for latent shape {shape}")
    for name, value in (("height", height), ("width", width), ("latent size", min(shape))):
        if value < 1:
            raise ValueError(f"invalid .aeb header: {name} must be at least 1, got {value}")
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"invalid .aeb header: step must be finite and > 0, got {step!r}")
    if coder == "huffman":
        table, payload = coded
        if n_symbols > 8 * len(payload):  # every Huffman codeword is at least one bit long
            raise ValueError(f".aeb payload fails to decode: Huffman payload ({8 * len(payload)} bits) "
                             f"too short for {n_symbols} symbols")
        if len(table) > max(n_symbols, 1):
            raise ValueError(f"invalid .aeb code table: {len(table)} entries for {n_symbols} symbols")
    else:
        for c, (zero, decay, bound) in enumerate(coded[0]):
            if bound and not (1 <= zero <= 255 and 1 <= decay <= 255):
                raise ValueError(f"invalid .aeb channel model {c}: zero={zero}, decay={decay}, bound={bound}")
    if n_symbols > MAX_SYMBOLS:
        raise ValueError(f"invalid .aeb header: {n_symbols} symbols is more than this reader accepts "
                         f"({MAX_SYMBOLS})")
    header = AebHeader(height, width, MODES[mode_byte], model_name, quality, tuple(shape), step, coder, n_symbols)
    return header, coded


def _parse(data: bytes, max_pixels: int | None = None,
           latent_shape: Callable[[int, int], tuple[int, ...]] | None = None) -> AebFile:
    """Check the framing, the CRC, the header fields and the caller's limits, then decode (see module doc)."""
    header, coded = _read_fields(data)
    check_header(header, max_pixels, latent_shape)
    n_symbols, shape = header.n_symbols, header.latent_shape
    if header.coder == "huffman":
        table, payload = coded
        try:
            code = HuffmanCode.from_table(zip(table["symbol"].tolist(), table["length"].tolist()))
        except ValueError as exc:
            raise ValueError(f"invalid .aeb code table: {exc}") from None
        try:
            symbols = code.decode(payload, n_symbols)
        except ValueError as exc:
            raise ValueError(f".aeb payload fails to decode: {exc}") from None
    else:
        models, payload = coded
        words = np.frombuffer(payload, dtype=">u4").astype(np.uint32)
        try:
            symbols = ans_decode_channels(words, models, n_symbols // shape[0])
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f".aeb payload fails to decode: {exc}") from None
    try:
        return AebFile(header.height, header.width, header.mode, header.model_id, header.quality, shape,
                       header.step, symbols, header.coder)
    except ValueError as exc:
        raise ValueError(f"invalid .aeb header: {exc}") from None


def write_aeb(path: str | os.PathLike[str], aeb: AebFile) -> None:
    """Write ``aeb`` to ``path`` atomically.

    The bytes are produced first (so invalid data raises before any file is touched),
    written to a temporary file in the same directory and moved over ``path`` with
    ``os.replace``; on any error the temporary file is removed and ``path`` is unchanged.
    """
    data = aeb.to_bytes()
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder: give the .aeb file a name")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"output folder {directory} does not exist")
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        if os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(err, OSError):
            raise naming_output(err, path) from None
        raise


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a file; ``FileNotFoundError`` if missing, ``ValueError`` for a folder or an unreadable file."""
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{os.fspath(path)} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{os.fspath(path)} is a folder, not an .aeb file") from None
    except OSError as err:
        raise ValueError(f"cannot read {os.fspath(path)}: {err.strerror or err}") from None


def read_aeb_header(path: str | os.PathLike[str]) -> AebHeader:
    """The header of an ``.aeb`` file, checked (framing, CRC-32, every field) without decoding
    the payload; errors as :func:`read_aeb`."""
    return _read_fields(_read_bytes(path))[0]


def read_aeb(path: str | os.PathLike[str], max_pixels: int | None = None,
             latent_shape: Callable[[int, int], tuple[int, ...]] | None = None) -> AebFile:
    """Read an ``.aeb`` file (``FileNotFoundError`` if missing, ``ValueError`` if invalid, a
    folder or unreadable); ``max_pixels`` and ``latent_shape`` as in :meth:`AebFile.from_bytes`."""
    return AebFile.from_bytes(_read_bytes(path), max_pixels, latent_shape)
