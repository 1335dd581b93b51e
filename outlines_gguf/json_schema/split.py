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
from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np

from outlines_gguf import fast_unique
from outlines_gguf.automata.budget import MAX_SCHEMA_WORK, NODE_WORK, compile_budget, spend
from outlines_gguf.automata.dfa import ByteDFA, reaching, reaching_by_edges
from outlines_gguf.automata.ops import difference_soon_dead
from outlines_gguf.errors import ConstraintTooComplexError, EmptyLanguageError, OutlinesGGUFError, SchemaError
from outlines_gguf.guides.base import RegexGuide
from outlines_gguf.json_schema.algebra import _unique_domain, of_types
from outlines_gguf.json_schema.arrays import one_item_unique
from outlines_gguf.json_schema.compiler import _Compiler
from outlines_gguf.json_schema.keywords import (
    _MALFORMED,
    CALL_BYTE,
    CHUNK_KEY,
    DEFAULT_MAX_DEPTH,
    DISTINCT_KEYS_KEY,
    DISTINCT_VARIANT_KEY,
    EXTRA_KEY,
    EXTRAS_WRITTEN_KEY,
    ITEMS_RUN_KEY,
    KNOWN_KEYWORDS,
    OBJECT_KEY,
    UNIQUE_ARRAY_KEY,
    UNIQUE_EXCLUDED_KEY,
    UNIQUE_ITEM_KEY,
    WRITTEN_KEY,
    _is_int,
    _pointer,
    call_marker,
    subsets_note,
)
from outlines_gguf.json_schema.lexical import Whitespace
from outlines_gguf.json_schema.objects import MemberCounts, _never, distinct_link, plain_link, rest_schema
from outlines_gguf.json_schema.runs import (
    STRING_RUN_KEY,
    STRING_SEGMENT,
    LayerLayout,
    RunShape,
    counted_string,
    string_run_table,
)
from outlines_gguf.json_schema.spellings import spellings_dfa
from outlines_gguf.json_schema.strings import (
    LayeredDFA,
    glue,
    key_except_dfa,
    layered_body,
    literal_trie_dfa,
    quoted,
)
from outlines_gguf.json_schema.validate import resolve_local
from outlines_gguf.locking import Locked
from outlines_gguf.tokens.trie import concat_ranges

MAX_NODES = 0xFE0000
"""Nodes one schema may split into (the call marker holds a node's number in three bytes; the
numbers above stand in for nodes in automata kept process-wide, ``STAND_IN_CALLS``)."""

SCAN_LIMIT = 100_000
"""Subschemas the up-front keyword check visits (a schema bigger than that is checked lazily)."""

_BY_IDENTITY = ("id", "tree", "unique-item")
"""Registry keys that hold ids of objects (directly, or through ``_content_id``)."""

SCAN_WORK = 20
"""Work units charged per node each time the compiled nodes are scanned (deciding which can be
finished, cutting calls): many nodes, each compile scanning them all, would add up unseen."""

PLAIN_NEVER = np.iinfo(np.int32).max
"""``Node.plain_reach`` of a state from which plain text never reaches a call or a return."""

Config = tuple  # (below: Config | None, node: int, state: int)


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
    layers: LayerLayout | None = None  # a string leaf counted over a pattern: the same, by window
    unique_item: bool = False  # an item of an array with uniqueItems: its texts are remembered
    distinct_key: bool = False  # an extra member whose key is remembered (DISTINCT_KEYS_KEY)
    guide: RegexGuide | None = None
    cut_from: tuple[Node, np.ndarray] | None = None
    """A rest node's template and the rows of its live states that differ from the template's
    (with the rows whose multi-byte characters pass through them): its guide takes the
    template guide's per-state tables, those rows computed again (``RegexGuide.share_steps``;
    a dead state's row is never read)."""
    crossings: dict[int, tuple] = field(default_factory=dict)  # state -> (inside mask, crossings)
    needs: tuple[int, ...] = ()
    """Nodes that must be productive for this one to be (beyond what its automaton shows: the
    values its uncompiled rest nodes will call, see ``_ObjectRules.members_after``)."""
    tail: np.ndarray = field(init=False)
    """Per state: accepting with nothing to read and no call, so a call returning there may
    return straight to the caller's caller (a tail call: the stack does not grow)."""
    edges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, init=False)
    """The text edges of ``dfa`` (sources, destinations), read once (``_text_edges``)."""

    def __post_init__(self) -> None:
        accepting = np.flatnonzero(self.dfa.accepting)  # (a few rows: not a pass over the table)
        tail = np.zeros(self.dfa.accepting.size, dtype=bool)
        tail[accepting] = (self.dfa.transitions[accepting] < 0).all(axis=1)
        tail[list(self.calls)] = False
        self.tail = tail

    def __getstate__(self) -> dict[str, object]:
        """Pickles without its walk caches (they hold the vocabulary's tries)."""
        state = self.__dict__.copy()
        state["crossings"], state["edges"] = {}, None  # (edges: read again when needed)
        return state


class SplitSchema(Locked):
    """A schema's nodes: registered when a compiled node calls them, compiled on first use.

    Thread-safe; compiling a node runs under a lock.
    """

    def __init__(
        self,
        root: Any,
        whitespace_pattern: str | None = None,
        lenient: bool = False,
        extra_properties: bool | None = None,
        remember_keys: bool = False,
    ) -> None:
        self.root = root
        self.ws = Whitespace.from_pattern(whitespace_pattern)
        self.lenient = lenient
        self.extra_properties = extra_properties
        # the guide over this schema remembers extra keys (UniqueItemsGuide with keys): only
        # then do objects keep them distinct below minProperties (DISTINCT_KEYS_KEY)
        self.remember_keys = remember_keys
        self._schemas: list[tuple[Any, str]] = []
        self._numbers: dict[Hashable, int] = {}
        self._contents: dict[Hashable, int] = {}  # see _content_id
        self._content_ids: dict[int, tuple[Any, int]] = {}  # id of a dict or list -> (it, its number)
        self._written = _container_ids(root)  # the schema's own dicts and lists (root keeps them)
        self._nodes: dict[int, Node] = {}
        self._unproductive: set[int] = set()
        self._active: set[int] = set()
        self._productive: set[int] = set()  # compiled, and proven to be finishable
        self._surely: dict[int, bool] = {}  # node -> _surely_satisfiable of its schema
        self._judge: _Compiler | None = None  # answers questions about schemas (possible types)
        self._edges: dict[int, tuple[Node, list[int], list[int]]] = {}  # see _successors
        self._cut_pending = False  # a node turned out empty: cut the calls to it
        self._rest_templates: dict[int, _Template] = {}  # OBJECT_KEY of an object -> its template
        self._unique_items: dict[int, tuple[Any, ByteDFA | None]] = {}  # id of items -> (them, texts)
        self._item_texts: dict[str, ByteDFA | OutlinesGGUFError | None] = {}  # the same, by content
        self.version = 0  # bumped when calls are cut: masks computed before may be stale
        self._lock = threading.RLock()
        self.subsets: set[str] = set()
        """Paths of the keywords enforced as a valid subset (some valid documents are rejected,
        no invalid one is accepted): ``oneOf``s whose negations are written in part
        (``negate_subset``), ``minProperties`` that counts extra members once."""
        self._unenforced_unique: dict[int, tuple[Any, str, bool]] = {}  # see _scan_unique_items
        self.finite_distinct_keys = False  # an extra member whose keys it remembers may run out
        doubt = self._scan()
        self.register(root, "#")
        with _step_budget():
            self.node(0)
            if 0 in self._unproductive:
                raise SchemaError("no JSON value satisfies this schema" + subsets_note(self.subsets), "#")
            if doubt is not None:
                # a keyword the scan could not decide favourably: compile every node now, so
                # that the error it may cause (raised by the nodes themselves, in their own
                # context) is raised here, not when generation reaches it
                self.compile_all()

    def __getstate__(self) -> dict[str, Any]:
        """Pickles without what it keeps only to answer questions faster, nor what is keyed by
        the ids of objects (another process gives them other ids, and may give a stale one to
        another object): those keys are made again from the objects, or forgotten."""
        state = super().__getstate__()
        state["_judge"], state["_edges"] = None, {}
        kinds = {key: key[0] if isinstance(key, tuple) else None for key in self._numbers}
        state["_numbers"] = {k: v for k, v in self._numbers.items() if kinds[k] not in _BY_IDENTITY}
        state["_by_identity"] = [n for k, n in self._numbers.items() if kinds[k] in _BY_IDENTITY]
        state["_contents"], state["_content_ids"], state["_written"] = {}, {}, set()
        state["_unique_items"] = {}  # (rebuilt when reached)
        state["_item_texts"] = {}
        state["_unenforced_unique"] = list(self._unenforced_unique.values())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        by_identity = state.pop("_by_identity")
        unenforced = state.pop("_unenforced_unique")
        super().__setstate__(state)
        self._written = _container_ids(self.root)
        for number in by_identity:  # (a schema the compiler built is found again by content)
            schema = self._schemas[number][0]
            key: Hashable
            if isinstance(schema, dict) and UNIQUE_ITEM_KEY in schema:
                key = ("unique-item", id(schema[UNIQUE_ITEM_KEY]), tuple(schema[UNIQUE_EXCLUDED_KEY]))
            elif id(schema) in self._written:
                key = ("id", id(schema))
            else:
                key = ("tree", self._content_id(schema))
            self._numbers.setdefault(key, number)
        self._unenforced_unique = {id(entry[0]): entry for entry in unenforced}

    def _scan(self) -> Exception | None:
        """Check every reachable subschema's keywords and keyword shapes now, so that an
        unsupported or malformed keyword deep inside is an error here, not when generation
        reaches it (nodes are compiled lazily). Also take the decisions compiling takes before
        building automata (``_Compiler.check_decisions``: a ``oneOf`` made exclusive, ``not``
        negated, ...); returns the first error they raised (compiling may still succeed, where
        the subschema is met merged with others), or None.

        Decisions follow how compiling reads a subschema: none at or below an ``enum``/``const``
        (or an ``allOf`` with one: the validator checks the listed values; nothing there is
        compiled), and the schema a
        ``not`` holds is negated, not compiled (no ``oneOf`` made exclusive, no ``not``
        negated: ``not`` of ``not`` is the schema itself, which is decided where it stands).
        A subschema is visited again when met where more is decided (at most three times)."""
        checker = _Compiler(self.root, self.ws, DEFAULT_MAX_DEPTH, self.lenient, self.extra_properties)
        checker.subsets = self.subsets
        checker.unenforced_unique = self._unenforced_unique
        checker.known_item_texts = self._unique_item_dfa
        checker.split = True  # (it decides as the split engine compiles: uniqueItems over strings)
        done: dict[int, int] = {}  # id -> the most decided there: _LISTED, _NEGATED, _DECIDED
        stack: list[tuple[Any, str, int]] = [(self.root, "#", _DECIDED)]
        doubt: Exception | None = None
        while stack and len(done) < SCAN_LIMIT:
            schema, path, level = stack.pop()
            if not isinstance(schema, (dict, bool)) and level > _LISTED:
                # (compiling would meet it when generation reaches it: ``properties: {"$ref": "#/x"}``)
                kind = type(schema).__name__
                raise checker.fail(f"a schema must be an object or a boolean, got {kind}", path)
            if not isinstance(schema, dict) or done.get(id(schema), -1) >= level:
                continue
            if id(schema) not in done:
                checker.check_keywords(schema, path)
                checker.check_shapes(schema, path)
            done[id(schema)] = level
            if level > _LISTED and not _lists_values(schema):
                try:
                    if doubt is None:
                        checker.check_decisions(schema, path, negated=level == _NEGATED)
                    if level == _DECIDED:  # (after a doubt too: what it decides, compiling reads)
                        self._scan_unique_items(checker, schema, path)
                except (OutlinesGGUFError, RecursionError, *_MALFORMED) as exc:
                    doubt = doubt or exc
            listed = level == _LISTED or _lists_values(schema)
            for child_path, child in _subschemas(schema, path):
                below = _LISTED if listed else _level_below(level, path, child_path)
                stack.append((child, child_path, below))
            ref = schema.get("$ref")
            if isinstance(ref, str) and (ref.startswith("#") or not listed):
                # (an external $ref raises here: it can never be compiled, wherever it is)
                stack.append((checker.resolve(ref, path), f"{path}/$ref", _LISTED if listed else level))
        return doubt

    def _scan_unique_items(self, checker: _Compiler, schema: dict, path: str) -> None:
        """Compile now the item automaton of an array with ``uniqueItems`` whose items are
        written whole and spelled canonically (:meth:`_unique_item_dfa`): it is one automaton,
        compiled without calls, where a keyword the split engine enforces may not be (a nested
        ``uniqueItems`` over strings: OpenAPI's ``parameters``), or its size may pass the
        limits. Its error then comes before generation, not when an array of it is reached."""
        if schema.get("uniqueItems") is not True or _unique_domain(schema) is not None:
            return
        if "array" not in checker.types(schema, path):
            return
        items = checker.unique_items(schema, path)
        if items is None or items is True or items == {}:
            return
        if self.lenient or one_item_unique(schema):
            # built when generation first reaches such an array instead (OpenAPI's and JSON:API's
            # item automata take a tenth of a second to half a second each): whatever fails
            # there, the array is then not compared (lenient) or holds at most one item, a
            # valid subset (``_ArrayRules.array``), as here; no error is left for later
            return
        try:
            self._unique_item_dfa(items, f"{path}/items")
        except (OutlinesGGUFError, RecursionError) as exc:
            # not enforced there: ignored with lenient; too large to build, at most one item (a
            # valid subset) where minItems allows; else an error where compiling meets it (which
            # the scan's doubt makes now, at construction)
            why = str(exc) if isinstance(exc, OutlinesGGUFError) else "nested too deeply"
            too_large = isinstance(exc, ConstraintTooComplexError)
            self._unenforced_unique[id(items)] = (items, why, too_large)  # (kept alive: its id is the key)
            self._unique_items.pop(id(items), None)
            if self.lenient:
                return
            if checker.one_unique_item(schema, path):
                self.subsets.add(f"{path}/uniqueItems")  # (too large to compare: at most one item)
                return
            raise

    def _unique_item_dfa(self, items: Any, path: str) -> ByteDFA | None:
        """The canonical spellings of an item of a unique array (kept per items schema, once
        per array however many items are written)."""
        found = self._unique_items.get(id(items))
        if found is None or found[0] is not items:  # (an id is only the key while its object lives)
            # by content too: OpenAPI's path items and operations hold equal parameter lists,
            # whose item automaton takes a second to build (or to fail: failures are kept too)
            content = json.dumps(items, sort_keys=True, default=str)
            known = self._item_texts.get(content, _UNKNOWN)
            if isinstance(known, OutlinesGGUFError):
                raise type(known)(*known.args)
            if known is _UNKNOWN:
                try:
                    with compile_budget(f"JSON schema at {path}", own=True):
                        settings = (self.ws, DEFAULT_MAX_DEPTH, self.lenient, self.extra_properties)
                        known = _Compiler(self.root, *settings).unique_item_dfa(items, path)
                except OutlinesGGUFError as exc:
                    self._item_texts[content] = exc
                    raise
                self._item_texts[content] = known
            found = (items, cast("ByteDFA | None", known))
            self._unique_items[id(items)] = found
        return found[1]

    def register(self, schema: Any, path: str) -> int:
        """The number of the node for ``schema`` (a new one the first time it is seen)."""
        key: Hashable
        if schema is True or schema == {}:
            key = ("any",)
        elif isinstance(schema, dict) and WRITTEN_KEY in schema:  # the rest of an object, by members written
            written = schema[WRITTEN_KEY]
            extras = schema.get(EXTRAS_WRITTEN_KEY, 0)
            keys = tuple(schema.get(DISTINCT_KEYS_KEY, ()))  # (the extra keys it keeps distinct)
            key = ("rest", schema[OBJECT_KEY], None if written is None else tuple(written), extras, keys)
        elif isinstance(schema, dict) and UNIQUE_ITEM_KEY in schema:  # (by the items schema itself)
            key = ("unique-item", id(schema[UNIQUE_ITEM_KEY]), tuple(schema[UNIQUE_EXCLUDED_KEY]))
        elif isinstance(schema, dict) and UNIQUE_ARRAY_KEY in schema:
            base, texts = schema[UNIQUE_ARRAY_KEY]
            key = ("unique-array", base, tuple(texts))
        elif isinstance(schema, dict) and "$ref" in schema and len(schema) == 1:
            key = ("ref", str(schema["$ref"]))
        elif isinstance(schema, dict) and not any(k in schema for k in _NESTING_KEYS):
            try:  # a leaf or a self-contained object: equal schemas share one node, whatever
                # their annotations (``description``, ``title``, unknown keywords) say
                kept = {k: v for k, v in schema.items() if k in _KNOWN_KEYWORDS or k.startswith(_OURS)}
                key = ("json", json.dumps(kept, sort_keys=True))
            except (TypeError, ValueError):
                key = ("id", id(schema))
        elif id(schema) in self._written:
            key = ("id", id(schema))  # the registry keeps the object alive, so ids are not reused
        else:
            # built by the compiler: by content, for it builds new dicts (``allOf`` of a
            # ``$ref`` target and its siblings, merged parts) each time it compiles the schema
            # around them, so a recursive schema met through such a dict would otherwise unroll
            # into a new node at every level. Meaning does not depend on where a schema stands:
            # its refs were made local and its dynamic refs specialized when it was loaded
            try:
                key = ("tree", self._content_id(schema))
            except RecursionError:
                key = ("id", id(schema))  # the registry keeps the object alive, so ids are not reused
        number = self._numbers.get(key)
        if number is None:
            number = len(self._schemas)
            while CALL_BYTE in call_marker(number)[1:]:
                # a number byte equal to the call byte would read as another call (node 255,
                # 511, ...): such numbers are never given, their places held by ``False``
                self._schemas.append((False, path))
                number += 1
            if number >= MAX_NODES:
                raise ConstraintTooComplexError(f"the schema splits into more than {MAX_NODES} pieces")
            self._numbers[key] = number
            self._schemas.append((schema, path))
        return number

    def _content_id(self, value: Any) -> int:
        """A number equal for equal JSON values built by the compiler (by type: ``1`` and
        ``true`` differ), whose parts taken from the schema itself count by identity: a dict
        built around big parts (an object's run of members beside the link to the whole
        object) costs its own entries, not the parts'. Each built dict and list is read once
        (kept alive, so that its id is not reused)."""
        if isinstance(value, (dict, list)):
            if id(value) in self._written:
                return self._contents.setdefault(("o", id(value)), len(self._contents))
            found = self._content_ids.get(id(value))
            if found is not None:
                return found[1]
            if isinstance(value, dict):
                key: Hashable = ("d", tuple(sorted((k, self._content_id(v)) for k, v in value.items())))
            else:
                key = ("l", tuple(self._content_id(v) for v in value))
        else:
            key = ("s", type(value).__name__, value)
        number = self._contents.setdefault(key, len(self._contents))
        if isinstance(value, (dict, list)):
            self._content_ids[id(value)] = (value, number)
        return number

    @property
    def n_registered(self) -> int:
        """Node numbers given so far (the few skipped included), compiled or not."""
        return len(self._schemas)

    def node(self, number: int) -> Node:
        """The compiled node, *active*: whether each of its callees can be finished is known
        (compiled and proven productive, cut as unproductive, or certainly satisfiable by its
        schema alone), so that no mask leads into a value that cannot be completed."""
        if number in self._active:
            return self._nodes[number]
        with self._lock, _step_budget():
            if number not in self._active:
                node = self._compile(number)
                targets = {number, *(callee for pairs in node.calls.values() for callee, _ in pairs)}
                keyless = {k for k in map(self._keyless, targets) if k is not None}
                if keyless:  # (decided first: the nodes leaving out keys follow them)
                    self._decide(keyless)
                self._decide(targets)
                if number not in self._unproductive and not targets.isdisjoint(self._unproductive):
                    # a callee found unproductive before this node was compiled: the cut that
                    # found it did not see these calls (no mask has used them: not yet active)
                    self._nodes[number] = _cut_calls(self._nodes[number], self._unproductive)
                self._cut_unproductive()
                self._active.add(number)
            return self._nodes[number]

    @property
    def n_compiled(self) -> int:
        """Nodes compiled so far (each when generation first reaches it): how laziness shows."""
        return len(self._nodes)

    def compile_all(self) -> None:
        """Compile every node reachable from the root now (for tests and ahead-of-time use)."""
        with self._lock, _step_budget():
            order, seen = [0], {0}
            while order:
                node = self.node(order.pop())
                for pairs in node.calls.values():
                    for callee, _ in pairs:
                        if callee not in seen and not _is_rest(self._schemas[callee][0]):
                            # (rest nodes, 2^n per object, call nothing their object does not)
                            seen.add(callee)
                            order.append(callee)

    def _compile(self, number: int) -> Node:
        found = self._nodes.get(number)
        if found is not None:
            return found
        spend(NODE_WORK)
        schema, path = self._schemas[number]
        compiler = _Compiler(
            self.root, self.ws, DEFAULT_MAX_DEPTH, self.lenient, self.extra_properties, calls=self.register
        )
        compiler.builder.label = f"JSON schema at {path}"
        compiler.subsets = self.subsets
        compiler.unenforced_unique = self._unenforced_unique
        compiler.known_item_texts = self._unique_item_dfa
        compiler.remember_keys = self.remember_keys
        if _is_rest(schema):  # (the template it is derived from is compiled, never registered)
            node = self._rest_node(number, schema, path)
            self._nodes[number] = node
            return node
        if isinstance(schema, dict) and UNIQUE_ARRAY_KEY in schema:
            node = self._unique_array_node(number, schema, path)
            self._nodes[number] = node
            return node
        if isinstance(schema, dict) and UNIQUE_ITEM_KEY in schema:
            node = self._unique_item_node(number, schema, path)
            self._nodes[number] = node
            return node
        if isinstance(schema, dict) and DISTINCT_VARIANT_KEY in schema:
            node = self._distinct_variant_node(number, schema, path)
            self._nodes[number] = node
            return node
        counted = counted_string(schema)
        if counted is not None:
            node = self._counted_node(number, path, *counted)
            self._nodes[number] = node
            return node
        try:
            with compile_budget(f"JSON schema at {path}", own=True):
                direct = _direct_leaf(compiler, schema, path)
                member = None if direct is not None else _direct_extra_member(compiler, schema, path)
            if direct is not None:  # no calls; only the closing quote leads to acceptance
                dfa, layers = direct
                boundary = dfa.accepting.copy()
                node = Node(number, path, dfa, {}, boundary, True, _reach(~boundary), layers=layers)
                self._nodes[number] = node
                return node
            if member is not None:
                table, accepting = member[0].transitions, member[0].accepting
            else:
                with compile_budget(f"JSON schema at {path}", own=True):
                    fragment = compiler.value(schema, path, DEFAULT_MAX_DEPTH)
                    # (an object in any order: a branch per member, as its template)
                    merge = not (isinstance(schema, dict) and WRITTEN_KEY in schema)
                    dfa = compiler.builder.build(fragment, merge=merge)  # raises EmptyLanguageError
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
            if member is not None and member[1]:  # (calls made by stand-in numbers)
                node = _retargeted(number, path, node, member[1])
            node.needs = tuple(compiler.needs)
            node.distinct_key = _remembers_its_key(schema)
            if node.distinct_key and not _any_key(schema):
                self.finite_distinct_keys = True  # (its keys may run out: see UniqueItemsGuide)
        self._nodes[number] = node
        return node

    def unique_array(self, number: int, texts: frozenset[bytes]) -> int:
        """The node ``number`` with its calls to unique items (the items, and each position of
        a prefix) going to those items without ``texts`` (as JSON texts), registered once per
        set (see ``unique.py``)."""
        with self._lock:
            base = self._schemas[number][0]
            if isinstance(base, dict) and UNIQUE_ARRAY_KEY in base:
                number = base[UNIQUE_ARRAY_KEY][0]
            written = tuple(sorted(t.decode("utf-8", "surrogatepass") for t in texts))
            found = self._numbers.get(("unique-array", number, written))
            if found is not None:
                return found
            schema = {UNIQUE_ARRAY_KEY: [number, list(written)]}
            return self.register(schema, self._schemas[number][1])

    def item_texts(self, item: int) -> frozenset[bytes]:
        """The texts unique item ``item`` leaves out (JSON texts, quotes included)."""
        texts = self._schemas[item][0][UNIQUE_EXCLUDED_KEY]
        return frozenset(t.encode("utf-8", "surrogatepass") for t in texts)

    def _unique_array_node(self, number: int, schema: dict, path: str) -> Node:
        base_number, texts = schema[UNIQUE_ARRAY_KEY]
        base = self._compile(base_number)
        without: dict[int, int] = {}  # each unique item the base calls -> it without the texts
        for pairs in base.calls.values():
            for callee, _ in pairs:
                item, item_path = self._schemas[callee]
                if callee not in without and isinstance(item, dict) and UNIQUE_ITEM_KEY in item:
                    excluded = {UNIQUE_ITEM_KEY: item[UNIQUE_ITEM_KEY], UNIQUE_EXCLUDED_KEY: sorted(texts)}
                    without[callee] = self.register(excluded, item_path)
        return _retargeted(number, path, base, without)

    def _unique_item_node(self, number: int, schema: dict, path: str) -> Node:
        """An item of an array with uniqueItems: its values spelled canonically (so that equal
        texts are equal values), without the texts already written."""
        items = schema[UNIQUE_ITEM_KEY]
        dfa = self._unique_item_dfa(items, path)  # (once per array, not once per item written)
        with compile_budget(f"JSON schema at {path}", own=True):
            excluded = list(schema[UNIQUE_EXCLUDED_KEY])
            if dfa is not None and excluded:
                before = self._item_before(items, excluded)
                if before is not None:  # the item without all texts but one: take that one out
                    dfa, excluded = before
                texts = [t.encode("utf-8", "surrogatepass") for t in excluded]
                written = spellings_dfa(texts)  # (every key order of their small objects)
                dfa = difference_soon_dead(dfa, written) if written is not None else dfa
        if dfa is None:
            self._unproductive.add(number)
            self._cut_pending = True
            never = _reach(np.ones(1, dtype=bool))
            return Node(number, path, _EMPTY_DFA, {}, np.zeros(1, dtype=bool), False, never, unique_item=True)
        boundary = dfa.accepting.copy()
        plain_reach = _reach(_plain_safe(dfa.transitions, boundary))  # ("-1", "{}": plain text ends items)
        return Node(number, path, dfa, {}, boundary, True, plain_reach, unique_item=True)

    def _item_before(self, items: Any, excluded: list[str]) -> tuple[ByteDFA, list[str]] | None:
        """A compiled unique item of ``items`` without all of ``excluded`` (sorted) but one, and
        that one: the next item is it without one text more (each item left out of the whole
        base again cost the length of every text written, so an array cost their square)."""
        for i, text in enumerate(excluded):
            key = ("unique-item", id(items), (*excluded[:i], *excluded[i + 1 :]))
            number = self._numbers.get(key)
            node = None if number is None else self._nodes.get(number)
            if node is not None and number not in self._unproductive:
                return node.dfa, [text]
        return None

    def with_extra_key(self, frame: int, member: int, key: str) -> int:
        """The object node ``frame`` (one that called the extra member ``member``, whose keys
        stay distinct) once ``key`` is written too: the same automaton, whose next extra
        member leaves out that key and those ``member`` left out (see :data:`DISTINCT_KEYS_KEY`)."""
        with self._lock:
            keys = sorted({*self._schemas[member][0][DISTINCT_KEYS_KEY], key})
            schema, path = self._schemas[frame]
            if WRITTEN_KEY in schema and schema[WRITTEN_KEY] is not None:  # a rest node
                return self.register({**schema, DISTINCT_KEYS_KEY: keys}, path)
            if DISTINCT_VARIANT_KEY in schema:
                frame = schema[DISTINCT_VARIANT_KEY][0]
            return self.register({DISTINCT_VARIANT_KEY: [frame, keys]}, path)

    def _distinct_variant_node(self, number: int, schema: dict, path: str) -> Node:
        """An object's node from "{" whose calls to its extra member, and to its rest nodes
        below the minimum, leave out the keys written (:meth:`with_extra_key`)."""
        base_number, keys = schema[DISTINCT_VARIANT_KEY]
        base = self._compile(base_number)
        object_schema = self._schemas[base_number][0]
        counts = MemberCounts.of(object_schema, list(object_schema.get("properties", {})))
        remembering: dict[int, int] = {}
        for pairs in base.calls.values():
            for callee, _ in pairs:
                if callee in remembering:
                    continue
                called, called_path = self._schemas[callee]
                if _remembers_its_key(called):
                    remembering[callee] = self.register(distinct_link(called, keys), called_path)
                elif _is_rest(called) and DISTINCT_KEYS_KEY in called:
                    below = counts.below_minimum(called[WRITTEN_KEY], called.get(EXTRAS_WRITTEN_KEY, 0))
                    if below:
                        remembering[callee] = self.register({**called, DISTINCT_KEYS_KEY: keys}, called_path)
        return _retargeted(number, path, base, remembering)

    def _rest_node(self, number: int, schema: dict, path: str) -> Node:
        """The node for the rest of an object whose members come in any order, once the members
        ``schema[WRITTEN_KEY]`` (and, where min/maxProperties count them, the extra members
        ``schema[EXTRAS_WRITTEN_KEY]``) are written (see ``_ObjectRules.members_after``),
        derived from the object's template instead of compiled: the branches of the members
        written are cut, and ``}`` while a required member is missing or the minimum is not
        reached, and every branch that would lead where the object cannot be finished
        (:class:`MemberCounts`); each remaining branch's tail call goes to the node of what is
        written after it. A few array passes, where compiling the set's automaton would
        determinize it again."""
        members = schema["properties"]
        keys = schema.get(DISTINCT_KEYS_KEY)  # (None: extra keys not remembered)
        found = self._rest_templates.get(schema[OBJECT_KEY])
        if found is None:
            known: dict[str, Any] = {} if keys is None else {DISTINCT_KEYS_KEY: []}
            compiled = self._compile_template({**schema, WRITTEN_KEY: [], **known}, path)
            found = self._rest_templates[schema[OBJECT_KEY]] = _Template(compiled)
        required = schema.get("required", [])
        names = [name for name in members if name in required or not _never(members[name])]
        position = {name: i for i, name in enumerate(members)}.__getitem__
        counts = MemberCounts.of(schema, names)
        written = set(schema[WRITTEN_KEY])
        extras = schema.get(EXTRAS_WRITTEN_KEY, 0)

        def rest(after: set[str], more: int, remembered: Collection[str] = ()) -> int:
            ordered = sorted(after, key=position)
            known = {} if keys is None else {DISTINCT_KEYS_KEY: sorted(remembered)}
            return self.register({**rest_schema(schema, ordered, more, counts.counted), **known}, path)

        def remembering(after: set[str], more: int) -> Collection[str]:
            """The extra keys a rest node keeps distinct: this one's, below the minimum."""
            return keys if keys is not None and counts.below_minimum(after, more) else ()

        if found.after_one is None:  # the template's own calls: the same for every rest node
            found.after_one = {rest({name}, 0): name for name in names}
            extra_counted = counts.counted and counts.extras
            found.an_extra = rest(set(), counts.after_extra(set(), 0)) if extra_counted else None
        after_one, an_extra = found.after_one, found.an_extra
        missing = [name for name in required if name not in written]
        closes = counts.closes(written, extras)
        cut_off = {
            callee
            for callee, name in after_one.items()
            if name in written or not counts.feasible(written | {name}, extras)
        }
        if an_extra is not None and not counts.feasible(written, extras + 1):
            cut_off.add(an_extra)
        cut = found.derive(cut_off, closes)
        targets = {  # a member's "rest after it alone" -> the rest after it and those written
            callee: rest(written | {name}, extras, remembering(written | {name}, extras))
            for callee, name in after_one.items()
            if callee not in cut_off
        }
        if an_extra is not None and an_extra not in cut_off:
            more = counts.after_extra(written, extras)
            targets[an_extra] = rest(written, more, remembering(written, more))
        if keys is not None:  # the extra member: leaving out the keys written, below the minimum
            link, link_path = schema[EXTRA_KEY], f"{path}/additionalProperties"
            member = distinct_link(link, keys) if counts.below_minimum(written, extras) else plain_link(link)
            targets[self.register(distinct_link(link, []), link_path)] = self.register(member, link_path)
        calls = {
            state: tuple((targets.get(callee, callee), ret) for callee, ret in pairs)
            for state, pairs in cut.calls.items()
        }
        node = Node(number, path, cut.dfa, calls, cut.boundary, closes, cut.plain_reach)
        node.cut_from = cut.cut_from
        values = f"{path}/properties/"
        node.needs = tuple(self.register(members[name], values + _pointer(name)) for name in missing)
        return node

    def _compile_template(self, schema: dict, path: str) -> Node:
        """The template of an object's rest nodes: every member's branch, and ``}``."""
        compiler = _Compiler(
            self.root, self.ws, DEFAULT_MAX_DEPTH, self.lenient, self.extra_properties, calls=self.register
        )
        compiler.subsets = self.subsets
        compiler.unenforced_unique = self._unenforced_unique
        compiler.known_item_texts = self._unique_item_dfa
        compiler.remember_keys = self.remember_keys
        with compile_budget(f"JSON schema at {path}", own=True):
            fragment = compiler.value(schema, path, DEFAULT_MAX_DEPTH)
            # not merged: a branch per member, each ending in its own tail call, leaves nothing
            # but whitespace to merge, and looking for it was half the cost of a wide object
            dfa = compiler.builder.build(fragment, merge=False)
        return _make_node(-1, path, dfa.transitions, dfa.accepting)

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

    def _satisfiable(self, number: int) -> bool:
        """``_surely_satisfiable`` of a node's schema, once per node; and a unique item without
        the texts written so far where its values are infinitely many (as a number's or a
        string's): a finite set left out leaves some. So the array's frame, worked out again
        at each byte of an item (``unique.py``), does not compile the next item's node until
        a next item begins (a 160-digit number took seconds, a difference per digit)."""
        found = self._surely.get(number)
        if found is None:
            schema = self._schemas[number][0]
            found = _surely_satisfiable(schema, self.root, types=self._possible_types)
            if not found and isinstance(schema, dict) and UNIQUE_EXCLUDED_KEY in schema:
                known = self._unique_items.get(id(schema[UNIQUE_ITEM_KEY]))  # (compiled first)
                base = known[1] if known is not None and known[0] is schema[UNIQUE_ITEM_KEY] else None
                found = isinstance(base, ByteDFA) and base.longest is None  # (once per automaton)
            if not found:
                keyless = self._keyless(number)
                if keyless is not None:
                    return keyless in self._productive  # (not kept: it may be proven later)
            self._surely[number] = found
        return found

    def _keyless(self, number: int) -> int | None:
        """For a node that leaves out the extra keys written (``DISTINCT_KEYS_KEY``) of an
        object whose extra keys are any strings but its declared names: the same node leaving
        out none. A few keys out of infinitely many leave as many, so the two are productive
        alike, and the keys a document writes need no emptiness decision of their own (each
        key set's rest nodes below the minimum, compiled to decide it, multiplied per key)."""
        schema = self._schemas[number][0]
        if not isinstance(schema, dict):
            return None
        if DISTINCT_VARIANT_KEY in schema:
            base, _ = schema[DISTINCT_VARIANT_KEY]
            link = self._schemas[base][0].get(EXTRA_KEY, {})
        elif _is_rest(schema) and schema.get(DISTINCT_KEYS_KEY):
            link = schema[EXTRA_KEY]
            base = self.register({**schema, DISTINCT_KEYS_KEY: []}, self._schemas[number][1])
        elif _remembers_its_key(schema) and schema[DISTINCT_KEYS_KEY]:
            link = plain_link(schema)
            base = self.register(distinct_link(link, []), self._schemas[number][1])
        else:
            return None
        return base if _any_key(link) else None  # (else finitely many, maybe: each set decided)

    def _possible_types(self, schema: Any) -> set[str]:
        if self._judge is None:
            settings = (self.ws, DEFAULT_MAX_DEPTH, self.lenient, self.extra_properties)
            self._judge = _Compiler(self.root, *settings)
        return self._judge.possible_types(schema, "#")

    def _decided(self, number: int) -> bool:
        if number in self._productive or number in self._unproductive:
            return True
        return number not in self._nodes and self._satisfiable(number)

    def _decide(self, targets: set[int]) -> None:
        """Find out whether each target can be finished, compiling as few nodes as that takes.

        A node is productive when acceptance is reachable with calls only to productive nodes
        (a least fixpoint: a cycle of calls with no way out finishes nothing). Proofs come
        first, from what is known (compiled nodes proven productive, uncompiled ones satisfiable
        by their schemas alone): one accepting path suffices, so a node whose own text or
        surely satisfiable callees finish it needs nothing else compiled. What no proof covers
        is refuted where even counting every uncompiled node as productive does not finish it;
        what is left open compiles the nearest uncompiled node it calls, and is decided again."""
        while True:
            self._prove()
            open_ = [t for t in targets if not self._decided(t)]
            if not open_:
                return
            self._refute()
            open_ = [t for t in open_ if not self._decided(t)]
            if not open_:
                return
            nearest = self._frontier(open_)
            if nearest is None:  # (cannot happen: with everything compiled, proofs decide)
                raise AssertionError(f"emptiness undecided for nodes {open_}")
            self._compile(nearest)

    def _callees(self, node: Node) -> Iterable[int]:
        for pairs in node.calls.values():
            for callee, _ in pairs:
                yield callee
        yield from node.needs

    def _prove(self) -> None:
        """Grow ``_productive`` by what the known facts prove (see :meth:`_decide`)."""
        self._productive |= self._finishable(self._satisfiable)

    def _refute(self) -> None:
        """Mark unproductive the compiled nodes that cannot be finished even if every
        uncompiled node could."""
        hoped = self._finishable(lambda callee: callee not in self._unproductive)
        doomed = [n for n in self._nodes if n not in hoped and n not in self._unproductive]
        if doomed:
            self._unproductive.update(doomed)
            self._cut_pending = True

    def _finishable(self, uncompiled: Callable[[int], bool]) -> set[int]:
        """The least set of nodes, ``_productive`` among them, in which every compiled node
        reaches acceptance calling only nodes of the set, or uncompiled ones that
        ``uncompiled`` accepts (a cycle of calls with no way out is not in it)."""
        nodes, found = self._nodes, set(self._productive)

        def usable(callee: int) -> bool:
            return callee in found or (callee not in nodes and uncompiled(callee))

        pending = [n for n in nodes if n not in found and n not in self._unproductive]
        grew = True
        while grew and pending:
            spend(SCAN_WORK * len(pending))
            grew, still = False, []
            for number in pending:
                node = nodes[number]
                if node.free_accept or (all(usable(n) for n in node.needs) and _reaches_accept(node, usable)):
                    found.add(number)
                    grew = True
                else:
                    still.append(number)
            pending = still
        return found

    def _frontier(self, open_: list[int]) -> int | None:
        """The next node to compile for the open nodes: along each one's cheapest candidate
        proof (:meth:`_candidate`), the first undecided callee, followed into its own candidate
        where it is compiled; failing that (cycles), any uncompiled undecided node they call,
        depth first."""
        for number in open_:  # (each activation's callees: compiled before any search)
            if number not in self._nodes:
                return number
        seen: set[int] = set()

        def along(number: int) -> int | None:
            if number in seen:
                return None
            seen.add(number)
            if number not in self._nodes:
                return number
            for callee in self._candidate(self._nodes[number]):
                found = along(callee)
                if found is not None:
                    return found
            return None

        for number in open_:
            found = along(number)
            if found is not None:
                return found
        seen, stack = set(open_), list(reversed(open_))
        while stack:
            number = stack.pop()
            if number not in self._nodes:
                return number
            callees = [c for c in dict.fromkeys(self._callees(self._nodes[number])) if c not in seen]
            for callee in reversed(callees):
                if not self._decided(callee):
                    seen.add(callee)
                    stack.append(callee)
        return None

    def _candidate(self, node: Node) -> list[int]:
        """The undecided callees (and needs) of a way through ``node`` to acceptance that
        passes the fewest of them (calls to unproductive nodes not taken): what to compile so
        that the node may be proven with the least work. A 0-1 breadth-first search, text and
        calls to decided callees costing nothing."""
        usable = {c for c in set(self._callees(node)) if self._decided(c) and c not in self._unproductive}
        accepting = node.dfa.accepting
        n = accepting.size
        starts, successors = self._successors(node)
        via: dict[int, tuple[int, int | None]] = {}  # state -> (previous state, callee or None)
        queue: deque[tuple[int, int]] = deque([(0, 0)])
        cost = {0: 0}
        end = None
        while queue:
            state, spent = queue.popleft()
            if spent > cost[state]:
                continue
            if accepting[state]:
                end = state
                break
            texts = successors[starts[state] : starts[state + 1]]
            moves: list[tuple[int, int | None]] = [(t, None) for t in texts]
            moves += [(ret, c) for c, ret in node.calls.get(state, ()) if c not in self._unproductive]
            for target, callee in moves:
                step = 0 if callee is None or callee in usable else 1
                if spent + step < cost.get(target, n + 1):
                    cost[target] = spent + step
                    via[target] = (state, callee)
                    (queue.appendleft if step == 0 else queue.append)((target, spent + step))
        if end is None:
            return []
        path: list[int] = []
        while end != 0:  # (the start's cost, 0, is never lowered: it is never re-entered)
            end, callee = via[end]
            if callee is not None and callee not in usable:
                path.append(callee)
        path.reverse()
        return list(dict.fromkeys([*path, *(c for c in node.needs if not self._decided(c))]))

    def _successors(self, node: Node) -> tuple[list[int], list[int]]:
        """A node's distinct text edges as ranges of one list (``starts[s]:starts[s + 1]``),
        read once per node (a node open over several compiles is searched again each time)."""
        found = self._edges.get(node.number)
        if found is None or found[0] is not node:
            n = node.dfa.transitions.shape[0]
            src, dst, _ = _text_edges(node)
            pairs = fast_unique.unique(src.astype(np.int64) * n + dst)
            starts = np.searchsorted(pairs // n, np.arange(n + 1)).tolist()
            found = self._edges[node.number] = (node, starts, (pairs % n).tolist())
        return found[1], found[2]

    def _cut_unproductive(self) -> None:
        """Cut the calls to nodes found unproductive (masks computed before may be stale)."""
        if not self._cut_pending:
            return
        self._cut_pending = False
        spend(SCAN_WORK * len(self._nodes))
        for number, node in list(self._nodes.items()):
            if number not in self._unproductive and any(
                callee in self._unproductive for pairs in node.calls.values() for callee, _ in pairs
            ):
                self._nodes[number] = _cut_calls(node, self._unproductive)
                self.version += 1


def _retargeted(number: int, path: str, base: Node, targets: dict[int, int]) -> Node:
    """Node ``number``: ``base``'s automaton (so its states and return states) with its calls
    to the keys of ``targets`` going to their values instead."""
    calls = {
        s: tuple((targets.get(callee, callee), ret) for callee, ret in pairs)
        for s, pairs in base.calls.items()
    }
    node = Node(number, path, base.dfa, calls, base.boundary, base.free_accept, base.plain_reach)
    node.needs = base.needs
    return node


def _any_key(link: dict) -> bool:
    """The extra member ``link`` takes any key but the declared names (no patterns, no
    ``propertyNames``): infinitely many, so a few written never exhaust them."""
    return not link.get("patternProperties") and link.get("propertyNames", True) in (True, {})


def _remembers_its_key(schema: Any) -> bool:
    """``schema`` is the extra member of an object whose extra keys the guide keeps distinct
    (:data:`DISTINCT_KEYS_KEY`): its key is remembered when it is written."""
    return (
        isinstance(schema, dict)
        and EXTRA_KEY in schema
        and DISTINCT_KEYS_KEY in schema
        and WRITTEN_KEY not in schema
        and CHUNK_KEY not in schema
    )


def _is_rest(schema: Any) -> bool:
    """The schema of a rest node (an object's members after some were written; not the
    object's own node, whose ``WRITTEN_KEY`` is None)."""
    return isinstance(schema, dict) and schema.get(WRITTEN_KEY) is not None


def _lists_values(schema: dict) -> bool:
    """The compiler writes ``schema``'s listed values (those the validator passes) rather than
    compiling its subschemas: it has an ``enum``/``const``, or an ``allOf`` part that has."""
    if "enum" in schema or "const" in schema:
        return True
    parts = schema.get("allOf")
    return isinstance(parts, list) and any(isinstance(p, dict) and {"enum", "const"} & set(p) for p in parts)


_LISTED, _NEGATED, _DECIDED = 0, 1, 2
"""How much the scan decides about a subschema: keywords only (below an enum or const), what
a negated schema needs, everything."""

_NESTING_KEYS = (
    "$ref", "properties", "items", "prefixItems", "additionalProperties", "patternProperties", "allOf",
    "anyOf", "oneOf", "not", "additionalItems", "contains", "if", "then", "else", "dependentSchemas",
    "propertyNames", "dependentSchemas", "dependencies", CHUNK_KEY,
)


Types = Callable[[Any], set[str]]
"""The JSON types a schema's values may have (a superset; "number" comes with "integer")."""


def _surely_satisfiable(
    schema: Any, root: Any = None, memo: dict[int, bool] | None = None, types: Types | None = None
) -> bool:
    """Some JSON value certainly satisfies ``schema``, by its keywords alone (a cheap, partial
    check: False means "compile it to know"). With ``root``, a lone ``$ref`` is followed, so that
    definitions used by reference compile when generation reaches them; with ``types``, a
    ``oneOf`` whose satisfiable branch shares no type with the others stands. Linear in the
    schema: each subschema is judged once (``memo``; one met again inside itself is not proof)."""
    if schema is True or schema == {}:
        return True
    if not isinstance(schema, dict) or UNIQUE_ITEM_KEY in schema or UNIQUE_ARRAY_KEY in schema:
        return False  # (a unique item without the texts written may run out of values)
    memo = {} if memo is None else memo
    found = memo.get(id(schema))
    if found is None:
        memo[id(schema)] = False  # in progress
        found = memo[id(schema)] = _satisfiable_by_keywords(schema, root, memo, types)
    return found


def _satisfiable_by_keywords(schema: dict, root: Any, memo: dict[int, bool], types: Types | None) -> bool:
    """``_surely_satisfiable`` of one dict schema."""

    def surely(sub: Any) -> bool:
        return _surely_satisfiable(sub, root, memo, types)

    ref = schema.get("$ref")
    if root is not None and isinstance(ref, str) and not set(schema) & _KNOWN_KEYWORDS - {"$ref"}:
        return surely(_pointer_target(root, ref))
    if schema.get(WRITTEN_KEY) is not None:
        # the rest of an object: its caller's needs answer for its required values, and it is
        # only entered where it can be finished; below minProperties, compile it to know
        extras = schema.get(EXTRAS_WRITTEN_KEY, 0)
        counted = extras if DISTINCT_KEYS_KEY in schema else min(extras, 1)  # (MemberCounts)
        return len(schema[WRITTEN_KEY]) + counted >= schema.get("minProperties", 0)
    if STRING_RUN_KEY in schema:  # low <= high: some string fits
        return True
    if ITEMS_RUN_KEY in schema:  # nothing, or items
        return schema[ITEMS_RUN_KEY][0] == 0 or surely(schema["items"])
    if EXTRA_KEY in schema and CHUNK_KEY not in schema and WRITTEN_KEY not in schema:
        # one extra member: its key can always be written (unless propertyNames limits it: an
        # object's member meeting a SOME_MEMBER_KEY requirement, whose keys may be none)
        free_keys = schema.get("propertyNames", True) in (True, {})
        patterns = schema.get("patternProperties")
        return free_keys and not patterns and surely(schema.get("additionalProperties", True))
    known = set(schema) & _KNOWN_KEYWORDS
    declared = schema.get("type")
    kinds = declared if isinstance(declared, list) else [declared]
    if "enum" in known:
        values = schema["enum"]
        return known <= {"enum", "type"} and isinstance(values, list) and bool(of_types(values, declared))
    if "const" in known:
        return known <= {"const", "type"} and bool(of_types([schema["const"]], declared))
    if known & {"anyOf", "oneOf"}:
        return _a_branch_stands(schema, known, surely, types)
    if kinds == ["array"] and known & _ITEM_COUNTS and known <= _ITEM_COUNTS | {"type", "items"}:
        return _items_fit(schema, surely)
    if known & _BOUNDS:
        if not _bounds_leave_room(schema):
            return False
        known = known - _BOUNDS
    if known - _SIMPLE_KEYS - {CHUNK_KEY, EXTRA_KEY, WRITTEN_KEY, OBJECT_KEY}:  # (the compiler's own)
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
    if not all(name in props and surely(props[name]) for name in required):
        return False
    # a run of members (chunked_object) writes at least one
    return CHUNK_KEY not in schema or any(surely(v) for v in props.values())


_ITEM_COUNTS = frozenset({"minItems", "maxItems", "uniqueItems"})


def _a_branch_stands(
    schema: dict, known: set[str], surely: Callable[[Any], bool], types: Types | None
) -> bool:
    """An ``anyOf`` or ``oneOf`` beside at most a ``type``: satisfiable where a surely
    satisfiable branch's values are all of the declared types, and (``oneOf``) share no type
    with another branch, so that no other branch can also match them."""
    (key, *more) = sorted(known & {"anyOf", "oneOf"})
    branches = schema[key]
    if more or known - {key, "type"} or not isinstance(branches, list):
        return False
    declared = schema.get("type")
    allowed = None
    if declared is not None:
        allowed = set(declared) if isinstance(declared, list) else {declared}
        if "number" in allowed:
            allowed.add("integer")
    for i, branch in enumerate(branches):
        if not surely(branch):
            continue
        if allowed is not None or key == "oneOf":
            if types is None:
                return False
            mine = types(branch)
            if allowed is not None and not mine <= allowed:
                continue
            if key == "oneOf" and any(mine & types(other) for j, other in enumerate(branches) if j != i):
                continue
        return True
    return False


def _items_fit(schema: dict, surely: Callable[[Any], bool]) -> bool:
    """An array with item counts: the empty array where the minimum is 0, else that many
    copies of a surely satisfiable item (unique: at most one)."""
    low, high = schema.get("minItems", 0), schema.get("maxItems")
    if not _is_int(low) or low < 0 or (high is not None and (not _is_int(high) or high < low)):
        return False
    if low == 0:
        return True
    items = schema.get("items", True)
    if isinstance(items, list) or (low > 1 and schema.get("uniqueItems") is True):
        return False
    return surely(items)


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


_READ_BOTH_WAYS_NEGATED = frozenset({"oneOf", "if", "then", "else", "contains"})
"""Keywords whose subschemas a negation also reads positively (not exactly one: two at once;
the condition and its negation; fewer or more matches than the bounds)."""


def _level_below(level: int, path: str, child_path: str) -> int:
    """How the scan reads a subschema of one read at ``level``: what a ``not`` holds is
    negated; below a negated schema, what its keywords hold is negated too (the negation of
    ``anyOf``, ``properties``, ``items`` ... negates their subschemas), except under ``not``
    (negated twice) and the keywords whose negation also reads them as they are."""
    keyword = child_path[len(path) + 1 :].split("/", 1)[0]
    if level == _NEGATED:
        return _DECIDED if keyword == "not" or keyword in _READ_BOTH_WAYS_NEGATED else _NEGATED
    return _NEGATED if keyword == "not" else _DECIDED


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

_OURS = "x-outlines-gguf-"
"""The prefix of the keywords this package writes into schemas (runs, rests, calls)."""


_UNKNOWN = object()
"""Not in a cache yet (None is a value there)."""


def _direct_extra_member(
    compiler: _Compiler, schema: Any, path: str
) -> tuple[ByteDFA, dict[int, int]] | None:
    """An extra member (``"key": value``, key none of the declared names) of an object without
    patternProperties, built as a direct key automaton glued to ``: value``, and the calls of
    its automaton to retarget (see :func:`_any_value_member`); None otherwise."""
    if not isinstance(schema, dict) or EXTRA_KEY not in schema or schema.get("patternProperties"):
        return None
    if CHUNK_KEY in schema or WRITTEN_KEY in schema:
        return None  # members of an object that links its extra ones, not an extra member
    if schema.get("propertyNames", True) not in (True, {}):
        return None  # keys limited by propertyNames: through the compiler's product
    link = schema.get("additionalProperties", True)
    value_path = f"{path}/additionalProperties"
    retarget: dict[int, int] = {}
    if link is True or link == {}:
        rest, retarget = _any_value_member(compiler, value_path)
    else:
        compiler._nest += 1  # the value is nested: a call where it may be an object or an array
        try:
            value = compiler.value(link, value_path, 1)
            if value is None:
                return None
            rest = compiler.builder.build(compiler.builder.seq([compiler.colon(), value]))
        finally:
            compiler._nest -= 1
    return glue(key_except_dfa(list(schema.get("properties", {}))), rest), retarget


_ANY_VALUE_MEMBERS: dict[tuple, tuple[ByteDFA, tuple[tuple[Any, str], ...]]] = {}
"""``: value`` for any value, per compiler settings, with stand-in callee numbers, and the
(schema, path) each stands for: see :func:`_any_value_member`."""

STAND_IN_CALLS = MAX_NODES
"""The first of the callee numbers that stand for nodes in the automata kept process-wide
(``_ANY_VALUE_MEMBERS``: a few, none with the call byte in it); a split schema's own numbers
stay below it (:data:`MAX_NODES`)."""


def _any_value_member(compiler: _Compiler, path: str) -> tuple[ByteDFA, dict[int, int]]:
    """``: value`` of an extra member whose value is any JSON value, and where each of its
    calls goes (stand-in number -> this schema's node for that value, registered now).

    The automaton depends on the compiler's settings alone, not on the schema: most objects
    have such a member and its automaton was determinized again for every schema (a third of a
    small schema's first mask). It is built once per process with stand-in callee numbers (the
    nested objects and arrays of any value), and each schema registers the nodes they stand
    for, as compiling would have (the same schemas, under ``path``)."""
    ws = compiler.ws
    key = (
        ws.after_colon, ws.after_comma, ws.inside,
        compiler.canonical, compiler.lenient, compiler.extra_properties, compiler.max_depth,
    )
    found = _ANY_VALUE_MEMBERS.get(key)
    if found is None:
        standing: list[tuple[Any, str]] = []

        def stand_in(called: Any, called_path: str) -> int:
            standing.append((called, called_path))
            if len(standing) >= CALL_BYTE:  # (any value makes two: an object, an array)
                raise AssertionError("too many calls in any value for its stand-in numbers")
            return STAND_IN_CALLS + len(standing) - 1

        calls, compiler.calls = compiler.calls, stand_in
        compiler._nest += 1  # the value is nested: a call where it may be an object or an array
        try:
            value = compiler.value(True, "#", 1)
            assert value is not None  # (any value)
            rest = compiler.builder.build(compiler.builder.seq([compiler.colon(), value]))
        finally:
            compiler._nest -= 1
            compiler.calls = calls
        found = _ANY_VALUE_MEMBERS.setdefault(key, (rest, tuple(standing)))
    rest, standing_for = found
    assert compiler.calls is not None
    retarget = {
        STAND_IN_CALLS + i: compiler.calls(called, path + called_path.removeprefix("#"))
        for i, (called, called_path) in enumerate(standing_for)
    }
    return rest, retarget


def _direct_leaf(compiler: _Compiler, schema: Any, path: str) -> tuple[ByteDFA, LayerLayout | None] | None:
    """The automaton of a string leaf (``type`` string, or string and null; length, pattern,
    format), built directly around its content automaton instead of through an NFA, and where
    the content is counted in layers over a pattern, their layout; None for any other schema."""
    schema = compiler.inline_refs(schema, path)  # (a definition used through $ref, as often)
    if not isinstance(schema, dict):
        return None
    values = schema.get("enum")
    if isinstance(values, list) and not (set(schema) & _KNOWN_KEYWORDS) - {"enum", "type"}:
        # an enum of strings, booleans and null: exactly their JSON texts (of the declared
        # types), as a trie (numbers have several spellings: the compiler writes them)
        if not all(v is None or isinstance(v, (str, bool)) for v in values):
            return None
        values = of_types(values, schema.get("type"))
        if not values:
            return None
        trie = literal_trie_dfa([json.dumps(v, ensure_ascii=False).encode() for v in values])
        return None if trie is None else (trie, None)
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
    # (quoted: before the opening quote, after the closing one, then the content's states)
    layers = LayerLayout(2, body) if isinstance(body, LayeredDFA) else None
    return quoted(body, null="null" in kinds), layers


def _make_node(number: int, path: str, table: np.ndarray, accepting: np.ndarray) -> Node:
    """Read the calls out of a split DFA and remove the call column."""
    states = np.flatnonzero(table[:, CALL_BYTE] >= 0)
    # follow the three number bytes after every call marker at once: (call state, where, value)
    origin, where = states, table[states, CALL_BYTE].astype(np.int64)
    value = np.zeros(states.size, dtype=np.int64)
    for _ in range(3):
        row, byte = fast_unique.nonzero_2d(table[where] >= 0)
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
    node = Node(number, path, ByteDFA(walk, accepting), calls, boundary, False, np.zeros(0, np.int32), run)
    if plain_reach is None:  # (the table's edges read once for both searches, and kept)
        src, dst, plain = _text_edges(node)
        plain_reach = _reach(~reaching_by_edges(walk.shape[0], src[plain], dst[plain], boundary))
    node.plain_reach = plain_reach
    node.free_accept = _reaches_accept(node, None) if free_accept is None else free_accept
    return node


def _text_edges(node: Node) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edges of a node's table (sources, destinations as int64, and whether each reads
    plain-ish text: no control, ``"`` or ``\\``), read once per node."""
    if node.edges is None:
        table = node.dfa.transitions
        src, byte = fast_unique.nonzero_2d(table >= 0)
        node.edges = (src, table[src, byte].astype(np.int64), _PLAIN_BYTES[byte])
    return node.edges


_NON_PLAIN = np.array([0x22, 0x5C, *range(0x20)], dtype=np.intp)
_PLAIN_BYTES = np.ones(256, dtype=bool)
_PLAIN_BYTES[_NON_PLAIN] = False


def _container_ids(root: Any) -> set[int]:
    """The ids of every dict and list in ``root``."""
    found: set[int] = set()
    stack = [root]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if id(value) not in found:
                found.add(id(value))
                stack.extend(value.values())
        elif isinstance(value, list) and id(value) not in found:
            found.add(id(value))
            stack.extend(value)
    return found


def _step_budget() -> Any:
    """The budget of one step (construction, or what one token reaches): every piece compiled
    in it charges it, each within its own budget too (see :data:`MAX_SCHEMA_WORK`)."""
    return compile_budget("JSON schema", MAX_SCHEMA_WORK)


def _plain_safe(table: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """Per state: no state with a call or a return is reachable from it by bytes other than
    controls, ``"`` and ``\\`` (a superset of plain text), so no plain-text token crosses there."""
    plainish = table.copy()
    plainish[:, _NON_PLAIN] = -1
    return ~reaching(plainish, boundary)


def _reaches_accept(node: Node, usable: Callable[[int], bool] | None) -> bool:
    """Acceptance is reachable from the start by text and calls to callees that are
    ``usable`` (None: by text alone): one backwards search (:func:`reaching`), a call being an
    edge to its return state."""
    accepting = node.dfa.accepting
    extra = None
    if usable is not None:
        edges = [(s, ret) for s, pairs in node.calls.items() for callee, ret in pairs if usable(callee)]
        if edges:
            sources, returns = zip(*edges, strict=True)
            extra = (np.array(sources, dtype=np.int64), np.array(returns, dtype=np.int64))
    src, dst, _ = _text_edges(node)
    return bool(reaching_by_edges(accepting.size, src, dst, accepting, extra)[0])


class _Template:
    """An any-order object's template node (``SplitSchema._rest_node``) with its edges read
    once, so that each rest node is cut out of it by one backwards search over them instead
    of a pass over the whole table: what every member boundary of a document pays."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.after_one: dict[int, str] | None = None  # the rest node after one member -> it
        self.an_extra: int | None = None  # the rest node after one extra member (counted)
        table, accepting = node.dfa.transitions, node.dfa.accepting
        n = table.shape[0]
        close = table[:, ord("}")]
        self.closing = (close >= 0) & accepting[np.maximum(close, 0)]  # "}" into acceptance
        src, byte = fast_unique.nonzero_2d(table >= 0)
        dst = table[src, byte].astype(np.int64)
        keep = ~((byte == ord("}")) & self.closing[src])
        pairs = fast_unique.unique(dst[keep] * n + src[keep])
        starts = np.searchsorted(pairs // n, np.arange(n + 1)).tolist()
        flat = (pairs % n).tolist()
        self.before = [flat[starts[s] : starts[s + 1]] for s in range(n)]  # text predecessors
        # every edge by its destination: a rest node's table is the template's with the edges
        # into its dead states cut (a few branches), not a pass over the whole table
        order = np.argsort(dst, kind="stable")
        self.into = (src[order].astype(np.intp), byte[order].astype(np.intp))
        self.into_start = np.searchsorted(dst[order], np.arange(n + 1))
        self.returns: dict[int, list[tuple[int, int]]] = {}  # return state -> (call state, callee)
        for state, calls in node.calls.items():
            for callee, ret in calls:
                self.returns.setdefault(ret, []).append((state, callee))

    def derive(self, cut_off: set[int], closes: bool) -> Node:
        """The template without its calls to ``cut_off`` (and without ``}`` unless
        ``closes``), its states that then cannot finish made dead. The template's plain-text
        reach stays a valid bound (cutting only lengthens the way to a boundary)."""
        node = self.node
        accepting = node.dfa.accepting
        live = accepting.tolist()
        stack = [s for s, a in enumerate(live) if a]
        if closes:
            for s in np.flatnonzero(self.closing).tolist():
                if not live[s]:
                    live[s] = True
                    stack.append(s)
        before, returns = self.before, self.returns
        while stack:
            s = stack.pop()
            for p in before[s]:
                if not live[p]:
                    live[p] = True
                    stack.append(p)
            for p, callee in returns.get(s, ()):
                if not live[p] and callee not in cut_off:
                    live[p] = True
                    stack.append(p)
        alive = np.array(live, dtype=bool)
        cut = node.dfa.transitions.astype(np.int32)  # (a copy)
        dead = np.flatnonzero(~alive)
        changed = [np.flatnonzero(self.closing & alive)] if not closes else []
        if dead.size:
            into = self._edges_into(dead)
            cut[self.into[0][into], self.into[1][into]] = -1
            sources = self.into[0][into]
            changed.append(sources[alive[sources]])  # (a dead state is never reached: left as it was)
        if not closes:
            cut[self.closing, ord("}")] = -1
        calls = {
            s: kept
            for s, pairs in node.calls.items()
            if alive[s] and (kept := tuple(p for p in pairs if p[0] not in cut_off and alive[p[1]]))
        }
        boundary = accepting.copy()
        boundary[list(calls)] = True
        dfa = ByteDFA(cut, accepting)
        derived = Node(node.number, node.path, dfa, calls, boundary, closes, node.plain_reach)
        derived.cut_from = (node, self._with_multi_byte_sources(changed, alive))
        return derived

    def _edges_into(self, states: np.ndarray) -> np.ndarray:
        """The template's edges into ``states`` (positions in ``self.into``)."""
        return concat_ranges(self.into_start[states], self.into_start[states + 1] - self.into_start[states])

    def _with_multi_byte_sources(self, rows: list[np.ndarray], alive: np.ndarray) -> np.ndarray:
        """``rows`` and every ``alive`` state whose multi-byte characters pass through one of
        them: the sources of their edges on bytes from 0x80 on, up to three bytes back (sorted)."""
        found = fast_unique.unique(np.concatenate(rows)) if rows else np.empty(0, dtype=np.intp)
        frontier = found
        for _ in range(3):
            into = self._edges_into(frontier)
            sources = self.into[0][into][self.into[1][into] >= 0x80]
            frontier = fast_unique.unique(sources[alive[sources]])
            if not frontier.size:
                break
            found = fast_unique.unique(np.concatenate([found, frontier]))
        return found




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
    # (what else the node is, a run, layers, a unique item, its needs, stays; its walks go, and
    # a rest node's table is no longer its template's but for a few rows)
    dfa = ByteDFA(cut, accepting)
    return replace(
        node, dfa=dfa, calls=calls, boundary=boundary, plain_reach=safe,
        guide=None, crossings={}, cut_from=None,
    )


def _reach(safe: np.ndarray) -> np.ndarray:
    """``Node.plain_reach`` from a per-state "plain text never crosses" flag."""
    return np.where(safe, PLAIN_NEVER, 0).astype(np.int32)


def split_schema(
    canonical: str,
    whitespace_pattern: str | None,
    lenient: bool,
    extra: bool | None,
    remember_keys: bool = False,
) -> SplitSchema:
    """The split schema for canonical JSON text (see :func:`.loading.prepare_schema`)."""
    return SplitSchema(json.loads(canonical), whitespace_pattern, lenient, extra, remember_keys)
