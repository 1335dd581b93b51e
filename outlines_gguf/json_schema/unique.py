"""``uniqueItems``: the guide remembers the items.

The items of such an array are a node of their own (``UNIQUE_ITEM_KEY``), spelled canonically
(one text per value: object members in sorted order, spaced as ``json.dumps`` spaces them,
:func:`~outlines_gguf.json_schema.strings.canonical_json_dfa`), so two items are equal exactly
when their texts are. Which items an array instance has written
is generation state, not schema: :class:`UniqueItemsGuide` keeps, per array frame on the return
stack, the text of the item being written, and when an item is complete it replaces that frame's
node by the same automaton whose item calls go to the item *without the texts written so far*
(:meth:`SplitSchema.unique_array`: a DFA difference with their trie, compiled once per set).
Masks, emptiness (an item that runs out of values is cut, so the array can only close) and the
walks across calls and returns are then the pushdown guide's own.

A token that writes two whole equal items at once would pass the mask (both are read against
the frame as it was); reading it, ``next_state`` finds the second one refused, and generation
stops with an error rather than an invalid value.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

from outlines_gguf.errors import ConstraintViolationError
from outlines_gguf.guides.base import FINISHED, FORCED_LIMIT, TokenMask, bytes_to_read
from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.split import Config
from outlines_gguf.locking import Locked

State = tuple[frozenset, frozenset]
"""(the pushdown configurations, (frame, (the frame the item found, its text so far)) of each
item being written)."""


class UniqueItemsGuide(Locked):
    """A :class:`PushdownGuide` (the Guide protocol of :mod:`~outlines_gguf.guides.base`) for a
    schema with ``uniqueItems``. States are :data:`State` pairs (or FINISHED)."""

    def __init__(self, inner: PushdownGuide) -> None:
        self._lock = threading.RLock()  # (states are values: nothing here needs it but pickling)
        self.inner = inner
        self.schema = inner.schema
        self.vocabulary = inner.vocabulary
        self.initial_state: Hashable = (inner.initial_state, frozenset())

    @property
    def n_cached_masks(self) -> int:
        return self.inner.n_cached_masks

    def mask(self, state: Hashable) -> TokenMask:
        if state == FINISHED:
            return self.inner.mask(state)
        return self.inner.mask(_split(state)[0])

    def is_final(self, state: Hashable) -> bool:
        return state == FINISHED or self.inner.is_final(_split(state)[0])

    def next_state(self, state: Hashable, token_id: int) -> Hashable:
        data = bytes_to_read(self, state, token_id, "the JSON value")
        if data is None:
            return FINISHED
        nxt = self.advance(state, data)
        if nxt is None:
            raise ConstraintViolationError(f"token {token_id} ({data!r}) does not fit the schema here")
        return nxt

    def forced_bytes(self, state: Hashable, limit: int = FORCED_LIMIT) -> bytes:
        """The pushdown guide's forced bytes, a byte at a time, so that an item completed on
        the way is remembered before the next one is read."""
        if state == FINISHED:
            return b""
        out = bytearray()
        current: Hashable | None = state
        while current is not None and len(out) < limit:
            byte = self.inner.forced_bytes(_split(current)[0], 1)
            if not byte:
                break
            out += byte
            current = self.advance(current, byte)
        return bytes(out)

    def advance(self, state: Hashable, data: bytes) -> State | None:
        """The state after ``data``, or None where it does not fit.

        An item may end wherever its automaton accepts, or go on (``12`` after ``1``): only a
        return says it ended. So while its text is complete, its frame is the array's frame
        as the item found it (``origin``) leaving out this text too, and with every byte the
        frame is worked out again from ``origin``: a return then carries exactly the texts
        of the items written."""
        configs, items = _split(state)
        texts: dict[Config, tuple[Config, bytes]] = dict(items)
        node_of = self.schema.node
        for byte in data:
            read = self.inner.advance(configs, bytes((byte,)))
            if not read:
                return None
            written: dict[Config, tuple[Config, bytes]] = {}
            kept: set[Config] = set()
            for below, number, s in read:
                node = node_of(number)
                if not node.unique_item:
                    kept.add((below, number, s))
                    continue
                origin, text = texts.get(below, (below, b""))
                text += bytes((byte,))
                frame = self._without(origin, number, text) if node.dfa.accepting[s] else origin
                written[frame] = (origin, text)
                kept.add((frame, number, s))
            configs, texts = frozenset(kept), written
        return configs, frozenset(texts.items())

    def _without(self, frame: Config, item: int, text: bytes) -> Config:
        """``frame`` (the array's configuration to return to) with its node replaced by the one
        whose calls to the item leave out ``text`` too."""
        below, number, ret = frame
        texts = self.schema.item_texts(item) | {text}
        return below, self.schema.unique_array(number, texts), ret


def _split(state: Hashable) -> State:
    if not (isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], frozenset)):
        raise ConstraintViolationError(f"not a state of this guide: {state!r}")
    return state
