"""JSON string automata with counted characters, built directly as layers.

``minLength``/``maxLength`` count characters, and a JSON string writes a
character as one to four UTF-8 bytes or as an escape (``\\n``, ``\\u00e9``, a
surrogate pair). Written as a regex, ``.{0,256}`` is 256 copies of the
one-character automaton that subset construction then determinizes, about a
quarter of a second in Python; intersected with a pattern it is a product of
thousands of states (an email format with ``maxLength: 255`` ran into the
compile budget). Here the automaton is built in one step with numpy: one
*layer* per count of characters read, each a copy of the one-character
automaton (times the pattern automaton, for a pattern), and a completed
character moves to the next layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from outlines_gguf.automata.dfa import ByteDFA, minimize, reaching
from outlines_gguf.automata.nfa import Fragment
from outlines_gguf.automata.regex import NFABuilder, regex_to_dfa
from outlines_gguf.errors import ConstraintTooComplexError
from outlines_gguf.json_schema.lexical import any_string_char, foreign_escapes, plain_key_char

MAX_LAYERED_ENTRIES = 4_000_000
"""Table entries (states x 256, 16 MB) a layered automaton may have before pruning. A pattern
automaton of 200 states fits about 78 layers: with ``fit``, ``maxLength`` is capped there (a valid
subset, as ``MAX_LENGTH_CAP`` caps plain strings)."""


def _one_character(label: str, make: Callable[[NFABuilder], Fragment]) -> tuple[np.ndarray, int]:
    """The table of a one-character automaton (start 0) and its accepting state, which has no
    way out: a character is complete there, so layers and tries continue from it."""
    helper = NFABuilder(label)
    char = helper.build(make(helper))
    done = np.flatnonzero(char.accepting)
    if done.size != 1 or (char.transitions[done[0]] >= 0).any() or char.accepting[0]:
        raise AssertionError(f"the {label} automaton has an unexpected shape")
    return char.transitions, int(done[0])


@lru_cache(maxsize=1)
def _char_dfa() -> tuple[np.ndarray, int]:
    """One JSON string character (raw or escaped) and its final state."""
    return _one_character("string character", any_string_char)


def layered_body(
    min_len: int, max_len: int | None, pattern: ByteDFA | None = None, fit: bool = False
) -> ByteDFA | None:
    """The content of a JSON string (between its quotes) with ``min_len`` to ``max_len``
    (None: any number of) characters that ``pattern`` (an automaton over the same escaped
    bytes, or None) accepts.

    States are (characters read, pattern state, state inside the current character); only
    the pairs (pattern state, character state) reachable together are laid out, and the last
    layer loops when there is no maximum. None if no string fits. ``fit``: lower ``max_len``
    to what :data:`MAX_LAYERED_ENTRIES` allows instead of raising ``ConstraintTooComplexError``.
    """
    if max_len is not None and min_len > max_len:
        return None  # (an unreachable acceptance would pass for a string that fits)
    if pattern is None:
        order, nxt, completes = _plain_layout()
        paccept = np.ones(1, dtype=bool)
    else:
        order, nxt, completes = _pair_layout(pattern.transitions)
        paccept = pattern.accepting
    m = len(order)
    open_end = max_len is None
    layers = (min_len if max_len is None else max_len) + 1
    if layers * m * 256 > MAX_LAYERED_ENTRIES:
        room = MAX_LAYERED_ENTRIES // (m * 256)
        if not fit or open_end or room <= min_len:
            bound = "or more" if max_len is None else f"to {max_len}"
            what = f"a string of {min_len} {bound} characters" + (" matching its pattern" if pattern else "")
            raise ConstraintTooComplexError(
                f"{what} needs more than {MAX_LAYERED_ENTRIES:,} table entries (MAX_LAYERED_ENTRIES)"
            )
        layers = room

    at_boundary = np.array([s == 0 and bool(paccept[p]) for p, s in order])
    if pattern is None:
        table, accepting = _layered_table(nxt, completes, at_boundary, layers, min_len, open_end)
        return _trim_last_layer(table, accepting, m, open_end)
    alive = _layers_alive(nxt, completes, at_boundary, layers, min_len, open_end)
    if not alive[0, 0]:
        return None
    table, accepting, origin = _live_layers_table(nxt, completes, at_boundary, alive, min_len, open_end)
    layout = (origin, m, layers, min_len, nxt, completes, open_end)
    return LayeredDFA(np.ascontiguousarray(table), accepting, *layout)


def _layered_table(
    nxt: np.ndarray, completes: np.ndarray, at_boundary: np.ndarray, layers: int, min_len: int, open_end: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The whole table of a layered body (dead states included) and its accepting states."""
    m = nxt.shape[0]
    # layer l's pairs are states l*m..l*m+m-1; a completed character moves on a layer
    step = np.where(completes, nxt + m, nxt).astype(np.int32)
    cube = np.empty((layers, m, 256), dtype=np.int32)
    np.add(step[None], (np.arange(layers, dtype=np.int32) * m)[:, None, None], out=cube)
    np.copyto(cube, -1, where=(nxt < 0)[None])
    last = cube[-1]
    # max_len characters read: no more; no maximum: the last layer (min_len read) goes on
    last[completes] = ((layers - 1) * m + nxt[completes]) if open_end else -1
    accepting = np.zeros(layers * m, dtype=bool)
    accepting[min_len * m :] = np.tile(at_boundary, layers - min_len)
    return cube.reshape(layers * m, 256), accepting


def _layers_alive(
    nxt: np.ndarray, completes: np.ndarray, at_boundary: np.ndarray, layers: int, min_len: int, open_end: bool
) -> np.ndarray:
    """(layer, pair) -> some text from that state is accepted: ``_prune_dead`` of a layered
    body, layer by layer over the small graph of pairs instead of over the whole table.

    A byte leads from (l, p) to (l, q) or, completing a character, to (l + 1, q) (the last
    layer: to itself if the body loops, nowhere else). So the last layer's live pairs are those
    that reach a boundary pair within it, and each layer below's are those that reach its own
    boundary pairs (from ``min_len`` on) or a completing byte into a live pair of the layer above.
    A layer whose layer above repeats shares its search (most of them, far from the bounds)."""
    live_bytes = nxt >= 0
    within = np.where(completes, -1, nxt)  # (the bytes that stay in the layer)
    moving = live_bytes & completes  # (the bytes that complete a character: the layer above)
    target = np.maximum(nxt, 0)
    alive = np.zeros((layers, nxt.shape[0]), dtype=bool)
    none = np.zeros(nxt.shape[0], dtype=bool)
    alive[-1] = reaching(nxt if open_end else within, at_boundary)  # (the last layer counts min_len)
    found_below: dict[tuple[bool, bytes], np.ndarray] = {}  # by (counted, the layer above)
    for layer in range(layers - 2, -1, -1):
        above = alive[layer + 1]
        key = (layer >= min_len, above.tobytes())
        found = found_below.get(key)
        if found is None:
            seeds = (at_boundary if layer >= min_len else none) | (moving & above[target]).any(axis=1)
            found = found_below[key] = reaching(within, seeds)
        alive[layer] = found
    return alive


def _live_layers_table(
    nxt: np.ndarray,
    completes: np.ndarray,
    at_boundary: np.ndarray,
    alive: np.ndarray,
    min_len: int,
    open_end: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The table of a layered body's live states (``alive``: (layer, pair)), numbered in
    order, its accepting states and each state's old number (``layer * width + pair``):
    what ``keep_states`` makes of the whole table, without building it. A layer's rows depend
    only on which pairs live in it and in the layer above, so each such kind of layer is laid
    out once and the others are that block moved to their own numbers."""
    layers, m = alive.shape
    counts = alive.sum(axis=1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.cumsum(alive, axis=1) - 1  # a live pair's number within its layer
    table = np.full((int(counts.sum()), 256), -1, dtype=np.int32)
    kinds: dict[tuple[bytes, bytes], np.ndarray] = {}
    for layer in range(layers):
        if not counts[layer]:
            continue
        last = layer == layers - 1
        here = alive[layer]
        up = here if last else alive[layer + 1]  # (the last layer: its own, where it loops)
        key = (here.tobytes(), b"last" if last else up.tobytes())
        block = kinds.get(key)
        if block is None:
            rows = np.flatnonzero(here)
            q, done = nxt[rows], completes[rows]
            target = np.maximum(q, 0)
            block = np.full(q.shape, -1, dtype=np.int32)
            stay = (q >= 0) & ~done & here[target]
            block[stay] = rank[layer][q[stay]]
            if not last or open_end:
                move = (q >= 0) & done & up[target]
                block[move] = (0 if last else counts[layer]) + rank[layer if last else layer + 1][q[move]]
            kinds[key] = block
        out = table[starts[layer] : starts[layer] + counts[layer]]
        np.add(block, np.int32(starts[layer]), out=out, where=block >= 0)
    layer_of, pair = np.nonzero(alive)
    accepting = at_boundary[pair] & (layer_of >= min_len)
    return table, accepting, layer_of * m + pair


@dataclass(frozen=True)
class LayeredDFA(ByteDFA):
    """A string body counted in layers over a pattern (``layered_body``), whose states keep
    their place: state ``s`` was ``origin[s] = layer * width + pair`` before dead states were
    dropped. Far from the bounds, layers that read every short text alike share their masks
    (:class:`~outlines_gguf.json_schema.runs.LayerLayout`)."""

    origin: np.ndarray
    width: int
    n_layers: int
    low: int
    pair_next: np.ndarray  # (width, 256): the pair after a byte (-1: none), whatever the layer
    pair_completes: np.ndarray  # (width, 256) bool: that byte ends a character (the next layer)
    loops: bool  # no maximum: the last layer goes on (a character completed there stays in it)

    def alive(self) -> np.ndarray:
        """(layer, pair) -> the state is kept (some text from it is accepted)."""
        alive = np.zeros(self.n_layers * self.width, dtype=bool)
        alive[self.origin] = True
        return alive.reshape(self.n_layers, self.width)


@lru_cache(maxsize=1)
def _plain_layout() -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """``_pair_layout`` without a pattern: the same for every plain counted string (the
    Python loop over bytes is most of building a short run's table)."""
    order, nxt, completes = _pair_layout(np.zeros((1, 256), dtype=np.int32))  # accepts everything
    nxt.setflags(write=False)
    completes.setflags(write=False)
    return order, nxt, completes


def _pair_layout(ptable: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """The reachable pairs (pattern state, state between or inside a character, never the
    character automaton's final one), numbered from (0, 0); each pair's successor by byte (-1:
    none) and whether that byte completes a character."""
    char, done = _char_dfa()
    index = {(0, 0): 0}
    order = [(0, 0)]
    nxt_rows: list[np.ndarray] = []
    done_rows: list[np.ndarray] = []
    i = 0
    while i < len(order):
        p, s = order[i]
        i += 1
        np_, ns = ptable[p], char[s]
        valid = (np_ >= 0) & (ns >= 0)
        completes = valid & (ns == done)
        target_s = np.where(completes, 0, ns)
        row = np.full(256, -1, dtype=np.int64)
        for b in np.flatnonzero(valid).tolist():
            key = (int(np_[b]), int(target_s[b]))
            j = index.get(key)
            if j is None:
                j = index[key] = len(order)
                order.append(key)
            row[b] = j
        nxt_rows.append(row)
        done_rows.append(completes)
    return order, np.stack(nxt_rows), np.stack(done_rows)


def _trim_last_layer(table: np.ndarray, accepting: np.ndarray, m: int, open_end: bool) -> ByteDFA:
    """``_prune_dead`` of a layered body without a pattern, in closed form: every state can
    finish its character and reach a boundary, except the inside-a-character states of a
    last layer that does not loop (the last ``m - 1`` states). A tenth of the time on the
    512-character runs of a long string (``runs.string_run_table``)."""
    if not open_end and m > 1:
        keep = table.shape[0] - (m - 1)
        table = table[:keep]
        tail = table[max(keep - 2 * m, 0) :]  # only the last two layers' states lead into the cut ones
        tail[tail >= keep] = -1
        accepting = accepting[:keep]
    return ByteDFA(np.ascontiguousarray(table), accepting)


def quoted(body: ByteDFA, null: bool = False) -> ByteDFA:
    """``"`` body ``"`` (and ``null`` too, if asked), as one automaton built directly.

    The body never holds an unescaped quote, so the closing quote cannot be confused with it.
    """
    n = body.n_states
    extra = 4 if null else 0
    table = np.empty((n + 2 + extra, 256), dtype=np.int32)
    table[:2] = -1
    table[2 + n :] = -1
    # 0: before the opening quote; 1: after the closing quote; body states from 2 (in place:
    # a counted body's table is megabytes, and a where() over it three passes and temporaries)
    inner = table[2 : 2 + n]
    np.add(body.transitions, 2, out=inner)
    inner[inner == 1] = -1  # (only a dead -1 becomes 1)
    table[0, ord('"')] = 2
    table[2 + np.flatnonzero(body.accepting), ord('"')] = 1
    if null:
        first = 2 + n
        table[0, ord("n")] = first
        table[first, ord("u")] = first + 1
        table[first + 1, ord("l")] = first + 2
        table[first + 2, ord("l")] = 1
    accepting = np.zeros(table.shape[0], dtype=bool)
    accepting[1] = True
    return ByteDFA(table, accepting)


def literal_trie_dfa(texts: list[bytes]) -> ByteDFA | None:
    """Exactly the byte strings ``texts`` (an enum's JSON texts), built as a trie over the bytes
    they use and minimized, instead of determinizing an alternation of thousands of literals."""
    used = sorted({b for text in texts for b in text})
    byte_class = np.zeros(256, dtype=np.intp)  # class 0: bytes no text uses (always dead)
    byte_class[used] = np.arange(1, len(used) + 1)
    children: list[dict[int, int]] = [{}]
    accept = [False]
    for text in texts:
        node = 0
        for b in text:
            nxt = children[node].get(b)
            if nxt is None:
                nxt = children[node][b] = len(children)
                children.append({})
                accept.append(False)
            node = nxt
        accept[node] = True
    table = np.full((len(children), len(used) + 1), -1, dtype=np.int32)
    for state, out in enumerate(children):
        for b, target in out.items():
            table[state, byte_class[b]] = target
    return minimize(table, np.array(accept, dtype=bool), byte_class)


@lru_cache(maxsize=1)
def _plain_char_dfa() -> tuple[np.ndarray, int]:
    """One plain character (UTF-8, no control character, quote or backslash) and its final
    state."""
    return _one_character("key character", plain_key_char)


def key_except_dfa(names: list[str]) -> ByteDFA:
    """A JSON object key, ``"`` to ``"``, that is none of ``names``: plain characters, and the
    escaped spellings of characters no name holds (``lexical.foreign_escapes``).

    Built directly: a trie of the names' bytes, where a byte that leaves the trie continues in
    a free key (one plain character at a time) and the closing quote is refused exactly at the
    ends of names. Linear in the names, where determinizing the same language from an NFA
    grows past the state limit for a few thousand names. The only accepting state (after the
    closing quote) has no way out, so another automaton can be glued there.
    """
    char, char_done = _plain_char_dfa()
    k = char.shape[0]
    # trie over the names' bytes; each node remembers where it is inside a character
    children: list[dict[int, int]] = [{}]
    inside = [0]  # the character automaton's state at each trie node (0: between characters)
    is_name = [False]
    for name in dict.fromkeys(names):
        node = 0
        for b in name.encode():
            nxt = children[node].get(b)
            if nxt is None:
                s = int(char[inside[node], b])
                if s < 0:
                    break  # the name cannot be written without escapes: nothing to exclude
                nxt = children[node][b] = len(children)
                children.append({})
                inside.append(0 if s == char_done else s)
                is_name.append(False)
            node = nxt
        else:
            is_name[node] = True
    n = len(children)
    # states: 0 start, 1 after the closing quote, 2.. trie nodes, then the free key's states,
    # then one after a backslash, and those inside an escape of a character no name holds (a
    # free key after it)
    trie0, free0 = 2, 2 + n
    escape = free0 + k
    table = np.full((escape + 1, 256), -1, dtype=np.int32)
    free = np.where(char >= 0, np.where(char == char_done, free0, free0 + char), -1)
    table[free0 : free0 + k] = free
    table[free0, ord('"')] = 1
    table[0, ord('"')] = trie0
    foreign = tuple(foreign_escapes(names))
    if foreign:  # (a trie of what follows the backslash, back to the free key at its ends)
        table[free0, ord("\\")] = escape
        rows = _escape_rows(foreign)
        placed = np.where(rows >= 0, rows + escape, np.where(rows == _BACK_TO_KEY, free0, -1))
        table[escape] = placed[0]
        table = np.concatenate([table, placed[1:].astype(np.int32)])
    inside_arr = np.asarray(inside)
    table[trie0 : trie0 + n] = table[free0 + inside_arr]  # leaving the trie: a free key
    for node, out in enumerate(children):
        row = table[trie0 + node]
        for b, child in out.items():
            row[b] = trie0 + child
        if inside[node] == 0 and not is_name[node]:
            row[ord('"')] = 1
        elif inside[node] == 0 and is_name[node]:
            row[ord('"')] = -1  # (the end of a name: free0's closing quote does not apply)
    accepting = np.zeros(table.shape[0], dtype=bool)
    accepting[1] = True
    return ByteDFA(table, accepting)


_BACK_TO_KEY = -2
"""In :func:`_escape_rows`: the escape is complete, the key goes on."""


@lru_cache(maxsize=64)
def _escape_rows(foreign: tuple[str, ...]) -> np.ndarray:
    """The trie of the escaped spellings ``foreign`` after their backslash, as table rows (row 0:
    just after the backslash; entries: a row, :data:`_BACK_TO_KEY` at a spelling's end, or -1),
    built once per set of spellings (a key automaton is built for every object with extras)."""
    rows = [np.full(256, -1, dtype=np.int64)]
    prefixes: dict[str, int] = {"": 0}
    for spelling in foreign:
        body = spelling[1:]
        for i, ch in enumerate(body):
            row = rows[prefixes[body[:i]]]
            if i == len(body) - 1:
                row[ord(ch)] = _BACK_TO_KEY
                continue
            target = prefixes.get(body[: i + 1])
            if target is None:
                target = prefixes[body[: i + 1]] = len(rows)
                rows.append(np.full(256, -1, dtype=np.int64))
            row[ord(ch)] = target
    out = np.stack(rows)
    out.flags.writeable = False
    return out


def glue(first: ByteDFA, then: ByteDFA) -> ByteDFA:
    """``first`` then ``then``, where ``first`` has one accepting state and no way out of it:
    that state becomes ``then``'s start."""
    final = np.flatnonzero(first.accepting)
    if final.size != 1 or (first.transitions[final[0]] >= 0).any():
        raise ValueError("glue needs one accepting state with no way out")
    n = first.n_states
    table = np.concatenate([first.transitions, np.full((then.n_states - 1, 256), -1, dtype=np.int32)])
    # then's state 0 -> final, then's state i > 0 -> n + i - 1
    remap = np.concatenate([[final[0]], n + np.arange(then.n_states - 1)]).astype(np.int32)
    moved = np.where(then.transitions >= 0, remap[np.maximum(then.transitions, 0)], -1)
    table[final[0]] = moved[0]
    table[n:] = moved[1:]
    accepting = np.zeros(table.shape[0], dtype=bool)
    accepting[remap[np.flatnonzero(then.accepting)]] = True
    return ByteDFA(table, accepting)


@lru_cache(maxsize=1)
def canonical_json_dfa() -> ByteDFA:
    """JSON texts spelled one way per value, token by token: whitespace outside strings only
    as ``json.dumps`` puts it (one space after each comma and colon), strings as
    ``json.dumps(..., ensure_ascii=False)`` writes them (every character as itself but the
    quote, the backslash and control characters, which take their short escape or ``\\u00xx``
    in lower case), numbers without exponent, leading zero, ``-0``, or trailing zero in a
    fraction (``1``, never ``1.0``: they are one value). Nesting is the schema's business:
    intersected with a value's automaton whose object members come in one order (the
    canonical compiler), its texts compare as values (``uniqueItems``)."""
    string = r'"(?:[^"\\\x00-\x1f]|\\["\\bfnrt]|\\u00(?:0[0-7bef]|1[0-9a-f]))*"'
    number = r"(?:-?(?:0\.[0-9]*[1-9]|[1-9][0-9]*(?:\.[0-9]*[1-9])?)|0)"
    # a number runs to the comma or bracket after it (so "1.50" is no "1.5" then "0")
    tokens = rf"[\[\]{{}}]|, |: |{string}|true|false|null|{number}(?:[\]}}]|, )"
    return regex_to_dfa(rf"(?:{tokens})*{number}?")
