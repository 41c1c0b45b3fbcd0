"""Entropy coding of quantised latents: empirical entropy and canonical Huffman codes.

An autoencoder compresses an image by mapping it to a small latent tensor whose values
are then quantised to (signed) integers. Those integers are far from equally likely, so
storing each in a fixed number of bits wastes space: an *entropy coder* gives frequent
symbols short codewords and rare symbols long ones, approaching the Shannon entropy of
the symbol distribution. Huffman coding is the classic optimal prefix code for this job,
and its *canonical* form lets a file store the code table as just (symbol, length) pairs.
Contrary to the article this book is based on, the encoder network does not "use Huffman
coding": the network produces the latents, and Huffman coding is a separate, lossless
step applied afterwards to their quantised values. ANS, which has no one-bit floor, is in
:mod:`aebook.codecs.ans`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

MAX_CODE_LENGTH = 32  # longer Huffman codes are length-limited, see HuffmanCode.from_counts

_ENCODE_CHUNK_SYMBOLS = 1 << 16
_DECODE_CHUNK_BITS = 1 << 18
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def as_symbol_array(symbols: np.ndarray | Iterable[int]) -> np.ndarray:
    """Return ``symbols`` as a flat ``int64`` array; raise for non-integer input (the one check of
    every coder here and in :mod:`aebook.codecs.ans`)."""
    arr = np.asarray(symbols)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"symbols must be integers, got an array of dtype {arr.dtype}")
    if arr.dtype == np.uint64 and int(arr.max()) > _INT64_MAX:
        raise ValueError("symbols must fit in a signed 64-bit integer")
    return arr.astype(np.int64, copy=False).ravel()


def count_symbols(symbols: np.ndarray | Iterable[int]) -> dict[int, int]:
    """Map each integer symbol occurring in ``symbols`` (any shape) to its count."""
    values, counts = np.unique(as_symbol_array(symbols), return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def empirical_entropy(symbols: np.ndarray | Iterable[int]) -> float:
    """Shannon entropy of the empirical symbol distribution, in bits per symbol.

    Parameters
    ----------
    symbols : array_like of int
        The symbols, of any shape. An empty input has entropy 0.

    Returns
    -------
    float
        ``H = sum_s p(s) * log2(1 / p(s))`` with ``p(s)`` the relative frequency of ``s``.
        No prefix code can use fewer bits per symbol on average.
    """
    counts = np.array(list(count_symbols(symbols).values()), dtype=np.float64)
    if counts.size == 0:
        return 0.0
    p = counts / counts.sum()
    return float(np.sum(p * np.log2(1.0 / p)))


def _huffman_lengths(counts: Mapping[int, int]) -> dict[int, int]:
    """Code lengths of a Huffman code; ties are broken by symbol value, then by age."""
    symbols = sorted(s for s, c in counts.items() if c > 0)
    if len(symbols) <= 1:
        return {s: 1 for s in symbols}  # a lone symbol still needs one bit per occurrence
    heap = [(counts[s], node) for node, s in enumerate(symbols)]
    heapq.heapify(heap)
    parent = [-1] * len(symbols)
    while len(heap) > 1:  # repeatedly merge the two lightest subtrees
        w1, a = heapq.heappop(heap)
        w2, b = heapq.heappop(heap)
        parent[a] = parent[b] = len(parent)
        heapq.heappush(heap, (w1 + w2, len(parent)))
        parent.append(-1)
    depth = [0] * len(parent)
    for node in range(len(parent) - 2, -1, -1):  # parents are created after their children
        depth[node] = depth[parent[node]] + 1
    return {s: depth[node] for node, s in enumerate(symbols)}


def _limit_lengths(
    lengths: dict[int, int], counts: Mapping[int, int], max_length: int
) -> dict[int, int]:
    """Shorten codes to ``max_length`` bits, keeping the Kraft sum <= 1 (zlib's heuristic)."""
    if max(lengths.values()) <= max_length:
        return lengths
    if len(lengths) > 1 << max_length:
        raise ValueError(f"{len(lengths)} symbols cannot be coded in {max_length} bits")
    per_length = [0] * (max_length + 1)
    for length in lengths.values():
        per_length[min(length, max_length)] += 1
    kraft = sum(n << (max_length - l) for l, n in enumerate(per_length))
    while kraft > 1 << max_length:  # lengthen the deepest code that is still short enough
        l = max(l for l in range(1, max_length) if per_length[l])
        per_length[l] -= 1
        per_length[l + 1] += 1
        kraft -= 1 << (max_length - l - 1)
    by_frequency = sorted(lengths, key=lambda s: (-counts[s], s))
    new = [l for l in range(1, max_length + 1) for _ in range(per_length[l])]
    return dict(zip(by_frequency, new))


@dataclass
class HuffmanCode:
    """A canonical Huffman code over integer symbols.

    The code is fully determined by ``lengths``: codewords are assigned in order of
    (length, symbol), each one the previous codeword plus one, shifted left whenever
    the length grows. That is why ``to_table`` only needs (symbol, length) pairs.

    Parameters
    ----------
    lengths : dict[int, int]
        Symbol -> codeword length in bits (1 to ``MAX_CODE_LENGTH``). The lengths must
        satisfy Kraft's inequality ``sum 2**-length <= 1``; otherwise ``ValueError``.

    Attributes
    ----------
    codes : dict[int, tuple[int, int]]
        Symbol -> (codeword as an integer, length in bits); the codeword's most
        significant bit is sent first.
    """

    lengths: dict[int, int]
    codes: dict[int, tuple[int, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.lengths = _checked_lengths(self.lengths)
        order = sorted(self.lengths.items(), key=lambda item: (item[1], item[0]))
        self.codes, code, previous = {}, 0, 0
        for symbol, length in order:
            code <<= length - previous
            self.codes[symbol] = (code, length)
            code, previous = code + 1, length
        # Encoder arrays, sorted by symbol value (for np.searchsorted).
        by_symbol = sorted(self.codes.items())
        self._enc_symbols = np.array([s for s, _ in by_symbol], dtype=np.int64)
        self._enc_codes = np.array([c for _, (c, _) in by_symbol], dtype=np.int64)
        self._enc_lengths = np.array([l for _, (_, l) in by_symbol], dtype=np.int64)
        # Decoder arrays, in canonical order: left-aligned codewords are then increasing.
        self._max_length = max(self.lengths.values(), default=0)
        self._dec_symbols = np.array([s for s, _ in order], dtype=np.int64)
        self._dec_lengths = np.array([l for _, l in order], dtype=np.int64)
        self._dec_codes = np.array([self.codes[s][0] for s, _ in order], dtype=np.int64)
        self._dec_keys = self._dec_codes << (self._max_length - self._dec_lengths)

    @classmethod
    def from_counts(
        cls, counts: Mapping[int, int], max_length: int = MAX_CODE_LENGTH
    ) -> HuffmanCode:
        """Build the Huffman code for the given symbol counts.

        Symbols with count 0 get no codeword. A single symbol gets a 1-bit code. Ties are
        broken deterministically (by symbol value). If the optimal code would need
        codewords longer than ``max_length`` bits (only for extremely skewed counts, e.g.
        Fibonacci-like ones), lengths are limited with zlib's heuristic: slightly
        sub-optimal, but still a valid prefix code.

        Parameters
        ----------
        counts : Mapping[int, int]
            Symbol -> number of occurrences (non-negative).
        max_length : int, optional
            Longest allowed codeword, between 1 and ``MAX_CODE_LENGTH``.

        Returns
        -------
        HuffmanCode
        """
        if not 1 <= max_length <= MAX_CODE_LENGTH:
            raise ValueError(f"max_length must be in [1, {MAX_CODE_LENGTH}], got {max_length}")
        if any(c < 0 for c in counts.values()):
            raise ValueError("symbol counts must be non-negative")
        lengths = _huffman_lengths(counts)
        if lengths:
            lengths = _limit_lengths(lengths, counts, max_length)
        return cls(lengths)

    @classmethod
    def from_symbols(
        cls, symbols: np.ndarray | Iterable[int], max_length: int = MAX_CODE_LENGTH
    ) -> HuffmanCode:
        """Build the Huffman code for the symbol frequencies in ``symbols``."""
        return cls.from_counts(count_symbols(symbols), max_length)

    @classmethod
    def from_table(cls, table: Iterable[tuple[int, int]]) -> HuffmanCode:
        """Rebuild a canonical code from (symbol, length) pairs, in any order."""
        lengths: dict[int, int] = {}
        for symbol, length in table:
            if symbol in lengths:
                raise ValueError(f"symbol {symbol} appears twice in the code table")
            lengths[symbol] = length
        return cls(lengths)

    def to_table(self) -> list[tuple[int, int]]:
        """The (symbol, length) pairs in canonical order: all that is needed to rebuild."""
        return list(zip(self._dec_symbols.tolist(), self._dec_lengths.tolist()))

    def mean_length(self, counts: Mapping[int, int]) -> float:
        """Average codeword length in bits per symbol for the given symbol counts."""
        total = sum(counts.values())
        missing = [s for s, c in counts.items() if c and s not in self.lengths]
        if missing:
            raise ValueError(f"symbol {missing[0]} is not in the code table")
        if total == 0:
            return 0.0
        return sum(c * self.lengths[s] for s, c in counts.items() if c) / total

    def encode(self, symbols: np.ndarray | Iterable[int]) -> tuple[bytes, int]:
        """Encode symbols into a bit string (most significant bit first).

        Parameters
        ----------
        symbols : array_like of int
            Symbols to encode (flattened in C order); all must be in the code table.

        Returns
        -------
        payload : bytes
            The concatenated codewords, zero-padded to a whole number of bytes.
        n_bits : int
            Number of meaningful bits in ``payload``.
        """
        arr = as_symbol_array(symbols)
        if arr.size == 0:
            return b"", 0
        if not self.lengths:
            raise ValueError("cannot encode symbols with an empty code table")
        chunks = []
        for start in range(0, arr.size, _ENCODE_CHUNK_SYMBOLS):
            part = arr[start : start + _ENCODE_CHUNK_SYMBOLS]
            index = np.searchsorted(self._enc_symbols, part).clip(0, len(self._enc_symbols) - 1)
            unknown = self._enc_symbols[index] != part
            if unknown.any():
                raise ValueError(f"symbol {part[unknown][0]} is not in the code table")
            codes, lengths = self._enc_codes[index], self._enc_lengths[index]
            # Bit j (0 = first sent) of a codeword of length L is (code >> (L - 1 - j)) & 1.
            first_bit = np.repeat(np.cumsum(lengths) - lengths, lengths)
            j = np.arange(first_bit.size) - first_bit
            shift = np.repeat(lengths, lengths) - 1 - j
            chunks.append(((np.repeat(codes, lengths) >> shift) & 1).astype(np.uint8))
        bits = np.concatenate(chunks)
        return np.packbits(bits).tobytes(), int(bits.size)

    def decode(self, payload: bytes, n_symbols: int) -> np.ndarray:
        """Decode exactly ``n_symbols`` symbols from a payload made by ``encode``.

        Parameters
        ----------
        payload : bytes
            The coded bits. After the last codeword only zero padding (< 8 bits) may follow.
        n_symbols : int
            How many symbols to decode.

        Returns
        -------
        np.ndarray
            The decoded symbols, a 1-D ``int64`` array of length ``n_symbols``.

        Raises
        ------
        ValueError
            If ``payload`` is not exactly ``n_symbols`` codewords plus padding (it ends in
            the middle of a code, holds an invalid code, or has leftover bytes/non-zero
            padding). Every loop is bounded by the payload size, so decoding never hangs.
        """
        payload = bytes(payload)
        n_bits = 8 * len(payload)
        if n_symbols < 0:
            raise ValueError(f"n_symbols must be non-negative, got {n_symbols}")
        if n_symbols > 0 and not self.lengths:
            raise ValueError("cannot decode symbols with an empty code table")
        if n_symbols * int(self._dec_lengths.min(initial=1)) > n_bits:
            raise ValueError(f"Huffman payload ({n_bits} bits) too short for {n_symbols} symbols")
        bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
        found: list[int] = []  # indices into the canonical order
        position = 0
        while len(found) < n_symbols:
            if position >= n_bits:
                raise ValueError(f"Huffman payload ends after {len(found)} of {n_symbols} symbols")
            stop = min(position + _DECODE_CHUNK_BITS, n_bits)
            index_at, length_at = self._decode_table(bits, position, stop)
            start = position
            while len(found) < n_symbols and position < stop:
                length = length_at[position - start]
                if length < 0:
                    raise ValueError("Huffman payload ends in the middle of a code")
                if length == 0:
                    raise ValueError(f"invalid code in Huffman payload at bit {position}")
                found.append(index_at[position - start])
                position += length
        if n_bits - position >= 8:
            raise ValueError(f"Huffman payload has {(n_bits - position) // 8} trailing bytes")
        if bits[position:].any():
            raise ValueError("Huffman payload has non-zero padding bits")
        return self._dec_symbols[np.array(found, dtype=np.int64)]

    def _decode_table(self, bits: np.ndarray, start: int, stop: int) -> tuple[list, list]:
        """For each bit position in [start, stop): (canonical index, length) of the codeword
        starting there; length 0 means no codeword does, -1 that it runs past the end."""
        width = self._max_length
        window = np.zeros(stop - start + width, dtype=np.int64)
        available = bits[start : stop + width]
        window[: available.size] = available
        value = np.zeros(stop - start, dtype=np.int64)  # the next `width` bits, as an integer
        for j in range(width):
            value = (value << 1) | window[j : j + stop - start]
        index = np.searchsorted(self._dec_keys, value, side="right") - 1  # keys[0] == 0
        lengths = self._dec_lengths[index]
        status = np.where((value >> (width - lengths)) == self._dec_codes[index], lengths, 0)
        past_end = np.arange(start, stop) + lengths > bits.size
        status = np.where((status > 0) & past_end, -1, status)
        return index.tolist(), status.tolist()


def _checked_lengths(lengths: Mapping[int, int]) -> dict[int, int]:
    """Validate a symbol -> length mapping (types, ranges, Kraft's inequality)."""
    checked: dict[int, int] = {}
    for symbol, length in lengths.items():
        for name, value in (("symbol", symbol), ("code length", length)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if not _INT64_MIN <= int(symbol) <= _INT64_MAX:
            raise ValueError(f"symbol {symbol} does not fit in a signed 64-bit integer")
        if not 1 <= int(length) <= MAX_CODE_LENGTH:
            raise ValueError(f"code length {length} of {symbol} is not in [1, {MAX_CODE_LENGTH}]")
        checked[int(symbol)] = int(length)
    kraft = sum(1 << (MAX_CODE_LENGTH - l) for l in checked.values())
    if kraft > 1 << MAX_CODE_LENGTH:
        raise ValueError("code lengths violate Kraft's inequality: not a prefix code")
    return checked
