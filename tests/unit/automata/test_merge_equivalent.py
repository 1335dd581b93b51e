"""Merging states with equal rows (``dfa._merge_equivalent``): the result is the least
fixpoint of merging equal rows, found by a plain reference that merges until nothing changes,
and the merged automaton accepts what the original accepts."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from outlines_gguf.automata.dfa import _merge_equivalent


def reference_fixpoint(table: np.ndarray, accepting: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge equal rows (and finality), renumber by first state, repeat until nothing merges."""
    while True:
        rows: dict[tuple, int] = {}
        rep = []
        for s in range(table.shape[0]):
            key = (bool(accepting[s]), *table[s].tolist())
            rep.append(rows.setdefault(key, s))
        kept = sorted(set(rep))
        if len(kept) == table.shape[0]:
            return table, accepting
        number = {s: i for i, s in enumerate(kept)}
        new_id = np.array([number[r] for r in rep])
        rows_kept = table[kept]
        table = np.where(rows_kept >= 0, new_id[np.maximum(rows_kept, 0)], -1).astype(np.int32)
        accepting = accepting[kept]


def _run(table: np.ndarray, accepting: np.ndarray, word: list[int]) -> bool:
    state = 0
    for symbol in word:
        state = int(table[state, symbol])
        if state < 0:
            return False
    return bool(accepting[state])


@st.composite
def tables(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Random automata with many equal suffixes: layered chains (keys spelled letter by letter
    whose tails coincide) over a few symbols, with some back edges (loops) and dead cells."""
    n = draw(st.integers(1, 60))
    width = draw(st.integers(1, 4))
    cells = draw(st.lists(st.integers(-1, 6), min_size=n * width, max_size=n * width))
    table = np.array(cells, dtype=np.int32).reshape(n, width)
    # edges mostly go forward a few states (chains), sometimes back (loops)
    back = draw(st.lists(st.booleans(), min_size=n * width, max_size=n * width))
    offsets = np.where(np.array(back).reshape(n, width), -table, table)
    targets = np.arange(n)[:, None] + offsets
    table = np.where((table >= 0) & (targets >= 0) & (targets < n), targets, -1).astype(np.int32)
    accepting = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    accepting[-1] = True
    return table, accepting


@settings(max_examples=300, deadline=None)
@given(tables(), st.lists(st.lists(st.integers(0, 3), max_size=12), min_size=10, max_size=10))
def test_merging_reaches_the_least_fixpoint(automaton: tuple, words: list) -> None:
    table, accepting = automaton
    merged, final = _merge_equivalent(table, accepting)
    expected, expected_final = reference_fixpoint(table, accepting)
    assert np.array_equal(merged, expected) and np.array_equal(final, expected_final)
    for word in words:
        word = [symbol % table.shape[1] for symbol in word]
        assert _run(merged, final, word) == _run(table, accepting, word)


def test_long_chains_of_equal_suffixes_merge_whole() -> None:
    """Two keys of 200 letters that end alike after their first letter: the chains merge from
    their common end to the start, however long (a round per letter was capped before)."""
    length = 200
    n = 2 * length + 2
    table = np.full((n, 2), -1, dtype=np.int32)
    table[0, 0], table[0, 1] = 1, length + 1  # two first letters
    for i in range(1, length):
        table[i, 0] = i + 1
        table[length + i, 0] = length + i + 1
    table[length, 0] = table[2 * length, 0] = n - 1
    accepting = np.zeros(n, dtype=bool)
    accepting[n - 1] = True
    merged, _ = _merge_equivalent(table, accepting)
    assert merged.shape[0] == length + 2  # the start, one chain, the end


@settings(max_examples=10, deadline=None)
@given(st.lists(st.text(alphabet="abcd", min_size=1, max_size=8), min_size=50, max_size=200, unique=True))
def test_tries_of_many_words_merge_to_the_fixpoint(words: list[str]) -> None:
    """A trie of words (an enum's automaton): whole levels merge in the vectorized passes,
    the rest in the worklist; the result is still the fixpoint, and reads the same words."""
    states: list[dict[int, int]] = [{}]
    ends = [False]
    for word in words:
        state = 0
        for symbol in (ord(ch) % 4 for ch in word):
            if symbol not in states[state]:
                states[state][symbol] = len(states)
                states.append({})
                ends.append(False)
            state = states[state][symbol]
        ends[state] = True
    table = np.full((len(states), 4), -1, dtype=np.int32)
    for s, out in enumerate(states):
        for symbol, target in out.items():
            table[s, symbol] = target
    accepting = np.array(ends)
    merged, final = _merge_equivalent(table, accepting)
    expected, expected_final = reference_fixpoint(table, accepting)
    assert np.array_equal(merged, expected) and np.array_equal(final, expected_final)
    known = set(words)
    for word in words[:20]:
        symbols = [ord(ch) % 4 for ch in word]  # (a, b, c, d: four symbols)
        assert _run(merged, final, symbols)
        assert _run(merged, final, symbols[:-1]) == (word[:-1] in known)
