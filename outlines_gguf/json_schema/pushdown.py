"""JSON Schema as a pushdown of small automata, compiled when generation reaches them.

One DFA for a whole schema multiplies states with every nesting level,
unrolls ``$ref`` cycles to a fixed depth and recompiles a shared definition
at each use. Here the schema is *split*: every object or array value nested
inside another (and every ``$ref``, combinator or free-form value there) is
its own **node**, compiled on first use by the same JSON compiler into a
small byte DFA in which the nested value is a *call*: the marker byte
``0xFF`` and the callee's number (:func:`~outlines_gguf.json_schema.keywords.call_marker`).
A node is compiled once per schema, however many places use it, so the
compile cost grows with the schema, not with its unfolding, and recursion
has no depth limit.

A **configuration** is a return stack: ``(below, node, state)``, where
``below`` is the caller's configuration holding the state to return to (or
None at the root). A guide state is the set of configurations the text so
far can be in (one, almost always; two while, say, an extra key and a
declared key share a prefix). From a configuration, without reading a byte,
generation may *call* (enter a callee's start state, pushing the return
state) or *return* (from an accepting state of a callee to the caller).

**Masks.** A token is allowed iff its bytes can be read from some
configuration. For a configuration ``(below, n, s)`` that is the union of

* the tokens that stay inside node ``n`` from ``s``: the regex guide's mask of
  that node's DFA (with the call column removed), cached per (node, state) and
  shared by every place the node is used;
* the tokens that cross a call or a return on the way. The trie nodes where a
  token's prefix reaches a state with a call or an accepting state are found by
  one walk per (node, state), also context-free and cached; below those trie
  nodes the walk goes on in the callee (or the caller, read from the stack),
  cached per (node, state, trie nodes). A new stack costs a few lookups.

Inside a string value the crossing walk only visits the tails of tokens
(from their first quote, backslash or control character on), as the regex
guide does: a plain-text prefix never crosses anything.

**Emptiness.** A node whose DFA can reach acceptance only through calls is
*productive* only if its callees are; unproductive callees are cut out of
their callers (least fixpoint over the nodes compiled), so a mask never leads
into a value that cannot be completed.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable

import numpy as np

from outlines_gguf.errors import (
    ConstraintViolationError,
    VocabularyError,
)
from outlines_gguf.fast_unique import isin_few
from outlines_gguf.guides.base import (
    FINISHED,
    FORCED_LIMIT,
    LRUCache,
    PlainStep,
    RegexGuide,
    TokenMask,
    bytes_to_read,
    single_byte,
)
from outlines_gguf.json_schema.runs import RunShape
from outlines_gguf.json_schema.split import Config, Node, SplitSchema
from outlines_gguf.json_schema.string_body import MAX_REQUIRED, free_string_at, string_body_tokens
from outlines_gguf.json_schema.strings import LayeredDFA
from outlines_gguf.locking import Locked
from outlines_gguf.tokens.trie import Loops, TokenTrie, concat_ranges
from outlines_gguf.tokens.vocabulary import Vocabulary

MASK_CACHE_SIZE = 2048
"""Masks kept per guide, by guide state (least recently used are dropped)."""

WALK_CACHE_SIZE = 4096
"""Crossing walks kept per guide (least recently used are dropped)."""

NEXT_CACHE_SIZE = 8192
"""Transitions kept per guide, by (state, token): generation meets the same states again (every
document a schema generates starts alike), and reading a token byte by byte through the
configurations costs as much as a warm mask."""

PAIR_WALK_CACHE_SIZE = 32
"""Walks of the whole trie from a pair of a pattern's layered string (``_pair_walk``) kept per
guide: each holds up to a vocabulary's worth of tokens (about 1 MB at 128k)."""


# -- the guide -----------------------------------------------------------------------------------


def _configs(state: Hashable) -> frozenset[Config]:
    """A guide state other than FINISHED: its set of configurations."""
    if not isinstance(state, frozenset):
        raise ConstraintViolationError(f"not a state of this guide: {state!r}")
    return state


class PushdownGuide(Locked):
    """A guide over a :class:`SplitSchema` (the Guide protocol of :mod:`~outlines_gguf.guides.base`).

    States are frozensets of configurations; thread-safe.
    """

    def __init__(self, schema: SplitSchema, vocabulary: Vocabulary) -> None:
        if not vocabulary.eog_ids:
            raise VocabularyError("the vocabulary has no end-of-generation token: generation could never end")
        self.schema = schema
        self.vocabulary = vocabulary
        self.initial_state: Hashable = frozenset({(None, 0, 0)})
        self._masks = LRUCache(MASK_CACHE_SIZE)
        self._walks = LRUCache(WALK_CACHE_SIZE)
        self._next = LRUCache(NEXT_CACHE_SIZE)
        self._keys = LRUCache(NEXT_CACHE_SIZE)  # state -> its mask key (``_mask_key``)
        self._closures = LRUCache(NEXT_CACHE_SIZE)  # configuration -> (schema version, closure)
        self._version = schema.version
        self._horizon = vocabulary.max_token_bytes  # no token reads further than this
        self._layer_reps: dict[int, np.ndarray] = {}  # node -> its states' representatives
        self._layer_alive: dict[int, np.ndarray] = {}  # node -> (layer, pair) alive
        self._pair_walks = LRUCache(PAIR_WALK_CACHE_SIZE)  # (node, pair) -> ``_pair_walk``
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, object]:
        state = super().__getstate__()
        state["_masks"], state["_walks"] = LRUCache(MASK_CACHE_SIZE), LRUCache(WALK_CACHE_SIZE)
        state["_next"], state["_keys"] = LRUCache(NEXT_CACHE_SIZE), LRUCache(NEXT_CACHE_SIZE)
        state["_closures"] = LRUCache(NEXT_CACHE_SIZE)
        state["_layer_reps"], state["_layer_alive"] = {}, {}
        state["_pair_walks"] = LRUCache(PAIR_WALK_CACHE_SIZE)
        return state

    @property
    def n_cached_masks(self) -> int:
        return len(self._masks)

    # -- configurations -----------------------------------------------------------------------

    def closure(self, configs: Iterable[Config]) -> tuple[Config, ...]:
        """The configurations reachable without reading a byte (calls and returns).

        A call made from a callee's start, again along the same path of calls made before
        anything is read, is left recursion and is not made again. The path is each
        configuration's own: two callers that enter one node (a property both branches of a
        union declare) each go on into it, whatever order they are met in. The closure of one
        configuration is kept (a cold mask asks for the same ones again and again: six in ten
        over the dev files), for the schema's version: a cut call changes it."""
        if not isinstance(configs, (list, tuple, set, frozenset)) or len(configs) != 1:
            return self._closure(configs)
        (config,) = configs
        version = self.schema.version
        with self._lock:
            found = self._closures.get(config)
        if found is not None and found[0] == version:
            return found[1]
        out = self._closure(configs)
        if version == self.schema.version:  # (the closure compiles nodes, which may cut calls)
            with self._lock:
                self._closures.put(config, (version, out))
        return out

    def _closure(self, configs: Iterable[Config]) -> tuple[Config, ...]:
        out: list[Config] = []
        seen: set[tuple[Config, frozenset]] = set()
        found: set[Config] = set()
        none: frozenset[tuple[int, int]] = frozenset()
        # (configuration, the (caller, callee) calls made from starts on the path to it)
        stack: list[tuple[Config, frozenset[tuple[int, int]]]] = [(c, none) for c in configs]
        node_of = self.schema.node
        while stack:
            config, path = stack.pop()
            if (config, path) in seen:
                continue
            seen.add((config, path))
            if config not in found:
                found.add(config)
                out.append(config)
            below, number, state = config
            node = node_of(number)
            for callee, ret in node.calls.get(state, ()):
                called = none
                if state == 0:
                    if (number, callee) in path:
                        continue  # the same call before anything is read, again: left recursion
                    called = path | {(number, callee)}
                # a tail call (nothing to do on return but return) leaves the stack as it is
                stack.append(((below if node.tail[ret] else (below, number, ret), callee, 0), called))
            if below is not None and node.dfa.accepting[state]:
                stack.append((below, none))
        return tuple(out)

    def _final(self, configs: Iterable[Config]) -> bool:
        node_of = self.schema.node
        return any(
            below is None and bool(node_of(number).dfa.accepting[state])
            for below, number, state in self.closure(configs)
        )

    def advance(self, state: frozenset, data: bytes) -> frozenset:
        """The configurations after reading ``data`` (empty if it does not fit)."""
        configs: Iterable[Config] = state
        node_of = self.schema.node
        for byte in data:
            nxt = set()
            for below, number, s in self.closure(configs):
                t = int(node_of(number).dfa.transitions[s, byte])
                if t >= 0:
                    nxt.add((below, number, t))
            if not nxt:
                return frozenset()
            configs = nxt
        return frozenset(configs)

    # -- the Guide protocol -------------------------------------------------------------------

    def is_final(self, state: Hashable) -> bool:
        return state == FINISHED or self._final(_configs(state))

    def next_state(self, state: Hashable, token_id: int) -> Hashable:
        """The state after ``token_id``; raises ConstraintViolationError if it is not allowed."""
        data = bytes_to_read(self, state, token_id, "the JSON value")
        if data is None:
            return FINISHED
        with self._lock:
            self._forget_if_cut()
            key = (state, token_id)
            nxt = self._next.get(key)
            if nxt is None:
                nxt = self.advance(_configs(state), data)
                if not nxt:
                    raise ConstraintViolationError(
                        f"token {token_id} ({data!r}) does not fit the schema here"
                    )
                if self._version == self.schema.version:  # (reading compiles nodes, which may cut calls)
                    self._next.put(key, nxt)
        return nxt

    def _forget_if_cut(self) -> None:
        """Drop what was computed with calls that have since been cut as unproductive."""
        if self._version != self.schema.version:
            self._masks, self._walks = LRUCache(MASK_CACHE_SIZE), LRUCache(WALK_CACHE_SIZE)
            self._next, self._keys = LRUCache(NEXT_CACHE_SIZE), LRUCache(NEXT_CACHE_SIZE)
            self._version = self.schema.version

    def forced_bytes(self, state: Hashable, limit: int = FORCED_LIMIT) -> bytes:
        """The longest bytes every text accepted from ``state`` starts with (up to ``limit``):
        bytes are taken while the configurations, calls and returns included, can read exactly
        one byte and none of them is complete at the root (end of generation is a choice there)."""
        if state == FINISHED:
            return b""
        node_of = self.schema.node
        configs: Iterable[Config] = _configs(state)
        out = bytearray()
        while len(out) < limit:
            live = np.zeros(256, dtype=bool)
            closure = self.closure(configs)
            for below, number, s in closure:
                dfa = node_of(number).dfa
                if below is None and dfa.accepting[s]:
                    return bytes(out)
                live |= dfa.transitions[s] >= 0
            byte = single_byte(live)
            if byte is None:
                break
            out.append(byte)
            configs = self.advance(frozenset(closure), bytes((byte,)))
        return bytes(out)

    def mask(self, state: Hashable) -> TokenMask:
        """The allowed tokens in ``state`` (computed on first use, then cached)."""
        if state == FINISHED:
            raise ConstraintViolationError("generation continued after an end-of-generation token")
        with self._lock:
            self._forget_if_cut()
            key = self._keys.get(state)
            if key is None:
                key = self._mask_key(_configs(state))
                self._keys.put(state, key)
            return self._masks.get_or_make(key, lambda: self._compute_mask(key))

    def leaving_tokens(self, state: frozenset, numbers: Iterable[int]) -> np.ndarray:
        """The tokens of ``state``'s mask that return from one of the nodes ``numbers`` before
        their last byte (a superset: some may not be allowed at all)."""
        wanted = set(numbers)
        found: list[np.ndarray] = []
        with self._lock:
            for below, number, s in self.closure(state):
                if number not in wanted:
                    continue
                _, crossings = self._analysis(self.schema.node(number), s)
                for trie, nodes, states, _ in crossings:
                    self._cross(trie, below, number, nodes, states, found)
        return np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int32)

    def _mask_key(self, state: frozenset) -> frozenset:
        """``state`` with each configuration inside a run of a counted string moved to the
        layer that reads every token alike (:class:`~outlines_gguf.json_schema.runs.RunShape`,
        :class:`~outlines_gguf.json_schema.runs.LayerLayout` for a pattern's): the same mask,
        computed once for all the character counts far from the bounds."""
        node_of = self.schema.node
        if all(node_of(number).run is None and node_of(number).layers is None for _, number, _ in state):
            return state
        key = set()
        for below, number, s in state:
            node = node_of(number)
            if node.run is not None:
                s = node.run.representative(s, self._horizon)
            elif node.layers is not None:
                reps = self._layer_reps.get(number)
                if reps is None:
                    reps = node.layers.representatives(self._horizon, node.dfa.n_states)
                    self._layer_reps[number] = reps
                s = int(reps[s])
            key.add((below, number, s))
        return frozenset(key)

    # -- masks --------------------------------------------------------------------------------

    def _compute_mask(self, state: frozenset) -> TokenMask:
        vocab = self.vocabulary
        configs = self.closure(state)
        node_of = self.schema.node
        final = any(below is None and bool(node_of(n).dfa.accepting[s]) for below, n, s in configs)
        inside: list[TokenMask] = []
        crossing: list[np.ndarray] = []
        for config in configs:
            below, number, s = config
            node = node_of(number)
            pure, crossings = self._analysis(node, s)
            if pure is not None:
                inside.append(pure)
            for trie, nodes, states, keep in crossings:
                found: list[np.ndarray] = []
                self._cross(trie, below, number, nodes, states, found)
                if keep is not None and found:
                    found = [keep(np.concatenate(found))]
                crossing.extend(found)
        extra = np.concatenate(crossing) if crossing else np.empty(0, dtype=np.int32)
        if len(inside) == 1 and extra.size == 0 and inside[0].eog_allowed == final:
            return inside[0]
        if len(inside) == 1:
            return inside[0].extended(extra, vocab.eog_array, final, vocab.size)
        kept = [part.kept_ids for part in inside]
        if all(ids is not None for ids in kept):  # (few tokens each: no pass over the vocabulary)
            ids = np.concatenate([*kept, extra])
            if not final:
                ids = ids[~isin_few(ids, vocab.eog_array)]
            else:
                ids = np.concatenate([ids, vocab.eog_array])
            if 0 < ids.size and ids.size * 2 <= vocab.size:
                return TokenMask.allowing(ids, vocab.size, final)
        allowed = np.zeros(vocab.size, dtype=bool)
        for part in inside:
            part.union_into(allowed)
        allowed[extra] = True
        allowed[vocab.eog_array] = final
        if not final and not allowed.any():
            raise ConstraintViolationError(
                "no token of this vocabulary can continue the JSON value here (the vocabulary lacks "
                "the bytes the schema needs)"
            )
        return TokenMask(allowed, final)

    def _analysis(self, node: Node, state: int) -> tuple[TokenMask | None, list]:
        """What does not depend on the stack, for (node, state): the tokens that stay inside the
        node, and where tokens reach a call or a return. Cached on the node."""
        cached = node.crossings.get(state)
        if cached is not None:
            return cached
        quick = None
        if node.run is not None:
            quick = self._run_body_analysis(node, state)
        elif node.layers is None:
            quick = self._string_body_analysis(node, state)
            if quick is None:
                quick = self._sparse_analysis(node, state)
        if quick is not None:
            node.crossings[state] = quick
            return quick
        guide = node.guide
        if guide is None:
            guide = node.guide = RegexGuide(node.dfa, self.vocabulary)
            if node.run is not None:
                guide._plain_steps = _run_plain_steps(node.run)
            elif node.cut_from is not None:  # a rest node: its template's per-state tables
                template, rows = node.cut_from
                if template.guide is None:
                    template.guide = RegexGuide(template.dfa, self.vocabulary)
                guide.share_steps(template.guide, rows)
        vocab = self.vocabulary
        text = vocab.text_tokens
        crossings: list = []
        step = guide._plain_step(state)
        loop = guide._plain_loop_target(state) if step is not None else None
        # plain-text tokens may reach a call or a return: a walk of the whole trie, unless they
        # only go on into the next run of a counted string (``onward``: which ones)
        crossed = loop is None and node.plain_reach[state] <= self._horizon
        onward = self._into_next_run(node, state) if crossed else None
        if crossed and onward is None:
            # one walk of the whole trie gives both (structural states: it dies after a byte
            # or two), where a regex-guide mask and a crossing walk would walk it twice
            flat = np.ascontiguousarray(node.dfa.transitions).reshape(-1)
            trie = vocab.trie
            roots = np.arange(trie.root_children)
            states = flat[state * 256 + trie.node_byte[roots].astype(np.int64)].astype(np.int64)
            alive = states >= 0
            whole_walk = _walk(trie, flat, node.boundary, roots[alive], states[alive], True, guide._loops)
            whole = self._whole_trie_analysis(node, state, whole_walk)
            node.crossings[state] = whole
            return whole
        layered = self._layered_inside(node, state)  # (None: not a layered pattern's content)
        # a string body: the walks below find the tokens that stay inside too, so the regex
        # guide's mask is built from them rather than by walking the same tries again
        merged = layered is None and loop is not None and step is not None
        # plain text counted, the rest walked (before a string's opening quote, inside an enum's
        # or a format's text): the walk of the other tokens below finds the rest's part too
        counted = None
        if layered is None and not merged and onward is None and step is not None:
            counted = guide._plain_split(state)
        if layered is None and not merged and onward is None and counted is None:
            # (an unanchored pattern part way through: every plain-text token stays, one walk
            # of the rest)
            counted = guide._any_plain_split(state)
        inside = None
        staying: list[np.ndarray] = []
        if layered is None and not merged and counted is None:
            try:
                inside = guide.mask(state)
            except ConstraintViolationError:
                pass  # only a call or a return continues from here
        if onward is not None and onward.size:
            if inside is None:
                inside = TokenMask.allowing(onward, vocab.size, False)
            else:
                inside = inside.extended(onward, vocab.eog_array, inside.eog_allowed, vocab.size)
        found = crossings
        walks: list[tuple[TokenTrie, int, np.ndarray | None]]
        if loop is not None and step is not None:
            # a plain-text prefix leads to ``loop`` and stays there (a string body): only the
            # tails can cross; tokens that start with an exception are walked whole instead
            exceptions = step[1]
            walks = [(text.rest_bare, state, None), (text.rest_tails, loop, exceptions)]
            if exceptions.size:
                walks.append((vocab.trie, state, exceptions))
        else:
            walks = [(text.rest, state, None)]  # plain text cannot reach a call or a return
        flat = np.ascontiguousarray(node.dfa.transitions).reshape(-1)
        for trie, start, skipped in walks:
            roots = np.arange(trie.root_children)
            if skipped is not None and trie is vocab.trie:
                roots = roots[isin_few(trie.node_byte[: trie.root_children], skipped)]
            states = flat[start * 256 + trie.node_byte[roots].astype(np.int64)].astype(np.int64)
            alive = states >= 0
            loops = guide._loops if trie is vocab.trie else Loops(guide._loops.bits)
            collect = layered is not None or merged or counted is not None
            ending, hit_nodes, hit_states = _walk(
                trie, flat, node.boundary, roots[alive], states[alive], collect, loops
            )
            if layered is not None:
                layered.append(ending)  # (tokens with a quote, an escape: the closing quote last)
            elif counted is not None:
                staying.append(ending)
            elif merged:
                if trie is text.rest_tails and skipped is not None and skipped.size:
                    ending = ending[~isin_few(text.first_byte[ending], skipped)]  # (walked whole)
                staying.append(ending)
            if hit_nodes.size:
                keep = None
                if trie is text.rest_tails and skipped is not None and skipped.size > 0:
                    keep = _first_byte_not_in(text.first_byte, skipped)
                found.append((trie, hit_nodes, hit_states, keep))
        if layered is not None:
            ids = np.concatenate(layered)
            inside = TokenMask.allowing(ids, vocab.size, False) if ids.size else None
        elif counted is not None:
            exceptions = counted[1]
            if exceptions.size:  # plain tokens whose first character goes elsewhere: walked
                staying.append(vocab.trie.walk(node.dfa.transitions, state, exceptions, guide._loops))
            try:
                inside = guide.assemble_mask(state, counted, np.concatenate(staying))
            except ConstraintViolationError:
                pass  # only a call or a return continues from here
        elif merged and step is not None:
            exceptions = step[1]
            partial = text.rest_partial  # (tails that start a character: alive without a walk)
            if exceptions.size:
                partial = partial[~isin_few(text.first_byte[partial], exceptions)]
            try:
                walked = np.concatenate([*staying, partial])
                inside = guide.assemble_mask(state, (float("inf"), exceptions), walked)
            except ConstraintViolationError:
                pass  # only a call or a return continues from here
        node.crossings[state] = (inside, found)
        return inside, found

    def _string_body_analysis(self, node: Node, state: int) -> tuple[TokenMask | None, list] | None:
        """``_analysis`` of the start of a free string's content (no pattern, format or maximum
        length): the tokens that stay inside are the vocabulary's, found once
        (:mod:`~outlines_gguf.json_schema.string_body`); only the tails of the tokens that close
        the string are walked, from the state after the quote. None for any other state."""
        found = free_string_at(node.dfa.transitions, node.dfa.accepting, node.boundary, state)
        if found is None:
            return None
        required, closed, spelling = found
        return self._free_string(node, required, closed, spelling=spelling)

    def _run_body_analysis(self, node: Node, state: int) -> tuple[TokenMask | None, list] | None:
        """``_analysis`` of a run of a counted string between two characters: the state reads
        every token as the start of a free string's content with the characters still needed
        before the closing quote (a run's layers are the same character automaton, counted;
        the closing quote leads to its last state), and, within a token's length of a last run's
        end, with the characters of room left. None for any other state of a run (inside a
        character, or near the end of a run that a next run follows)."""
        run = node.run
        assert run is not None
        if state >= run.n_layered:
            return None
        layer, local = divmod(state, run.width)
        room = self._horizon + 1 if run.loops else run.top - layer
        required = max(run.low - layer, 0)
        closed = node.dfa.n_states - 1  # (``runs.string_run_table``: the last state, accepting)
        if local != 0 or required > MAX_REQUIRED or not node.dfa.accepting[closed]:
            return None
        if room > self._horizon:
            return self._free_string(node, required, closed)
        if run.more:
            return None  # (a token may go on into the next run: the general way)
        return self._free_string(node, required, closed, room)

    def _free_string(
        self, node: Node, required: int, closed: int, room: int | None = None, spelling: str = "value"
    ) -> tuple[TokenMask | None, list]:
        """The analysis of a state reading as a free string's content (its characters spelled
        as ``spelling`` says) with ``required`` characters still needed, whose closing quote
        leads to ``closed``; ``room``: at most that many characters more (None: more than any
        token has)."""
        vocab = self.vocabulary
        body = string_body_tokens(vocab, spelling)
        flat = np.ascontiguousarray(node.dfa.transitions).reshape(-1)
        trie = body.closing
        roots = np.arange(trie.root_children, dtype=np.int64)  # (the quote, unless no token closes)
        tokens, hit_nodes, hit_states = _walk(
            trie, flat, node.boundary, roots, np.full(roots.size, closed, dtype=np.int64), True
        )
        keep = None if required == 0 and room is None else _closing_chars(body.closing_chars, required, room)
        if keep is not None:
            tokens = keep(tokens)
        crossings = [(trie, hit_nodes, hit_states, keep)] if hit_nodes.size else []
        forbidden = body.forbidden  # (dead, closing, special: none of them staying)
        if room is not None:  # the staying tokens that need more room than there is
            fits = int(np.searchsorted(body.staying_room, room, side="right"))
            if fits * 2 <= vocab.size:  # (a few fit: the mask holds them)
                ids = np.concatenate([body.staying_by_room[:fits], tokens])
                ids = ids[~isin_few(ids, vocab.eog_array)]
                return (TokenMask.allowing(ids, vocab.size, False) if ids.size else None), crossings
            forbidden = np.sort(np.concatenate([forbidden, body.staying_by_room[fits:]]))
        if tokens.size:  # (closing tokens, each once: all of them among the forbidden ids)
            forbidden = np.delete(forbidden, np.searchsorted(forbidden, tokens))
        return TokenMask.forbidding(forbidden, vocab.size, False, ordered=True), crossings

    def _sparse_analysis(self, node: Node, state: int) -> tuple[TokenMask | None, list] | None:
        """``_analysis`` of a state that reads one or two bytes, into states that read few (inside
        a key, a keyword, a literal, between them): one walk of the whole trie, node by node,
        looking up only the children those bytes lead to, where the general ways pay a numpy
        pass over the trie's first level and the plain-text steps of the whole node. None if
        the state is not such a one, or the walk turns out wide (then taken the general way)."""
        dfa = node.dfa
        reads = dfa.live_bytes(state)
        if not reads or len(reads) > _SPARSE_READS:
            return None
        flat = np.ascontiguousarray(dfa.transitions).reshape(-1)
        base = state * 256
        targets = [int(flat[base + byte]) for byte in reads]
        if any(len(dfa.live_bytes(t)) > _SPARSE_NEXT for t in targets):
            return None  # (before a string or a number: wide at once)
        vocab = self.vocabulary
        trie = vocab.trie
        labels = trie._lists[0]
        roots, states = [], []
        for byte, target in zip(reads, targets, strict=True):
            root = bisect_left(labels, byte, 0, trie.root_children)
            if root < trie.root_children and labels[root] == byte:
                roots.append(root)
                states.append(target)
        walked = _walk_narrow(trie, flat, node.boundary, roots, states, True, dfa.live_bytes, _SPARSE_BUDGET)
        return None if walked is None else self._whole_trie_analysis(node, state, walked)

    def _whole_trie_analysis(
        self, node: Node, state: int, walked: tuple[np.ndarray, np.ndarray, np.ndarray]
    ) -> tuple[TokenMask | None, list]:
        """``_analysis`` from one walk of the vocabulary's whole trie from ``state`` (the tokens
        alive, the trie nodes entered in a boundary state and their states)."""
        vocab = self.vocabulary
        tokens, hit_nodes, hit_states = walked
        crossings: list = [(vocab.trie, hit_nodes, hit_states, None)] if hit_nodes.size else []
        accepting = bool(node.dfa.accepting[state])
        inside: TokenMask | None = None
        if tokens.size or accepting:
            ids = np.concatenate([tokens, vocab.eog_array]) if accepting else tokens
            inside = TokenMask.allowing(ids, vocab.size, accepting)
        return inside, crossings

    def _layered_inside(self, node: Node, state: int) -> list[np.ndarray] | None:
        """For a state inside a string counted in layers over a pattern, the tokens that read
        on inside its content, as a list to add to; None for any other state.

        A token read from (layer, pair) completes some characters and ends in some pair,
        neither of which depends on the layer; it fits where that layer and pair are alive
        (a state is kept only if some text from it is accepted, so every state on the way is
        then alive too). So the trie is walked once per pair (:func:`_pair_walk`), and each
        layer filters that walk: where the regex guide walked the whole trie again for every
        character, as every character moves to a new layer."""
        layers = node.layers
        if layers is None:
            return None
        body = layers.body
        inner = state - layers.offset
        if not 0 <= inner < body.n_states:
            return None
        layer, pair = divmod(int(body.origin[inner]), body.width)
        tokens, counts, ends = self._pair_walks.get_or_make(
            (node.number, pair), lambda: _pair_walk(self.vocabulary.trie, body, pair)
        )
        alive = self._layer_alive.get(node.number)
        if alive is None:
            alive = self._layer_alive[node.number] = body.alive()
        reach = layer + counts
        if body.loops:  # (the last layer goes on: more characters stay in it)
            reach = np.minimum(reach, body.n_layers - 1)
        fits = reach < body.n_layers
        fits[fits] = alive[reach[fits], ends[fits]]
        return [tokens[fits]]

    def _into_next_run(self, node: Node, state: int) -> np.ndarray | None:
        """The plain-text tokens too long for the rest of a run that the next run takes on, or
        None where that is not the whole story (then the trie is walked).

        Between characters of a run, a plain-text token of ``c`` characters fits in the
        run if ``c`` is at most the characters left (the regex guide's count); beyond
        that it reaches the tail call to the next run, which takes any plain text up to its
        own end. Neither depends on the stack, so the walk of the whole trie that crossing
        tokens otherwise need is a slice of the tokens sorted by count.
        """
        run = node.run
        if run is None or not run.more or state >= run.n_layered:
            return None
        layer, local = divmod(state, run.width)
        step = node.guide._plain_step(state) if node.guide is not None else None
        if local != 0 or step is None or step[1].size:
            return None  # inside a character or an escape: walked
        full = run.top * run.width
        ((callee, _),) = node.calls[full]
        following = self.schema.node(callee).run
        if following is None:
            return None
        room = run.top - layer
        further = self._horizon + 1 if following.more or following.loops else following.top
        text = self.vocabulary.text_tokens
        return text.plain_ids[text.count_up_to(room) : text.count_up_to(room + further)]

    def _cross(
        self,
        trie: TokenTrie,
        below: Config | None,
        number: int,
        nodes: np.ndarray,
        states: np.ndarray,
        out: list[np.ndarray],
    ) -> None:
        """Go on below trie ``nodes`` (reached in ``states`` of node ``number``) through every
        call or return the stack allows there; append the tokens found to ``out``."""
        if states.size == 1 or (states == states[0]).all():
            groups = [(int(states[0]), nodes)]
        else:  # the trie nodes of each state, in their order (one sort, not a pass per state)
            order = np.argsort(states, kind="stable")
            ordered = states[order]
            cuts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
            groups = [
                (int(ordered[a]), nodes[order[a:b]])
                for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), states.size], strict=True)
            ]
        for s, sel in groups:
            here = (below, number, s)
            for config in self.closure([here]):
                if config == here:
                    continue  # reading on inside the same node: the caller's walk does that
                c_below, c_number, c_state = config
                node = self.schema.node(c_number)
                key = (id(trie), c_number, c_state, sel.tobytes())
                walked = self._walks.get(key)
                if walked is None:
                    flat = np.ascontiguousarray(node.dfa.transitions).reshape(-1)
                    counts = trie.n_children[sel]
                    children = concat_ranges(trie.first_child[sel], counts)
                    child_states = flat[c_state * 256 + trie.node_byte[children].astype(np.int64)]
                    alive = child_states >= 0
                    walked = _walk(
                        trie, flat, node.boundary, children[alive], child_states[alive].astype(np.int64), True
                    )
                    self._walks.put(key, walked)
                tokens, hit_nodes, hit_states = walked
                if tokens.size:
                    out.append(tokens)
                if hit_nodes.size:
                    self._cross(trie, c_below, c_number, hit_nodes, hit_states, out)


def _first_byte_not_in(first_byte: np.ndarray, skipped: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A crossing's filter: the tokens whose first byte is not one of ``skipped`` (tails of
    tokens whose first character is an exception are walked whole instead)."""
    return lambda tokens: tokens[~isin_few(first_byte[tokens], skipped)]


def _closing_chars(chars: np.ndarray, least: int, most: int | None) -> Callable[[np.ndarray], np.ndarray]:
    """A filter of closing tokens: those with ``least`` to ``most`` (None: any number of)
    characters before their closing quote (``chars`` per token id)."""
    if most is None:
        return lambda tokens: tokens[chars[tokens] >= least]
    return lambda tokens: tokens[(chars[tokens] >= least) & (chars[tokens] <= most)]


def _run_plain_steps(run: RunShape) -> dict[int, PlainStep]:
    """The regex guide's plain-text steps between the characters of a run, known from its
    layout: a character leads to the next layer (the last one loops, or ends the run), with
    no exceptions. (Worked out state by state, they are most of a long string's first masks.)"""
    none = np.empty(0, dtype=np.uint8)
    width, top = run.width, run.top
    steps: dict[int, PlainStep] = {
        layer * width: ((layer + 1) * width, none) for layer in range(top)
    }
    steps[top * width] = (top * width if run.loops else -1, none)
    return steps


def _walk(
    trie: TokenTrie,
    flat: np.ndarray,
    boundary: np.ndarray,
    nodes: np.ndarray,
    states: np.ndarray,
    collect: bool,
    loops: Loops | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk the trie below entered ``nodes`` (in ``states``) by a 256-column table.

    Returns (the tokens ending on the way when ``collect``, the nodes entered in a boundary
    state, their states). ``loops``: subtrees that stay in a state that is not a boundary are
    taken whole (see :meth:`TokenTrie.walk`).
    """
    found: list[np.ndarray] = []
    hit_nodes: list[np.ndarray] = []
    hit_states: list[np.ndarray] = []
    while nodes.size:
        if nodes.size <= _NARROW and int(trie._subtree_size[nodes].sum()) <= _NARROW_NODES:
            # a thin frontier: node by node in Python beats a dozen numpy calls per level
            narrow = _walk_narrow(trie, flat, boundary, nodes.tolist(), states.tolist(), collect)
            assert narrow is not None  # (no budget)
            tokens, more_nodes, more_states = narrow
            found.append(tokens)
            hit_nodes.append(more_nodes)
            hit_states.append(more_states)
            break
        hits = boundary[states]
        if hits.any():
            hit_nodes.append(nodes[hits])
            hit_states.append(states[hits])
        if loops is not None:
            nodes, states = trie.take_whole(nodes, states, loops, found if collect else None, hits)
            if not nodes.size:
                break
        sink: list[np.ndarray] = found if collect else []
        children, parents = trie.step(nodes, states, sink)
        if children is None:
            break
        nxt = flat[parents * 256 + trie.node_byte[children].astype(np.int64)]
        alive = nxt >= 0
        nodes, states = children[alive], nxt[alive].astype(np.int64)
    return (
        np.concatenate(found) if found else np.empty(0, dtype=np.int32),
        np.concatenate(hit_nodes) if hit_nodes else np.empty(0, dtype=np.int64),
        np.concatenate(hit_states) if hit_states else np.empty(0, dtype=np.int64),
    )


_NARROW = 64
_NARROW_NODES = 1024


_SPARSE_READS = 2
"""A state reading at most this many bytes (into states that read at most ``_SPARSE_NEXT``) is
analysed by one sparse walk (``PushdownGuide._sparse_analysis``)."""
_SPARSE_NEXT = 4
_SPARSE_BUDGET = 512
"""Children a sparse walk looks at before it gives up (the general way then takes the state)."""


def _walk_narrow(
    trie: TokenTrie,
    flat: np.ndarray,
    boundary: np.ndarray,
    nodes: list[int],
    states: list[int],
    collect: bool,
    reads: Callable[[int], list[int]] | None = None,
    budget: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``_walk`` depth first, one node at a time, below entered byte-trie ``nodes`` (in
    ``states``): a frontier with a small subtree, or a sparse walk (``_sparse_analysis``).

    ``reads`` (the bytes a state reads, ascending): a node with more children than that has
    them looked up by those bytes (children are in byte order) instead of each read against the
    table. ``budget``: None once more children than that were looked at (a wide walk)."""
    labels, first_child, n_children, term_start, term_count, term_tokens = trie._lists
    table = flat.data  # a memoryview
    is_boundary = np.ascontiguousarray(boundary).data
    out: list[int] = []
    hit_n: list[int] = []
    hit_s: list[int] = []
    stack = list(zip(nodes, states, strict=True))
    spent = 0
    while stack:
        node, state = stack.pop()
        if is_boundary[state]:
            hit_n.append(node)
            hit_s.append(state)
        if collect and term_count[node]:
            start = term_start[node]
            out.extend(term_tokens[start : start + term_count[node]])
        first = first_child[node]
        count = n_children[node]
        base = state * 256
        live = reads(state) if reads is not None and count > 8 else None
        if live is not None and len(live) < count:
            spent += len(live)
            end = first + count
            for byte in live:
                child = bisect_left(labels, byte, first, end)
                if child < end and labels[child] == byte:
                    stack.append((child, table[base + byte]))
        else:
            spent += count
            for child in range(first, first + count):
                nxt = table[base + labels[child]]
                if nxt >= 0:
                    stack.append((child, nxt))
        if budget is not None and spent > budget:
            return None
    return (
        np.asarray(out, dtype=np.int32),
        np.asarray(hit_n, dtype=np.int64),
        np.asarray(hit_s, dtype=np.int64),
    )


def _pair_walk(trie: TokenTrie, body: LayeredDFA, pair: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tokens that read on from ``pair`` of a layered string content (whatever the layer),
    with the characters each completes and the pair it ends in; walks reaching more
    characters than the content has layers are cut."""
    next_pair, completes = body.pair_next, body.pair_completes
    limit = body.n_layers  # (characters beyond the layers: cut, or the last layer where it loops)
    nodes = np.arange(trie.root_children)
    first = trie.node_byte[nodes].astype(np.int64)
    pairs = next_pair[pair, first]
    counts = completes[pair, first].astype(np.int64)
    keep = pairs >= 0
    nodes, pairs, counts = nodes[keep], pairs[keep], counts[keep]
    found: list[np.ndarray] = []
    found_counts: list[np.ndarray] = []
    found_ends: list[np.ndarray] = []
    while nodes.size:
        terms = trie.term_count[nodes]
        ends = terms > 0
        if ends.any():
            found.append(trie.term_tokens[concat_ranges(trie.term_start[nodes[ends]], terms[ends])])
            found_counts.append(np.repeat(counts[ends], terms[ends]))
            found_ends.append(np.repeat(pairs[ends], terms[ends]))
        below = trie.n_children[nodes]
        inner = below > 0
        if not inner.any():
            break
        below = below[inner]
        children = concat_ranges(trie.first_child[nodes[inner]], below)
        parent_pairs = np.repeat(pairs[inner], below)
        parent_counts = np.repeat(counts[inner], below)
        byte = trie.node_byte[children].astype(np.int64)
        pairs = next_pair[parent_pairs, byte]
        counts = parent_counts + completes[parent_pairs, byte]
        if body.loops:
            counts = np.minimum(counts, limit - 1)
        keep = (pairs >= 0) & (counts < limit)
        nodes, pairs, counts = children[keep], pairs[keep], counts[keep]
    if not found:
        empty = np.empty(0, dtype=np.int32)
        return empty, empty, empty
    # (int32 throughout: counts are below the layers, ends below the pairs)
    return (
        np.concatenate(found).astype(np.int32),
        np.concatenate(found_counts).astype(np.int32),
        np.concatenate(found_ends).astype(np.int32),
    )
