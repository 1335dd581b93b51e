"""Token masks for a context-free grammar, over one vocabulary.

A guide state is a grammar configuration ``(stack, q)`` (see
:mod:`~outlines_gguf.grammar.compiled`). A token is allowed iff reading its bytes
keeps the configuration alive. The vocabulary's token trie, compressed to
the grammar's byte classes, is walked level by level in two parts:

* **inside the lexeme**: from lexer state ``q``, under the set of terminals
  the parser accepts next, the walk is a plain DFA walk. Its result (tokens
  that end inside the lexeme, and the trie nodes where the lexeme ends) does
  not depend on the rest of the stack, so it is cached, keyed by the part of
  the lexer table reachable from ``q``: a JSON string body is walked once per
  grammar and vocabulary, whatever the lexer or the nesting around it.
* **across lexemes**: at the nodes where the lexeme ends, the terminal is
  fed to the parser (a copy of the stack) and the walk goes on below those
  nodes in the next lexeme, recursively. Each sub-walk depends only on the
  next lexer's reachable table and the nodes, so it is cached the same way:
  a stack never seen before costs a few lookups and one boolean mask.

Where plain-text characters loop on the lexer state (a string or comment body), the
in-lexeme walk is a slice of the plain-text tokens plus a walk of a trie of the other tokens
(``_plain_split``, the regex guide's idea): a few thousand tokens instead of the vocabulary.

Masks are cached per configuration (LRU).
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import cached_property
from typing import Any, cast

import numpy as np

from outlines_gguf.errors import ConstraintViolationError, VocabularyError
from outlines_gguf.grammar.compiled import Config, Grammar
from outlines_gguf.grammar.lexer import CROSS, DEAD
from outlines_gguf.grammar.stack_memo import StackMemo
from outlines_gguf.guides.base import FINISHED, FORCED_LIMIT, LRUCache, TokenMask, _plain_step, bytes_to_read
from outlines_gguf.locking import Locked
from outlines_gguf.tokens.trie import Loops, TokenTrie, loop_bits
from outlines_gguf.tokens.vocabulary import Vocabulary

MASK_CACHE_SIZE = 1024
"""Masks kept per grammar guide, either mode (least recently used are dropped)."""

INSIDE_CACHE_SIZE = 256
"""In-lexeme walks from a lexer state kept per CFG guide (each up to the whole vocabulary)."""

BELOW_CACHE_SIZE = 8192
"""Walks below the trie nodes where a lexeme ends kept per CFG guide (a few tokens each): the
lexeme walks, and their results per stack (``_belows``: a memo of stacks per trie nodes)."""

BELOW_STACKS = 4096
"""Stacks (as far as they were read) whose results below one set of trie nodes are kept."""


INSIDE_MASK_CACHE_SIZE = 32
"""Boolean masks (one byte per token) of in-lexeme walks that allow most of the vocabulary."""

NARROW = 64  # a frontier this small, with at most NARROW_NODES below it,
NARROW_NODES = 1024  # is walked node by node in Python instead of level by level

_Walk = tuple[np.ndarray, np.ndarray, np.ndarray]


class GrammarGuide(Locked):
    """What the guides of both grammar modes share: the vocabulary check, pickling without the
    lock and the caches, the compressed trie, stepping, the mask cache and the mask from the
    allowed tokens. Subclasses say which caches they keep (``_caches``) and which lock guards
    their grammar (``_new_lock``)."""

    _caches: tuple[str, ...] = ("_masks",)
    grammar: Any

    def __init__(self, grammar: Any, vocabulary: Vocabulary) -> None:
        if not vocabulary.eog_ids:
            raise VocabularyError("the vocabulary has no end-of-generation token: generation could never end")
        self.grammar = grammar
        self.vocabulary = vocabulary
        self.initial_state: Hashable = grammar.initial_state
        self._masks: LRUCache = LRUCache(MASK_CACHE_SIZE)
        self._lock = self._new_lock()

    def __getstate__(self) -> dict[str, Any]:
        """Pickles without its lock, caches and compressed trie (rebuilt lazily in the other process)."""
        state = super().__getstate__()
        state.pop("trie", None)
        for name in self._caches:
            state[name] = LRUCache(state[name].size)
        return state

    @cached_property
    def trie(self) -> TokenTrie:
        """The vocabulary's trie over the grammar's byte classes (built at the first mask)."""
        return self.vocabulary.class_trie(self.grammar.byte_class)

    def next_state(self, state: Hashable, token_id: int) -> Hashable:
        """The state after ``token_id``; raises ConstraintViolationError if it is not allowed."""
        data = bytes_to_read(self, state, token_id, "the grammar")
        if data is None:
            return FINISHED
        with self._lock:
            nxt = self.grammar.advance(state, data)
        if nxt is None:
            raise ConstraintViolationError(f"token {token_id} ({data!r}) does not fit the grammar here")
        return nxt

    def mask(self, state: Hashable) -> TokenMask:
        """The allowed tokens in ``state`` (computed on first use, then cached)."""
        if state == FINISHED:
            raise ConstraintViolationError("generation continued after an end-of-generation token")
        with self._lock:
            return self._masks.get_or_make(state, lambda: self._compute_mask(state))

    def is_final(self, state: Hashable) -> bool:
        raise NotImplementedError

    def _compute_mask(self, state: Any) -> TokenMask:
        raise NotImplementedError

    def _mask_of(self, parts: list[np.ndarray], final: bool) -> TokenMask:
        """The mask allowing the tokens ``parts`` (and end of generation where ``final``)."""
        if not final and not any(part.size for part in parts):
            raise ConstraintViolationError(
                "no token of this vocabulary can continue the grammar here (a dead end: the grammar "
                "cannot be completed from this text, or the vocabulary lacks the bytes it needs)"
            )
        allowed = np.zeros(self.vocabulary.size, dtype=bool)
        for part in parts:
            allowed[part] = True
        if final:
            allowed[self.vocabulary.eog_array] = True
        return TokenMask(allowed, final)


class CFGGuide(GrammarGuide):
    """A guide over a compiled :class:`~outlines_gguf.grammar.compiled.Grammar` (the Guide protocol)."""

    _caches = (
        "_masks", "_inside", "_reach", "_subwalks", "_belows", "_inside_masks", "_unions", "_shape_walks"
    )
    grammar: Grammar

    def __init__(self, grammar: Grammar, vocabulary: Vocabulary) -> None:
        super().__init__(grammar, vocabulary)
        self._inside: LRUCache = LRUCache(INSIDE_CACHE_SIZE)
        self._reach: LRUCache = LRUCache(4 * INSIDE_CACHE_SIZE)
        self._subwalks: LRUCache = LRUCache(BELOW_CACHE_SIZE)
        self._inside_masks: LRUCache = LRUCache(INSIDE_MASK_CACHE_SIZE)
        self._belows: LRUCache = LRUCache(BELOW_CACHE_SIZE)
        self._unions: LRUCache = LRUCache(MASK_CACHE_SIZE)  # masks by the identity of their parts
        self._tables: list[np.ndarray] = []  # the interned reachable lexer tables
        self._table_shapes: list[int] = []  # per interned table: its shape (see _walk)
        self._shapes: list[np.ndarray] = []  # the interned shapes (tables with DEAD where a lexeme stops)
        self._shape_ids: dict[bytes, int] = {}
        self._shape_loops: list[Loops] = []  # per shape: the labels leading each state back
        self._shape_walks: LRUCache = LRUCache(BELOW_CACHE_SIZE)
        self._table_ids: dict[bytes, int] = {}
        self._plain_splits: dict[tuple[tuple[int, ...], bool], tuple[np.ndarray, int]] = {}  # _plain_split
        self._rest_index: int | None = None  # see _rest_trie

    @cached_property
    def _tries(self) -> list[TokenTrie]:
        """The tries walks run on: the compressed vocabulary trie first, then that of the
        tokens outside the plain-text splits (``_plain_split``)."""
        return [self.trie]

    def __getstate__(self) -> dict[str, object]:
        state = super().__getstate__()
        state["_tables"], state["_table_ids"], state["_plain_splits"] = [], {}, {}
        state["_rest_index"] = None
        state["_table_shapes"], state["_shapes"], state["_shape_ids"], state["_shape_loops"] = [], [], {}, []
        state.pop("_tries", None)
        return state

    # -- the Guide protocol -----------------------------------------------------------------
    # A state is FINISHED or a grammar Config (hence the casts once FINISHED is ruled out).

    def _new_lock(self) -> Any:
        return self.grammar.lock  # the grammar's stacks and memos grow as masks are computed

    def is_final(self, state: Hashable) -> bool:
        if state == FINISHED:
            return True
        with self._lock:
            return self.grammar.is_final(cast(Config, state))

    def forced_bytes(self, state: Hashable, limit: int = FORCED_LIMIT) -> bytes:
        """The longest bytes every sentence continuing ``state`` starts with (up to ``limit``).

        One byte of each of the grammar's byte classes is tried (bytes of a class move every
        configuration alike): a byte is forced when exactly one class lives and it holds that
        byte alone, and the text read so far is not already a sentence.
        """
        if state == FINISHED:
            return b""
        grammar = self.grammar
        sizes = self._class_sizes
        out = bytearray()
        with self._lock:
            config = cast(Config, state)
            while len(out) < limit and not grammar.is_final(config):
                found = None
                for cls, byte in enumerate(grammar._representatives):
                    nxt = grammar.step(config, byte)
                    if nxt is None:
                        continue
                    if found is not None or sizes[cls] != 1:
                        return bytes(out)
                    found = (byte, nxt)
                if found is None:
                    break
                out.append(found[0])
                config = found[1]
        return bytes(out)

    @cached_property
    def _class_sizes(self) -> np.ndarray:
        return np.bincount(self.grammar.byte_class, minlength=self.grammar.n_classes)

    # -- masks ------------------------------------------------------------------------------

    def allowed_tokens(self, config: Config) -> np.ndarray:
        """Every token whose bytes keep ``config`` alive (unsorted, may repeat)."""
        parts = self._allowed_parts(config)[1]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _allowed_parts(self, config: Config) -> tuple[int, list[np.ndarray]]:
        """The interned table of the lexeme being read and the allowed tokens in parts: those
        that end inside the lexeme first, then those that cross into later lexemes."""
        stack, q = config
        view = self.grammar.view(stack)
        table_id, order = self._reachable(view, q)
        inside = self._inside.get(table_id)
        if inside is None:
            table = self._tables[table_id]
            split = self._plain_split(table)
            which = 0 if split is None else split[1]
            trie = self._tries[which]
            roots = np.arange(trie.root_children)
            start = np.zeros(roots.size, dtype=np.int64)
            tokens, cross_nodes, cross_from = self._walk(table_id, roots, start, which)
            if split is not None:  # plain text stays in the lexeme: those tokens by the slice
                tokens = np.concatenate([split[0], tokens])
            inside = (tokens, cross_nodes, cross_from, which)
            self._inside.put(table_id, inside)
        tokens, cross_nodes, cross_from, which = inside
        parts = [tokens]
        if cross_nodes.size:
            self._across(stack, cross_nodes, order[cross_from], parts, which)
        return table_id, parts

    def _plain_split(self, table: np.ndarray) -> tuple[np.ndarray, int] | None:
        """Where every plain-text character leads state 0 of ``table`` back to itself but a
        few ASCII ones (a string or comment body, and its closing quote or end of line): the
        plain-text tokens without those bytes, which end inside the lexeme whatever their
        length, and the index in ``_tries`` of the trie of the only tokens walked: those that
        are not plain text, and, where those bytes do not end the text there (a closing quote),
        the plain-text tokens that hold one. None elsewhere. A string body is then a slice
        and a walk of a few thousand tokens instead of the whole vocabulary."""
        wide = table[:, self.grammar.byte_class]
        step = _plain_step(wide, 0)
        if step is None or step[0] != 0:
            return None
        exceptions = tuple(step[1].tolist())
        dead = bool((wide[0, step[1]] == DEAD).all())
        found = self._plain_splits.get((exceptions, dead))
        if found is None:
            vocab = self.vocabulary
            text = vocab.text_tokens
            held = vocab.holding_any(exceptions)
            plain = text.plain_ids
            keep = plain[~held[plain]]
            if dead:  # plain tokens holding such a byte die: the other tokens' trie serves all
                index = self._rest_trie()
            else:  # (one trie per set of bytes: the other tokens and the plain ones holding one)
                walked = np.concatenate([text.rest.term_tokens, plain[held[plain]]]).tolist()
                index = len(self._tries)
                self._tries.append(TokenTrie.of_ids(vocab.tokens, walked).compress(self.grammar.byte_class))
            found = self._plain_splits[(exceptions, dead)] = (keep, index)
        return found

    def _rest_trie(self) -> int:
        """The index in ``_tries`` of the compressed trie of the tokens that are not plain text."""
        if self._rest_index is None:
            self._rest_index = len(self._tries)
            self._tries.append(self.vocabulary.text_tokens.rest.compress(self.grammar.byte_class))
        return self._rest_index

    def _reachable(self, view: np.ndarray, q: int) -> tuple[int, np.ndarray]:
        """The part of ``view`` reachable from ``q``, renumbered breadth first from 0 and interned
        (its id in ``_tables``), and the original number of each state. Lexemes that read alike
        share it (and its walks): a JSON string body is walked once, whatever the lexer or the
        nesting around it."""
        key = (id(view), q)
        found = self._reach.get(key)
        if found is None:
            order = [q]
            index = {q: 0}
            i = 0
            while i < len(order):
                for nxt in view[order[i]].tolist():
                    if nxt >= 0 and nxt not in index:
                        index[nxt] = len(order)
                        order.append(nxt)
                i += 1
            old = np.asarray(order, dtype=np.int64)
            remap = np.full(view.shape[0], -1, dtype=np.int32)
            remap[old] = np.arange(old.size, dtype=np.int32)
            rows = view[old]
            renumbered = np.where(rows >= 0, remap[np.maximum(rows, 0)], rows)
            table = np.ascontiguousarray(renumbered, dtype=np.int32)
            table_id = self._table_ids.setdefault(table.tobytes(), len(self._tables))
            if table_id == len(self._tables):
                self._tables.append(table)
                shape = np.ascontiguousarray(np.where(table >= 0, table, DEAD), dtype=np.int32)
                shape_id = self._shape_ids.setdefault(shape.tobytes(), len(self._shapes))
                if shape_id == len(self._shapes):
                    self._shapes.append(shape)
                    self._shape_loops.append(Loops(loop_bits(shape)))
                self._table_shapes.append(shape_id)
            found = (table_id, old, view)  # the view is kept alive with its id
            self._reach.put(key, found)
        return found[0], found[1]

    def _compute_mask(self, config: Config) -> TokenMask:
        table_id, parts = self._allowed_parts(config)
        final = self.grammar.is_final(config)
        # the parts are arrays from the caches: configurations that read alike (same lexer table,
        # same stack) get the same arrays, hence the same mask; the entry keeps them alive
        key = (final, *(id(part) for part in parts))
        found = self._unions.get(key)
        if found is not None and all(a is b for a, b in zip(found[0], parts, strict=True)):
            return found[1]
        mask = self._union_mask(table_id, parts, final)
        self._unions.put(key, (parts, mask))
        return mask

    def _union_mask(self, table_id: int, parts: list[np.ndarray], final: bool) -> TokenMask:
        n_vocab = self.vocabulary.size
        if parts[0].size * 2 > n_vocab:  # most of the vocabulary: start from the lexeme's own mask
            base, forbidden = self._inside_mask(table_id, parts[0])
            if len(parts) == 1 and not final:
                return TokenMask.forbidding(forbidden, n_vocab, final, ordered=True)
            allowed = base.copy()
            for part in parts[1:]:
                allowed[part] = True
            if final:
                allowed[self.vocabulary.eog_array] = True
            return TokenMask.forbidding(forbidden[~allowed[forbidden]], n_vocab, final, ordered=True)
        return self._mask_of(parts, final)

    def _inside_mask(self, table_id: int, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The tokens that end inside a lexeme as a boolean array, and the ids it leaves out
        (sorted): scattering 150k ids costs 0.8 ms, copying the array a few microseconds."""
        found = self._inside_masks.get(table_id)
        if found is None:
            allowed = np.zeros(self.vocabulary.size, dtype=bool)
            allowed[tokens] = True
            found = (allowed, np.flatnonzero(~allowed))
            self._inside_masks.put(table_id, found)
        return found

    def _across(self, stack: int, nodes: np.ndarray, sources: np.ndarray, out: list, which: int = 0) -> int:
        """Continue below ``nodes`` of trie ``which`` (in ``_tries``) whose byte ends the lexeme
        in state ``sources``; returns the deepest position of ``stack`` that what was found
        depends on."""
        grammar = self.grammar
        emits = grammar.lexer(stack).emits
        single = sources.size == 1 or bool((sources == sources[0]).all())
        deepest = 0
        for source in [int(sources[0])] if single else np.unique(sources).tolist():
            terminal = emits[source]
            if terminal is None:
                continue
            if terminal in grammar.ignore:
                after, top = stack, 0
            else:
                found, read, top = grammar.table.probe(stack, terminal)
                deepest = max(deepest, read)
                if found is None:
                    continue
                after = found
            sel = nodes if single else nodes[sources == source]
            tokens, read_below = self._below(after, sel, which)
            out.append(tokens)
            deepest = max(deepest, top + read_below)
        return deepest

    def _below(self, stack: int, nodes: np.ndarray, which: int = 0) -> tuple[np.ndarray, int]:
        """The tokens below trie ``nodes`` (whose bytes start a lexeme) that ``stack`` can read,
        and the deepest position of the stack they depend on.

        Cached per nodes and the stack's states down to that position (a
        :class:`~outlines_gguf.grammar.stack_memo.StackMemo`: a closing bracket reads one state
        below the top, so the stacks of every nesting share it); the walk inside the lexeme per
        (lexer table, nodes), shared by every stack with that table.
        """
        trie = self._tries[which]
        key = (which, nodes.tobytes())
        memo = self._belows.get(key)
        if memo is None:
            stacks = self.grammar.table
            memo = StackMemo(stacks._below, stacks._top, BELOW_STACKS)
            self._belows.put(key, memo)
        found = memo.get(stack)
        if found is None:
            grammar = self.grammar
            view, deepest, reads = grammar.view_reads(stack)
            if reads is not None:  # what the walk reads: the parts of the view of the terminals
                # these lexemes can end as (a run of signs does not read what may follow a number)
                ends_as = grammar.lexer(stack).terminals_from(trie.node_byte[nodes])
                deepest = max([reads[0], *(reads[1].get(t, 0) for t in ends_as)])
            table_id, order = self._reachable(view, 0)
            walked = self._subwalks.get((table_id, key))
            if walked is None:
                table = self._tables[table_id]
                states = table[0, trie.node_byte[nodes]].astype(np.int64)
                alive = states >= 0
                walked = self._walk(table_id, nodes[alive], states[alive], which, entered=True)
                self._subwalks.put((table_id, key), walked)
            tokens, cross_nodes, cross_from = walked
            parts = [tokens]
            if cross_nodes.size:
                deepest = max(deepest, self._across(stack, cross_nodes, order[cross_from], parts, which))
            found = (np.concatenate(parts) if len(parts) > 1 else tokens, deepest)
            memo.put(stack, deepest, found)
        return found

    def _walk(
        self, table_id: int, nodes: np.ndarray, states: np.ndarray, which: int, entered: bool = False
    ) -> _Walk:
        """Walk trie ``which`` (in ``_tries``) under the interned lexer table ``table_id``.

        ``entered=False``: ``nodes`` are children still to enter from ``states``;
        ``entered=True``: ``nodes`` were entered and are in ``states``.
        Returns (tokens ending inside the lexeme, nodes whose byte ends it (sorted), the
        lexer state each of those comes from).

        The walk itself reads only where the lexeme goes on (its *shape*): tables that differ
        only in which bytes may end it (a name where ``,`` may follow and one where ``)`` may)
        share it, and each keeps the nodes where its own table crosses.
        """
        shape = self._table_shapes[table_id]
        key = (shape, which, entered, nodes.tobytes(), states.tobytes())
        walked = self._shape_walks.get(key)
        if walked is None:
            walked = self._walk_shape(shape, nodes, states, self._tries[which], entered)
            self._shape_walks.put(key, walked)
        tokens, stop_nodes, stop_from, stop_at = walked
        if not stop_nodes.size:
            return tokens, stop_nodes, stop_from
        crossing = self._tables[table_id].reshape(-1)[stop_at] == CROSS
        return tokens, stop_nodes[crossing], stop_from[crossing]

    def _walk_shape(
        self, shape: int, nodes: np.ndarray, states: np.ndarray, trie: TokenTrie, entered: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_walk` on a lexeme's shape: the tokens ending inside, and every node where it
        stops (sorted), with the state it stops in and that entry's index in the flat table.

        Levels are walked with numpy while wide, node by node in Python once the frontier is
        narrow; a node whose every byte below leads its state back to itself (a word inside a
        name) is not walked: its subtree is taken whole.
        """
        view, loops = self._shapes[shape], self._shape_loops[shape]
        stride = view.shape[1]
        flat = view.reshape(-1)
        found: list[np.ndarray] = []
        stop_nodes: list[np.ndarray] = []
        stop_from: list[np.ndarray] = []
        if not entered:
            nodes, states = _enter(trie, flat, stride, nodes, states, stop_nodes, stop_from)
        sizes = trie._subtree_size
        while nodes.size:
            if nodes.size <= NARROW and int(sizes[nodes].sum()) <= NARROW_NODES:
                rest, stopped, stopped_from = trie.walk_narrow(flat, stride, nodes, states, stops=True)
                found.append(rest)
                if stopped:
                    stop_nodes.append(np.asarray(stopped, dtype=np.int64))
                    stop_from.append(np.asarray(stopped_from, dtype=np.int64))
                break
            nodes, states = trie.take_whole(nodes, states, loops, found)
            if not nodes.size:
                break
            children, parents = trie.step(nodes, states, found)
            if children is None:
                break
            nodes, states = _enter(trie, flat, stride, children, parents, stop_nodes, stop_from)
        tokens = np.concatenate(found) if found else np.empty(0, dtype=np.int32)
        if not stop_nodes:
            empty = np.empty(0, dtype=np.int64)
            return tokens, empty, empty, empty
        xn, xf = np.concatenate(stop_nodes), np.concatenate(stop_from)
        by_node = np.argsort(xn, kind="stable")  # one order, so equal node sets are equal keys
        xn, xf = xn[by_node], xf[by_node]
        return tokens, xn, xf, xf * stride + trie.node_byte[xn]


def _enter(
    trie: TokenTrie,
    flat: np.ndarray,
    stride: int,
    children: np.ndarray,
    parents: np.ndarray,
    stop_nodes: list,
    stop_from: list,
) -> tuple[np.ndarray, np.ndarray]:
    """Enter ``children`` from their parents' states: the live ones and their states; those
    where the table stops go to ``stop_nodes`` (with the state in ``stop_from``)."""
    nxt = flat[parents * stride + trie.node_byte[children]]
    alive = nxt >= 0
    if not alive.all():
        stopped = ~alive
        stop_nodes.append(children[stopped])
        stop_from.append(parents[stopped])
    return children[alive], nxt[alive].astype(np.int64)

