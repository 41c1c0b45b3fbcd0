"""The ``.aeb`` file format: a compressed image stored as Huffman-coded quantised latents.

All integers are big-endian (``struct`` formats ``>B``, ``>I``, ``>i``, ``>f``):

=========  ============  =================================================================
Size       Field         Meaning
=========  ============  =================================================================
4          magic         ``b"AEBK"``
1          version       format version, currently 1
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

The code table is the canonical Huffman code of :mod:`aebook.entropy`, so (symbol,
length) pairs suffice. Reading checks, in order: magic, version, that the declared
lengths fit the data exactly, the CRC-32, and only then the meaning of the fields, so
any bad input gives one ``ValueError`` naming the problem.
"""

from __future__ import annotations

import math
import os
import secrets
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from aebook.entropy import HuffmanCode

MAGIC = b"AEBK"
VERSION = 1
MODES = ("L", "RGB")  # the mode byte is the index into this tuple
_UINT32_MAX = (1 << 32) - 1
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
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
    """

    height: int
    width: int
    mode: str
    model_id: str
    quality: int
    latent_shape: tuple[int, ...]
    step: float
    symbols: np.ndarray

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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AebFile):
            return NotImplemented
        header = ("height", "width", "mode", "model_id", "quality", "latent_shape", "step")
        return all(getattr(self, f) == getattr(other, f) for f in header) and np.array_equal(
            self.symbols, other.symbols
        )

    def to_bytes(self) -> bytes:
        """Serialise to the ``.aeb`` layout, Huffman-coding the symbols."""
        self._validate()
        flat = self.symbols.ravel()
        code = HuffmanCode.from_symbols(flat)
        payload, _ = code.encode(flat)
        if len(payload) > _UINT32_MAX or flat.size > _UINT32_MAX:
            raise ValueError("too many symbols for an .aeb file")
        table = np.array(code.to_table(), dtype=_TABLE_ENTRY)
        model_id = self.model_id.encode("utf-8")
        shape = self.latent_shape
        body = b"".join([
            MAGIC,
            struct.pack(">BIIB", VERSION, self.height, self.width, MODES.index(self.mode)),
            struct.pack(">B", len(model_id)) + model_id,
            struct.pack(f">BB{len(shape)}I", self.quality, len(shape), *shape),
            struct.pack(">fI", self.step, len(table)) + table.tobytes(),
            struct.pack(">II", flat.size, len(payload)) + payload,
        ])
        return body + struct.pack(">I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> AebFile:
        """Parse an ``.aeb`` file; ``ValueError`` with one clear message if it is invalid."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected bytes, got {type(data).__name__}")
        return _parse(bytes(data))


def _check_symbols(symbols: object, shape: tuple[int, ...]) -> np.ndarray:
    """Return ``symbols`` as an int64 array of the given shape, or raise ``ValueError``."""
    arr = np.asarray(symbols)
    if arr.size != math.prod(shape):
        raise ValueError(f"latent_shape {shape} needs {math.prod(shape)} symbols, got {arr.size}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"symbols must be integers, got dtype {arr.dtype}")
    if arr.min() < _INT32_MIN or arr.max() > _INT32_MAX:
        raise ValueError("symbols must fit in a signed 32-bit integer")
    return arr.astype(np.int64).reshape(shape)


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


def _parse(data: bytes) -> AebFile:
    """Check the framing, then the CRC, then the meaning of the fields (see module doc)."""
    if not data.startswith(MAGIC):
        if data and MAGIC.startswith(data):
            raise ValueError("truncated .aeb file: incomplete magic bytes")
        raise ValueError("not an .aeb file (missing magic bytes b'AEBK')")
    reader = _Reader(data, len(MAGIC))
    (version,) = reader.unpack(">B", "version")
    if version != VERSION:
        raise ValueError(f"unsupported .aeb format version {version} (this reader knows {VERSION})")
    height, width, mode_byte, id_length = reader.unpack(">IIBB", "image header")
    model_id = reader.take(id_length, "model id")
    quality, ndim = reader.unpack(">BB", "quality and number of latent dimensions")
    shape = reader.unpack(f">{ndim}I", "latent shape")
    step, table_size = reader.unpack(">fI", "step and code-table size")
    table_bytes = reader.take(table_size * _TABLE_ENTRY.itemsize, "code table")
    table = np.frombuffer(table_bytes, dtype=_TABLE_ENTRY)
    n_symbols, payload_length = reader.unpack(">II", "symbol count and payload length")
    payload = reader.take(payload_length, "payload")
    body_end = reader.position
    (crc,) = reader.unpack(">I", "CRC-32")
    if reader.position != len(data):
        raise ValueError(f"{len(data) - reader.position} unexpected bytes after the .aeb CRC-32")
    if zlib.crc32(data[:body_end]) != crc:
        raise ValueError("corrupted: CRC-32 mismatch")

    # The bytes are what was written; now check that they make sense.
    if mode_byte >= len(MODES):
        raise ValueError(f"invalid .aeb header: unknown colour mode byte {mode_byte}")
    try:
        model_name = model_id.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("invalid .aeb header: model id is not valid UTF-8") from None
    if ndim == 0 or n_symbols != math.prod(shape):
        raise ValueError(f"inconsistent .aeb file: {n_symbols} symbols for latent shape {shape}")
    try:
        code = HuffmanCode.from_table(zip(table["symbol"].tolist(), table["length"].tolist()))
    except ValueError as exc:
        raise ValueError(f"invalid .aeb code table: {exc}") from None
    try:
        symbols = code.decode(payload, n_symbols)
    except ValueError as exc:
        raise ValueError(f".aeb payload fails to decode: {exc}") from None
    try:
        return AebFile(height, width, MODES[mode_byte], model_name, quality, shape, step, symbols)
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
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def read_aeb(path: str | os.PathLike[str]) -> AebFile:
    """Read an ``.aeb`` file (``FileNotFoundError`` if missing, ``ValueError`` if invalid)."""
    with open(path, "rb") as file:
        return AebFile.from_bytes(file.read())
