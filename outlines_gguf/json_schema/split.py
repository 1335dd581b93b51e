"""A JSON Schema split into nodes: one small automaton per nested value, compiled on first use.

Every object or array value nested inside another (and every ``$ref``, combinator or free-form
value there) is its own **node**, compiled lazily by the JSON compiler into a small byte DFA in
which the nested value is a *call*: the marker byte ``0xFF`` and the callee's number
(:func:`~outlines_gguf.json_schema.keywords.call_marker`). :class:`SplitSchema` is the node
registry; it also decides which nodes are productive (see
:mod:`~outlines_gguf.json_schema.pushdown` for the guide that walks them).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from outlines_gguf.automata.budget import compile_budget
from outlines_gguf.automata.dfa import ByteDFA, reaching
from outlines_gguf.errors import ConstraintTooComplexError, EmptyLanguageError, OutlinesGGUFError, SchemaError
from outlines_gguf.guides.base import RegexGuide
from outlines_gguf.json_schema.algebra import of_types
from outlines_gguf.json_schema.compiler import _Compiler
from outlines_gguf.json_schema.keywords import (
    _MALFORMED,
    CALL_BYTE,
    CHUNK_KEY,
    DEFAULT_MAX_DEPTH,
    EXTRA_KEY,
    ITEMS_RUN_KEY,
    KNOWN_KEYWORDS,
    _is_int,
)
from outlines_gguf.json_schema.lexical import Whitespace
from outlines_gguf.json_schema.strings import glue, key_except_dfa, layered_body, literal_trie_dfa, quoted
from outlines_gguf.json_schema.validate import resolve_local

MAX_NODES = 1 << 24
"""Nodes one schema may split into (the call marker holds a node's number in three bytes)."""

SCAN_LIMIT = 100_000
"""Subschemas the up-front keyword check visits (a schema bigger than that is checked lazily)."""

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

PLAIN_NEVER = np.iinfo(np.int32).max
"""``Node.plain_reach`` of a state from which plain text never reaches a call or a return."""

Config = tuple  # (below: Config | None, node: int, state: int)


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


@dataclass
class Node:
    """One compiled piece of a split schema."""

    number: int
    path: str
    dfa: ByteDFA  # the call column removed: a walk over text never takes a call
    calls: dict[int, tuple[tuple[int, int], ...]]  # state -> ((callee, return state), ...)
    boundary: np.ndarray  # bool per state: a call leaves it, or it accepts (a return may)
    free_accept: bool  # acceptance is reachable without any call
    plain_reach: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    """Per state: fewer bytes of plain-ish text (no controls, ``"`` or ``\\``) than this never
    reach a call or a return (PLAIN_NEVER: none do), so a shorter plain-text token never
    crosses there."""
    run: RunShape | None = None  # a run of a counted string: masks shared between layers
    guide: RegexGuide | None = None
    crossings: dict[int, tuple] = field(default_factory=dict)  # state -> (inside mask, crossings)
    tail: np.ndarray = field(init=False)
    """Per state: accepting with nothing to read and no call, so a call returning there may
    return straight to the caller's caller (a tail call: the stack does not grow)."""

    def __post_init__(self) -> None:
        tail = self.dfa.accepting & (self.dfa.transitions < 0).all(axis=1)
        tail[list(self.calls)] = False
        self.tail = tail

    def __getstate__(self) -> dict[str, object]:
        """Pickles without its walk caches (they hold the vocabulary's tries)."""
        state = self.__dict__.copy()
        state["crossings"] = {}
        return state


class _Locked:
    """Pickles without its ``_lock`` (an RLock), which is made anew on loading."""

    _lock: threading.RLock

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()


class SplitSchema(_Locked):
    """A schema's nodes: registered when a compiled node calls them, compiled on first use.

    Thread-safe; compiling a node runs under a lock.
    """

    def __init__(
        self,
        root: Any,
        whitespace_pattern: str | None = None,
        lenient: bool = False,
        extra_properties: bool | None = None,
    ) -> None:
        self.root = root
        self.ws = Whitespace.from_pattern(whitespace_pattern)
        self.lenient = lenient
        self.extra_properties = extra_properties
        self._schemas: list[tuple[Any, str]] = []
        self._numbers: dict[Hashable, int] = {}
        self._nodes: dict[int, Node] = {}
        self._unproductive: set[int] = set()
        self._active: set[int] = set()
        self._productive: set[int] = set()  # checked productive, given what is unproductive now
        self._cut_pending = False  # a node turned out empty: cut the calls to it
        self.version = 0  # bumped when calls are cut: masks computed before may be stale
        self._lock = threading.RLock()
        self._scan()
        self.register(root, "#")
        self.node(0)
        if 0 in self._unproductive:
            raise SchemaError("no JSON value satisfies this schema", "#")

    def _scan(self) -> None:
        """Check every reachable subschema's keywords and keyword shapes now, so that an
        unsupported or malformed keyword deep inside is an error here, not when generation
        reaches it (nodes are compiled lazily)."""
        checker = _Compiler(self.root, self.ws, DEFAULT_MAX_DEPTH, self.lenient, self.extra_properties)
        seen: set[int] = set()
        stack: list[tuple[Any, str]] = [(self.root, "#")]
        while stack and len(seen) < SCAN_LIMIT:
            schema, path = stack.pop()
            if not isinstance(schema, dict) or id(schema) in seen:
                continue
            seen.add(id(schema))
            checker.check_keywords(schema, path)
            checker.check_shapes(schema, path)
            for child_path, child in _subschemas(schema, path):
                stack.append((child, child_path))
            ref = schema.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                stack.append((checker.resolve(ref, path), f"{path}/$ref"))

    @property
    def n_compiled(self) -> int:
        return len(self._nodes)

    @property
    def n_registered(self) -> int:
        return len(self._schemas)

    def register(self, schema: Any, path: str) -> int:
        """The number of the node for ``schema`` (a new one the first time it is seen)."""
        key: Hashable
        if schema is True or schema == {}:
            key = ("any",)
        elif isinstance(schema, dict) and "$ref" in schema and len(schema) == 1:
            key = ("ref", str(schema["$ref"]))
        elif isinstance(schema, dict) and not any(k in schema for k in _NESTING_KEYS):
            try:  # a leaf or a self-contained object: equal schemas share one node
                key = ("json", json.dumps(schema, sort_keys=True))
            except (TypeError, ValueError):
                key = ("id", id(schema))
        else:
            key = ("id", id(schema))  # the registry keeps the object alive, so ids are not reused
        number = self._numbers.get(key)
        if number is None:
            number = len(self._schemas)
            if number >= MAX_NODES:
                raise ConstraintTooComplexError(f"the schema splits into more than {MAX_NODES} pieces")
            self._numbers[key] = number
            self._schemas.append((schema, path))
        return number

    def node(self, number: int) -> Node:
        """The compiled node, *active*: every callee is either compiled and known to be
        productive (or cut), or certainly satisfiable by its schema alone."""
        if number in self._active:
            return self._nodes[number]
        with self._lock:
            if number not in self._active:
                self._activate(number, set())
                self._settle_emptiness()
            return self._nodes[number]

    def compile_all(self) -> None:
        """Compile every node reachable from the root now (for tests and ahead-of-time use)."""
        with self._lock:
            order, seen = [0], {0}
            while order:
                node = self.node(order.pop())
                for pairs in node.calls.values():
                    for callee, _ in pairs:
                        if callee not in seen:
                            seen.add(callee)
                            order.append(callee)

    def _activate(self, number: int, visiting: set[int]) -> None:
        if number in self._active or number in visiting:
            return
        visiting.add(number)
        node = self._compile(number)
        for pairs in node.calls.values():
            for callee, _ in pairs:
                if callee in self._nodes or callee in visiting:
                    continue
                if _surely_satisfiable(self._schemas[callee][0], self.root):
                    continue  # compiled when generation gets there
                self._compile(callee)
                if not self._nodes[callee].free_accept:
                    self._activate(callee, visiting)
        self._active.add(number)

    def _compile(self, number: int) -> Node:
        found = self._nodes.get(number)
        if found is not None:
            return found
        schema, path = self._schemas[number]
        compiler = _Compiler(
            self.root, self.ws, DEFAULT_MAX_DEPTH, self.lenient, self.extra_properties, calls=self.register
        )
        compiler.builder.label = f"JSON schema at {path}"
        counted = _counted_string(schema)
        if counted is not None:
            node = self._counted_node(number, path, *counted)
            self._nodes[number] = node
            return node
        try:
            with compile_budget(f"JSON schema at {path}"):
                direct = _direct_leaf(compiler, schema, path)
                member = None if direct is not None else _direct_extra_member(compiler, schema, path)
            if direct is not None:  # no calls; only the closing quote leads to acceptance
                boundary = direct.accepting.copy()
                node = Node(number, path, direct, {}, boundary, True, _reach(~boundary))
                self._nodes[number] = node
                return node
            if member is not None:
                table, accepting = member.transitions, member.accepting
            else:
                with compile_budget(f"JSON schema at {path}"):
                    fragment = compiler.value(schema, path, DEFAULT_MAX_DEPTH)
                    dfa = compiler.builder.build(fragment)  # raises EmptyLanguageError
                    table, accepting = dfa.transitions, dfa.accepting
        except RecursionError as exc:
            raise ConstraintTooComplexError(f"{path}: the schema is nested too deeply") from exc
        except EmptyLanguageError:
            table, accepting = None, None
        except OutlinesGGUFError:
            raise
        except _MALFORMED as exc:
            raise SchemaError(f"the schema is malformed ({type(exc).__name__}: {exc})", path) from exc
        if table is None or accepting is None:  # both or neither
            never = _reach(np.ones(1, dtype=bool))
            node = Node(number, path, _EMPTY_DFA, {}, np.zeros(1, dtype=bool), False, never)
            self._unproductive.add(number)
            self._cut_pending = True
        else:
            node = _make_node(number, path, table, accepting)
        self._nodes[number] = node
        return node

    def _counted_node(self, number: int, path: str, low: int, high: int | None, null: bool | None) -> Node:
        """A string of ``low``..``high`` characters (``null``: or null) as its opening quote
        and a call to a *run* (``null`` None: that run): the rest of the string, up to
        :data:`STRING_SEGMENT` characters and the closing quote, or exactly that many and a
        (tail) call to the next run. The characters read beyond a run are counted by the
        return stack, not by states, so ``maxLength: 5000`` is exact and costs one node per
        segment that generation reaches; within a run, masks are shared between character
        counts far from the bounds (:class:`RunShape`)."""
        if null is not None:  # '"' run (or null): 0 -"-> 1 =call=> 2
            table = np.full((6 if null else 3, 256), -1, dtype=np.int32)
            table[0, ord('"')] = 1
            if null:
                table[0, ord("n")], table[3, ord("u")], table[4, ord("l")], table[5, ord("l")] = 3, 4, 5, 2
            accepting = np.zeros(table.shape[0], dtype=bool)
            accepting[2] = True
            run = self.register({STRING_RUN_KEY: [low, high]}, path)
            return _node(number, path, table, accepting, {1: ((run, 2),)})
        step = STRING_SEGMENT
        more = (high is None and low > step) or (high is not None and high > step)
        loops = high is None and not more
        top = step if more else low if high is None else high
        table, accepting, shape = string_run_table(min(low, top), top, more, loops)
        calls: dict[int, tuple[tuple[int, int], ...]] = {}
        if more:  # exactly ``step`` characters read: the next run, returning to the end
            rest = [max(low - step, 0), None if high is None else high - step]
            calls[top * shape.width] = ((self.register({STRING_RUN_KEY: rest}, path), table.shape[0] - 1),)
        # text never reaches the end without its quote; it reaches the next run after the
        # characters left in the run (each one byte at least)
        reach = np.full(table.shape[0], PLAIN_NEVER, dtype=np.int32)
        reach[-1] = 0
        if more:
            layers = np.arange(shape.n_layered) // shape.width
            reach[: shape.n_layered] = top - layers
        # the closing quote is reachable in the run unless it needs more characters than it has
        free = not more or low < step
        return _node(number, path, table, accepting, calls, reach, shape, free)

    def _settle_emptiness(self) -> None:
        """Least fixpoint: a node is productive if acceptance is reachable with calls only to
        productive nodes (nodes not compiled yet count as productive: they are compiled, and
        checked, before generation can enter them). Calls to unproductive nodes are cut."""
        changed = True
        grew, self._cut_pending = self._cut_pending, False
        while changed:
            changed = False
            for number, node in self._nodes.items():
                if number in self._unproductive or node.free_accept or number in self._productive:
                    continue
                if _reaches_accept(node, self._unproductive):
                    self._productive.add(number)
                else:
                    self._unproductive.add(number)
                    self._productive.clear()  # found productive through a node that is not
                    changed = grew = True
        if grew:
            for number, node in list(self._nodes.items()):
                if number not in self._unproductive and any(
                    callee in self._unproductive for pairs in node.calls.values() for callee, _ in pairs
                ):
                    self._nodes[number] = _cut_calls(node, self._unproductive)
                    self.version += 1


_NESTING_KEYS = (
    "$ref", "properties", "items", "prefixItems", "additionalProperties", "patternProperties", "allOf",
    "anyOf", "oneOf", "not", "additionalItems", "contains", "if", "then", "else", "dependentSchemas",
    "propertyNames", "dependentSchemas", "dependencies", CHUNK_KEY,
)


def _surely_satisfiable(schema: Any, root: Any = None, memo: dict[int, bool] | None = None) -> bool:
    """Some JSON value certainly satisfies ``schema``, by its keywords alone (a cheap, partial
    check: False means "compile it to know"). With ``root``, a lone ``$ref`` is followed, so that
    definitions used by reference compile when generation reaches them. Linear in the schema:
    each subschema is judged once (``memo``; one met again inside itself is not proof)."""
    if schema is True or schema == {}:
        return True
    if not isinstance(schema, dict):
        return False
    memo = {} if memo is None else memo
    found = memo.get(id(schema))
    if found is None:
        memo[id(schema)] = False  # in progress
        found = memo[id(schema)] = _satisfiable_by_keywords(schema, root, memo)
    return found


def _satisfiable_by_keywords(schema: dict, root: Any, memo: dict[int, bool]) -> bool:
    """``_surely_satisfiable`` of one dict schema."""
    ref = schema.get("$ref")
    if root is not None and isinstance(ref, str) and not set(schema) & _KNOWN_KEYWORDS - {"$ref"}:
        return _surely_satisfiable(_pointer_target(root, ref), root, memo)
    if STRING_RUN_KEY in schema:  # low <= high: some string fits
        return True
    if ITEMS_RUN_KEY in schema:  # nothing, or items
        return schema[ITEMS_RUN_KEY][0] == 0 or _surely_satisfiable(schema["items"], root, memo)
    if EXTRA_KEY in schema and CHUNK_KEY not in schema:  # one extra member: its key can always be written
        return not schema.get("patternProperties") and _surely_satisfiable(
            schema.get("additionalProperties", True), root, memo
        )
    known = set(schema) & _KNOWN_KEYWORDS
    declared = schema.get("type")
    kinds = declared if isinstance(declared, list) else [declared]
    if "enum" in known:
        values = schema["enum"]
        return known <= {"enum", "type"} and isinstance(values, list) and bool(of_types(values, declared))
    if "const" in known:
        return known <= {"const", "type"} and bool(of_types([schema["const"]], declared))
    if known & _BOUNDS:
        if not _bounds_leave_room(schema):
            return False
        known = known - _BOUNDS
    if known - _SIMPLE_KEYS - {CHUNK_KEY, EXTRA_KEY}:  # (a run of members, its link to extra ones)
        return False
    if any(k in ("null", "boolean", "number", "integer", "array") for k in kinds):
        return True
    if "string" in kinds:
        lo = schema.get("minLength", 0)
        hi = schema.get("maxLength", lo)
        if "format" in schema:  # a format's values have lengths of their own
            return "minLength" not in schema and "maxLength" not in schema
        return _is_int(lo) and _is_int(hi) and 0 <= lo <= hi
    if kinds != ["object"] and declared is not None:
        return False
    props = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(props, dict) or not isinstance(required, list):
        return False
    if not all(name in props and _surely_satisfiable(props[name], root, memo) for name in required):
        return False
    # a run of members (chunked_object) writes at least one
    return CHUNK_KEY not in schema or any(_surely_satisfiable(v, root, memo) for v in props.values())


_BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})


def _bounds_leave_room(schema: dict) -> bool:
    """Numeric bounds (draft 6+ numbers) that leave at least one integer, hence a number."""
    values = [schema.get(k) for k in _BOUNDS if k in schema]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return False
    lows = [schema[k] for k in ("minimum", "exclusiveMinimum") if k in schema]
    highs = [schema[k] for k in ("maximum", "exclusiveMaximum") if k in schema]
    return not lows or not highs or max(lows) + 2 <= min(highs)


def _pointer_target(root: Any, ref: str) -> Any:
    """The subschema a local ``$ref`` points to, or None (the compiler reports bad ones)."""
    try:
        return resolve_local(root, ref)
    except LookupError:
        return None


_SIMPLE_KEYS = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "format", "minLength", "maxLength"}
)

_EMPTY_DFA = ByteDFA(np.full((1, 256), -1, dtype=np.int32), np.zeros(1, dtype=bool))

_SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas")

_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")

_SCHEMA_VALUES = (
    "additionalProperties",
    "additionalItems",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
)


def _subschemas(schema: dict, path: str) -> Iterable[tuple[str, Any]]:
    """(path, subschema) for the subschemas a schema's keywords hold ($defs only through $ref)."""
    for key in _SCHEMA_MAPS:
        value = schema.get(key)
        if isinstance(value, dict):
            for name, child in value.items():
                yield f"{path}/{key}/{name}", child
    for key in _SCHEMA_LISTS:
        value = schema.get(key)
        if isinstance(value, list):
            for i, child in enumerate(value):
                yield f"{path}/{key}/{i}", child
    for key in _SCHEMA_VALUES:
        if key in schema:
            yield f"{path}/{key}", schema[key]
    items = schema.get("items")
    if isinstance(items, list):
        for i, child in enumerate(items):
            yield f"{path}/items/{i}", child
    elif items is not None:
        yield f"{path}/items", items


_KNOWN_KEYWORDS = KNOWN_KEYWORDS


def _direct_extra_member(compiler: _Compiler, schema: Any, path: str) -> ByteDFA | None:
    """An extra member (``"key": value``, key none of the declared names) of an object without
    patternProperties, built as a direct key automaton glued to ``: value``; None otherwise."""
    if not isinstance(schema, dict) or EXTRA_KEY not in schema or schema.get("patternProperties"):
        return None
    if schema.get("propertyNames", True) not in (True, {}):
        return None  # keys limited by propertyNames: through the compiler's product
    compiler._nest += 1  # the value is nested: a call where it may be an object or an array
    try:
        value = compiler.value(schema.get("additionalProperties", True), f"{path}/additionalProperties", 1)
        if value is None:
            return None
        rest = compiler.builder.build(compiler.builder.seq([compiler.colon(), value]))
    finally:
        compiler._nest -= 1
    return glue(key_except_dfa(list(schema.get("properties", {}))), rest)


def _direct_leaf(compiler: _Compiler, schema: Any, path: str) -> ByteDFA | None:
    """The automaton of a string leaf (``type`` string, or string and null; length, pattern,
    format), built directly around its content automaton instead of through an NFA; None for
    any other schema."""
    if not isinstance(schema, dict):
        return None
    values = schema.get("enum")
    if isinstance(values, list) and not (set(schema) & _KNOWN_KEYWORDS) - {"enum", "type"}:
        # an enum of plain scalars: exactly their JSON texts (of the declared types), as a trie
        if not all(v is None or isinstance(v, (str, bool, int)) for v in values):
            return None
        values = of_types(values, schema.get("type"))
        if not values:
            return None
        return literal_trie_dfa([json.dumps(v, ensure_ascii=False).encode() for v in values])
    declared = schema.get("type")
    kinds = set(declared) if isinstance(declared, list) else {declared}
    if kinds not in ({"string"}, {"string", "null"}):
        return None
    if (set(schema) & _KNOWN_KEYWORDS) - {"type", "minLength", "maxLength", "pattern", "format"}:
        return None  # (unknown keywords are annotations, as JSON Schema says)
    body = compiler.string_body(schema, path)
    if body is None:
        return None
    if not isinstance(body, ByteDFA):  # any string of at least minLength characters
        low = schema.get("minLength", 0)
        body = layered_body(int(low), None)
        if body is None:
            return None
    return quoted(body, null="null" in kinds)


def _make_node(number: int, path: str, table: np.ndarray, accepting: np.ndarray) -> Node:
    """Read the calls out of a split DFA and remove the call column."""
    states = np.flatnonzero(table[:, CALL_BYTE] >= 0)
    # follow the three number bytes after every call marker at once: (call state, where, value)
    origin, where = states, table[states, CALL_BYTE].astype(np.int64)
    value = np.zeros(states.size, dtype=np.int64)
    for _ in range(3):
        row, byte = np.nonzero(table[where] >= 0)
        origin, value = origin[row], value[row] << 8 | byte
        where = table[where[row], byte].astype(np.int64)
    calls: dict[int, tuple[tuple[int, int], ...]] = {}
    if origin.size:
        order = np.lexsort((where, value, origin))
        origin, value, where = origin[order].tolist(), value[order].tolist(), where[order].tolist()
        grouped: dict[int, list[tuple[int, int]]] = {}
        for state, callee, ret in zip(origin, value, where, strict=True):
            grouped.setdefault(state, []).append((callee, ret))
        calls = {state: tuple(pairs) for state, pairs in grouped.items()}
    walk = table.copy()
    walk[:, CALL_BYTE] = -1
    return _node(number, path, walk, accepting, calls)


def _node(
    number: int,
    path: str,
    walk: np.ndarray,
    accepting: np.ndarray,
    calls: dict[int, tuple[tuple[int, int], ...]],
    plain_reach: np.ndarray | None = None,
    run: RunShape | None = None,
    free_accept: bool | None = None,
) -> Node:
    """A node from its text table (no call column) and its calls (``free_accept``, where the
    caller knows it: acceptance is reachable without a call)."""
    boundary = accepting.copy()
    for state in calls:
        boundary[state] = True
    if plain_reach is None:
        plain_reach = _reach(_plain_safe(walk, boundary))
    node = Node(number, path, ByteDFA(walk, accepting), calls, boundary, False, plain_reach, run)
    node.free_accept = _reaches_accept(node, None) if free_accept is None else free_accept
    return node


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


def _counted_string(schema: Any) -> tuple[int, int | None, bool | None] | None:
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
        found = _counted_string(nullable)
        return None if found is None else (found[0], found[1], True)
    declared = schema.get("type")
    kinds = set(declared) if isinstance(declared, list) else {declared}
    if kinds not in ({"string"}, {"string", "null"}):
        return None
    if (set(schema) & _KNOWN_KEYWORDS) - {"type", "minLength", "maxLength"}:
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
        if not isinstance(branches, list) or len(branches) != 2 or (set(schema) & _KNOWN_KEYWORDS) != {key}:
            continue
        nulls = [b for b in branches if isinstance(b, dict) and set(b) & _KNOWN_KEYWORDS == {"type"}
                 and b.get("type") in ("null", ["null"])]
        others = [b for b in branches if not any(b is n for n in nulls)]
        if len(nulls) == 1 and len(others) == 1 and isinstance(others[0], dict):
            other = others[0]
            if other.get("type") in ("string", ["string"]):
                return other
    return None


_NON_PLAIN = np.array([0x22, 0x5C, *range(0x20)], dtype=np.intp)


def _plain_safe(table: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """Per state: no state with a call or a return is reachable from it by bytes other than
    controls, ``"`` and ``\\`` (a superset of plain text), so no plain-text token crosses there."""
    plainish = table.copy()
    plainish[:, _NON_PLAIN] = -1
    return ~reaching(plainish, boundary)


def _reaches_accept(node: Node, unproductive: set[int] | None) -> bool:
    """Acceptance is reachable from the start by text and calls (to productive callees;
    ``unproductive=None``: by text alone). Breadth first, a numpy step per distance."""
    table, accepting = node.dfa.transitions, node.dfa.accepting
    returns: dict[int, list[int]] = {}
    if unproductive is not None:
        for s, pairs in node.calls.items():
            returns[s] = [ret for callee, ret in pairs if callee not in unproductive]
    seen = np.zeros(accepting.size, dtype=bool)
    seen[0] = True
    frontier = np.zeros(1, dtype=np.int64)
    while frontier.size:
        if accepting[frontier].any():
            return True
        targets = table[frontier].reshape(-1)
        targets = targets[targets >= 0]
        if returns:
            extra = [ret for s in frontier.tolist() for ret in returns.get(s, ())]
            targets = np.concatenate([targets, np.asarray(extra, dtype=targets.dtype)])
        fresh = np.zeros(accepting.size, dtype=bool)
        fresh[targets] = True
        fresh &= ~seen
        seen |= fresh
        frontier = np.flatnonzero(fresh)
    return False


def _cut_calls(node: Node, unproductive: set[int]) -> Node:
    """The node without its calls to unproductive nodes, and without the states that then
    cannot reach acceptance (made dead)."""
    calls = {
        s: tuple(p for p in pairs if p[0] not in unproductive) for s, pairs in node.calls.items()
    }
    calls = {s: pairs for s, pairs in calls.items() if pairs}
    table, accepting = node.dfa.transitions, node.dfa.accepting
    # states that can reach acceptance, by text or surviving calls (a call: an edge to its return)
    edges = [(s, ret) for s, pairs in calls.items() for _, ret in pairs]
    sources = np.array([s for s, _ in edges], dtype=np.int64)
    returns = np.array([r for _, r in edges], dtype=np.int64)
    alive = reaching(table, accepting, (sources, returns))
    cut = table.copy()
    cut[(cut >= 0) & ~alive[np.maximum(cut, 0)]] = -1
    calls = {s: tuple(p for p in pairs if alive[p[1]]) for s, pairs in calls.items() if alive[s]}
    calls = {s: pairs for s, pairs in calls.items() if pairs}
    boundary = accepting.copy()
    for s in calls:
        boundary[s] = True
    safe = _reach(_plain_safe(cut, boundary))
    return Node(node.number, node.path, ByteDFA(cut, accepting), calls, boundary, node.free_accept, safe)


def _reach(safe: np.ndarray) -> np.ndarray:
    """``Node.plain_reach`` from a per-state "plain text never crosses" flag."""
    return np.where(safe, PLAIN_NEVER, 0).astype(np.int32)


def split_schema(
    canonical: str, whitespace_pattern: str | None, lenient: bool, extra: bool | None
) -> SplitSchema:
    """The split schema for canonical JSON text (see :func:`.loading.prepare_schema`)."""
    return SplitSchema(json.loads(canonical), whitespace_pattern, lenient, extra)
