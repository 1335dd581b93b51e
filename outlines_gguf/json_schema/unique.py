"""``uniqueItems``: the guide remembers the items.

The items of such an array are a node of their own (``UNIQUE_ITEM_KEY``), spelled canonically
(one text per scalar, spaced as ``json.dumps`` spaces them,
:func:`~outlines_gguf.json_schema.strings.canonical_json_dfa`; the members of a small object in
any order, larger ones sorted), so two items are equal exactly when one's text is a spelling of
the other's value (``spellings.py``). Which items an array instance has written
is generation state, not schema: :class:`UniqueItemsGuide` keeps, per array frame on the return
stack, the text of the item being written, and when an item is complete it replaces that frame's
node by the same automaton whose item calls go to the item *without the texts written so far*
(:meth:`SplitSchema.unique_array`: a DFA difference with their spellings, ``spellings.py``,
compiled once per set).
Masks, emptiness (an item that runs out of values is cut, so the array can only close) and the
walks across calls and returns are then the pushdown guide's own.

A token that ends an item and goes on into the array (``},{``, ``","``) is read by the pushdown
mask against the frame the item found, which does not leave the item out yet: so such tokens
of the mask are read again here, byte by byte (:meth:`UniqueItemsGuide.advance`), and those
that do not fit (the next item has no value left that starts so) are taken out.

The same guide remembers the keys of an object's extra members while they count towards a
``minProperties`` of 2 or more (a key written twice is one member of the parsed object): the
member's node reads its key (``Node.distinct_key``), and at the key's closing quote the
object's frame moves to the node whose next extra member leaves that key out too
(:meth:`SplitSchema.with_extra_key`, :data:`~outlines_gguf.json_schema.keywords.DISTINCT_KEYS_KEY`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Hashable

import numpy as np

from outlines_gguf.automata.dfa import ByteDFA
from outlines_gguf.errors import ConstraintViolationError
from outlines_gguf.guides.base import FINISHED, FORCED_LIMIT, Guide, TokenMask, bytes_to_read
from outlines_gguf.json_schema.pushdown import MASK_CACHE_SIZE, PushdownGuide
from outlines_gguf.json_schema.spellings import spellings_of
from outlines_gguf.json_schema.split import Config
from outlines_gguf.locking import Locked

State = tuple[frozenset, frozenset]
"""(the pushdown configurations, (frame, (the frame the item found, its text so far)) of each
item being written, and of each extra member whose key is remembered (its text None once the
key is written))."""


class UniqueItemsGuide(Locked):
    """A :class:`PushdownGuide` (the Guide protocol of :mod:`~outlines_gguf.guides.base`) for a
    schema with ``uniqueItems`` or counted extra keys (``keys``). States are :data:`State`
    pairs (or FINISHED)."""

    def __init__(self, inner: PushdownGuide, keys: bool = False) -> None:
        self._lock = threading.RLock()  # (states are values: nothing here needs it but pickling)
        self.inner = inner
        self.keys = keys  # extra keys may be remembered (see ``_without_repeated_keys``)
        self._member_tokens: tuple[np.ndarray, np.ndarray] | None = None
        self.schema = inner.schema
        self.vocabulary = inner.vocabulary
        self.initial_state: Hashable = (inner.initial_state, frozenset())
        self._masks: dict[Hashable, TokenMask] = {}  # states with an item being written
        self._with_comma = self.vocabulary.holding(ord(","))

    def __getstate__(self) -> dict[str, object]:
        state = super().__getstate__()
        state["_masks"], state["_member_tokens"] = {}, None  # (caches, as the pushdown guide's own)
        return state

    @property
    def n_cached_masks(self) -> int:
        return self.inner.n_cached_masks

    def mask(self, state: Hashable) -> TokenMask:
        if state == FINISHED:
            return self.inner.mask(state)
        configs, items = _split(state)
        mask = self.inner.mask(configs)
        if not items and not self.keys:
            return mask  # (no item being written)
        with self._lock:
            found = self._masks.get(state)
            if found is None:
                found = mask
                if items and any(self.schema.node(number).unique_item for _, number, _ in configs):
                    found = self._without_unreadable(state, configs, found)
                if self.keys:
                    found = self._without_repeated_keys(state, found)
                self._masks[state] = found
                while len(self._masks) > MASK_CACHE_SIZE:
                    self._masks.pop(next(iter(self._masks)))
            return found

    def _without_repeated_keys(self, state: Hashable, mask: TokenMask) -> TokenMask:
        """``mask`` without the tokens that write a whole member and go on into another one
        whose key leaves no key the object takes: the pushdown read them against the object
        as it was before the first key (``":1,"a"`` after ``{"a``). Only tokens that hold
        ``":`` and then a whole key after ``,"`` can (or its start, where an object's extra
        keys may be finitely many, ``SplitSchema.finite_distinct_keys``): a few, read again
        here in full (reading one compiles the nodes of the key it writes)."""
        if self._member_tokens is None:
            vocab = self.vocabulary
            holding = vocab.holding(ord(":")) & vocab.holding(ord(",")) & vocab.holding(ord('"'))
            found = [i for i in np.flatnonzero(holding).tolist() if _MEMBER_THEN_KEY.search(vocab.tokens[i])]
            whole = [i for i in found if _MEMBER_THEN_WHOLE_KEY.search(vocab.tokens[i])]
            self._member_tokens = (np.array(found, dtype=np.int64), np.array(whole, dtype=np.int64))
        reopening, rekeying = self._member_tokens
        candidates = mask.allowed_among(reopening if self.schema.finite_distinct_keys else rekeying)
        if not candidates.size:
            return mask
        tokens = self.vocabulary.tokens
        unreadable = [t for t in candidates.tolist() if self.advance(state, tokens[t]) is None]
        if not unreadable:
            return mask
        allowed = mask.allowed_ids(self.vocabulary.size)
        kept = allowed[~np.isin(allowed, unreadable)]
        return TokenMask.allowing(kept, self.vocabulary.size, mask.eog_allowed)

    def _without_unreadable(self, state: Hashable, configs: frozenset, mask: TokenMask) -> TokenMask:
        """``mask`` without the tokens that end the item being written and go on into the array
        where the items written (this one now too) leave nothing that fits."""
        node_of = self.schema.node
        items = [number for _, number, _ in configs if node_of(number).unique_item]
        leaving = self.inner.leaving_tokens(configs, items)
        going_on = leaving[self._with_comma[leaving]]  # (closing the array: always fits)
        going_on = mask.allowed_among(going_on)
        if not going_on.size:
            return mask
        tokens = self.vocabulary.tokens
        unreadable = [t for t in going_on.tolist() if not self._next_item_fits(state, tokens[t])]
        if not unreadable:
            return mask
        allowed = mask.allowed_ids(self.vocabulary.size)
        kept = allowed[~np.isin(allowed, unreadable)]
        return TokenMask.allowing(kept, self.vocabulary.size, mask.eog_allowed)

    def _next_item_fits(self, state: Hashable, data: bytes) -> bool:
        """Whether ``data`` (in the pushdown mask) still fits once the item it ends is left out:
        the pushdown read it against the frame the item found, so only the next item it starts
        can miss a value, and only the one just completed. Read by the pushdown (no node is
        compiled for the new set of items); several configurations: read here in full."""
        configs, items = _split(state)
        node_of = self.schema.node
        if len(configs) != 1 or len(items) != 1:
            return self.advance(state, data) is not None
        ((frame, item, _),) = configs
        ((_, (_, text)),) = items
        current: frozenset = configs
        done: bytes | None = None  # the item ended: its text
        started = -1  # where the next item started
        for i, byte in enumerate(data):
            current = self.inner.advance(current, bytes((byte,)))
            if not current:
                return False
            if done is None:
                if not any(number == item and below == frame for below, number, _ in current):
                    done = text + data[:i]
            elif started < 0 and any(node_of(number).unique_item for _, number, _ in current):
                started = i
        if done is None or started < 0:
            return True
        begun = data[started:]
        spellings = spellings_of(done)
        return any(
            _other_completion(node_of(number).dfa, s, begun, spellings)
            for _, number, s in current
            if node_of(number).unique_item
        )

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
        texts: dict[Config, tuple[Config, bytes | None]] = dict(items)
        node_of = self.schema.node
        for byte in data:
            read = self.inner.advance(configs, bytes((byte,)))
            if not read:
                return None
            written: dict[Config, tuple[Config, bytes | None]] = {}
            kept: set[Config] = set()
            for below, number, s in read:
                node = node_of(number)
                if node.distinct_key:  # an extra member: its key, remembered once complete
                    frame, key = self._key_read(texts.get(below), below, number, byte)
                    written[frame] = key
                    kept.add((frame, number, s))
                    continue
                if not node.unique_item:
                    kept.add((below, number, s))
                    continue
                origin, text = texts.get(below, (below, b""))
                assert text is not None
                text += bytes((byte,))
                frame = self._without(origin, number, text) if node.dfa.accepting[s] else origin
                written[frame] = (origin, text)
                kept.add((frame, number, s))
            configs, texts = frozenset(kept), written
        return configs, frozenset(texts.items())

    def _key_read(
        self, known: tuple[Config, bytes | None] | None, below: Config, member: int, byte: int
    ) -> tuple[Config, tuple[Config, bytes | None]]:
        """An extra member whose key is remembered, one byte further: its frame (``below``,
        the object's configuration to return to) and what is known of its key. The key opens
        the member (``"``); at its closing quote the frame moves to the object's node that
        leaves it out of the next extra member's key too (``SplitSchema.with_extra_key``);
        after that (None) the member's value is read as it is."""
        origin, text = (below, b"") if known is None else known
        if text is None:
            return below, (origin, None)  # (the key is written: the value)
        text += bytes((byte,))
        if not text.startswith(b'"'):
            return below, (origin, None)  # (not the key: nothing to remember)
        if len(text) < 2 or not _closes_string(text):
            return below, (origin, text)
        key = json.loads(text.decode("utf-8", "surrogatepass"))
        under, number, ret = below
        frame = (under, self.schema.with_extra_key(number, member, key), ret)
        return frame, (frame, None)

    def _without(self, frame: Config, item: int, text: bytes) -> Config:
        """``frame`` (the array's configuration to return to) with its node replaced by the one
        whose calls to the item leave out ``text`` too."""
        below, number, ret = frame
        texts = self.schema.item_texts(item) | {text}
        return below, self.schema.unique_array(number, texts), ret


_MEMBER_THEN_KEY = re.compile(rb'":.*,\s*"', re.DOTALL)
"""A token that may end a key, write its value and open the next member's key."""

_MEMBER_THEN_WHOLE_KEY = re.compile(rb'":.*,\s*"(?:[^"\\]|\\.)*"', re.DOTALL)
"""... and write that key whole."""


def remembering_guide(guide: PushdownGuide, canonical: str) -> Guide:
    """``guide``, wrapped where the schema (canonical JSON text) may need generation state of
    its own: the items of arrays with ``uniqueItems``, the extra keys of objects whose
    ``minProperties`` (2 or more) counts them one by one (``remembers_keys``: the split schema
    keeps keys distinct only where it was told the guide remembers them)."""
    keys = guide.schema.remember_keys
    return UniqueItemsGuide(guide, keys) if keys or '"uniqueItems"' in canonical else guide


def remembers_keys(canonical: str) -> bool:
    """Whether a guide over the schema (canonical JSON text) should remember extra keys: it
    counts members towards a ``minProperties`` of 2 or more, or may (a ``maxProperties``
    under ``not`` is a minimum)."""
    return '"maxProperties"' in canonical or any(float(n) >= 2 for n in _MIN_PROPERTIES.findall(canonical))


_MIN_PROPERTIES = re.compile(r'"minProperties":\s*(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)')
"""A ``minProperties`` keyword and its number (2.0 counts as 2, as the compiler reads it)."""


def _closes_string(text: bytes) -> bool:
    """``text``, a JSON string's opening quote and what follows, ends with its closing quote
    (a ``"`` after an even run of backslashes)."""
    if not text.endswith(b'"'):
        return False
    escapes = len(text) - 1 - len(text[:-1].rstrip(b"\\"))
    return escapes % 2 == 0


def _split(state: Hashable) -> State:
    if not (isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], frozenset)):
        raise ConstraintViolationError(f"not a state of this guide: {state!r}")
    return state


def _other_completion(dfa: ByteDFA, state: int, begun: bytes, spellings: ByteDFA) -> bool:
    """Whether an item that has read ``begun`` (now in ``state``) can end as a text outside
    ``spellings`` (those of the item just written: a value other than it). Every state of a
    ``ByteDFA`` can still accept, so a search of the pairs of states stops at the first where
    the spellings die or the item accepts and they do not."""
    table, accepting = dfa.transitions, dfa.accepting
    spelled, spelled_accepting = spellings.transitions, spellings.accepting
    start = spellings.run(begun)
    if start < 0:
        return True
    seen, stack = {(state, start)}, [(state, start)]
    while stack:
        s, q = stack.pop()
        if accepting[s] and not spelled_accepting[q]:
            return True
        row = table[s]
        for byte in np.flatnonzero(row >= 0).tolist():
            nxt = int(spelled[q, byte])
            if nxt < 0:
                return True
            pair = (int(row[byte]), nxt)
            if pair not in seen:
                seen.add(pair)
                stack.append(pair)
    return False
