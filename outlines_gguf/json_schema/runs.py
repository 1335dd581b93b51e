"""Counted strings as runs: the pieces of a string too long to count in states.

A plain string whose ``maxLength`` (or ``minLength``) is above :data:`COUNTED_STRING_MIN` is
its own node in a split schema (:mod:`~outlines_gguf.json_schema.split`): its opening quote and
a call to a *run*, the rest of the string up to :data:`STRING_SEGMENT` characters and its
closing quote, or exactly that many and a tail call to the run of the rest. A run's table has a
regular layout (:class:`RunShape`), which lets the pushdown guide share masks between character
counts and know a run's plain-text steps without working them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from outlines_gguf.json_schema.keywords import KNOWN_KEYWORDS, _is_int
from outlines_gguf.json_schema.strings import LayeredDFA, layered_body

STRING_SEGMENT = 512
"""Characters per node of a counted string longer than this (see ``_counted_node``): long
enough that text inside a run rarely comes within a token's length of its end, where masks
stop being shared (see :class:`RunShape`)."""

COUNTED_STRING_MIN = 32
"""A plain string whose ``maxLength`` (or ``minLength``) is above this is a counted node of
its own, whose masks are shared between character counts (see :class:`RunShape`), rather than
layered states inside its parent, one mask per character count."""

STRING_RUN_KEY = "x-outlines-gguf-string-run"
"""Marks the synthetic schema of a run of a counted string's characters: ``[min, max]`` (max
None: unbounded), the content after the opening quote, with the closing quote."""

@dataclass(frozen=True)
class RunShape:
    """The layout of a run of a counted string: state ``layer * width + local`` has read
    ``layer`` characters (``local``: where inside the next character). From two states that
    agree on ``local`` and on how many characters are still needed before the closing quote
    (``low - layer``) and still allowed before the run ends (``top - layer``), with both
    counts capped above a token's length, every token reads alike: their masks are equal.
    ``top`` is the last layer; ``more``: the run calls the next run there; ``loops``: the
    last layer loops (no maximum)."""

    width: int
    low: int
    top: int
    more: bool
    loops: bool

    @property
    def n_layered(self) -> int:
        """The layered states (a last layer that does not loop keeps only its first state)."""
        return (self.top + 1) * self.width if self.loops else self.top * self.width + 1

    def representative(self, state: int, horizon: int) -> int:
        """The state of smallest layer that reads every text of at most ``horizon`` bytes
        as ``state`` does (itself outside the layers)."""
        if state >= self.n_layered:
            return state
        layer, local = divmod(state, self.width)
        room = horizon + 1 if self.loops else self.top - layer
        need = self.low - layer
        if room <= horizon or 0 < need <= horizon:
            return state  # the count matters within a token: only this layer reads alike
        rep = 0 if need > horizon else min(self.low, layer)
        return rep * self.width + local


@dataclass(frozen=True)
class LayerLayout:
    """Where a string leaf counted over a pattern keeps its layers: node state ``offset + i``
    is state ``i`` of a :class:`~outlines_gguf.json_schema.strings.LayeredDFA` (the string's
    content between its quotes), whose ``origin`` says its layer and pair."""

    offset: int
    body: LayeredDFA

    def representatives(self, horizon: int, n_states: int) -> np.ndarray:
        """Per node state, the state of smallest layer whose masks equal its own.

        A token of at most ``horizon`` bytes reads at most that many characters, so from
        layer ``l`` it sees layers ``l`` to ``l + horizon``: which pairs are alive there (the
        dead ones were pruned) and which accept. Where that window of layers reads alike for
        two layers, so do all such tokens from the same pair (unlike a plain string's run, a
        pattern may need characters of its own near the maximum, so the windows are compared
        rather than the counts). Layers whose window reaches past the last one keep theirs."""
        body = self.body
        reps = np.arange(n_states)
        m, n_layers = body.width, body.n_layers
        window = horizon + 2
        if n_layers <= window:
            return reps
        accepting = np.zeros(n_layers * m, dtype=bool)
        accepting[body.origin] = body.accepting
        rows = np.concatenate([body.alive(), accepting.reshape(n_layers, m)], axis=1)
        signature = np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1)
        windows = np.lib.stride_tricks.sliding_window_view(signature, window)
        _, first, inverse = np.unique(windows, axis=0, return_index=True, return_inverse=True)
        rep_layer = first[inverse.reshape(-1)]  # for the layers whose window fits
        layer, pair = np.divmod(body.origin, m)
        fits = layer < rep_layer.size
        number = np.full(n_layers * m, -1, dtype=np.int64)
        number[body.origin] = np.arange(body.origin.size) + self.offset
        reps[self.offset + np.flatnonzero(fits)] = number[rep_layer[layer[fits]] * m + pair[fits]]
        return reps


@lru_cache(maxsize=1)
def _layer_width() -> int:
    """States per layer of a layered string body (one layer that loops has exactly them)."""
    body = layered_body(0, None)
    assert body is not None
    return body.n_states


@lru_cache(maxsize=16)
def string_run_table(low: int, top: int, more: bool, loops: bool) -> tuple[np.ndarray, np.ndarray, RunShape]:
    """The text table and accepting flags of a run (see ``SplitSchema._counted_node``): the
    layered body of ``low``..``top`` characters, the closing quote from where enough have
    been read, to the last state, the only accepting one (at ``top`` with ``more``, the
    call to the next run instead of the quote). Shared by every run of one shape."""
    body = layered_body(low, None if loops else top)
    assert body is not None  # low <= top: some string fits
    n = body.n_states
    width = _layer_width()
    table = np.concatenate([body.transitions, np.full((1, 256), -1, dtype=np.int32)])
    table[np.flatnonzero(body.accepting), ord('"')] = n
    if more:
        table[top * width, ord('"')] = -1  # the next run takes it from here
    table.setflags(write=False)
    accepting = np.zeros(n + 1, dtype=bool)
    accepting[n] = True
    accepting.setflags(write=False)
    return table, accepting, RunShape(width, low, top, more, loops)


def counted_string(schema: Any) -> tuple[int, int | None, bool | None] | None:
    """(minLength, maxLength, null allowed) of a string leaf whose count exceeds
    :data:`COUNTED_STRING_MIN` (a plain string: no pattern, format or other keyword),
    (min, max, None) for a run of one (``STRING_RUN_KEY``); None for anything else."""
    if not isinstance(schema, dict):
        return None
    run = schema.get(STRING_RUN_KEY)
    if run is not None:
        return run[0], run[1], None
    nullable = _nullable_branch(schema)
    if nullable is not None:  # anyOf/oneOf of a plain string and null: the same as both types
        found = counted_string(nullable)
        return None if found is None else (found[0], found[1], True)
    declared = schema.get("type")
    kinds = set(declared) if isinstance(declared, list) else {declared}
    if kinds not in ({"string"}, {"string", "null"}):
        return None
    if (set(schema) & KNOWN_KEYWORDS) - {"type", "minLength", "maxLength"}:
        return None
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if not _is_int(low) or low < 0 or (high is not None and (not _is_int(high) or high < low)):
        return None  # malformed or empty: the compiler says so
    if low <= COUNTED_STRING_MIN and (high is None or high <= COUNTED_STRING_MIN):
        return None
    return int(low), None if high is None else int(high), "null" in kinds


def _nullable_branch(schema: dict) -> Any:
    """The other branch of ``{"anyOf"|"oneOf": [branch, {"type": "null"}]}`` (either order, no
    keyword beside it), where ``branch`` is a plain string schema (so it never matches null and
    both keywords mean "one of the two"); else None."""
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if not isinstance(branches, list) or len(branches) != 2 or (set(schema) & KNOWN_KEYWORDS) != {key}:
            continue
        nulls = [b for b in branches if isinstance(b, dict) and set(b) & KNOWN_KEYWORDS == {"type"}
                 and b.get("type") in ("null", ["null"])]
        others = [b for b in branches if not any(b is n for n in nulls)]
        if len(nulls) == 1 and len(others) == 1 and isinstance(others[0], dict):
            other = others[0]
            if other.get("type") in ("string", ["string"]):
                return other
    return None
