"""Asymmetric numeral systems (ANS): entropy coding without Huffman's one-bit floor (chapter 5.2).

A prefix code spends at least one bit per symbol; ANS (``constriction``'s stack coder) spends a
fractional number, within a fraction of a percent of the model's entropy, so a symbol that is
almost always zero costs almost nothing. :func:`ans_encode` and :func:`ans_decode` code symbols
under one i.i.d. model; :func:`ans_encode_channels` codes each channel of a latent under its
own two-number model (:func:`fit_zero_geometric`), what ``.aeb`` format version 2 stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import constriction
import numpy as np

from aebook.codecs.entropy import as_symbol_array, count_symbols


def _ans_model(symbols: np.ndarray, probabilities: Mapping[int, float] | None):
    """Alphabet (sorted symbols), symbol indices and a ``constriction`` categorical model."""
    Categorical = constriction.stream.model.Categorical

    if probabilities is None:
        probabilities = {s: float(c) for s, c in count_symbols(symbols).items()}
    if not probabilities:
        raise ValueError("probabilities must name at least one symbol")
    alphabet = np.array(sorted(int(s) for s in probabilities), dtype=np.int64)
    p = np.array([float(probabilities[int(s)]) for s in alphabet], dtype=np.float64)
    if not (np.isfinite(p).all() and (p >= 0).all() and p.sum() > 0):
        raise ValueError("probabilities must be finite, non-negative and not all zero")
    index = np.searchsorted(alphabet, symbols)
    if symbols.size and ((index >= alphabet.size) | (alphabet[np.minimum(index, alphabet.size - 1)] != symbols)).any():
        raise ValueError("a symbol to encode has no probability in the model")
    if alphabet.size == 1:  # constriction needs two symbols: add one that is never coded
        p = np.append(p, 0.0)
    return alphabet, index.astype(np.int32), Categorical(p / p.sum(), perfect=False)


def ans_encode(symbols: np.ndarray | Iterable[int],
               probabilities: Mapping[int, float] | None = None) -> np.ndarray:
    """Encode integer symbols with asymmetric numeral systems (ANS, ``constriction``'s stack coder).

    Unlike a prefix code, ANS spends a fractional number of bits per symbol, so a very
    likely symbol can cost far less than one bit: its rate is within a fraction of a
    percent of the entropy of the model.

    Parameters
    ----------
    symbols : array_like of int
        Symbols to encode (flattened in C order).
    probabilities : Mapping[int, float], optional
        Symbol -> probability (or count) of the i.i.d. model; default: the empirical
        frequencies of ``symbols`` (the decoder then needs the same table, as Huffman's
        needs its code table). Every symbol must be in it.

    Returns
    -------
    np.ndarray
        The compressed bit stream as ``uint32`` words.
    """
    AnsCoder = constriction.stream.stack.AnsCoder

    flat = as_symbol_array(symbols)
    _, index, model = _ans_model(flat, probabilities)
    coder = AnsCoder()
    coder.encode_reverse(index, model)
    return coder.get_compressed()


def ans_decode(words: np.ndarray, n_symbols: int, probabilities: Mapping[int, float]) -> np.ndarray:
    """Decode ``n_symbols`` symbols from :func:`ans_encode`'s words with the same ``probabilities``."""
    AnsCoder = constriction.stream.stack.AnsCoder

    if n_symbols < 0:
        raise ValueError(f"n_symbols must be >= 0, got {n_symbols}")
    alphabet, _, model = _ans_model(np.zeros(0, dtype=np.int64), probabilities)
    words = np.ascontiguousarray(words, dtype=np.uint32)
    decoded = AnsCoder(words).decode(model, int(n_symbols)) if n_symbols else np.zeros(0, np.int64)
    return alphabet[np.asarray(decoded, dtype=np.int64)]


def ans_bits(symbols: np.ndarray | Iterable[int], probabilities: Mapping[int, float] | None = None) -> int:
    """Size in bits of the ANS stream of ``symbols`` (:func:`ans_encode`; whole 32-bit words).

    The stream is decoded again and compared with ``symbols``; a mismatch raises
    ``RuntimeError``, so the number returned is always that of a working code.
    """
    flat = as_symbol_array(symbols)
    if flat.size == 0:
        return 0
    if probabilities is None:
        probabilities = {s: float(c) for s, c in count_symbols(flat).items()}
    words = ans_encode(flat, probabilities)
    if not np.array_equal(ans_decode(words, flat.size, probabilities), flat):
        raise RuntimeError("ANS round trip failed")
    return 32 * int(words.size)


# ------------------------------------------------ per-channel ANS under small parametric models
#
# Huffman's code table grows with the alphabet and its rate never drops below one bit per
# symbol. A latent with many channels, most of them nearly always zero, needs neither: each
# channel gets a two-number model (how often it is zero, how fast its larger values become
# rare), fitted by the encoder and written in four bytes, and ANS codes it at a fraction of
# a bit per symbol. The probabilities are built from those integers with integer arithmetic
# only, so the encoder and any decoder, on any machine, use exactly the same model.

#: The largest ``|symbol|`` a channel model covers (its bound is stored as a uint16).
MAX_BOUND = 65535


def zero_geometric_frequencies(zero: int, decay: int, bound: int) -> np.ndarray:
    """Integer frequencies of the symbols ``-bound .. bound`` under a zero-inflated two-sided
    geometric model: ``P(0) = zero / 256``; the rest is split evenly between the signs, with
    ``P(+-k)`` proportional to ``(decay / 256) ** (k - 1)`` (floored at one count, so every
    symbol up to ``bound`` stays codable).

    ``zero`` and ``decay`` are integers in [1, 255], ``bound`` in [1, :data:`MAX_BOUND`].
    Returns ``2 * bound + 1`` positive int64 counts, the same on every machine.
    """
    for name, value, low, high in (("zero", zero, 1, 255), ("decay", decay, 1, 255), ("bound", bound, 1, MAX_BOUND)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    tail = np.ones(int(bound), dtype=np.int64)
    weight = 1 << 30
    for k in range(int(bound)):  # exact integer recursion; once it reaches one count it stays there
        if weight <= 1:
            break
        tail[k] = weight
        weight = weight * int(decay) // 256
    tail_sum = 2 * int(tail.sum())  # both signs
    freq = np.concatenate([tail[::-1], [0], tail]) * (256 - int(zero))  # the tail sums to (256 - zero) * tail_sum
    freq[int(bound)] = int(zero) * tail_sum  # so P(0) = zero / 256 exactly
    return freq


def _zero_geometric_bits(hist: np.ndarray, zero: int, decay: int, bound: int) -> float:
    freq = zero_geometric_frequencies(zero, decay, bound).astype(np.float64)
    p = freq / freq.sum()
    return float(-(hist * np.log2(p)).sum())


def fit_zero_geometric(symbols: np.ndarray | Iterable[int]) -> tuple[int, int, int]:
    """The ``(zero, decay, bound)`` of :func:`zero_geometric_frequencies` that codes ``symbols``
    in the fewest bits: ``bound`` is the largest ``|symbol|`` (0 when all are zero: nothing
    to code); ``zero`` and ``decay`` start from their maximum-likelihood values and are
    refined by a small search on the exact code length."""
    flat = as_symbol_array(symbols)
    if flat.size == 0 or not flat.any():
        return 255, 1, 0
    mags = np.abs(flat)
    bound = int(mags.max())
    if bound > MAX_BOUND:
        raise ValueError(f"a symbol of magnitude {bound} exceeds the channel model's bound {MAX_BOUND}")
    hist = np.bincount(flat + bound, minlength=2 * bound + 1).astype(np.float64)
    zeros = float(hist[bound]) / flat.size
    nonzero = mags[mags > 0] - 1
    mean = float(nonzero.mean()) if nonzero.size else 0.0
    z0 = int(np.clip(round(256 * zeros), 1, 255))
    d0 = int(np.clip(round(256 * mean / (1 + mean)), 1, 255))
    best = (_zero_geometric_bits(hist, z0, d0, bound), z0, d0)
    for radius in (8, 2, 1):  # coordinate search around the current best
        improved = True
        while improved:
            improved = False
            _, z, d = best
            for dz, dd in ((radius, 0), (-radius, 0), (0, radius), (0, -radius)):
                zc, dc = z + dz, d + dd
                if 1 <= zc <= 255 and 1 <= dc <= 255:
                    bits = _zero_geometric_bits(hist, zc, dc, bound)
                    if bits < best[0] - 1e-9:
                        best, improved = (bits, zc, dc), True
    return best[1], best[2], bound


def _channel_model(params: tuple[int, int, int]):
    freq = zero_geometric_frequencies(*params).astype(np.float64)  # exact: counts < 2**53
    return constriction.stream.model.Categorical(freq / freq.sum(), perfect=False)


def ans_encode_channels(symbols: np.ndarray, params: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """ANS-code a ``(channels, n)`` integer array, channel ``c`` under the model ``params[c]``
    (from :func:`fit_zero_geometric`), into one stream of ``uint32`` words.

    Channels whose ``bound`` is 0 must be all zero and cost nothing. ``ValueError`` if a
    symbol falls outside its channel's bound.
    """
    symbols = np.asarray(symbols)
    if symbols.ndim != 2 or symbols.dtype.kind not in "iu" or len(params) != symbols.shape[0]:
        raise ValueError(f"need a (channels, n) integer array and one model per channel, got shape "
                         f"{symbols.shape}, dtype {symbols.dtype} and {len(params)} models")
    coder = constriction.stream.stack.AnsCoder()
    for c in reversed(range(symbols.shape[0])):  # a stack: the last channel written is the first read
        bound = params[c][2]
        row = symbols[c].astype(np.int64)
        if row.size and np.abs(row).max() > bound:
            raise ValueError(f"channel {c} holds a symbol beyond its model's bound {bound}")
        if bound and row.size:
            coder.encode_reverse((row + bound).astype(np.int32), _channel_model(params[c]))
    return coder.get_compressed()


def ans_decode_channels(words: np.ndarray, params: Sequence[tuple[int, int, int]], n: int) -> np.ndarray:
    """Decode :func:`ans_encode_channels`'s words: a ``(len(params), n)`` int64 array."""
    out = np.zeros((len(params), int(n)), dtype=np.int64)
    if not any(bound for _, _, bound in params) or not n:
        return out
    try:
        coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
        for c, (zero, decay, bound) in enumerate(params):
            if bound:
                out[c] = np.asarray(coder.decode(_channel_model((zero, decay, bound)), int(n)), dtype=np.int64) - bound
    except (ValueError, RuntimeError, AssertionError, OverflowError) as exc:  # constriction's complaints
        raise ValueError(f"ANS stream does not decode: {exc}") from None
    return out
