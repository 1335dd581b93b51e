"""Results about a parser stack that depend only on its top entries, shared by every stack with them.

What a stack accepts next, and its lexer view, come from LR runs that read the stack from the
top down and stop reading where the answer is known: after ``(`` only the top state matters;
whether the text may end looks down to the innermost open bracket. Interned stacks that differ
further down are still different ids, so a per-id memo computes the same answer again for
every new stack (random arithmetic text makes about a hundred per token, each costing a run
per terminal). :class:`StackMemo` keys a result by the states it read instead: a trie over
the stack's states, top first, down to the deepest one read.

The trie is consistent because the runs are deterministic: two stacks that agree down to
position ``d`` make the same reads up to there, so a computation that read down to ``d`` on
one reads down to ``d`` on the other, and one that read further on one reads further on the
other. A prefix is therefore either a leaf (the answer) or a branch (read further), never both.
"""

from __future__ import annotations

from typing import Any


class _Leaf:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


MAX_SHARED_DEPTH = 32
"""Results that read deeper than this are kept per stack only: walking hundreds of states for
each lookup (a run of unary minus signs reduced at once) costs more than it shares."""


class StackMemo:
    """A memo from a stack's top states (as many as the computation read) to its result, in front
    of which each stack's own result is kept by id.

    ``below`` and ``top`` are the interned stacks' lists of
    :class:`~outlines_gguf.grammar.compiled.ParseTable` (shared, so stacks interned later are seen).
    """

    def __init__(self, below: list[int], top: list[int], limit: int) -> None:
        self._below, self._top = below, top
        self._root: dict[int, Any] = {}
        self._by_id: dict[int, Any] = {}
        self._size = 0
        self._limit = limit

    def __len__(self) -> int:
        return self._size

    def get(self, stack: int) -> Any | None:
        """The result stored for ``stack``, or for a stack that agrees with it as far as that one
        was read; None if there is none."""
        found = self._by_id.get(stack)
        if found is not None:
            return found
        node, below, top = self._root, self._below, self._top
        for _ in range(MAX_SHARED_DEPTH + 1):
            if stack < 0:
                break
            entry = node.get(top[stack])
            if entry is None:
                return None
            if type(entry) is _Leaf:
                return entry.value
            node, stack = entry, below[stack]
        return None

    def put(self, stack: int, depth: int, value: Any) -> None:
        """Store ``value`` for ``stack`` and, unless ``depth`` is past :data:`MAX_SHARED_DEPTH`, for
        every stack whose states agree with it from the top down to position ``depth`` (0: the
        top state alone; at or below the deepest state the result was read from)."""
        if self._size >= self._limit:
            self._root, self._by_id, self._size = {}, {}, 0
        self._by_id[stack] = value
        self._size += 1
        if depth > MAX_SHARED_DEPTH:
            return
        node, below, top = self._root, self._below, self._top
        for _ in range(depth):
            state, nxt = top[stack], below[stack]
            if nxt < 0:  # (reads never go below the bottom state: depth past it changes nothing)
                break
            entry = node.get(state)
            if entry is None:
                entry = node[state] = {}
            elif type(entry) is _Leaf:  # a shallower read already covers it (a depth given
                return  # deeper than what was read, which is safe)
            node, stack = entry, nxt
        if top[stack] not in node:
            node[top[stack]] = _Leaf(value)
