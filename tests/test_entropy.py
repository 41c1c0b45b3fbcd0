"""Tests for aebook.codecs.entropy: entropy, canonical Huffman codes, robust decoding."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aebook.codecs.entropy import MAX_CODE_LENGTH, HuffmanCode, count_symbols, empirical_entropy

INT64 = st.integers(-(2**63), 2**63 - 1)
# Latent-like data (few small values, many repeats) and wide-range int64 data.
SYMBOL_LISTS = st.one_of(
    st.lists(st.integers(-4, 4), max_size=300),
    st.lists(INT64, max_size=40),
)
FAST = settings(max_examples=60, deadline=None)

TEXTBOOK_COUNTS = {0: 45, 1: 13, 2: 12, 3: 16, 4: 9, 5: 5}  # CLRS's "a".."f" example


def kraft_sum(code: HuffmanCode) -> float:
    return sum(2.0 ** -length for length in code.lengths.values())


def test_textbook_example_has_mean_length_2_24_bits() -> None:
    code = HuffmanCode.from_counts(TEXTBOOK_COUNTS)
    assert code.mean_length(TEXTBOOK_COUNTS) == pytest.approx(2.24)
    assert sorted(code.lengths.values()) == [1, 3, 3, 3, 4, 4]
    assert code.codes[0] == (0, 1)  # the most frequent symbol gets the single-bit code "0"


def test_empirical_entropy_known_values() -> None:
    assert empirical_entropy([]) == 0.0
    assert empirical_entropy([7, 7, 7]) == 0.0
    assert empirical_entropy([0, 1, 0, 1]) == pytest.approx(1.0)
    assert empirical_entropy(np.arange(8).reshape(2, 4)) == pytest.approx(3.0)


@FAST
@given(SYMBOL_LISTS)
def test_round_trip_is_exact(symbols: list[int]) -> None:
    arr = np.array(symbols, dtype=np.int64)
    code = HuffmanCode.from_symbols(arr)
    payload, n_bits = code.encode(arr)
    assert len(payload) == math.ceil(n_bits / 8)
    assert n_bits == sum(code.lengths[s] for s in symbols)
    decoded = code.decode(payload, arr.size)
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, arr)


def test_empty_input_round_trips() -> None:
    code = HuffmanCode.from_symbols(np.array([], dtype=np.int64))
    assert code.lengths == {} and code.to_table() == []
    assert code.encode([]) == (b"", 0)
    assert code.decode(b"", 0).shape == (0,)


def test_one_symbol_alphabet_gets_a_one_bit_code() -> None:
    code = HuffmanCode.from_symbols(np.full(11, -3))
    assert code.lengths == {-3: 1}
    payload, n_bits = code.encode(np.full(11, -3))
    assert (payload, n_bits) == (b"\x00\x00", 11)
    np.testing.assert_array_equal(code.decode(payload, 11), np.full(11, -3))
    with pytest.raises(ValueError, match="invalid code"):
        code.decode(b"\x80", 1)  # bit "1" is not a codeword of this code


@FAST
@given(SYMBOL_LISTS)
def test_mean_length_is_within_one_bit_of_entropy(symbols: list[int]) -> None:
    counts = count_symbols(symbols)
    code = HuffmanCode.from_counts(counts)
    if len(counts) >= 2:  # the textbook bound H <= L < H + 1; one symbol costs 1 bit, H = 0
        entropy = empirical_entropy(symbols)
        assert entropy - 1e-9 <= code.mean_length(counts) < entropy + 1
        assert kraft_sum(code) == pytest.approx(1.0)  # Huffman codes are complete


@FAST
@given(st.dictionaries(st.integers(-50, 50), st.integers(1, 1000), min_size=1, max_size=30))
def test_canonical_code_is_prefix_free_and_table_round_trips(counts: dict[int, int]) -> None:
    code = HuffmanCode.from_counts(counts)
    table = code.to_table()
    assert [length for _, length in table] == sorted(length for _, length in table)
    shuffled = table[:]
    random.Random(0).shuffle(shuffled)
    rebuilt = HuffmanCode.from_table(shuffled)
    assert rebuilt == code and rebuilt.codes == code.codes
    words = [format(c, f"0{n}b") for c, n in code.codes.values()]
    assert not any(a != b and b.startswith(a) for a in words for b in words)


def test_construction_is_deterministic_under_ties() -> None:
    counts = {s: 1 for s in range(-3, 4)}
    reversed_counts = dict(reversed(list(counts.items())))
    assert HuffmanCode.from_counts(counts).codes == HuffmanCode.from_counts(reversed_counts).codes


def fibonacci_counts(n: int) -> dict[int, int]:
    fib = [1, 1]
    while len(fib) < n:
        fib.append(fib[-1] + fib[-2])
    return dict(enumerate(fib))


@pytest.mark.parametrize("n, max_length", [(40, MAX_CODE_LENGTH), (20, 8), (5, 3)])
def test_skewed_counts_are_length_limited(n: int, max_length: int) -> None:
    counts = fibonacci_counts(n)
    code = HuffmanCode.from_counts(counts, max_length=max_length)
    assert max(code.lengths.values()) == max_length and len(code.lengths) == n
    assert kraft_sum(code) <= 1.0
    symbols = np.arange(n).repeat(3)
    payload, _ = code.encode(symbols)
    np.testing.assert_array_equal(code.decode(payload, symbols.size), symbols)


@pytest.mark.parametrize(
    "table, message",
    [
        ([(1, 1), (1, 2)], "twice"),
        ([(1, 0)], "not in"),
        ([(1, MAX_CODE_LENGTH + 1)], "not in"),
        ([(1, 1), (2, 1), (3, 1)], "Kraft"),
        ([(2**63, 1)], "64-bit"),
        ([(1.0, 1)], "must be an integer"),
    ],
)
def test_from_table_rejects_invalid_tables(table: list[tuple[int, int]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HuffmanCode.from_table(table)


def test_encode_rejects_unknown_and_non_integer_symbols() -> None:
    code = HuffmanCode.from_symbols([1, 2, 3])
    with pytest.raises(ValueError, match="symbol 4 is not in the code table"):
        code.encode([1, 4])
    with pytest.raises(TypeError):
        code.encode(np.array([1.5]))
    with pytest.raises(ValueError, match="empty code table"):
        HuffmanCode({}).encode([1])


def test_decode_rejects_truncated_and_padded_payloads() -> None:
    symbols = np.array([0, 1, 2, 3, 4, 5] * 5)
    code = HuffmanCode.from_counts(TEXTBOOK_COUNTS)
    payload, n_bits = code.encode(symbols)
    with pytest.raises(ValueError, match="middle of a code|too short|ends after"):
        code.decode(payload[:-1], symbols.size)
    with pytest.raises(ValueError, match="trailing"):
        code.decode(payload + b"\x00", symbols.size)
    if n_bits % 8:
        last = payload[-1] | 1
        with pytest.raises(ValueError, match="padding"):
            code.decode(payload[:-1] + bytes([last]), symbols.size)
    with pytest.raises(ValueError, match="non-negative"):
        code.decode(payload, -1)


# A complete code, an incomplete (length-limited) code and a one-symbol code.
DECODERS = [
    HuffmanCode.from_counts(TEXTBOOK_COUNTS),
    HuffmanCode.from_table([(-1, 2), (0, 2), (1, 3), (2, 5)]),
    HuffmanCode({9: 1}),
]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(DECODERS), st.binary(max_size=64), st.integers(0, 600))
def test_random_payloads_decode_or_raise_value_error(
    code: HuffmanCode, payload: bytes, n_symbols: int
) -> None:
    try:
        decoded = code.decode(payload, n_symbols)
    except ValueError:
        return
    assert decoded.shape == (n_symbols,)
    payload_again, _ = code.encode(decoded)
    assert payload_again == payload  # anything accepted is exactly a valid encoding


def test_large_input_round_trips() -> None:
    rng = np.random.default_rng(0)
    symbols = np.round(rng.laplace(0.0, 4.0, size=100_000)).astype(np.int64)
    code = HuffmanCode.from_symbols(symbols)
    payload, n_bits = code.encode(symbols)
    np.testing.assert_array_equal(code.decode(payload, symbols.size), symbols)
    assert n_bits / symbols.size < empirical_entropy(symbols) + 1


# --------------------------------------------------------------------------- ANS (constriction)

from aebook.codecs.ans import ans_bits, ans_decode, ans_encode  # noqa: E402


@given(st.lists(st.integers(-5, 5), min_size=1, max_size=300))
@FAST
def test_ans_round_trip(symbols: list[int]) -> None:
    probabilities = {s: float(c) for s, c in count_symbols(symbols).items()}
    words = ans_encode(symbols, probabilities)
    assert words.dtype == np.uint32
    assert ans_decode(words, len(symbols), probabilities).tolist() == symbols


def test_ans_beats_huffman_below_one_bit_and_stays_near_entropy() -> None:
    rng = np.random.default_rng(0)
    symbols = (rng.random(20000) < 0.03).astype(np.int64)  # entropy ~0.19 bits/symbol
    h = empirical_entropy(symbols)
    ans = ans_bits(symbols) / symbols.size
    huffman = HuffmanCode.from_symbols(symbols).mean_length(count_symbols(symbols))
    assert huffman == 1.0  # a prefix code cannot go below one bit per symbol
    assert h <= ans < h + 0.01


def test_ans_checks_its_model() -> None:
    assert ans_bits([]) == 0
    with pytest.raises(ValueError, match="no probability"):
        ans_encode([1, 2, 3], {1: 0.5, 2: 0.5})
    with pytest.raises(ValueError, match="non-negative"):
        ans_encode([1], {1: -1.0})
    with pytest.raises(ValueError, match="at least one"):
        ans_decode(np.zeros(1, np.uint32), 1, {})


# ------------------------------------------- per-channel ANS under zero-inflated geometric models

from aebook.codecs.ans import (ans_decode_channels, ans_encode_channels, fit_zero_geometric,  # noqa: E402
                               zero_geometric_frequencies)


def test_zero_geometric_frequencies_are_exact_integers() -> None:
    freq = zero_geometric_frequencies(64, 128, 6)
    assert freq.dtype == np.int64 and freq.shape == (13,) and (freq > 0).all()
    assert freq[6] * 256 == 64 * freq.sum()             # P(0) = zero / 256 exactly
    np.testing.assert_array_equal(freq[:6], freq[7:][::-1])  # symmetric
    assert freq[7] == 2 * freq[8]                        # decay 128/256 halves each step
    far = zero_geometric_frequencies(1, 1, 1000)
    assert (far > 0).all()                               # every symbol up to the bound stays codable
    for bad in ((0, 1, 1), (1, 256, 1), (1, 1, 0), (1, 1, 65536)):
        with pytest.raises(ValueError):
            zero_geometric_frequencies(*bad)


def test_fitted_model_codes_laplacian_channels_near_their_entropy() -> None:
    rng = np.random.default_rng(0)
    rows = np.stack([np.round(rng.laplace(0, s, 20000)).astype(np.int64) for s in (0.3, 1.0, 4.0)])
    params = [fit_zero_geometric(r) for r in rows]
    words = ans_encode_channels(rows, params)
    np.testing.assert_array_equal(ans_decode_channels(words, params, rows.shape[1]), rows)
    entropy = sum(empirical_entropy(r) for r in rows) * rows.shape[1]
    assert 32 * words.size < 1.03 * entropy  # a two-number model per channel loses under 3%
    assert fit_zero_geometric(np.zeros(5, dtype=np.int64)) == (255, 1, 0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(-300, 300), min_size=4, max_size=4), min_size=1, max_size=6))
def test_channel_ans_round_trip(rows: list[list[int]]) -> None:
    symbols = np.array(rows, dtype=np.int64)
    params = [fit_zero_geometric(r) for r in symbols]
    np.testing.assert_array_equal(ans_decode_channels(ans_encode_channels(symbols, params), params, 4), symbols)


def test_channel_ans_refuses_symbols_outside_the_model() -> None:
    with pytest.raises(ValueError, match="beyond its model's bound"):
        ans_encode_channels(np.array([[0, 9]]), [(128, 128, 3)])
    with pytest.raises(ValueError, match="one model per channel"):
        ans_encode_channels(np.array([[0, 1]]), [])
