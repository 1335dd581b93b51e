"""Plain-text steps: where every plain-text character (but a few ASCII ones) leads from a state.

The guide computes them for all states at once (``_plain_steps_all``, vectorized over states) or
for one state (``_plain_step``); both must agree wherever the all-states version decides."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outlines_gguf.compiler import compile_regex
from outlines_gguf.guides.base import _plain_step, _plain_steps_all

PATTERNS = [
    r'"(?:[^"\\\x00-\x1f]|\\.)*"',
    r"(?s).*[0-9]{4}-[0-9]{2}.*",
    r"[a-z]+|[0-9]*",
    r"(?:é|日|x)+y",
    r"[^a]*a[^b]*",
    r"[ -~]{0,3}",
    r"[\u2000-\u2030]+x",  # characters of one lead byte split part way (U+2028/U+2029 are not plain)
    r"(?s)[^\u00e9\U0001f600]*x",  # one 2-byte and one 4-byte character refused: split sequences
]


def _same(table: np.ndarray) -> None:
    every = _plain_steps_all(table)
    assert sorted(every) == list(range(table.shape[0]))
    for state, step in every.items():
        if step is None:
            continue  # the general walk: always exact
        one = _plain_step(table, state)
        assert one is not None, state
        assert one[0] == step[0] and one[1].tolist() == step[1].tolist(), state


@pytest.mark.parametrize("pattern", PATTERNS)
def test_all_states_agree_with_one_state_on_regexes(pattern: str) -> None:
    _same(compile_regex(pattern).transitions)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_states=st.integers(1, 6), ascii_only=st.booleans())
def test_all_states_agree_with_one_state_on_random_tables(seed: int, n_states: int, ascii_only: bool) -> None:
    """Random ASCII tables (many ties for the most common target) and tables with multi-byte rows."""
    rng = np.random.default_rng(seed)
    table = rng.integers(-1, n_states, size=(n_states, 256)).astype(np.int32)
    if ascii_only:
        table[:, 0x80:] = -1
    else:  # every multi-byte character goes to one state, or dies
        table[:, 0x80:] = -1
        for s in range(n_states):
            if rng.random() < 0.7:
                table[s, 0xC2:0xF5] = s
                table[s, 0x80:0xC0] = -1
    _same(table)
