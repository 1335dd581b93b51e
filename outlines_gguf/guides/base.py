"""Guides: which tokens may come next, state by state, for one vocabulary.

A guide is a small state machine over token ids, built from an automaton
and a :class:`~outlines_gguf.tokens.vocabulary.Vocabulary`. It knows nothing of
llama.cpp. Masks are computed lazily for the states generation reaches,
with one vectorized walk of the vocabulary's token trie, and cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, MutableMapping
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from outlines_gguf import fast_unique
from outlines_gguf.automata.dfa import ByteDFA, group_columns
from outlines_gguf.automata.nfa import utf8_sequences
from outlines_gguf.errors import ConstraintViolationError, VocabularyError
from outlines_gguf.tokens.text import PLAIN_RANGES
from outlines_gguf.tokens.trie import Loops, TokenTrie, concat_ranges, loop_bits
from outlines_gguf.tokens.vocabulary import Vocabulary

FINISHED = -2
"""The state a regex guide enters once an end-of-generation token is taken."""

DENSE_MASK = 2048
"""A guide switches to the byte-class trie after a mask with more allowed tokens than this."""
CLASS_TRIE_MAX_CLASSES = 24
"""...if its DFA tells at most this many byte classes apart. With more (a JSON schema's keys spell
out many letters), a 128k vocabulary's trie shrinks by only about a third, less than it costs."""

MASK_CACHE_BYTES = 32 * 2**20
"""Bytes of token masks one guide keeps. A mask holds the smaller of its allowed and forbidden
id sets (8 bytes an id: at most 0.6 MB for a 152k vocabulary, usually far less); past this
budget the masks computed first are dropped, and recomputed if their state comes back."""
ASCII_LOOP_MAX_TAILS = 32768
"""At most this many tokens read on from a state looping on ASCII bytes are run through the DFA
one by one (vectorized); more, and the trie is walked instead."""
_SORT_LIMIT = 4096
"""Up to this many ids a mask is built by sorting them; above, through a boolean array."""


class TokenMask:
    """The allowed token ids of one guide state, ready to be written into scores.

    Holds whichever of the allowed / forbidden id sets is smaller, so writing
    the mask touches as few entries of ``scores`` as possible.
    """

    __slots__ = ("_forbid", "_keep", "allowed_count", "eog_allowed")

    @property
    def nbytes(self) -> int:
        """Memory held by the id array (what the guide's mask cache counts)."""
        ids = self._keep if self._keep is not None else self._forbid
        return 64 + (0 if ids is None else int(ids.nbytes))

    def __init__(self, allowed: np.ndarray, eog_allowed: bool) -> None:
        """``allowed`` is a boolean array over the vocabulary."""
        self.allowed_count = int(np.count_nonzero(allowed))
        self.eog_allowed = eog_allowed
        if self.allowed_count * 2 <= allowed.size:
            self._keep: np.ndarray | None = np.flatnonzero(allowed)
            self._forbid: np.ndarray | None = None
        else:
            self._keep = None
            self._forbid = np.flatnonzero(~allowed)

    @classmethod
    def allowing(cls, ids: np.ndarray, n_vocab: int, eog_allowed: bool) -> TokenMask:
        """The mask allowing ``ids`` (any order, repeats allowed)."""
        if ids.size > _SORT_LIMIT:
            allowed = np.zeros(n_vocab, dtype=bool)
            allowed[ids] = True
            return cls(allowed, eog_allowed)
        unique = fast_unique.unique(ids).astype(np.intp)
        if unique.size * 2 > n_vocab:  # a tiny vocabulary: hold the forbidden side
            allowed = np.zeros(n_vocab, dtype=bool)
            allowed[unique] = True
            return cls(allowed, eog_allowed)
        mask = cls.__new__(cls)
        mask.allowed_count, mask.eog_allowed = int(unique.size), eog_allowed
        mask._keep, mask._forbid = unique, None
        return mask

    @classmethod
    def forbidding(cls, ids: np.ndarray, n_vocab: int, eog_allowed: bool, ordered: bool = False) -> TokenMask:
        """The mask forbidding exactly ``ids`` (distinct, fewer than half the vocabulary;
        ``ordered``: already ascending, not sorted again)."""
        mask = cls.__new__(cls)
        mask.allowed_count, mask.eog_allowed = n_vocab - ids.size, eog_allowed
        mask._keep, mask._forbid = None, (ids if ordered else np.sort(ids)).astype(np.intp, copy=False)
        return mask

    @property
    def kept_ids(self) -> np.ndarray | None:
        """The allowed ids (sorted) where the mask holds them (fewer than half the vocabulary),
        else None: the forbidden ones are held."""
        return self._keep

    def allowed_ids(self, n_vocab: int) -> np.ndarray:
        """The allowed ids, sorted (for inspection and tests)."""
        if self._keep is not None:
            return self._keep.copy()
        mask = np.ones(n_vocab, dtype=bool)
        mask[self._forbid] = False
        return np.flatnonzero(mask)

    def extended(self, extra: np.ndarray, eog: np.ndarray, eog_allowed: bool, n_vocab: int) -> TokenMask:
        """This mask with the ids ``extra`` allowed too and the end-of-generation ids ``eog``
        allowed exactly when ``eog_allowed``, without a pass over the whole vocabulary."""
        if not eog_allowed and extra.size:
            extra = extra[~fast_unique.isin_few(extra, eog)]
        if self._keep is not None:
            ids = np.concatenate([self._keep, extra])
            if eog_allowed:
                ids = np.concatenate([ids, eog])
            elif self.eog_allowed:
                ids = ids[~fast_unique.isin_few(ids, eog)]
            return TokenMask.allowing(ids, n_vocab, eog_allowed)
        assert self._forbid is not None
        forbid = self._forbid  # sorted, distinct
        now_allowed = extra if not eog_allowed else np.concatenate([extra, eog])
        at = np.searchsorted(forbid, now_allowed)  # (a few ids looked up, not a pass of isin)
        found = at < forbid.size
        at = at[found]
        at = at[forbid[at] == now_allowed[found]]
        if at.size:
            forbid = np.delete(forbid, at)
        if not eog_allowed and self.eog_allowed:
            forbid = fast_unique.unique(np.concatenate([forbid, eog]))
        if forbid.size * 2 > n_vocab:
            allowed = np.ones(n_vocab, dtype=bool)
            allowed[forbid] = False
            return TokenMask(allowed, eog_allowed)
        return TokenMask.forbidding(forbid, n_vocab, eog_allowed, ordered=True)

    def union_into(self, allowed: np.ndarray) -> None:
        """Set the allowed entries of a boolean array over the vocabulary to True."""
        if self._keep is not None:
            allowed[self._keep] = True
        else:
            forbidden = np.zeros(allowed.size, dtype=bool)
            forbidden[self._forbid] = True
            allowed |= ~forbidden

    def allows_any(self, ids: np.ndarray) -> bool:
        """Whether any of ``ids`` (an int array) is allowed."""
        return self.allowed_among(ids).size > 0

    def allowed_among(self, ids: np.ndarray) -> np.ndarray:
        """Those of ``ids`` (an int array) that are allowed, in their order."""
        held = self._keep if self._keep is not None else self._forbid
        assert held is not None
        if held.size and ids.size * 64 < held.size:  # a few ids: searched in the sorted set
            at = np.minimum(np.searchsorted(held, ids), held.size - 1)
            found = held[at] == ids
        else:
            found = np.isin(ids, held)
        return ids[found] if self._keep is not None else ids[~found]

    def apply(self, scores: np.ndarray) -> None:
        """Set every forbidden entry of ``scores`` (any strided 1-D view) to -inf."""
        if self._keep is not None:
            kept = scores[self._keep]
            scores[:] = -np.inf
            scores[self._keep] = kept
        else:
            scores[self._forbid] = -np.inf


FORCED_LIMIT = 256
"""Most forced bytes a guide reports at once (fast-forward takes the rest on its next turn)."""


def single_byte(live: np.ndarray) -> int | None:
    """The one byte a boolean row over the 256 bytes allows, or None if it allows none or several."""
    found = np.flatnonzero(live)
    return int(found[0]) if found.size == 1 else None


class Guide(Protocol):
    """What a logits processor needs from a constraint. Each guide has its own state type
    (an int for a DFA, configurations for grammars), opaque to the processor: hence ``Any``."""

    vocabulary: Vocabulary

    @property
    def initial_state(self) -> Hashable: ...

    def mask(self, state: Any) -> TokenMask: ...

    def next_state(self, state: Any, token_id: int) -> Any: ...

    def is_final(self, state: Any) -> bool: ...


class ForcingGuide(Guide, Protocol):
    """A guide that also reports the bytes its constraint forces (for fast-forward). Optional:
    the generation loop fast-forwards only guides that have ``forced_bytes``."""

    def forced_bytes(self, state: Any, limit: int = FORCED_LIMIT) -> bytes: ...


class RegexGuide:
    """A guide over a byte-level DFA (a regex, or any regular constraint).

    A token is allowed in a state iff its bytes keep the DFA alive; every
    end-of-generation id is allowed exactly in accepting states, and is the
    only choice in accepting states with no way to continue.

    Thread-safe: one guide serves any number of processors and threads (a
    mask computed twice by racing threads is the same mask). Masks are kept
    up to :data:`MASK_CACHE_BYTES`. A guide pickles without its locks and,
    unless ``pickle_masks`` is set, without its masks (recomputed lazily).
    """

    pickle_masks = False
    """Include the computed masks when pickling (bigger pickles, warm masks in the other process)."""

    def __init__(self, dfa: ByteDFA, vocabulary: Vocabulary) -> None:
        if not vocabulary.eog_ids:
            raise VocabularyError("the vocabulary has no end-of-generation token: generation could never end")
        self.dfa = dfa
        self.vocabulary = vocabulary
        self.initial_state = 0
        self._masks: dict[int, TokenMask] = {}
        self._mask_bytes = 0
        self._lock = threading.Lock()
        self._class_walk: tuple[TokenTrie, np.ndarray] | None = None
        self._byte_walks_only = False
        self._plain_steps: MutableMapping[int, PlainStep] = {}

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_class_walk"] = None  # a compressed trie: rebuilt on the next dense state
        state.pop("_chains", None)  # (``_chain``'s memo: rebuilt on use)
        if not self.pickle_masks:
            state["_masks"], state["_mask_bytes"] = {}, 0
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def is_final(self, state: int) -> bool:
        return state == FINISHED or bool(self.dfa.accepting[state])

    def forced_bytes(self, state: int, limit: int = FORCED_LIMIT) -> bytes:
        """The longest bytes every text accepted from ``state`` starts with, stopping at an
        accepting state (end of generation is a choice there) or after ``limit`` bytes:
        the DFA is followed while a state has exactly one live byte."""
        if state == FINISHED:
            return b""
        table, accepting = self.dfa.transitions, self.dfa.accepting
        out = bytearray()
        while len(out) < limit and not accepting[state]:
            byte = single_byte(table[state] >= 0)
            if byte is None:
                break
            out.append(byte)
            state = int(table[state, byte])
        return bytes(out)

    def mask(self, state: int) -> TokenMask:
        """The allowed tokens in ``state`` (computed on first use, then cached)."""
        mask = self._masks.get(state)
        if mask is None:
            mask = self._compute_mask(state)
            with self._lock:
                if state not in self._masks:
                    masks = self._masks
                    masks[state] = mask
                    self._mask_bytes += mask.nbytes
                    while self._mask_bytes > MASK_CACHE_BYTES and len(masks) > 1:
                        self._mask_bytes -= masks.pop(next(iter(masks))).nbytes
        return mask

    @property
    def n_cached_masks(self) -> int:
        return len(self._masks)

    @property
    def mask_cache_bytes(self) -> int:
        """Bytes held by the cached masks (at most about :data:`MASK_CACHE_BYTES`)."""
        return self._mask_bytes

    def _compute_mask(self, state: int) -> TokenMask:
        """The tokens whose bytes keep the DFA alive from ``state`` (and EOG where it accepts).

        Where every plain-text character moves the DFA the same way (inside a
        JSON string, say), plain-text tokens are decided by their character
        count (:class:`~outlines_gguf.tokens.text.TextTokens`) and only the
        other tokens are walked; when that admits most of the vocabulary, the
        mask is built from the ids it leaves out. Where ASCII bytes go on together
        along a chain (``_ascii_loop_walk``) or plain text loops but for a few ASCII
        bytes at every character (``_loop_except_walk``), the tokens that stay are
        found from per-token byte sets and only the others are read. Otherwise the
        whole trie is walked; once a state turns out dense, later states walk it
        compressed to the DFA's byte classes if there are few (same result, fewer nodes).
        """
        if state == FINISHED:
            raise ConstraintViolationError("generation continued after an end-of-generation token")
        vocab = self.vocabulary
        plain = self._plain_split(state)
        if plain is None:
            walked = self._ascii_loop_walk(state)
            if walked is None:
                walked = self._loop_except_walk(state)
            free = self._any_plain_split(state) if walked is None else None
            if free is not None:
                # every plain-text token fits: only the others are walked (their own trie)
                rest = vocab.text_tokens.rest.walk(self.dfa.transitions, state)
                return self.assemble_mask(state, free, rest)
            return self.assemble_mask(state, None, walked if walked is not None else self._walk(state))
        exceptions = plain[1]
        table = self.dfa.transitions
        parts = [vocab.text_tokens.walk_rest(table, state, self._plain_loop_target(state), exceptions)]
        if exceptions.size:
            parts.append(vocab.trie.walk(table, state, exceptions, self._loops))
        return self.assemble_mask(state, plain, np.concatenate(parts))

    def assemble_mask(
        self, state: int, plain: tuple[float, np.ndarray] | None, walked: np.ndarray
    ) -> TokenMask:
        """The mask of ``state`` from the tokens a walk found alive (``walked``: all of them
        when ``plain`` is None; else those the plain-text split ``plain`` of ``_plain_split``
        leaves to walk, the plain-text tokens being counted instead). Callers that walk the
        trie anyway for their own reasons (the JSON pushdown's crossing walks) build the mask
        here rather than have the guide walk it again."""
        vocab = self.vocabulary
        final = bool(self.dfa.accepting[state])
        text = vocab.text_tokens
        chain, exceptions = plain if plain is not None else (0.0, None)
        bulk = 0 if plain is None else text.count_up_to(chain, exceptions)
        if not final and walked.size == 0 and bulk == 0:
            raise ConstraintViolationError(
                f"no token of this vocabulary can continue the constraint from DFA state {state}; "
                "the vocabulary lacks the bytes the constraint needs"
            )
        if final:
            walked = np.concatenate([walked, vocab.eog_array])
        if plain is None:
            return TokenMask.allowing(walked, vocab.size, final)
        if bulk * 2 > vocab.size:
            candidates = text.not_up_to(chain, exceptions)
            keep = np.zeros(vocab.size, dtype=bool)
            keep[candidates] = True
            keep[walked] = False
            # (every id not plain text, ascending, when no plain token is counted out)
            ordered = chain >= text.max_count and (exceptions is None or exceptions.size == 0)
            return TokenMask.forbidding(candidates[keep[candidates]], vocab.size, final, ordered)
        if bulk:
            walked = np.concatenate([text.up_to(chain, exceptions), walked])
        return TokenMask.allowing(walked, vocab.size, final)

    def _ascii_loop_walk(self, state: int) -> np.ndarray | None:
        """The tokens alive from ``state`` where its ASCII bytes that go on go on together, as
        a chain (every byte of one class leads from each state of the chain to the next, and
        no byte from 0x80 on leads anywhere): inside ``[a-z0-9-]+`` (a chain that loops), an
        identifier, right before one, or along ``[A-Fa-f0-9]{24}`` (a chain that ends). None for
        any other state.

        A token made of the class only goes down the chain as many steps as it has bytes:
        alive if the chain is that long (per-token byte sets, :meth:`Vocabulary.made_of`, and
        lengths). Any other token is at the chain's state for its first byte outside the class
        and dead unless that state reads it: only tokens holding a byte some state of the chain
        reads outside the class (a quote, a backslash) are run through the DFA from there,
        together (vectorized). Where walking the trie visits every node whose path stays in the
        class (most of a 128k trie for ``[a-z]+``, about 10 ms), this takes a fraction of a
        millisecond."""
        table = self.dfa.transitions
        row = table[state]
        if (row[0x80:] >= 0).any():
            return None
        ascii_row = row[:0x80]
        to = ascii_row[ascii_row >= 0]
        if to.size == 0:
            return None
        step = state if (to == state).any() else int(np.bincount(to).argmax())
        cls = np.zeros(256, dtype=bool)
        cls[:0x80] = ascii_row == step
        vocab = self.vocabulary
        found_chain = self._chain(state, cls)
        if found_chain is None:
            return None
        steps, loops, reads_outside = found_chain
        chain = steps.tolist()
        blob, ends = vocab._joined
        starts = vocab.byte_starts
        lengths = ends - starts
        pure = vocab.made_of(cls)
        fits = pure if loops else pure & (lengths < len(chain))
        # the others: only tokens holding a byte the chain reads outside the class can live
        held = vocab.holding_any(np.flatnonzero(reads_outside).tolist())
        ids = np.flatnonzero(held & ~pure & ~vocab.is_special)
        if ids.size > ASCII_LOOP_MAX_TAILS:
            return None  # (most tokens leave the class for a byte the chain reads: walk the trie)
        positions = concat_ranges(starts[ids], lengths[ids])
        out = np.flatnonzero(~cls[blob[positions]])
        owner = np.repeat(np.arange(ids.size), lengths[ids])[out]
        firsts = np.ones(owner.size, dtype=bool)
        firsts[1:] = owner[1:] != owner[:-1]
        at = positions[out[firsts]]  # (every one leaves the class: none is pure)
        depth = at - starts[ids]
        reach = np.minimum(depth, len(chain) - 1) if loops else depth
        within = reach < len(chain)
        ids, at, reach = ids[within], at[within], reach[within]
        ran = _run_tokens(table, blob, ids, at, ends[ids], steps[reach])
        return np.concatenate([np.flatnonzero(fits).astype(np.int32), ran])

    def _loop_except_walk(self, state: int) -> np.ndarray | None:
        """The tokens alive from a state that every plain-text character but a few ASCII ones
        leads back to (inside ``[^@]+``), or None for any other state. Plain-text tokens
        without those bytes stay there; the other tokens without them are walked as in a
        string body (their tails only, :meth:`TextTokens.walk_rest`); the tokens holding one
        are run through the DFA, vectorized. Where the plain-text split needs every later
        character to step alike, these exceptions recur at every character."""
        step = self._plain_step(state)
        if step is None or step[0] != state or not step[1].size:
            return None
        vocab = self.vocabulary
        held = vocab.holding_any(step[1].tolist())
        ids = np.flatnonzero(held & ~vocab.is_special)
        if ids.size > ASCII_LOOP_MAX_TAILS:
            return None
        table = self.dfa.transitions
        text = vocab.text_tokens
        rest = text.walk_rest(table, state, state)  # (a plain prefix without them leads back here)
        blob, ends = vocab._joined
        starts = vocab.byte_starts
        nonempty = ends[ids] > starts[ids]
        ids = ids[nonempty]
        ran = _run_tokens(table, blob, ids, starts[ids], ends[ids], np.full(ids.size, state, dtype=np.int64))
        return np.concatenate([text.plain_ids[~held[text.plain_ids]], rest[~held[rest]], ran])

    def _takes_any_plain_text(self, state: int) -> bool:
        """Every plain-text string keeps the DFA alive from ``state``, though characters lead to
        different states (an unanchored ``pattern`` part way through a match: ``[0-9]{4}``
        counts digits, any other character starts again). Such states allow nearly the whole
        vocabulary and walking its trie costs tens of milliseconds at 128k; here the plain-text
        tokens are taken whole and only the trie of the others is walked. Decided for every
        state at once, the first time a state could be one."""
        if (self.dfa.transitions[state, _ASCII_PLAIN] < 0).any():
            return False  # (most states: no need to look further)
        free = self.__dict__.get("_plain_free")
        if free is None:
            free = self.__dict__["_plain_free"] = plain_text_free_states(self.dfa.transitions)
        return bool(free[state])

    def _any_plain_split(self, state: int) -> tuple[float, np.ndarray] | None:
        """The plain-text split (as :meth:`_plain_split` gives it) of a state that takes any
        plain text: every plain-text token, no first byte left out; None for other states."""
        return (float("inf"), _NO_BYTES) if self._takes_any_plain_text(state) else None

    def _chain(self, state: int, cls: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray] | None:
        """For ``_ascii_loop_walk``: the states after 0, 1, 2... bytes of the class ``cls`` from
        ``state`` (up to the longest token), whether the last one loops, and the bytes outside
        the class that some of them read; None if the class splits or a byte from 0x80 on
        leads somewhere on the way. Kept for every state of the chain, whose own chain is the
        rest of it when its class is the same (the characters of a counted key, ``{1,255}``)."""
        key = cls.tobytes()
        memo = self.__dict__.setdefault("_chains", {})
        known = memo.get((state, key))
        if known is not None:
            return known
        table = self.dfa.transitions
        members = np.flatnonzero(cls)
        chain = [state]  # chain[j]: the state after j bytes of the class
        loops = ended = False
        horizon = self.vocabulary.max_token_bytes
        while len(chain) <= 2 * horizon:  # (twice as far: the next states' chains are its rest)
            targets = table[chain[-1], members]
            nxt = int(targets[0])
            if (targets != nxt).any():
                return None  # the class splits here: not a chain
            if nxt < 0:
                ended = True  # (tokens of the class longer than the chain die)
                break
            if nxt == chain[-1]:
                loops = True  # (it stays here: as long as any token)
                break
            if (table[nxt, 0x80:] >= 0).any():
                return None
            chain.append(nxt)
        steps = np.asarray(chain, dtype=np.int64)
        outside = (table[steps] >= 0) & ~cls[None, :]
        reads = np.logical_or.accumulate(outside[::-1], axis=0)[::-1]  # (what the rest reads)
        # the rest of a chain cut short is a chain only while it is as long as a token
        for j, s in enumerate(chain if loops or ended else chain[: len(chain) - horizon]):
            memo[(s, key)] = (steps[j:], loops, reads[j])
        return memo[(state, key)]

    def _walk(self, state: int) -> np.ndarray:
        """Walk the whole trie from ``state`` (compressed to byte classes once states turn out dense)."""
        if self._class_walk is not None:
            trie, table = self._class_walk
            return trie.walk(table, state)
        tokens = self.vocabulary.trie.walk(self.dfa.transitions, state, loops=self._loops)
        if tokens.size > DENSE_MASK and not self._byte_walks_only:
            grouping = group_columns(self.dfa.transitions)
            if grouping[0].size <= CLASS_TRIE_MAX_CLASSES:
                self.use_byte_classes(grouping)
            else:  # the compressed trie would be most of the trie: not worth building
                self._byte_walks_only = True
        return tokens

    def share_steps(self, like: RegexGuide, rows: np.ndarray) -> bool:
        """Take ``like``'s plain-text steps and trie loops, computing again only ``rows``:
        ``like``'s automaton has this one's states and differs from it in those rows at
        most, and every state whose multi-byte characters pass through one of them is among
        them too (a JSON object's rest node, cut out of its template: a few rows, where the
        whole table cost most of the node's first mask). False if ``like`` finds its steps
        state by state (a large automaton): then nothing is taken."""
        table = self.dfa.transitions
        if like.dfa.n_states != self.dfa.n_states or self.dfa.n_states > _ALL_STEPS_STATES:
            return False
        base = like._loops  # (finds ``like``'s steps of every state too)
        steps = like._plain_steps
        if not isinstance(steps, _AllPlainSteps) or steps._made or base.chars is None:
            return False
        target, differs, defined = steps._target.copy(), steps._differs.copy(), steps._defined.copy()
        target[rows], differs[rows], defined[rows] = _plain_step_arrays(table, rows)
        mine = _AllPlainSteps(target, differs, defined)
        bits = base.bits.copy()
        bits[rows] = loop_bits(table[rows], rows)
        chars = base.chars.copy()
        back = defined[rows] & (target[rows] == rows)
        chars[rows] = back & ~(table[rows, 0xC2:0xF5] < 0).all(axis=1)
        self._plain_steps = mine
        self.__dict__["_loop_table"] = Loops(bits, chars, base.plain)
        return True

    @property
    def _loops(self) -> Loops:
        """Where a trie walk may take whole subtrees (:class:`~outlines_gguf.tokens.trie.Loops`):
        the bytes leading back to each state and, for automata small enough to find every
        state's plain-text step at once, the states every multi-byte character leads back to."""
        loops = self.__dict__.get("_loop_table")
        if loops is None:
            table = self.dfa.transitions
            chars = None
            if self.dfa.n_states <= _ALL_STEPS_STATES:
                if not self._plain_steps:
                    self._plain_steps = _plain_steps_all(table)
                steps = self._plain_steps
                if isinstance(steps, _AllPlainSteps):
                    back = steps.returning()
                else:
                    back = np.array(
                        [(step := steps.get(s)) is not None and step[0] == s for s in range(len(table))]
                    )
                # ... and some multi-byte character goes on from there
                chars = back.astype(np.bool_) & ~(table[:, 0xC2:0xF5] < 0).all(axis=1)
            plain = self.vocabulary.plain_trie_nodes if chars is not None else None
            loops = Loops(loop_bits(table), chars, plain)
            self.__dict__["_loop_table"] = loops
        return loops

    def _plain_step(self, state: int) -> tuple[int, np.ndarray] | None:
        """Where plain-text characters lead from ``state``: (the state all but a few ASCII
        characters lead to, -1 if they die; those few first bytes), or None."""
        if state not in self._plain_steps:
            if not self._plain_steps and self.dfa.n_states <= _ALL_STEPS_STATES:
                self._plain_steps = _plain_steps_all(self.dfa.transitions)  # every state at once
            else:
                self._plain_steps[state] = _plain_step(self.dfa.transitions, state)
        return self._plain_steps[state]

    def _plain_loop_target(self, state: int) -> int | None:
        """The state plain-text characters lead to from ``state`` (all but the first-step
        exceptions), if every plain-text character leads from that state back to itself."""
        step = self._plain_step(state)
        if step is None or step[0] < 0:
            return None
        target = step[0]
        loop = self._plain_step(target)
        if loop is None or loop[0] != target or loop[1].size:
            return None
        return target

    def _plain_split(self, state: int) -> tuple[float, np.ndarray] | None:
        """(How many plain-text characters a plain token may have, the first bytes to
        walk instead), or None if plain-text characters do not behave alike here.

        The first character may have exceptions (a few ASCII characters that
        go elsewhere, walked separately); every later one must move the DFA
        alike, up to the longest plain-text token.
        """
        first = self._plain_step(state)
        if first is None:
            return None
        target, exceptions = first
        if target < 0:
            return 0.0, exceptions
        limit = self.vocabulary.text_tokens.max_count
        seen = {state, target}
        current = target
        for read in range(1, limit):
            step = self._plain_step(current)
            if step is None or step[1].size:
                return None
            nxt = step[0]
            if nxt < 0:
                return float(read), exceptions
            if nxt in seen:
                return float("inf"), exceptions
            seen.add(nxt)
            current = nxt
        return float(limit), exceptions

    def use_byte_classes(self, grouping: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Walk the vocabulary's trie compressed to this DFA's byte classes from now on
        (``grouping``: ``group_columns`` of the transition table, if already computed)."""
        table = self.dfa.transitions
        representative, byte_class = grouping if grouping is not None else group_columns(table)
        trie = self.vocabulary.class_trie(byte_class)
        self._class_walk = (trie, np.ascontiguousarray(table[:, representative]))

    def next_state(self, state: int, token_id: int) -> int:
        """The state after ``token_id``; raises ConstraintViolationError if it is not allowed."""
        vocab = self.vocabulary
        if token_id in vocab.eog_ids:
            if self.is_final(state):
                return FINISHED
            raise ConstraintViolationError(
                f"end-of-generation token {token_id} before the constraint was complete"
            )
        if state == FINISHED:
            raise ConstraintViolationError("a token followed an end-of-generation token")
        if not 0 <= token_id < vocab.size or token_id in vocab.special_ids:
            raise ConstraintViolationError(f"token {token_id} is not allowed inside constrained text")
        nxt = self.dfa.run(vocab.tokens[token_id], state)
        if nxt < 0:
            raise ConstraintViolationError(
                f"token {token_id} ({vocab.tokens[token_id]!r}) does not fit the constraint here"
            )
        return nxt


@lru_cache(maxsize=1)
def _plain_sequences() -> tuple[tuple[tuple[int, int], ...], ...]:
    """The UTF-8 byte-range sequences of all plain-text characters."""
    return tuple(tuple(seq) for lo, hi in PLAIN_RANGES for seq in utf8_sequences(lo, hi))


_ASCII_PLAIN = np.array([b for b in range(0x20, 0x80) if b not in (0x22, 0x5C)], dtype=np.intp)
_NO_BYTES = np.empty(0, dtype=np.uint8)


def plain_text_free_states(table: np.ndarray) -> np.ndarray:
    """Per state of a byte DFA: every plain-text string (:mod:`~outlines_gguf.tokens.text`)
    keeps it alive from there. The greatest set of states whose every plain-text character is
    alive and leads back into the set: the edges of all characters are found once (multi-byte
    ones a byte range at a time, as pairs of (start state, state so far)), then states leading
    outside are dropped until none does."""
    n = table.shape[0]
    flat = np.ascontiguousarray(table).reshape(-1).astype(np.int64)
    width = table.shape[1]
    starts = np.arange(n, dtype=np.int64)
    ascii_to = table[:, _ASCII_PLAIN].astype(np.int64)
    free: np.ndarray = np.asarray((ascii_to >= 0).all(axis=1))
    origins = [np.repeat(starts, _ASCII_PLAIN.size)]
    targets = [ascii_to.reshape(-1)]
    for seq in _plain_sequences():
        if seq[0][0] < 0x80:
            continue
        origin, current = starts[free], starts[free]
        for lo, hi in seq:
            span = np.arange(lo, hi + 1, dtype=np.int64)
            nxt = flat[current[:, None] * width + span[None, :]]
            dead = (nxt < 0).any(axis=1)
            free[origin[dead]] = False
            keep = ~dead
            pairs = np.unique(np.repeat(origin[keep], span.size) * n + nxt[keep].reshape(-1))
            origin, current = pairs // n, pairs % n
        origins.append(origin)
        targets.append(current)
    origin, target = np.concatenate(origins), np.concatenate(targets)
    while True:
        leaving = free[origin] & ((target < 0) | ~free[np.maximum(target, 0)])
        if not leaving.any():
            return free
        free[origin[leaving]] = False
_MAX_EXCEPTIONS = 24


_ALL_STEPS_STATES = 4096
"""A guide whose DFA has at most this many states finds the plain-text steps of all of them at
once (vectorized over states), the first time one is needed."""


def _plain_steps_all(table: np.ndarray) -> MutableMapping[int, PlainStep]:
    """``_plain_step`` for every state, vectorized over states. Where the characters of one
    range lead to several states part way through a multi-byte character, the state gets None
    (the general walk) rather than following each of them: a different path, the same masks."""
    return _AllPlainSteps(*_plain_step_arrays(table, None))


def _plain_step_arrays(
    table: np.ndarray, rows: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_plain_steps_all``'s arrays (target, ASCII exceptions, defined) for the states
    ``rows`` of ``table`` (None: every state), in their order."""
    sub = table if rows is None else table[rows]
    n = sub.shape[0]
    fine = np.ones(n, dtype=bool)
    end = np.full(n, -1, dtype=np.int64)  # -1: no multi-byte character leads anywhere
    multi = np.flatnonzero(~(sub[:, 0xC2:0xF5] < 0).all(axis=1))  # the states where one may
    for chunk in range(0, multi.size, _MULTI_CHUNK):  # (only these are followed: often a few string states)
        at = multi[chunk : chunk + _MULTI_CHUNK]
        fine[at], end[at] = _multi_byte_steps(table, at if rows is None else rows[at])
    ascii_targets = sub[:, _ASCII_PLAIN]
    target = end  # (-1 where no multi-byte character goes on: then every live ASCII byte differs)
    differs = ascii_targets != target[:, None]
    return target, differs, fine & (differs.sum(axis=1) <= _MAX_EXCEPTIONS)


_MULTI_CHUNK = 256
"""States whose multi-byte steps are followed together (a (states, sequences, 64) table each)."""


@lru_cache(maxsize=1)
def _multi_byte_layout() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The multi-byte plain-character sequences (``_plain_sequences``) step by step, for
    following all of them at once: per step, each sequence's bytes in a row of 64 (padded by
    repeating its first byte), and which sequences have the step."""
    seqs = [seq for seq in _plain_sequences() if seq[0][1] >= 0x80]
    columns, active = [], []
    for k in range(max(len(seq) for seq in seqs)):
        cols = np.zeros((len(seqs), 64), dtype=np.int64)
        for i, seq in enumerate(seqs):
            if k < len(seq):
                lo, hi = seq[k]
                cols[i, : hi - lo + 1] = np.arange(lo, hi + 1)
                cols[i, hi - lo + 1 :] = lo
        columns.append(cols)
        active.append(np.array([k < len(seq) for seq in seqs]))
    return columns, active


def _multi_byte_steps(table: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``states``: whether every multi-byte plain character leads to one state (or
    every one dies) without splitting part way, and that state (-1: they die). All sequences
    and states at once: a dozen sequences of up to four byte ranges, followed one range at a
    time per sequence, cost a few hundred numpy calls per automaton."""
    columns, active = _multi_byte_layout()
    flat = np.ascontiguousarray(table).reshape(-1)
    current = np.repeat(states[:, None], len(active[0]), axis=1)
    alive = np.ones(current.shape, dtype=bool)
    fine = np.ones(states.size, dtype=bool)
    for cols, on in zip(columns, active, strict=True):
        going = alive & on[None, :]
        rows = flat[(np.maximum(current, 0) * table.shape[1])[:, :, None] + cols[None, :, :]]
        first = rows[:, :, 0]
        # (padding repeats a sequence's first byte: it never changes "all dead" or "all the same")
        all_dead = (rows < 0).all(axis=2)
        same = (rows == first[:, :, None]).all(axis=2)
        fine &= (~going | same).all(axis=1)  # (all dead is all the same too)
        current = np.where(going, np.where(all_dead, -1, first), current)
        alive &= ~(going & all_dead)
    here = np.where(alive, current, -1)
    fine &= (here == here[:, :1]).all(axis=1)
    return fine, here[:, 0].astype(np.int64)


def _run_tokens(
    table: np.ndarray, blob: np.ndarray, ids: np.ndarray, at: np.ndarray, end: np.ndarray, states: np.ndarray
) -> np.ndarray:
    """Those of tokens ``ids`` whose bytes ``blob[at:end]`` (each its own span of the joined
    tokens) keep the DFA alive from ``states``: read together, a byte position at a time."""
    found = []
    while ids.size:
        nxt = table[states, blob[at]].astype(np.int64)
        at = at + 1
        alive = nxt >= 0
        done = alive & (at == end)
        found.append(ids[done].astype(np.int32))
        more = alive & ~done
        ids, at, end, states = ids[more], at[more], end[more], nxt[more]
    return np.concatenate(found) if found else np.empty(0, dtype=np.int32)


PlainStep = tuple[int, np.ndarray] | None


class _AllPlainSteps(MutableMapping[int, PlainStep]):
    """``_plain_step`` of every state, each made into its (target, exceptions) pair on first
    use (a guide asks for a few of the states; a pair per state up front cost more than the
    vectorized search)."""

    def __init__(self, target: np.ndarray, differs: np.ndarray, defined: np.ndarray) -> None:
        self._target, self._differs, self._defined = target, differs, defined
        self._made: dict[int, PlainStep] = {}

    def __getitem__(self, state: int) -> PlainStep:
        if state in self._made:
            return self._made[state]
        if not 0 <= state < len(self._target):
            raise KeyError(state)
        step = None
        if self._defined[state]:
            step = (int(self._target[state]), _ASCII_PLAIN[self._differs[state]].astype(np.uint8))
        self._made[state] = step
        return step

    def returning(self) -> np.ndarray:
        """Whether each state's plain step leads back to it (vectorized: one pair per state
        made up front was most of building a large node's trie loops)."""
        back = self._defined & (self._target == np.arange(len(self._target)))
        for state, step in self._made.items():  # (those set by hand included)
            back[state] = step is not None and step[0] == state
        return back

    def __setitem__(self, state: int, step: PlainStep) -> None:
        self._made[state] = step

    def __delitem__(self, state: int) -> None:
        del self._made[state]

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self._target)))

    def __len__(self) -> int:
        return len(self._target)


def _plain_step(table: np.ndarray, state: int) -> tuple[int, np.ndarray] | None:
    """Where plain-text characters lead from ``state`` (see ``RegexGuide._plain_step``).

    Multi-byte characters must all end in one state (or all die); that state
    is the target, and ASCII characters that go elsewhere are the exceptions.
    """
    ends: set[int] = set()
    if (table[state, 0xC2:0xF5] < 0).all():
        ends.add(-1)  # no multi-byte character can start here (the common case)
    for seq in () if ends else _plain_sequences():
        if seq[0][1] < 0x80:
            continue  # ASCII, handled below
        current = np.array([state])
        for lo, hi in seq:
            nxt = table[current][:, lo : hi + 1]
            dead = nxt < 0
            if dead.any():
                if not dead.all():
                    return None  # some characters of this range die, others live
                current = np.empty(0, dtype=np.int32)
                break
            first = nxt.flat[0]
            # usually every byte of the range goes to one state: skip the sort
            current = np.array([first]) if (nxt == first).all() else fast_unique.unique(nxt.reshape(-1))
        ends.update(current.tolist() if current.size else [-1])
        if len(ends) > 1:
            return None
    ascii_targets = table[state, _ASCII_PLAIN]
    if ends:
        target = ends.pop()
    else:  # no multi-byte characters at all: take the most common ASCII target
        values, counts = np.unique(ascii_targets, return_counts=True)
        target = int(values[np.argmax(counts)])
    exceptions = _ASCII_PLAIN[ascii_targets != target].astype(np.uint8)
    if exceptions.size > _MAX_EXCEPTIONS:
        return None
    return int(target), exceptions


def bytes_to_read(guide: Guide, state: Hashable, token_id: int, what: str) -> bytes | None:
    """The bytes ``token_id`` adds in ``state``, or None for an end-of-generation token where
    the text is complete (the guide then moves to FINISHED); raises ConstraintViolationError
    for a token that cannot come here. ``what`` names the constraint in messages."""
    vocab = guide.vocabulary
    if token_id in vocab.eog_ids:
        if guide.is_final(state):
            return None
        raise ConstraintViolationError(f"end-of-generation token {token_id} before {what} was complete")
    if state == FINISHED:
        raise ConstraintViolationError("a token followed an end-of-generation token")
    if not 0 <= token_id < vocab.size or token_id in vocab.special_ids or not vocab.tokens[token_id]:
        raise ConstraintViolationError(f"token {token_id} is not allowed inside constrained text")
    return vocab.tokens[token_id]


class LRUCache(OrderedDict):
    """A dict that keeps its ``size`` most recently used entries (``get`` counts as a use)."""

    def __init__(self, size: int = 256) -> None:
        super().__init__()
        self.size = size

    def get(self, key, default=None):
        value = super().get(key, default)
        if value is not default:
            self.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)

    def get_or_make(self, key, make):
        """The value of ``key``; where there is none, ``make()``'s, kept (the memo every guide
        and cache here writes; the caller holds whatever lock guards the cache)."""
        value = self.get(key)
        if value is None:
            value = make()
            self.put(key, value)
        return value
