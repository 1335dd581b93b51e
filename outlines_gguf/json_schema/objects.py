"""The JSON Schema compiler's rules for objects: members in order or in any order, extra
members, chunked objects, property names."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from math import comb
from typing import TYPE_CHECKING, Any, Protocol, cast

from outlines_gguf.automata.charsets import _complement, _normalize
from outlines_gguf.automata.dfa import ByteDFA, texts
from outlines_gguf.automata.nfa import Fragment
from outlines_gguf.automata.ops import difference, intersect
from outlines_gguf.automata.regex import NFABuilder
from outlines_gguf.errors import EmptyLanguageError, SchemaError
from outlines_gguf.json_schema.keywords import (
    CHUNK_KEY,
    DISTINCT_KEYS_KEY,
    EXTRA_KEY,
    EXTRA_VALUE_DEPTH,
    EXTRAS_WRITTEN_KEY,
    FREE_FORM_DEPTH,
    MAX_ITEMS_CAP,
    MAX_SOME_MEMBERS,
    MEMBER_CHUNK,
    OBJECT_KEY,
    SOME_MEMBER_KEY,
    WRITTEN_KEY,
    _pointer,
    call_marker,
)
from outlines_gguf.json_schema.lexical import (
    _NO_KEY,
    _RAW_FORBIDDEN,
    _intersect_ranges,
    _searched,
    any_key_char,
    foreign_escape,
    foreign_escapes,
    spelled_key,
)
from outlines_gguf.json_schema.scalars import pattern_part_dfa
from outlines_gguf.json_schema.validate import Undecided, pattern_matches

if TYPE_CHECKING:
    from outlines_gguf.json_schema.compiler_api import CompilerAPI

ANY_ORDER_MAX = 512
"""In split mode, an object with at most this many declared properties (and no
min/maxProperties) takes them in any order, each at most once: configuration schemas declare
a hundred keys or more (Hugo's, TypeScript's compilerOptions) and documents list them in
their own order. Larger objects take them in the order of ``properties`` (extra members still
anywhere), in runs of :data:`MEMBER_CHUNK` (``chunked_object``): every node of a set of
members written holds a branch per member left, so a template grows with the members."""

CANONICAL_ANY_ORDER_MAX = 5
"""An item of an array with ``uniqueItems`` (compiled canonically, one automaton) takes the
members of an object of at most this many, none of which holds an object or an array, in any
order (2^n states, each member's automaton on 2^(n-1) edges: nested, the copies multiply and a
5-by-5 object passed 20,000 states); other objects sorted. The items written are left out by
every spelling of their values (``spellings.spellings_dfa``, a superset: any order wherever at
most this many members), so no two items are one value either way."""

LISTED_KEYS_MAX = 64
"""Under ``minProperties`` (2 or more), the keys of extra members, where ``propertyNames`` or
finite patterns list at most this many, become declared members: each written at most once, so
every member a text writes is one of the parsed object's (see ``listed_extra_keys``)."""

EAGER_ORDER_MAX = 3
"""Objects of at most this many members written in any order are one automaton with a state per
set of members written (2^n); larger ones are a node per set, compiled when generation reaches
it (``members_after``), so only the sets a document passes through are ever built."""

MAX_EAGER_RESTS = 256
"""With ``minProperties``, the rest nodes below the minimum are compiled with their object (to
decide whether the minimum can be reached): an object takes its members in any order only
where there are at most this many such sets."""

_OBJECT_NUMBERS = itertools.count()
"""Numbers for the objects compiled in any order (:data:`OBJECT_KEY`), unique in the process."""

_Count = tuple[int, int, int, int]
"""A position in ``object_body``: (members written, those counted towards the minimum, whether
an extra member was written, the set of :data:`SOME_MEMBER_KEY` requirements met (bits))."""

Marks = list[tuple[int, dict[int, Callable[[], "Fragment | None"]], "Callable[[], Fragment | None] | None"]]
"""Ways an object's members meet its :data:`SOME_MEMBER_KEY` requirements: (the set of them met
at once, as bits; the members (by their index) that may meet them, each as the member's fragment
limited to what meets them; the extra member that meets them, None if none can)."""

MAX_OVERLAPPING_PATTERNS = 4
"""Overlapping ``patternProperties`` (a key matching two must satisfy both schemas) are split
into the sets of patterns a key matches, 2^n - 1 of them: up to this many patterns."""


def _never(schema: Any) -> bool:
    """No value satisfies ``schema``, by its form alone: ``false``, an empty ``enum``, or an
    ``allOf`` with such a part (as ``dependencies`` write a property that must be absent)."""
    if schema is False:
        return True
    if not isinstance(schema, dict):
        return False
    if schema.get("enum") == []:
        return True
    parts = schema.get("allOf")
    return isinstance(parts, list) and any(_never(p) for p in parts)


@dataclass(frozen=True)
class MemberCounts:
    """What ``minProperties``/``maxProperties`` allow of an object whose members come in any
    order, at a point where the members ``written`` and ``extras`` extra members have been.

    Nodes only ever lead to *feasible* points, from which the object can still be finished
    (its missing required members fit under the maximum, and enough members are left, or
    extra ones allowed, to reach the minimum), so no mask opens a member that dead-ends."""

    names: tuple[str, ...]  # the members
    required: frozenset[str]
    low: int
    high: int | None
    extras: bool  # extra members may be written
    distinct: bool = False  # the guide keeps extra keys distinct below the minimum (DISTINCT_KEYS_KEY)

    @classmethod
    def of(cls, schema: dict, names: Collection[str]) -> MemberCounts:
        high = schema.get("maxProperties")
        return cls(
            tuple(names),
            frozenset(schema.get("required", [])),
            int(schema.get("minProperties", 0)),
            None if high is None else int(high),
            EXTRA_KEY in schema,
            DISTINCT_KEYS_KEY in schema,
        )

    @property
    def counted(self) -> bool:
        return self.low > 0 or self.high is not None

    def feasible(self, written: Collection[str], extras: int) -> bool:
        count = len(written) + extras
        missing = len(self.required - set(written))
        if self.high is not None and (count > self.high or missing > self.high - count):
            return False
        if self.extras and self.distinct:  # (as many extra keys as the minimum wants)
            return True
        return len(self.names) + int(self.extras or extras > 0) >= self.low

    def closes(self, written: Collection[str], extras: int) -> bool:
        """``}`` may come: every required member written, the minimum reached (extra members
        count once unless ``distinct``: two may share a key, and the parsed object then holds
        one)."""
        return self.required <= set(written) and len(written) + self.counted_extras(extras) >= self.low

    def counted_extras(self, extras: int) -> int:
        """The extra members that count towards the minimum."""
        return extras if self.distinct else min(extras, 1)

    def below_minimum(self, written: Collection[str], extras: int) -> bool:
        """The members written do not reach the minimum yet (extra keys must stay distinct)."""
        return len(written) + self.counted_extras(extras) < self.low

    def after_extra(self, written: Collection[str], extras: int) -> int:
        """The extras counted after one more: exact under a maximum, else as far as the
        minimum tells them apart (past it, more change nothing; one unless ``distinct``)."""
        if self.high is not None:
            return extras + 1
        told_apart = max(self.low - len(written), 0) if self.distinct else int(self.low > len(written))
        return min(extras + 1, told_apart)


def rest_schema(base: dict, written: list[str], extras: int, counted: bool) -> dict:
    """The schema of the node for an any-order object's rest (see ``members_after``)."""
    return {**base, WRITTEN_KEY: written, **({EXTRAS_WRITTEN_KEY: extras} if counted else {})}


def distinct_link(link: dict, keys: Collection[str]) -> dict:
    """The extra member of an object whose extra keys stay distinct below ``minProperties``,
    leaving out ``keys`` (declared names: never an extra key), remembered by the guide
    (:data:`DISTINCT_KEYS_KEY`)."""
    declared = {**link.get("properties", {}), **dict.fromkeys(keys, False)}
    return {**link, "properties": declared, DISTINCT_KEYS_KEY: sorted(keys)}


def plain_link(link: dict) -> dict:
    """:func:`distinct_link`'s extra member without the keys it leaves out nor the memory: the
    object's own, once its minimum is reached."""
    keys = link.get(DISTINCT_KEYS_KEY, [])
    declared = {n: s for n, s in link.get("properties", {}).items() if n not in keys}
    return {k: v for k, v in {**link, "properties": declared}.items() if k != DISTINCT_KEYS_KEY}


def eager_rests(n: int, low: int) -> int:
    """The sets of members below ``minProperties`` (compiled with their object)."""
    return sum(comb(n, c) for c in range(min(low, n + 1)))


class _Link(Protocol):
    """Adds the edges of one member from ``source`` to ``target`` (after a comma if ``comma``)."""

    def __call__(self, source: int, fragment: Fragment | None, target: int, comma: bool) -> None: ...


class _ObjectRules:
    """Object rules of the JSON Schema compiler (mixed into ``_Compiler``)."""

    def object(self: CompilerAPI, schema: dict, path: str, depth: int) -> Fragment | None:
        """An object (entered through ``_Compiler.container``)."""
        props = schema.get("properties", {}) or {}
        if not isinstance(props, dict):
            raise self.fail("properties must be an object", path)
        required = schema.get("required", [])
        if not isinstance(required, list):
            raise self.fail("required must be an array", path)
        for name in required:
            if name not in props:
                props = {**props, name: True}
        if not {CHUNK_KEY, EXTRA_KEY, WRITTEN_KEY} & set(schema):  # (runs, extras, rests: by their object)
            props = self.member_schemas(schema, props, path)
        names = self.key_names(schema.get("propertyNames", True), f"{path}/propertyNames")
        if names is not None:  # keys propertyNames refuses cannot be written, declared or not
            allowed = {n for n in props if names.matches(json.dumps(n, ensure_ascii=False).encode())}
            if any(n not in allowed for n in required):
                return None
            props = {n: s for n, s in props.items() if n in allowed}
        additional = schema.get(
            "additionalProperties", True if self.extra_properties is None else self.extra_properties
        )
        if "additionalProperties" in schema:
            additional = schema["additionalProperties"]
        pattern_props = schema.get("patternProperties", {})
        min_p = int(schema.get("minProperties", 0))
        if min_p >= 2 and not {CHUNK_KEY, EXTRA_KEY, WRITTEN_KEY} & set(schema):
            # a text may write a key twice (the parsed object has it once), so extra members
            # are counted once towards the minimum (``MemberCounts``); where their keys are a
            # short list, they become members of their own, each written at most once: exact
            listed = self.listed_extra_keys(props, additional, pattern_props, names, path)
            if listed:
                spelled = {**schema, "additionalProperties": additional}
                props = {**props, **self.member_schemas(spelled, dict.fromkeys(listed, True), path)}
            if listed is not None:
                additional, pattern_props = False, {}
        if self.canonical:  # members in one order whatever the schema (where not in any order)
            props = dict(sorted(props.items()))
        max_p = schema.get("maxProperties")
        if max_p is not None and max_p > MAX_ITEMS_CAP:
            # counted members are states: cap like maxItems (a valid subset)
            max_p = min(int(max_p), max(MAX_ITEMS_CAP, min_p, len(props)))
        next_depth = depth - 1 if not schema else depth

        members: list[tuple[Callable[[], Fragment | None], bool]] = []
        member_names: list[str] = []
        for name, sub in props.items():
            if name not in required and _never(sub):
                continue  # never written (nor is its key an extra one): no member to order

            def make(name: str = name, sub: Any = sub) -> Fragment | None:
                v = self.value(sub, f"{path}/properties/{_pointer(name)}", next_depth)
                if v is None:
                    return None
                return self.b.seq([self.lit(json.dumps(name, ensure_ascii=False)), self.colon(), v])

            members.append((make, name in required))
            member_names.append(name)

        part = schema.get(CHUNK_KEY)
        if part is not None:  # a run of another object's members (see chunked_object)
            link = schema.get(EXTRA_KEY)
            between = None if link is None else self.call_maker(link, f"{path}/additionalProperties")
            return self.object_body(members, between, 1 if part == "first" else 2, None, part=part)
        if WRITTEN_KEY in schema:  # an object whose members come in any order: its own node
            link = schema.get(EXTRA_KEY)
            if link is not None and DISTINCT_KEYS_KEY in schema:  # (its keys remembered: distinct)
                link = distinct_link(link, [])
            between = None if link is None else self.call_maker(link, f"{path}/additionalProperties")
            # from "{" (None written), or the template every rest node is derived from (the
            # split schema derives rest nodes, never compiles them)
            first = schema[WRITTEN_KEY] is None
            return self.members_after(schema, member_names, members, between, path, first)
        if EXTRA_KEY in schema:  # one extra member of another object, as a node of its own
            with self.nested():  # its value is nested
                member = self.extra_member(
                    props, additional, pattern_props, path, next_depth, schema.get("propertyNames", True)
                )
                return None if member is None else member()
        names_schema = schema.get("propertyNames", True)
        extra = self.extra_member(props, additional, pattern_props, path, next_depth, names_schema)
        # extra members counted one by one towards the minimum, their keys kept distinct by the
        # guide (each object's rest a node, in any order, DISTINCT_KEYS_KEY)
        distinct = (
            extra is not None
            and not schema.get(SOME_MEMBER_KEY)
            and min_p >= 2
            and self.calls is not None
            and self.remember_keys
            and not self.canonical
            and len(members) <= ANY_ORDER_MAX
            and eager_rests(len(members), min_p) <= MAX_EAGER_RESTS
        )
        if extra is not None and min_p >= 2 and not distinct:
            # extra members count once towards the minimum (``object_body``, ``MemberCounts``):
            # distinct keys of any number of them are not a regular set, and a key written
            # twice is one member of the parsed object; where the declared members and one
            # extra cannot reach the minimum, no object is left (lenient: that minimum)
            self.subsets.add(f"{path}/minProperties")
            if min_p > len(members) + 1:
                if not self.lenient:
                    return None
                min_p = len(members) + 1
        link = None
        if extra is not None and self.calls is not None:
            link = {
                EXTRA_KEY: True,
                "type": "object",
                "properties": props,
                "additionalProperties": additional,
                "patternProperties": pattern_props,
                "propertyNames": schema.get("propertyNames", True),
            }
            extra = self.call_maker(link, f"{path}/additionalProperties")
        if self.canonical and extra is not None:
            # one spelling per value: an extra member only alone (two could come in either order)
            if members:
                extra = None
            else:
                max_p = 1 if max_p is None else min(int(max_p), 1)
        counted = min_p > 0 or max_p is not None
        some = schema.get(SOME_MEMBER_KEY)
        if some:  # (every way to meet each requirement tracked by the automaton)
            marks = self.member_marks(
                some, props, member_names, additional, pattern_props, names_schema, path, next_depth
            )
            if marks is None:
                return None
            if not self.canonical and 1 < len(members) <= EAGER_ORDER_MAX and not counted:
                return self.marked_any_order_body(members, extra, marks)
            if len(member_names) > 1:
                self.subsets.add(f"{path}/properties")  # (in declared order: a valid subset)
            canonical_alone = self.canonical and bool(members)
            marks = [(bits, meeting, None if canonical_alone else marked) for bits, meeting, marked in marks]
            return self.object_body(members, extra, min_p, None if max_p is None else int(max_p), marks=marks)
        if self.calls is not None and len(members) > ANY_ORDER_MAX and min_p == 0 and max_p is None:
            return self.chunked_object(props, required, extra, link, path)
        if distinct or (
            self.calls is not None
            and 1 < len(members) <= ANY_ORDER_MAX
            and eager_rests(len(members), min_p) <= MAX_EAGER_RESTS
        ):
            if len(members) <= EAGER_ORDER_MAX and not counted:
                return self.any_order_body(members, extra)
            base = {
                "type": "object",
                "properties": props,
                "required": [n for n in required if n in props],
                "additionalProperties": False,
                OBJECT_KEY: next(_OBJECT_NUMBERS),
            }
            if min_p:
                base["minProperties"] = min_p
            if max_p is not None:
                base["maxProperties"] = int(max_p)
            if link is not None:
                base[EXTRA_KEY] = link
            if distinct:
                base[DISTINCT_KEYS_KEY] = []
            # a node of its own, even where this object is one branch of a union: the values
            # of its required members are that node's needs, and only its own
            return self.call_maker({**base, WRITTEN_KEY: None}, path)()
        spread_out = 1 < len(members) or (members and extra is not None)  # (an order to lose)
        small = len(members) <= EAGER_ORDER_MAX and not counted
        if self.intersected and not self.canonical and spread_out and small:
            # an allOf part compiled as a whole automaton, to be intersected with another: in
            # any order, so the product keeps every order both parts take (the whole-schema
            # engine, engine="dfa", writes declared order: one spelling, a smaller automaton)
            return self.any_order_body(members, extra)
        if self.canonical and 1 < len(members) <= CANONICAL_ANY_ORDER_MAX and not counted and extra is None:
            nested = any({"object", "array"} & self.possible_types(sub, path) for sub in props.values())
            if not nested:
                return self.any_order_body(members, None)
        return self.object_body(members, extra, min_p, None if max_p is None else int(max_p))

    def member_schemas(self: CompilerAPI, schema: dict, props: dict, path: str) -> dict:
        """Each member's whole schema: a key is governed by its ``properties`` entry *and* every
        ``patternProperties`` pattern it matches, and by ``additionalProperties`` where neither
        (a name only ``required`` lists is such a key: ``additionalProperties: false`` makes it
        impossible). Declared keys are written as members, never as pattern or extra keys, so
        their members must carry all of that."""
        declared = schema.get("properties") or {}
        patterns = schema.get("patternProperties") or {}
        additional = schema.get("additionalProperties", True)
        if not patterns and (additional is True or additional == {} or set(props) == set(declared)):
            return props
        out = {}
        for name, sub in props.items():
            parts = [sub] if name in declared else []
            for pat, pat_sub in patterns.items():
                if self.key_matches(pat, name, path):
                    parts.append(pat_sub)
            if not parts:
                parts = [additional]
            kept = [p for p in parts if p is not True and p != {}]
            out[name] = True if not kept else kept[0] if len(kept) == 1 else {"allOf": kept}
        return out

    def any_order_body(
        self: CompilerAPI,
        members: list[tuple[Callable[[], Fragment | None], bool]],
        extra: Callable[[], Fragment | None] | None,
    ) -> Fragment | None:
        """``{`` the declared members in any order (each at most once), extra members anywhere
        between them, ``}``: one state per set of members written (2^n for n members, so only
        for small objects, see :data:`EAGER_ORDER_MAX`). Real documents do not always list keys in
        the order of ``properties``."""
        b = self.b
        required = sum(1 << i for i, (_, must) in enumerate(members) if must)
        entry = self.open("{")
        end = b.nfa.state()
        state: dict[int, int] = {0: entry[1]}  # set of members written -> NFA state
        extras_only = None  # only extra members so far

        link = self.member_link

        def close(source: int) -> None:
            self.close_into(source, end)

        if extra is not None:
            extras_only = b.nfa.state()
            link(state[0], extra(), extras_only, comma=False)
            link(extras_only, extra(), extras_only, comma=True)
            if not required:
                close(extras_only)
        called, self._leaves_called = self._leaves_called, True  # each value once, as a call
        try:
            self.any_order_states(members, extra, state, extras_only, required, link, close)
        finally:
            self._leaves_called = called
        return entry[0], end

    def any_order_states(
        self: CompilerAPI,
        members: list[tuple[Callable[[], Fragment | None], bool]],
        extra: Callable[[], Fragment | None] | None,
        state: dict[int, int],
        extras_only: int | None,
        required: int,
        link: _Link,
        close: Callable[[int], None],
    ) -> None:
        """The member edges of :meth:`any_order_body`, from each set of members written."""
        b = self.b
        n = len(members)
        for written in range(1 << n):  # ascending: a set comes after its subsets
            source = state.get(written)
            if source is None:
                continue
            if written and extra is not None:
                link(source, extra(), source, comma=True)
            if written & required == required:
                close(source)
            for i, (make, _) in enumerate(members):
                if written >> i & 1:
                    continue
                if written | 1 << i not in state:
                    state[written | 1 << i] = b.nfa.state()
                target = state[written | 1 << i]
                member = make()
                if member is None:
                    continue
                if written:
                    link(source, member, target, comma=True)
                    continue
                link(source, member, target, comma=False)  # the first thing written
                if extras_only is not None:
                    sep = self.comma()
                    b.nfa.eps[extras_only].append(sep[0])
                    b.nfa.eps[sep[1]].append(member[0])

    def marked_any_order_body(
        self: CompilerAPI,
        members: list[tuple[Callable[[], Fragment | None], bool]],
        extra: Callable[[], Fragment | None] | None,
        marks: Marks,
    ) -> Fragment | None:
        """:meth:`any_order_body` for an object with :data:`SOME_MEMBER_KEY` requirements: a state
        per (members written, requirements met, whether anything was written), a member that may
        meet some also written as the member that meets them, ``}`` once every one is met."""
        b = self.b
        required = sum(1 << i for i, (_, must) in enumerate(members) if must)
        every = 0
        for bits, _, _ in marks:
            every |= bits
        entry = self.open("{")
        end = b.nfa.state()
        start: tuple[int, int, bool] = (0, 0, False)
        state = {start: entry[1]}
        pending = [start]
        called, self._leaves_called = self._leaves_called, True  # each value once, as a call
        try:
            while pending:
                key = pending.pop()
                written, met, wrote = key
                source = state[key]
                if written & required == required and met == every:
                    self.close_into(source, end)
                ways: list[tuple[Callable[[], Fragment | None], int, int]] = []  # (member, written, met)
                if extra is not None:
                    ways.append((extra, written, met))
                for bits, _, marked in marks:
                    if marked is not None:
                        ways.append((marked, written, met | bits))
                for i, (make, _) in enumerate(members):
                    if not written >> i & 1:
                        ways.append((make, written | 1 << i, met))
                        ways += [(m[i], written | 1 << i, met | bits) for bits, m, _ in marks if i in m]
                for make, to_written, to_met in ways:
                    target_key = (to_written, to_met, True)
                    if target_key not in state:
                        state[target_key] = b.nfa.state()
                        pending.append(target_key)
                    self.member_link(source, make(), state[target_key], comma=wrote)
        finally:
            self._leaves_called = called
        return entry[0], end

    def member_link(
        self: CompilerAPI, source: int, fragment: Fragment | None, target: int, comma: bool
    ) -> None:
        """Adds the edges of one member (a :data:`_Link`): ``source``, a comma if ``comma``, the
        member, ``target``."""
        if fragment is None:
            return
        eps = self.b.nfa.eps
        if comma:
            sep = self.comma()
            eps[source].append(sep[0])
            eps[sep[1]].append(fragment[0])
        else:
            eps[source].append(fragment[0])
        eps[fragment[1]].append(target)

    def close_into(self: CompilerAPI, source: int, end: int) -> None:
        """Adds the edges of the closing brace from ``source`` to ``end``."""
        piece = self.close("}")
        self.b.nfa.eps[source].append(piece[0])
        self.b.nfa.eps[piece[1]].append(end)

    def members_after(
        self: CompilerAPI,
        base: dict,
        names: list[str],
        members: list[tuple[Callable[[], Fragment | None], bool]],
        extra: Callable[[], Fragment | None] | None,
        path: str,
        first: bool,
    ) -> Fragment:
        """An object whose members come in any order: from ``{`` (``first``, the object's own
        node), ``}`` once every required member is written, an extra member, or a member, its
        value (a call), and a tail call to the node for the rest after it (``base`` with
        :data:`WRITTEN_KEY`); or the *template* (not ``first``): the same after a comma, ``}``
        always. ``SplitSchema`` compiles the template once per object and derives the node of
        each set of members written from it by cutting branches.

        A node per set of members written, built when generation reaches it: only the sets a
        document passes through are built, n of them for n members, where one automaton would
        need 2^n states. The values of the required members are the object node's ``needs``:
        the rest nodes are taken to be satisfiable without being compiled, which holds exactly
        when those values are (see ``SplitSchema._decide``)."""
        b = self.b
        assert self.calls is not None
        entry = self.open("{") if first else None
        start = entry[1] if entry is not None else b.nfa.state()
        end = b.nfa.state()
        missing = [n for n, (_, must) in zip(names, members, strict=True) if must]
        if first:
            member_path = f"{path}/properties/"
            self.needs.extend(self.calls(base["properties"][n], member_path + _pointer(n)) for n in missing)
        counts = MemberCounts.of(base, names)
        if counts.counted:
            self.counted_members(base, names, members, extra, path, first, counts, (start, end))
            return (entry[0] if entry is not None else start), end
        if not missing or not first:
            self.close_into(start, end)
        source, comma = start, not first  # where the declared members start
        if extra is not None and first:
            extras_only = b.nfa.state()  # from "{": only extra members so far
            self.member_link(start, extra(), extras_only, comma=False)
            self.member_link(extras_only, extra(), extras_only, comma=True)
            if not missing:
                self.close_into(extras_only, end)
            # (one copy of the members, entered from "{" or after a comma: two copies doubled
            # the automaton of a wide open object, tsconfig's compilerOptions)
            source, comma = b.nfa.state(), False
            sep = self.comma()
            b.nfa.eps[start].append(source)
            b.nfa.eps[extras_only].append(sep[0])
            b.nfa.eps[sep[1]].append(source)
        elif extra is not None:
            self.member_link(start, extra(), start, comma=True)
        called, self._leaves_called = self._leaves_called, True  # each value once, as a call
        try:
            for name, (make, _) in zip(names, members, strict=True):
                rest = self.call_maker(rest_schema(base, [name], 0, False), path)
                member = make()
                if member is not None:
                    self.member_link(source, b.seq([member, rest()]), end, comma)
        finally:
            self._leaves_called = called
        return (entry[0] if entry is not None else start), end

    def counted_members(
        self: CompilerAPI,
        base: dict,
        names: list[str],
        members: list[tuple[Callable[[], Fragment | None], bool]],
        extra: Callable[[], Fragment | None] | None,
        path: str,
        first: bool,
        counts: MemberCounts,
        ends: tuple[int, int],
    ) -> None:
        """:meth:`members_after` where min/maxProperties count the members, from ``{`` or in
        the template (nothing written): ``}``, each member or an extra one followed by a tail
        call to the rest node of what is then written (extra members are counted too). From
        ``{`` only feasible points are entered (:class:`MemberCounts`); the split schema
        derives each rest node from the template by cutting what its counts forbid."""
        start, end = ends
        template = not first
        none: frozenset[str] = frozenset()
        if template or counts.closes(none, 0):
            self.close_into(start, end)
        comma = not first
        called, self._leaves_called = self._leaves_called, True  # each value once, as a call
        try:
            for name, (make, _) in zip(names, members, strict=True):
                if template or counts.feasible({name}, 0):
                    member = make()
                    rest = self.call_maker(rest_schema(base, [name], 0, True), path)
                    if member is not None:
                        self.member_link(start, self.b.seq([member, rest()]), end, comma)
            if extra is not None and (template or counts.feasible(none, 1)):
                more = counts.after_extra(none, 0)
                rest = self.call_maker(rest_schema(base, [], more, True), path)
                piece = extra()
                if piece is not None:
                    self.member_link(start, self.b.seq([piece, rest()]), end, comma)
        finally:
            self._leaves_called = called

    def member_marks(
        self: CompilerAPI,
        some: Any,
        props: dict,
        names: list[str],
        additional: Any,
        pattern_props: dict,
        names_schema: Any,
        path: str,
        depth: int,
    ) -> Marks | None:
        """The ways an object's members meet its :data:`SOME_MEMBER_KEY` requirements. One member
        may meet several at once (the only one under ``maxProperties: 1``), so there is a way
        per set of requirements: the declared members whose name every key schema of the set
        accepts, as members whose value every value schema accepts too, and the extra member
        whose key and value all of them accept (a node of its own in split mode, as the
        object's extra member). None: a requirement no member can meet, so no object."""
        where = f"{path}/not"
        if isinstance(some, list) and len(some) > MAX_SOME_MEMBERS and self.lenient:
            some = some[:MAX_SOME_MEMBERS]  # (the others left out, as lenient leaves out a 'not')
        if not isinstance(some, list) or len(some) > MAX_SOME_MEMBERS:
            raise self.fail(
                f"an object may need at most {MAX_SOME_MEMBERS} members that a 'not' of "
                "patternProperties, propertyNames or additionalProperties asks for (pass "
                f"lenient=True to keep the first {MAX_SOME_MEMBERS})",
                where,
            )
        keys = [self.key_names(key_schema, where) for key_schema, _ in some]
        spelled = [json.dumps(name, ensure_ascii=False).encode() for name in names]
        marks: Marks = []
        met = 0  # the requirements some way meets
        for bits in range(1, 1 << len(some)):
            chosen = [i for i in range(len(some)) if bits >> i & 1]
            values = [some[i][1] for i in chosen]
            meeting: dict[int, Callable[[], Fragment | None]] = {}
            for index, name in enumerate(names):
                if not all(keys[i] is None or cast(ByteDFA, keys[i]).matches(spelled[index]) for i in chosen):
                    continue
                both = {"allOf": [props[name], *values]}

                def make(name: str = name, both: Any = both) -> Fragment | None:
                    v = self.value(both, f"{path}/properties/{_pointer(name)}", depth)
                    if v is None:
                        return None
                    return self.b.seq([self.lit(json.dumps(name, ensure_ascii=False)), self.colon(), v])

                meeting[index] = make
            marked: Callable[[], Fragment | None] | None = None
            possible = all(keys[i] is not _NO_KEY for i in chosen)
            if possible and (additional is not False or pattern_props):
                limited_names = {"allOf": [names_schema, *(some[i][0] for i in chosen)]}
                limited_additional = additional if additional is False else {"allOf": [additional, *values]}
                limited_patterns = {p: {"allOf": [sub, *values]} for p, sub in pattern_props.items()}
                if self.calls is not None:
                    link = {
                        EXTRA_KEY: True,
                        "type": "object",
                        "properties": props,
                        "additionalProperties": limited_additional,
                        "patternProperties": limited_patterns,
                        "propertyNames": limited_names,
                    }
                    marked = self.call_maker(link, f"{path}/additionalProperties")
                else:
                    marked = self.extra_member(
                        props, limited_additional, limited_patterns, path, depth, limited_names
                    )
            if meeting or marked is not None:
                marks.append((bits, meeting, marked))
                met |= bits
        return marks if met == (1 << len(some)) - 1 else None

    def call_maker(self: CompilerAPI, schema: Any, path: str) -> Callable[[], Fragment]:
        """A function writing a call to the node for ``schema`` (registered once, now)."""
        assert self.calls is not None
        marker = call_marker(self.calls(schema, path))
        return lambda: self.b.literal(marker)

    def extra_loops(
        self: CompilerAPI,
        nothing: int | None,
        something: int | None,
        extra: Callable[[], Fragment | None] | None,
    ) -> None:
        """Extra members between runs: the first one written moves ``nothing`` to ``something``."""
        if extra is None or something is None:
            return
        b = self.b
        if nothing is not None:
            member = extra()
            if member is not None:
                b.nfa.eps[nothing].append(member[0])
                b.nfa.eps[member[1]].append(something)
        comma, member = self.comma(), extra()
        if member is not None:
            b.nfa.eps[something].append(comma[0])
            b.nfa.eps[comma[1]].append(member[0])
            b.nfa.eps[member[1]].append(something)

    def chunked_object(
        self: CompilerAPI,
        props: dict,
        required: list,
        extra: Callable[[], Fragment | None] | None,
        link: dict | None,
        path: str,
    ) -> Fragment | None:
        """An object with many properties, in split mode: its members in runs of
        :data:`MEMBER_CHUNK`, each run a call. Optional members written in order make the keys
        that may come next a different set after every member, so one automaton for all of
        them grows with the square of their number; runs keep that square small.

        Each run is two nodes: ``first`` (nothing written before it: no comma before its
        first member) and ``after`` (a comma before each member); both write at least one
        member, and a run without required members may be skipped.
        """
        b = self.b
        names = list(props)
        entry = self.open("{")
        nothing: int | None = entry[1]  # no member written yet
        something: int | None = b.nfa.state()  # at least one member written (dead until reached)
        for lo in range(0, len(names), MEMBER_CHUNK):
            run = names[lo : lo + MEMBER_CHUNK]
            must = [n for n in run if n in required]
            base = {
                "type": "object",
                "properties": {n: props[n] for n in run},
                "required": must,
                "additionalProperties": False,
            }
            if link is not None:
                base[EXTRA_KEY] = link  # extra members may come between the run's members too
            self.extra_loops(nothing, something, extra)
            next_nothing = b.nfa.state() if nothing is not None and not must else None
            next_something = b.nfa.state()
            runs = ((nothing, "first", next_nothing), (something, "after", next_something))
            for source, part, skipped in runs:  # skipped: where the run's source goes if it is skipped
                if source is None:
                    continue
                if skipped is not None and not must:
                    b.nfa.eps[source].append(skipped)
                call = self.call_maker({**base, CHUNK_KEY: part}, f"{path}/properties/{_pointer(run[0])}..")()
                b.nfa.eps[source].append(call[0])
                b.nfa.eps[call[1]].append(next_something)
            nothing, something = next_nothing, next_something
        self.extra_loops(nothing, something, extra)
        end = b.nfa.state()
        for source in (nothing, something):
            if source is not None:
                close = self.close("}")
                b.nfa.eps[source].append(close[0])
                b.nfa.eps[close[1]].append(end)
        return entry[0], end

    def listed_extra_keys(
        self: CompilerAPI,
        props: dict,
        additional: Any,
        pattern_props: dict,
        names: ByteDFA | None,
        path: str,
    ) -> list[str] | None:
        """The keys an extra member of this object may have, where they are at most
        :data:`LISTED_KEYS_MAX` (``propertyNames`` lists them, or ``additionalProperties`` is
        false and every pattern matches a few keys), declared ones left out; None otherwise."""
        spellings: list[ByteDFA | None]
        if names is not None:
            spellings = [names]
        elif additional is False:
            spellings = [self.key_names({"pattern": p}, f"{path}/patternProperties") for p in pattern_props]
        else:
            return None
        found: set[str] = set()
        for dfa in spellings:
            listed = None if dfa is None else texts(dfa, 4 * LISTED_KEYS_MAX)  # (escaped spellings too)
            if listed is None:
                return None
            found.update(json.loads(text.decode("utf-8", "surrogatepass")) for text in listed)
        keys = sorted(found - set(props))
        if len(keys) > LISTED_KEYS_MAX:
            return None
        if additional is False:  # a key no pattern matches cannot be written
            keys = [k for k in keys if any(self.key_matches(p, k, path) for p in pattern_props)]
        return keys

    def key_matches(self: CompilerAPI, pattern: str, key: str, path: str) -> bool:
        try:
            return pattern_matches(pattern, key)
        except Undecided as exc:
            message = f"patternProperties: {exc} cannot be matched against {key!r}"
            raise self.fail(message, path) from exc

    def key_names(self: CompilerAPI, names: Any, path: str) -> ByteDFA | None:
        """The keys ``propertyNames`` allows, as the automaton of their JSON strings, or None
        when it allows every key."""
        if names is True or names == {}:
            return None
        helper = NFABuilder("propertyNames")
        sub = self.sub_compiler(helper)
        fragment = sub.value({"allOf": [names, {"type": "string"}]}, path, self.max_depth)
        try:
            return helper.build(fragment)
        except EmptyLanguageError:
            return _NO_KEY

    def restrict_key(self: CompilerAPI, key: Fragment | None, names: ByteDFA | None) -> Fragment | None:
        """``key`` limited to what ``propertyNames`` allows."""
        if key is None or names is None:
            return key
        try:
            both = intersect(self.b.build(key), names)
        except EmptyLanguageError:
            return None
        return None if both is None else self.b.dfa(both)

    def extra_member(
        self: CompilerAPI,
        props: dict,
        additional: Any,
        pattern_props: dict,
        path: str,
        depth: int,
        names: Any = True,
    ) -> Callable[[], Fragment | None] | None:
        """A function building one additional "key": value member, or None if none is allowed.
        ``names``: the object's propertyNames schema."""
        key_names = self.key_names(names, f"{path}/propertyNames")
        if pattern_props:
            patterns = list(pattern_props.items())

            overlapping = len(patterns) > 1 and self.patterns_overlap([p for p, _ in patterns], path)
            if overlapping and len(patterns) > MAX_OVERLAPPING_PATTERNS and not self.lenient:
                self.check_disjoint_patterns([p for p, _ in patterns], path)  # raises: which two

            def make_pattern() -> Fragment | None:
                options = []
                if overlapping and len(patterns) <= MAX_OVERLAPPING_PATTERNS:
                    for region, subs in self.pattern_regions([p for p, _ in patterns], path):
                        key = self.restrict_key(self.key_excluding_dfa(self.b.dfa(region), props), key_names)
                        schemas = [patterns[i][1] for i in subs]
                        sub_schema = schemas[0] if len(schemas) == 1 else {"allOf": schemas}
                        v = self.value(sub_schema, f"{path}/patternProperties", depth)
                        if key is not None and v is not None:
                            options.append(self.b.seq([key, self.colon(), v]))
                for pat, sub in [] if overlapping and len(patterns) <= MAX_OVERLAPPING_PATTERNS else patterns:
                    key = self.string({"pattern": pat}, f"{path}/patternProperties")
                    if key is None:
                        continue
                    key = self.restrict_key(self.key_excluding_dfa(key, props), key_names)
                    v = self.value(sub, f"{path}/patternProperties/{_pointer(pat)}", depth)
                    if key is not None and v is not None:
                        options.append(self.b.seq([key, self.colon(), v]))
                if additional is not False:
                    # a key that no pattern matches and no property declares: additionalProperties
                    other = self.key_outside([p for p, _ in patterns], props, path)
                    other = self.restrict_key(other, key_names)
                    if self.calls is None and (additional is True or additional == {}):
                        v = self.any_value(min(depth, EXTRA_VALUE_DEPTH if props else FREE_FORM_DEPTH))
                    else:
                        v = self.value(additional, f"{path}/additionalProperties", depth)
                    if other is not None and v is not None:
                        options.append(self.b.seq([other, self.colon(), v]))
                return self.b.alt(options)

            return make_pattern
        if additional is False:
            return None

        def make_additional() -> Fragment | None:
            if self.calls is not None:
                v = self.value(additional, f"{path}/additionalProperties", depth)
            elif additional is True or additional == {}:
                # an object without declared properties is free-form: its values nest like {}
                limit = EXTRA_VALUE_DEPTH if props else FREE_FORM_DEPTH
                v = self.any_value(min(depth, limit))
            else:
                v = self.value(additional, f"{path}/additionalProperties", depth)
            if v is None:
                return None
            return self.b.seq([self.restrict_key(self.key_except(list(props)), key_names), self.colon(), v])

        return make_additional

    def patterns_overlap(self: CompilerAPI, patterns: list[str], path: str) -> bool:
        """Whether some key matches two of ``patterns`` (searched, as JSON Schema says)."""
        try:
            self.check_disjoint_patterns(patterns, path)
        except SchemaError:
            return True
        return False

    def pattern_regions(self: CompilerAPI, patterns: list[str], path: str) -> list[tuple[ByteDFA, list[int]]]:
        """Overlapping ``patternProperties``: the keys that match exactly the patterns of each
        set, for every set some key matches; such a key's value is governed by every pattern of
        its set."""
        # a key is in a set where it matches each of its patterns under every reader (narrow)
        # and none of the others under any reader (wide); a key on which readers differ is in no
        # set, so it cannot be written
        keys = [_pattern_key_dfa(p, wide=False) for p in patterns]
        wide_keys = [_pattern_key_dfa(p, wide=True) for p in patterns]
        anykey = NFABuilder("key")  # (declared names are taken out of each region afterwards)
        every = anykey.build(
            anykey.seq(
                [
                    anykey.literal('"'),
                    anykey.repeat(lambda: any_key_char(anykey), 0, None),
                    anykey.literal('"'),
                ]
            )
        )
        regions = []
        for chosen in range(1, 1 << len(patterns)):
            region: ByteDFA | None = every
            for i, (key, wide_key) in enumerate(zip(keys, wide_keys, strict=True)):
                if region is None:
                    break
                if chosen >> i & 1:
                    region = None if key is None else intersect(region, key)
                elif wide_key is not None:
                    region = difference(region, wide_key)
            if region is not None:
                regions.append((region, [i for i in range(len(patterns)) if chosen >> i & 1]))
        return regions

    def check_disjoint_patterns(self: CompilerAPI, patterns: list[str], path: str) -> None:
        """Raise a :class:`SchemaError` naming two of ``patterns`` that some key matches, under
        any reader's meaning of their classes (so disjoint patterns are disjoint under each)."""
        dfas = []
        for p in patterns:
            helper = NFABuilder("patternProperties")
            dfas.append(helper.build(helper.regex(_searched(p), negated=True)))
        for i in range(len(dfas)):
            for j in range(i + 1, len(dfas)):
                both = intersect(dfas[i], dfas[j])
                if both is not None:
                    raise self.fail(
                        f"patternProperties {patterns[i]!r} and {patterns[j]!r} overlap: "
                        "cannot be enforced (pass lenient=True)",
                        path,
                    )

    def key_outside(self: CompilerAPI, patterns: list[str], props: dict, path: str) -> Fragment | None:
        """A JSON string key that matches none of ``patterns`` (searched, as JSON Schema says)
        and is none of the declared names: the keys ``additionalProperties`` governs."""
        helper = NFABuilder("patternProperties")
        # (a pattern read in its widest meaning: the key matches it under no reader)
        wide = [_pattern_key_dfa(p, wide=True) for p in patterns]
        taken = [helper.dfa(key) for key in wide if key is not None]
        taken += [helper.literal(json.dumps(n, ensure_ascii=False)) for n in props]
        try:
            excluded = helper.build(helper.alt(taken))
        except EmptyLanguageError:
            excluded = None
        # plain characters, and the escapes of characters no declared name holds (so that a name
        # cannot hide in a spelling; the patterns' automata read escapes themselves)
        anykey = NFABuilder("key")
        plain = _complement(_RAW_FORBIDDEN)
        quote = anykey.literal('"')
        foreign = tuple(foreign_escapes(list(props)))

        def key_char() -> Fragment | None:
            return anykey.alt([anykey.chars(plain), foreign_escape(anykey, foreign)])

        body = anykey.repeat(key_char, 0, None)
        every = anykey.build(anykey.seq([quote, body, anykey.literal('"')]))
        result = every if excluded is None else difference(every, excluded)
        return None if result is None else self.b.dfa(result)

    def key_excluding_dfa(self: CompilerAPI, key: Fragment, props: dict) -> Fragment | None:
        if not props:
            return key
        # keys matching a pattern must not also be declared properties: subtract them
        helper = NFABuilder("key")
        key_dfa = None
        try:
            key_dfa = self.b.build(key)  # determinize the pattern key alone
        except EmptyLanguageError:
            return None
        names = helper.build(helper.alt(spelled_key(helper, n) for n in props))  # (every spelling)
        result = difference(key_dfa, names)
        return None if result is None else self.b.dfa(result)

    def key_except(self: CompilerAPI, names: list[str]) -> Fragment | None:
        """A JSON string key that is none of ``names``: plain characters, and the escaped
        spellings of characters no name holds (``lexical.foreign_escapes``), which make it
        another key."""
        plain = _complement(_RAW_FORBIDDEN)
        foreign = tuple(foreign_escapes(names))

        def escaped() -> list[Fragment | None]:
            return [foreign_escape(b, foreign)] if foreign else []

        trie: dict = {}
        for name in names:
            node = trie
            for ch in name:
                node = node.setdefault(ch, {})
            node[None] = True
        b = self.b

        def build(node: dict) -> Fragment | None:
            options: list[Fragment | None] = []
            if None not in node:
                options.append(b.literal('"'))
            children = [c for c in node if c is not None]
            others = _intersect_ranges(plain, _complement(_normalize((ord(c), ord(c)) for c in children)))
            leaving = ([b.chars(others)] if others else []) + escaped()
            if leaving:

                def any_char() -> Fragment | None:
                    return b.alt([b.chars(plain), *escaped()])

                options.append(b.seq([b.alt(leaving), b.repeat(any_char, 0, None), b.literal('"')]))
            for c in children:
                if ord(c) in dict(_RAW_FORBIDDEN) or c in '"\\' or ord(c) < 0x20:
                    continue
                options.append(b.seq([b.literal(c), build(node[c])]))
            return b.alt(options)

        return b.seq([b.literal('"'), build(trie)])

    def object_body(
        self: CompilerAPI,
        members: list[tuple[Callable[[], Fragment | None], bool]],
        extra: Callable[[], Fragment | None] | None,
        min_p: int,
        max_p: int | None,
        part: str | None = None,
        marks: Marks | None = None,
    ) -> Fragment | None:
        """``{`` members in order (optional ones may be skipped), extras after, ``}``.

        The NFA tracks how many members were written, capped where counts stop
        mattering, so commas go between members and min/maxProperties hold. A
        position is (members written, up to the maximum; those that count towards the
        minimum; whether an extra member was written; the ``marks`` met): extra members
        count once towards the minimum (two may share a key), every one towards the
        maximum. A member that may meet a mark is also written as the member that meets it
        (the automaton's choice: a text meeting it has that way through), and ``}`` comes
        only once every mark is met.
        """
        b = self.b
        marks = marks or []
        total_cap = max(1, min_p, max_p if max_p is not None else 0)
        once = extra is not None and min_p >= 2 and part is None  # (runs only need one member)
        every_mark = 0
        for bits, _, _ in marks:
            every_mark |= bits

        def after(count: _Count, is_extra: bool, mark: int) -> _Count:
            total, counted, extra_seen, met = count
            total = min(total + 1, total_cap)
            met |= mark
            if is_extra and once:
                return total, counted, 1, met
            return total, min(counted + 1, min_p), extra_seen, met

        # ``part``: a run of members inside another object (no braces; "after": a member was
        # written before, so a comma comes first)
        entry = self.open("{") if part is None else self.b.empty()
        first: _Count = (1, 1, 0, 0) if part == "after" else (0, 0, 0, 0)
        level: dict[_Count, int] = {first: entry[1]}

        def member_edge(
            source: int,
            count: _Count,
            make: Callable[[], Fragment | None],
            target: Callable[[_Count], int],
            shared: dict[_Count, Fragment | None],
            is_extra: bool,
            mark: int = 0,
        ) -> None:
            """From ``count``: [comma] member -> the count after it. One member fragment serves
            every count that leads to the same next count (they continue alike)."""
            if max_p is not None and count[0] >= max_p:
                return
            key = after(count, is_extra, mark)
            if key not in shared:
                made = shared[key] = make()
                if made is not None:
                    b.nfa.eps[made[1]].append(target(key))
            member = shared[key]
            if member is None:
                return
            if count[0] > 0:
                comma = self.comma()
                b.nfa.eps[source].append(comma[0])
                b.nfa.eps[comma[1]].append(member[0])
            else:
                b.nfa.eps[source].append(member[0])

        def states() -> tuple[dict[_Count, int], Callable[[_Count], int]]:
            nxt: dict[_Count, int] = {}

            def target(count: _Count) -> int:
                if count not in nxt:
                    nxt[count] = b.nfa.state()
                return nxt[count]

            return nxt, target

        def with_extras(
            level: dict[_Count, int], extra: Callable[[], Fragment | None] | None
        ) -> dict[_Count, int]:
            """The same position, after any number of extra members."""
            nxt, target = states()
            for count, s in level.items():
                b.nfa.eps[s].append(target(count))
            kinds = [(extra, 0)] if extra is not None else []
            kinds += [(marked, bits) for bits, _, marked in marks if marked is not None]
            shared: list[dict[_Count, Fragment | None]] = [{} for _ in kinds]
            pending, seen = sorted(nxt), set(nxt)
            while pending:  # counts created on the way are handled too
                count = pending.pop()
                for (make, mark), made in zip(kinds, shared, strict=True):
                    member_edge(nxt[count], count, make, target, made, True, mark)
                new = [c for c in nxt if c not in seen]
                seen.update(new)
                pending.extend(new)
            return nxt

        # In split mode an extra member is one call, so extras may come between declared members
        # too (as they do in real documents); inline, only after them (each copy would hold the
        # automaton of every key that is not declared).
        between = extra if self.calls is not None else None
        marked_between = self.calls is not None and any(m is not None for _, _, m in marks)
        for index, (make, is_required) in enumerate(members):
            if between is not None or marked_between:
                level = with_extras(level, between)
            nxt, target = states()
            shared: dict[_Count, Fragment | None] = {}
            for count, s in level.items():
                if not is_required:
                    b.nfa.eps[s].append(target(count))
                member_edge(s, count, make, target, shared, False)
            for bits, meeting, _ in marks:
                if index in meeting:
                    shared_marked: dict[_Count, Fragment | None] = {}
                    for count, s in level.items():
                        member_edge(s, count, meeting[index], target, shared_marked, False, bits)
            level = nxt
            if not level:
                return None
        if extra is not None or any(m is not None for _, _, m in marks):
            level = with_extras(level, extra)
        end = b.nfa.state()
        closing = False
        for (_, counted, extra_seen, met), s in level.items():
            if counted + (extra_seen if once else 0) >= min_p and met == every_mark:
                close = self.close("}") if part is None else self.b.empty()
                b.nfa.eps[s].append(close[0])
                b.nfa.eps[close[1]].append(end)
                closing = True
        return (entry[0], end) if closing else None


def _pattern_key_dfa(pattern: str, wide: bool) -> ByteDFA | None:
    """The JSON strings (quotes included) in which ``pattern`` is found, narrow (under every
    reader) or ``wide`` (under some reader): :func:`.scalars.pattern_part_dfa`. None: none."""
    try:
        content = pattern_part_dfa(pattern, wide)
    except EmptyLanguageError:
        return None
    helper = NFABuilder("patternProperties")
    try:
        return helper.build(helper.seq([helper.literal('"'), helper.dfa(content), helper.literal('"')]))
    except EmptyLanguageError:
        return None
