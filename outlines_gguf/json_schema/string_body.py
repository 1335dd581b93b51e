"""What each token of a vocabulary does inside a free JSON string, found once per vocabulary.

Inside a string with no pattern, format or maximum length a token either
stays inside (plain characters, escapes, the start of a character or an
escape), dies (a control character, a bad escape), or *closes* the string at
its first unescaped quote and reads on after it. Which of the three, where
the closing quote is and how many characters come before it depend only on
the token: so every token is run once through the automaton of such a
string's content (:func:`reference`). A node state that reads exactly like
that automaton's start, but for ``required`` characters still needed before
the quote is allowed (a ``minLength``: :func:`free_string_at`, a few table
lookups), takes the tokens that stay as one precomputed set and walks only
the tails of the closing ones (those with ``required`` characters or more
before their quote) from the state after the quote. Where the general
analysis walked two tries of tails per string value of every schema, through
the escapes each time.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from outlines_gguf import fast_unique
from outlines_gguf.automata.charsets import MAX_CODEPOINT
from outlines_gguf.automata.dfa import ByteDFA
from outlines_gguf.automata.nfa import Fragment
from outlines_gguf.automata.regex import NFABuilder
from outlines_gguf.guides.base import RegexGuide
from outlines_gguf.json_schema.lexical import any_string_char, json_chars
from outlines_gguf.tokens.trie import TokenTrie
from outlines_gguf.tokens.vocabulary import Vocabulary

_QUOTE = 0x22
_PLAIN = 0x61  # (``a``: a plain character, which leads from the content's start back to it)
MAX_REQUIRED = 16
"""Strings that still need more characters than this are left to the general analysis."""
_EVERY_CHARACTER = ((0, 0xD7FF), (0xE000, MAX_CODEPOINT))


@dataclass(frozen=True)
class _Reference:
    """The content of a free JSON string followed by its closing quote, with, for matching a
    node's states to it, each state reached from the start by one byte from an earlier one."""

    table: np.ndarray  # (n, 256) int32; state 0 is the start of the content
    closed: int  # the state after the closing quote (reads nothing)
    between: np.ndarray  # bool per state: between two characters (a character ends there)
    parent: tuple[int, ...]  # per state after the first, in order of discovery: the earlier state...
    byte: tuple[int, ...]  # ...and the byte leading from it
    order: tuple[int, ...]  # the states in order of discovery (the start first, ``closed`` left out)


SPELLINGS = ("value", "key")
"""The two ways the JSON compiler spells a free string's characters: a value's
(``any_string_char``: a character beyond U+FFFF also as an escaped surrogate pair) and a key's
(``json_chars``, which keys left out of a set of names are spelled with, so that the
difference is exact)."""


@lru_cache(maxsize=2 * (MAX_REQUIRED + 1))
def reference(required: int, spelling: str = "value") -> _Reference:
    """A free string's content as the JSON compiler writes it (its characters spelled as
    ``spelling`` says, at least ``required`` of them), then ``"``."""
    b = NFABuilder("string body")

    def char() -> Fragment:
        return any_string_char(b) if spelling == "value" else json_chars(b, _EVERY_CHARACTER)

    chars = b.repeat(char, required, None)
    dfa: ByteDFA = b.build(b.seq([chars, b.literal('"')]))
    table = np.ascontiguousarray(dfa.transitions)
    (closed,) = np.flatnonzero(dfa.accepting).tolist()
    assert (table[closed] < 0).all() and (table[0, _QUOTE] == closed) == (required == 0)
    order, parent, byte = [0], [], []
    seen = {0, closed}
    for state in order:  # (grows as states are found: a breadth-first search)
        for b_, nxt in enumerate(table[state].tolist()):
            if nxt >= 0 and nxt not in seen:
                seen.add(nxt)
                order.append(nxt)
                parent.append(state)
                byte.append(b_)
    between = np.zeros(table.shape[0], dtype=bool)
    at = 0
    while not between[at]:  # (the start, then a character more each, until the loop)
        between[at] = True
        at = int(table[at, _PLAIN])
    return _Reference(table, int(closed), between, tuple(parent), tuple(byte), tuple(order))


def free_string_at(
    table: np.ndarray, accepting: np.ndarray, boundary: np.ndarray, state: int
) -> tuple[int, int, str] | None:
    """(The characters still required, the state after the closing quote, the spelling of
    :data:`SPELLINGS`) if ``state`` of an automaton (``table``: (n, 256)) reads exactly as the
    start of a free string's content (:func:`reference`), else None.

    Exactly: each state the same bytes reach from ``state`` as from the reference's start
    stands for one reference state (an automaton whose equivalent states are not all merged
    may have several for one), every byte leads from it as from that reference state (dead
    where it is dead there, into the one state after the closing quote, or to a state that
    stands for where it leads there), and none is accepting or a boundary (a call or a
    return). Then every token reads from ``state`` as from the reference's start, up to its
    closing quote. The states first reached by each reference state's own path are matched
    in one pass; only where the automaton has duplicates is a further pass needed."""
    required, at = 0, state
    while table[at, _PLAIN] != at:  # (a plain character: one fewer required, until it loops)
        at = int(table[at, _PLAIN])
        required += 1
        if at < 0 or required > MAX_REQUIRED:
            return None
    if table[at, _QUOTE] < 0:
        return None  # (the common case: not a string's content)
    quote = int(table[at, _QUOTE])
    for spelling in SPELLINGS:
        closed = _matches(table, accepting, boundary, state, reference(required, spelling), quote)
        if closed is not None:
            return required, closed, spelling
    return None


def _matches(
    table: np.ndarray, accepting: np.ndarray, boundary: np.ndarray, state: int, ref: _Reference, closed: int
) -> int | None:
    """``closed`` if ``state`` of ``table`` reads exactly as ``ref``'s start (``free_string_at``)."""
    image = np.empty(ref.table.shape[0] + 1, dtype=np.int64)  # (the last entry: dead)
    image[-1] = -1
    image[0] = state
    image[ref.closed] = closed
    for target, source, b in zip(ref.order[1:], ref.parent, ref.byte, strict=True):
        nxt = int(table[image[source], b])
        if nxt < 0:
            return None
        image[target] = nxt
    refs = np.asarray(ref.order, dtype=np.int64)
    mine = image[refs]
    stands_for = np.full(table.shape[0], -1, dtype=np.int64)
    stands_for[mine] = refs
    if not np.array_equal(stands_for[mine], refs):
        return None  # (one state for two reference states)
    matched = [mine]
    while mine.size:
        rows = table[mine]
        expected = image[ref.table[refs]]
        differ = rows != expected
        if not differ.any():
            break
        # only a live state standing for the same reference state may differ from the image
        if ((rows < 0) | (expected < 0) | (expected == closed))[differ].any():
            return None
        width = ref.table.shape[0]
        pairs = fast_unique.unique(rows[differ].astype(np.int64) * width + ref.table[refs][differ])
        mine, refs = pairs // width, pairs % width
        if np.unique(mine).size != mine.size:
            return None
        known = stands_for[mine]
        if ((known >= 0) & (known != refs)).any():
            return None
        new = known < 0
        mine, refs = mine[new], refs[new]
        stands_for[mine] = refs
        matched.append(mine)
    states = np.concatenate(matched)
    if accepting[states].any() or boundary[states].any():
        return None
    return closed


@dataclass(frozen=True)
class StringBodyTokens:
    """Per vocabulary: the tokens that cannot be read inside a free string without closing it
    (:attr:`forbidden`), the closing ones' tails from their closing quote on (:attr:`closing`,
    a trie whose only first byte is the quote) with each one's characters before its quote
    (where characters are still required, those with fewer die), and, for a string that may
    end within a token (a counted string's run near its end), the staying tokens by the
    characters of room they need (a character begun counts)."""

    forbidden: np.ndarray  # intp, sorted: dead, closing, special, empty, end-of-generation ids
    closing: TokenTrie
    staying_by_room: np.ndarray  # int32: the staying tokens, by the characters of room they need
    staying_room: np.ndarray  # int64, ascending: those rooms
    closing_chars: np.ndarray  # int32 per token id: characters before its closing quote (-1: none)

    @classmethod
    def build(cls, vocab: Vocabulary, spelling: str) -> StringBodyTokens:
        ref = reference(0, spelling)
        blob, ends = vocab._joined
        starts = vocab.byte_starts
        ids = np.flatnonzero((ends > starts) & ~vocab.is_special)
        stay: list[np.ndarray] = []
        stay_room: list[np.ndarray] = []
        text = vocab.text_tokens
        content = RegexGuide(ByteDFA(ref.table, np.arange(ref.table.shape[0]) == ref.closed), vocab)
        if _loops_on_plain_text(content):
            # every plain-text character leads from the start back to it: plain tokens stay,
            # a character of room each (most of the vocabulary, without running them)
            stay.append(text.plain_ids.astype(np.int64))
            stay_room.append(text.plain_counts)
            ids = ids[~np.isin(ids, text.plain_ids)]
        at, end = starts[ids], ends[ids]
        states = np.zeros(ids.size, dtype=np.int64)
        chars = np.zeros(ids.size, dtype=np.int64)
        closing_ids: list[np.ndarray] = []
        closing_at: list[np.ndarray] = []
        closing_chars = np.full(vocab.size, -1, dtype=np.int32)
        while ids.size:
            nxt = ref.table[states, blob[at]].astype(np.int64)
            closes = nxt == ref.closed
            closing_ids.append(ids[closes])
            closing_at.append(at[closes])  # (the quote's position: the tail starts with it)
            closing_chars[ids[closes]] = chars[closes]
            at = at + 1
            alive = (nxt >= 0) & ~closes
            chars = chars + ref.between[np.maximum(nxt, 0)]
            done = alive & (at == end)
            stay.append(ids[done])
            stay_room.append(chars[done] + ~ref.between[nxt[done]])  # (a character begun: one more)
            more = alive & ~done
            ids, at, end, states, chars = ids[more], at[more], end[more], nxt[more], chars[more]
        staying, room = np.concatenate(stay), np.concatenate(stay_room)
        order = np.argsort(room, kind="stable")
        allowed = np.ones(vocab.size, dtype=bool)
        allowed[staying] = False
        allowed[vocab.eog_array] = True
        forbidden = np.flatnonzero(allowed).astype(np.intp)
        tails = [b""] * vocab.size
        closers = np.concatenate(closing_ids).tolist()
        for token, quote in zip(closers, np.concatenate(closing_at).tolist(), strict=True):
            tails[token] = bytes(blob[quote : ends[token]])
        closing = TokenTrie.of_ids(tails, closers)
        closing.prepare_walks()
        return cls(forbidden, closing, staying[order].astype(np.int32), room[order], closing_chars)


def _loops_on_plain_text(content: RegexGuide) -> bool:
    """Every plain-text character leads from the content's start back to it (no exception)."""
    step = content._plain_step(0)
    return step is not None and step[0] == 0 and step[1].size == 0


_BUILT: weakref.WeakKeyDictionary[Vocabulary, dict[str, StringBodyTokens]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def string_body_tokens(vocab: Vocabulary, spelling: str = "value") -> StringBodyTokens:
    """:class:`StringBodyTokens` of ``vocab`` for a ``spelling`` of :data:`SPELLINGS`, built on
    first use (some ms at 128k) and kept as long as the vocabulary."""
    found = _BUILT.get(vocab, {}).get(spelling)
    if found is None:
        with _LOCK:
            built = _BUILT.setdefault(vocab, {})
            found = built.get(spelling)
            if found is None:
                found = built[spelling] = StringBodyTokens.build(vocab, spelling)
    return found
