"""The JSON Schema compiler's rules for combinators: allOf, anyOf, oneOf, not, if/then/else
and dependencies."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from outlines_gguf.automata.dfa import ByteDFA
from outlines_gguf.automata.nfa import Fragment
from outlines_gguf.automata.ops import intersect
from outlines_gguf.errors import (
    ConstraintTooComplexError,
    DFAProductTooLargeError,
    EmptyLanguageError,
    OutlinesGGUFError,
    SchemaError,
)
from outlines_gguf.json_schema.algebra import (
    _alternatives,
    _distribute,
    _exclusive_closed_objects,
    _exclusive_required,
    _listed_values,
    _merge_all,
    _negate_keyword,
    _provably_empty,
    _safely_disjoint,
    _spliced,
    _type_set,
    conjuncts,
)
from outlines_gguf.json_schema.keywords import (
    _DEPENDENCY_KEYS,
    _FAMILY,
    _MALFORMED,
    _TYPE_KEYWORDS,
    _TYPES,
    _VALUE_FAMILY,
    ANNOTATIONS,
    KNOWN_KEYWORDS,
    MAX_CONDITIONAL_CHOICES,
    MAX_DEPENDENCY_BRANCHES,
    MAX_ONEOF_CHOICES,
    MAX_ONEOF_EXCLUSIVE,
    NOT_MULTIPLE_KEY,
    NOT_NUMBERS_KEY,
    NOT_PATTERN_KEY,
    NOT_STRINGS_KEY,
    SOME_MEMBER_KEY,
    WIDE_BRANCH,
    _is_int,
    _is_number,
    _is_schema,
    call_marker,
)
from outlines_gguf.json_schema.runs import counted_string
from outlines_gguf.json_schema.validate import (
    MARKER_CHECKS,
    Undecided,
    Validator,
    json_type,
    pattern_matches,
    resolve_local,
)

if TYPE_CHECKING:
    from outlines_gguf.json_schema.compiler_api import CompilerAPI


MAX_DISJOINT_DEPTH = 4
"""How deep ``disjoint`` looks through references, ``anyOf`` branches and held properties."""

MAX_WITHIN_DEPTH = 4
"""Nested ``negate_within`` calls (a property negated among the values of the context's own)."""

MAX_OUTSIDE_NAMES = 2
"""Declared names of an object closed by ``additionalProperties: false`` whose negation ("a key
it does not declare") is written out, as one alternative per set of them held. With 3 (8
alternatives), random ``oneOf``s of such negations spent the spreading budget, and the parts
left were intersected as automata, whose objects take members in declared order: valid
documents in other orders were rejected (``test_json_one_of_random.py``)."""


def _absorbed(choices: list[list[Any]], written: _Written) -> list[list[Any]]:
    """Conjunctions of alternatives without repeats, and without those that another implies
    (one whose alternatives include all of another's: A and B holds only where A does)."""
    keyed: dict[frozenset[str], list[Any]] = {}
    for choice in choices:
        unique = {written.text(o): o for o in choice}
        keyed.setdefault(frozenset(unique), list(unique.values()))
    keys = sorted(keyed, key=len)
    kept = [k for i, k in enumerate(keys) if not any(other < k for other in keys[:i])]
    return [keyed[k] for k in kept]


class TooManyChoicesError(SchemaError):
    """``exactly_one``: the ways a oneOf's branches exclude each other multiply past
    :data:`MAX_ONEOF_CHOICES` (the simplest of each may still do, as a valid subset)."""


class _Written:
    """Schemas as JSON text (keys sorted), each written once: the alternatives of negations
    recur in many conjunctions, and large ones cost more to write than all else."""

    def __init__(self) -> None:
        self._texts: dict[int, tuple[Any, str]] = {}  # (the object kept: its id stays its own)

    def text(self, schema: Any) -> str:
        found = self._texts.get(id(schema))
        if found is None:
            found = self._texts[id(schema)] = (schema, json.dumps(schema, sort_keys=True))
        return found[1]


def _common_types(parts: list[Any]) -> list[Any] | None:
    """``parts`` of an allOf, each part without ``type`` limited to the types every part admits
    (None if there is none): the intersection is the same, and a part's automaton is not built
    for the types another part rules out (``{"required": ["a"]}`` beside ``"type": "object"``
    admits every type on its own)."""
    common = set(_TYPES)
    for part in parts:
        if isinstance(part, dict):
            common &= _type_set(part)
    if not common:
        return None
    if common == set(_TYPES):
        return parts
    if "number" in common:
        common.discard("integer")  # integers are numbers
    types = [t for t in _TYPES if t in common]
    return [
        {**p, "type": types[0] if len(types) == 1 else types}
        if isinstance(p, dict) and "type" not in p and "enum" not in p and "const" not in p
        else p
        for p in parts
    ]


class _CombinatorRules:
    """Combinator rules of the JSON Schema compiler (mixed into ``_Compiler``)."""

    def expand_dependencies(self: CompilerAPI, schema: dict, path: str) -> dict:
        """``dependentRequired``/``dependentSchemas``/``dependencies`` as a union of plain
        schemas: for each property that has dependencies, one branch where it is absent and one
        where it is present with what it requires (2^k branches for k such properties)."""
        deps: dict[str, tuple[list[str], Any]] = {}
        for key in _DEPENDENCY_KEYS:
            value = schema.get(key)
            if value is None:
                continue
            if not isinstance(value, dict):
                raise self.fail(f"{key} must be an object", f"{path}/{key}")
            for name, need in value.items():
                names, sub = deps.get(name, ([], True))
                if isinstance(need, list) and key != "dependentSchemas":
                    if not all(isinstance(n, str) for n in need):
                        raise self.fail(f"{key}/{name} must list property names", f"{path}/{key}")
                    names = [*names, *need]
                elif _is_schema(need) and key != "dependentRequired":
                    sub = need if sub is True else {"allOf": [sub, need]}
                else:
                    raise self.fail(f"{key}/{name} must be an array of names or a schema", f"{path}/{key}")
                deps[name] = (names, sub)
        if len(deps) > MAX_DEPENDENCY_BRANCHES.bit_length() - 1:
            raise ConstraintTooComplexError(
                f"{path}: more than {MAX_DEPENDENCY_BRANCHES.bit_length() - 1} properties with dependencies"
            )
        rest = {k: v for k, v in schema.items() if k not in _DEPENDENCY_KEYS}
        branches: list[list[Any]] = [[]]
        for name, (names, sub) in deps.items():
            absent = {"properties": {name: False}}
            present: dict[str, Any] = {"required": list(dict.fromkeys([name, *names]))}
            parts = [present] if sub is True else [present, sub]
            branches = [[*b, absent] for b in branches] + [[*b, *parts] for b in branches]
        return {"anyOf": [{"allOf": [rest, *b]} for b in branches]}

    def expand_condition(self: CompilerAPI, schema: dict, path: str) -> Any:
        """``if``/``then``/``else`` as (if and then) or (not if, and else): branches that
        exclude each other, so their union is exact. ``not if`` is rewritten as a union of
        positive schemas, each merged with the rest (a condition that cannot be negated raises
        a SchemaError naming it)."""
        rest = {k: v for k, v in schema.items() if k not in ("if", "then", "else")}
        if "if" not in schema:
            return rest  # then and else without if are ignored, as JSON Schema says
        condition = schema["if"]
        otherwise = schema.get("else", True)
        branches: list[Any] = [{"allOf": [rest, condition, schema.get("then", True)]}]
        negated = self.negate(condition, f"{path}/if")
        if negated is None:
            negated = self.negate_members(condition, f"{path}/if")
        if negated is None:
            raise self.fail(
                "if: the condition cannot be negated (types, bounds, lengths, counts, required, "
                "properties, string const/enum and anyOf/allOf/not of those can)",
                f"{path}/if",
            )
        branches += [{"allOf": [rest, alternative, otherwise]} for alternative in _alternatives(negated)]
        return {"anyOf": branches}

    def all_of(self: CompilerAPI, schema: dict, path: str, depth: int) -> Fragment | None:
        parts = [{k: v for k, v in schema.items() if k != "allOf"}, *schema["allOf"]]
        parts = [self.inline_refs(p, path) for p in parts]
        for i, part in enumerate(parts[1:]):
            if isinstance(part, dict):
                self.check_shapes(part, f"{path}/allOf/{i}")
        parts = [self.inline_refs(p, path) for p in _spliced(parts)]
        for part in parts:
            values = _listed_values(part)
            if values is not None:  # an enum or const part: its values that pass every part
                try:
                    validator = Validator(self.root, MARKER_CHECKS)
                    kept = [v for v in values if validator.is_valid({"allOf": parts}, v)]
                except Undecided:
                    break  # a keyword the validator does not know: compile the parts instead
                except RecursionError as exc:
                    raise ConstraintTooComplexError(f"{path}: an enum value is nested too deeply") from exc
                return self.b.alt(self.literal_value(v) for v in kept)
        if sum(1 for p in parts if isinstance(p, dict) and "if" in p) > 1:
            return self.value(self.conditional_choices(parts, path), path, depth)
        merged = _merge_all(parts)
        if merged is not None:
            return self.value(merged, path, depth)
        parts = self.parts_as_unions(parts, path)
        spread = _distribute(parts)
        if spread is not None:
            # allOf[a, anyOf[b, c]] = anyOf[allOf[a, b], allOf[a, c]]: parts that merge (a budget
            # per compile of the alternatives added: nested unions would multiply; a union
            # whose other options the parts contradict adds none). Free where every
            # alternative is a call to a node of its own (wide objects at the top of a split
            # automaton, see union_branch): those multiply nodes compiled when reached, not states
            added = len(spread["anyOf"]) - 1
            called = self.calls is not None and self._nest == 0
            if called and all(self.wide_object(b, path) for b in spread["anyOf"]):
                return self.value(spread, path, depth)
            if added <= self._spread[0]:
                self._spread[0] -= added
                return self.value(spread, path, depth)
        typed = _common_types(parts)
        if typed is None:
            return None  # no type is admitted by every part
        compiled = [self.sub_dfa(p, f"{path}/allOf/{i}", depth) for i, p in enumerate(typed)]
        dfas = [d for d in compiled if d is not None]
        if len(dfas) < len(compiled):
            return None
        result = dfas[0]
        try:
            for d in dfas[1:]:
                both = intersect(result, d)
                if both is None:
                    return None  # the parts exclude each other
                result = both
        except DFAProductTooLargeError as exc:
            raise ConstraintTooComplexError(f"{path}: allOf is too large to intersect ({exc})") from exc
        return self.b.dfa(result)

    def parts_as_unions(self: CompilerAPI, parts: list, path: str) -> list:
        """``allOf`` parts rewritten as unions that :func:`_distribute` spreads into schemas
        that merge, where automata of the parts, intersected, multiply their states (GitHub
        workflows' ``push`` event: a ``oneOf`` of an object and null, the object with three
        ``not: {required: [a, b]}``, over six properties, passed 20,000 states):

        - a ``not``, as its positive union (a absent, or b absent), beside the part's other
          keywords as a part of its own;
        - a ``oneOf``, as the exclusive branches of :meth:`union_branches` (an ``anyOf``);
        - ``if``/``then``/``else`` and dependencies, as their expansions (unions of exclusive
          branches).

        A part that cannot be rewritten stays as it is, for the automata."""
        out: list[Any] = []
        for part in parts:
            if isinstance(part, dict) and ("if" in part or any(k in part for k in _DEPENDENCY_KEYS)):
                try:
                    if "if" in part:
                        part = self.expand_condition(part, path)
                    else:
                        part = self.expand_dependencies(part, path)
                except SchemaError:
                    out.append(part)
                    continue
            if isinstance(part, dict) and "not" in part:
                negation = self.negate(part["not"], path)
                if negation is not None:
                    rest = {k: v for k, v in part.items() if k != "not"}
                    if set(rest) - ANNOTATIONS:
                        out.append(rest)
                    options = _alternatives(negation)
                    out.append(options[0] if len(options) == 1 else {"anyOf": options})
                    continue
            if isinstance(part, dict) and isinstance(part.get("oneOf"), list) and "anyOf" not in part:
                try:
                    _, branches = self.union_branches(part, path)
                except SchemaError:
                    branches = None
                if branches is not None:
                    out.append(branches[0] if len(branches) == 1 else {"anyOf": branches})
                    continue
            out.append(part)
        return out

    def conditional_choices(self: CompilerAPI, parts: list, path: str) -> Any:
        """``allOf`` parts among which several are conditionals (``if``/``then``/``else``, as
        configuration schemas chain them: "if kind is A then ..., if kind is B then ..."), as
        the union of the consistent choices of one branch per conditional (``if`` and
        ``then``, or a way ``if`` fails and ``else``), beside the other parts.

        The choices are searched depth-first and a partial choice that is provably empty (two
        ``if``s that need different values of one required property) is cut there, so k
        conditionals on one discriminator give k + 1 choices, not 2^k products of automata.
        Exact: every combination left out is empty; conditionals' branches exclude each other.
        """
        fixed = [p for p in parts if not (isinstance(p, dict) and "if" in p)]
        unions: list[list[Any]] = []
        for p in parts:
            if isinstance(p, dict) and "if" in p:
                expanded = self.expand_condition(p, path)
                alone = not (isinstance(expanded, dict) and set(expanded) == {"anyOf"})
                unions.append([expanded] if alone else list(expanded["anyOf"]))
        choices: list[list[Any]] = []

        def search(k: int, chosen: list[Any]) -> None:
            if _provably_empty([*fixed, *chosen]):
                return
            if k == len(unions):
                if len(choices) >= MAX_CONDITIONAL_CHOICES:
                    raise ConstraintTooComplexError(
                        f"{path}: the conditionals of this allOf combine in more than "
                        f"{MAX_CONDITIONAL_CHOICES} ways (MAX_CONDITIONAL_CHOICES)"
                    )
                choices.append(chosen)
                return
            for option in unions[k]:
                search(k + 1, [*chosen, option])

        search(0, [])
        if not choices:
            return False
        return {"anyOf": [{"allOf": [*fixed, *chosen]} for chosen in choices]}

    def inline_refs(self: CompilerAPI, schema: Any, path: str) -> Any:
        """Replace a top-level $ref by its target, so allOf parts can be merged (beside
        annotations, ``$defs`` and unknown keywords only: they constrain nothing)."""
        seen: set[str] = set()
        while isinstance(schema, dict) and "$ref" in schema and not (set(schema) - {"$ref"}) & KNOWN_KEYWORDS:
            ref = schema["$ref"]
            if not isinstance(ref, str):
                raise self.fail("$ref must be a string", path)
            if ref in seen:
                raise self.fail(f"$ref {ref!r} refers to itself through $refs only (a cycle)", path)
            seen.add(ref)
            schema = self.resolve(ref, path)
            if _requires_itself(schema, self.root):
                raise self.fail(
                    f"$ref {ref!r} requires itself for the same value: a cycle through $ref, "
                    "allOf, oneOf, not, if or a one-branch anyOf, with no object or array "
                    "between, which no validator can evaluate",
                    path,
                )
        return schema

    def any_of(self: CompilerAPI, schema: dict, path: str, depth: int) -> Fragment | None:
        key, combined = self.union_branches(schema, path)
        # anyOf, or oneOf with pairwise disjoint branches: a union is exact
        return self.b.alt(self.union_branch(b, f"{path}/{key}/{i}", depth) for i, b in enumerate(combined))

    def union_branch(self: CompilerAPI, branch: Any, path: str, depth: int) -> Fragment | None:
        """A branch of a union. In split mode, at the top of an automaton (whose nested
        branches are calls anyway), two kinds of branch are calls too:

        - a long plain string (``anyOf: [{type: string, maxLength: 1024}, {type: number}]``):
          a counted node, whose masks are shared between character counts, rather than a
          thousand layers laid out inline;
        - a wide object (``WIDE_BRANCH`` members or more, its ``allOf`` parts and refs
          merged): its own node, whose members in any order are laid out one set of written
          members at a time, as generation reaches them. Inline, each branch's 2^n sets of
          members multiply with the other branches' (OpenAPI's ``Parameter``: twelve members,
          four locations by ``in``, schema or content: more than 20,000 states). The guide
          follows the branches side by side, as configurations of one state."""
        if self.calls is not None and self._nest == 0:
            if counted_string(branch) is not None or self.wide_object(branch, path):
                return self.b.literal(call_marker(self.calls(branch, path)))
        return self.value(branch, path, depth)

    def wide_object(self: CompilerAPI, schema: Any, path: str) -> bool:
        """Whether ``schema`` admits only objects and names ``WIDE_BRANCH`` members or more
        (declared or by pattern) across its ``allOf`` parts (top-level refs resolved)."""
        if not isinstance(schema, dict):
            return False
        try:
            if self.possible_types(schema, path) != {"object"}:
                return False
            parts = conjuncts(schema, lambda part: self.inline_refs(part, path))
        except (OutlinesGGUFError, RecursionError, *_MALFORMED):
            return False
        names: set[str] = set()
        for part in parts:
            for keyword in ("properties", "patternProperties"):
                members = part.get(keyword) if isinstance(part, dict) else None
                if isinstance(members, dict):
                    names.update(members)
        return len(names) >= WIDE_BRANCH

    def union_branches(self: CompilerAPI, schema: dict, path: str) -> tuple[str, list]:
        """The ``anyOf``/``oneOf`` of ``schema`` (with the keywords beside it) as branches whose
        union is exact, and the keyword to name them by: a ``oneOf`` whose branches may overlap
        is made exclusive (or raises a SchemaError saying why it cannot be, unless lenient: then
        the union, a superset). Builds no automaton, so the split engine's scan can decide a
        deep ``oneOf`` before generation reaches it."""
        key = "anyOf" if "anyOf" in schema else "oneOf"
        base = {k: v for k, v in schema.items() if k != key}
        branches = schema[key]
        if not isinstance(branches, list) or not branches:
            raise self.fail(f"{key} must be a non-empty array", path)
        if key == "oneOf" and len(branches) > 1:
            exclusive = _exclusive_required(branches)
            if exclusive is not None:  # oneOf over required sets: each branch excludes the others
                key, branches = "anyOf", exclusive
        combined = [{"allOf": [base, b]} if base and set(base) - ANNOTATIONS else b for b in branches]
        if key == "oneOf" and len(combined) > 1:
            resolved = [self.flatten(c, path) for c in combined]
            for i, branch in enumerate(resolved):
                if isinstance(branch, dict):
                    self.check_shapes(branch, f"{path}/{key}/{i}")
            n = len(resolved)
            kinds = [self.possible_types(c, path) for c in combined]
            overlaps = {
                (i, j)
                for i in range(n)
                for j in range(n)
                if i != j and kinds[i] & kinds[j] and not self.disjoint(resolved[i], resolved[j], path)
            }
            try:
                if overlaps and n > MAX_ONEOF_EXCLUSIVE:
                    i, j = min(overlaps)
                    raise self.fail(
                        f"oneOf branches {i} and {j} may both match the same value, and with {n} "
                        f"branches (more than {MAX_ONEOF_EXCLUSIVE}) they are not made exclusive, so "
                        "'exactly one' cannot be enforced (pass lenient=True to treat oneOf as anyOf)",
                        path,
                    )
                closed = _exclusive_closed_objects(resolved, combined, overlaps) if overlaps else None
                if closed is not None:
                    combined = closed
                elif overlaps:
                    # exact ways first, the one that negates nothing before the one that negates
                    # branches (whose automata multiply); then a valid subset, or the error
                    by_type = self.one_of_by_type(combined, path)
                    if by_type is not None:
                        combined = by_type
                    else:
                        try:
                            combined = self.exactly_one(base, branches, overlaps, path)
                        except SchemaError as exc:
                            simplest = isinstance(exc, TooManyChoicesError)
                            combined = self.exactly_one(base, branches, overlaps, path, True, simplest)
            except SchemaError:
                if not self.lenient:
                    raise  # lenient: the branches as a union (anyOf), a superset of oneOf
        return key, combined

    def one_of_by_type(self: CompilerAPI, branches: list, path: str) -> list | None:
        """A ``oneOf`` taken one JSON type at a time, as its branches often read: object
        branches without ``type: object`` also accept every string or number (their keywords
        pass other types by), so two of them match every non-object, and "exactly one" rejects
        it; among objects they may well be disjoint. Per type: where two branches accept every
        value of it, none is valid; where one does, only the values no other branch accepts (a
        negation, not attempted: None); otherwise the branches restricted to the type, which
        must be disjoint (else None). Returns branches whose union is exact, or None.
        A branch that is a lone ``$ref`` is read as its target (kustomization's patches: a
        ``oneOf`` of two references to closed objects, each requiring a key the other lacks)."""
        branches = [self.inline_refs(b, path) for b in branches]
        try:  # (an allOf of the oneOf's siblings and a branch: merged, its keywords are seen)
            branches = [self.flatten(b, path) for b in branches]
        except SchemaError:
            pass
        out: list[Any] = []
        for kind in ("null", "boolean", "object", "array", "string", "number"):
            everything, some = [], []
            for branch in branches:
                accepts = self.accepts_type(branch, kind, path)
                if accepts == "all":
                    everything.append(branch)
                elif accepts == "some":
                    some.append({"allOf": [{"type": kind}, branch]})
            if len(everything) >= 2:
                continue  # every value of this type matches two branches
            if everything:
                if some:
                    return None
                out.append({"type": kind})
                continue
            resolved = [self.flatten(b, path) for b in some]
            for i, a in enumerate(resolved):
                if any(not self.disjoint(a, b, path) for b in resolved[i + 1 :]):
                    return None
            out.extend(some)
        return out or [False]

    def accepts_type(self: CompilerAPI, branch: Any, kind: str, path: str) -> str:
        """Whether ``branch`` accepts "all", "none" or "some" of the values of JSON type
        ``kind`` ("number" with the integers): "all" only where none of its keywords applies
        to the type (a partial, sound test)."""
        if branch is True or branch == {}:
            return "all"
        if not isinstance(branch, dict):
            return "none" if branch is False else "some"
        types = self.possible_types(branch, path)
        if kind not in types and not (kind == "number" and "integer" in types):
            return "none"
        if kind == "number" and "number" not in types:
            return "some"  # integers only
        known = (set(branch) & KNOWN_KEYWORDS) - ANNOTATIONS - {"type"}
        foreign = set().union(*(v for k, v in _TYPE_KEYWORDS.items() if k != kind))
        return "all" if known <= foreign else "some"

    def disjoint(self: CompilerAPI, a: Any, b: Any, path: str, depth: int = 0) -> bool:
        """True only if no value satisfies both schemas (sound, partial): the module's test
        (``_disjoint``), looking through ``$ref``, into ``anyOf``/``oneOf`` branches (each disjoint from
        the other schema), and into the properties an object of either must hold (a value of
        both holds the key, with a value of both). Swagger's file schema requires ``type:
        "file"``, which its other schema's ``type`` (the draft-04 metaschema's, by reference)
        never is."""
        if _safely_disjoint(a, b):
            return True
        if depth >= MAX_DISJOINT_DEPTH:
            return False
        try:
            a, b = self.flatten(a, path), self.flatten(b, path)
        except SchemaError:
            return False
        for x, y in ((a, b), (b, a)):
            for key in ("anyOf", "oneOf"):  # (a oneOf's values are some of its branches')
                options = x.get(key) if isinstance(x, dict) else None
                if isinstance(options, list) and options:
                    if all(self.disjoint(option, y, path, depth + 1) for option in options):
                        return True
            if isinstance(x, dict) and "not" in x and isinstance(y, dict):
                listed = _listed_values(y)  # every value y lists is one x's not rejects
                try:
                    validator = Validator(self.root, MARKER_CHECKS)
                    if listed is not None and all(validator.is_valid(x["not"], v) for v in listed):
                        return True
                except Undecided:
                    pass
        if not isinstance(a, dict) or not isinstance(b, dict) or _safely_disjoint(a, b):
            return _safely_disjoint(a, b)
        if not self.possible_types(a, path) & self.possible_types(b, path) <= {"object"}:
            return False  # (values of another type hold no key)
        held = [n for x in (a, b) if isinstance(x.get("required"), list) for n in x["required"]]
        for name in dict.fromkeys(n for n in held if isinstance(n, str)):
            mine, theirs = _member_schemas(a, name), _member_schemas(b, name)
            if any(self.disjoint(x, y, path, depth + 1) for x in mine for y in theirs):
                return True
        return False

    def possible_types(
        self: CompilerAPI, schema: Any, path: str, seen: frozenset[int] = frozenset()
    ) -> set[str]:
        """The JSON types a value of ``schema`` may have (a superset), looking through ``$ref``
        (keywords beside it ignored, as drafts 4-7 do: the target's types hold either way) and
        combinators: branches of a ``oneOf`` of references to an array-or-string definition and
        an object one are told apart. "number" comes with "integer"."""
        every = {"null", "boolean", "integer", "number", "string", "array", "object"}
        if schema is False:
            return set()
        if not isinstance(schema, dict) or id(schema) in seen:
            return every
        seen = seen | {id(schema)}
        ref = schema.get("$ref")
        if isinstance(ref, str):
            try:
                return self.possible_types(self.resolve(ref, path), path, seen)
            except SchemaError:
                return every
        types = _type_set(schema) & every
        if "number" in types:
            types.add("integer")
        for part in schema.get("allOf", []) if isinstance(schema.get("allOf"), list) else []:
            types &= self.possible_types(part, path, seen)
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                types &= set().union(*(self.possible_types(b, path, seen) for b in branches))
        return types

    def exactly_one(
        self: CompilerAPI,
        base: dict,
        branches: list,
        overlaps: set[tuple[int, int]],
        path: str,
        subset: bool = False,
        simplest: bool = False,
    ) -> list:
        """``oneOf`` branches that may overlap, as branches that exclude each other: branch i and
        not branch j, for every j that may overlap it (so their union is exact). A branch whose
        negation needs that of a ``format`` is negated with its formats unread
        (``negate_formats_unread``): a subset, valid for validators that assert formats and for
        those that do not. ``subset``: a branch whose negation cannot be written whole is negated
        in part (``negate_subset``; the oneOf's path goes into ``subsets``). ``simplest``: each
        branch keeps only the simplest of the ways it excludes the others (a valid subset, for
        a oneOf whose exclusions multiply past :data:`MAX_ONEOF_CHOICES`). Raises a SchemaError
        naming the branch whose negation cannot be expressed (TooManyChoicesError where the
        ways to exclude them are too many)."""
        extra = [base] if base and set(base) - ANNOTATIONS else []
        negations: dict[int, Any] = {}
        within: dict[tuple[int, int], Any] = {}  # branch j negated among the values of branch i
        annotated: dict[int, Any] = {}  # branch j negated with its formats read as annotations
        in_part: dict[int, Any] = {}  # a subset of branch j's negation (``negate_subset``)
        by_members: dict[int, Any] = {}  # branch j negated with its members too (``negate_members``)
        for i, j in sorted(overlaps):
            if j not in negations:
                negations[j] = self.negate(branches[j], f"{path}/oneOf/{j}")
            if negations[j] is None:
                within[i, j] = self.negate_within(branches[j], {"allOf": [*extra, branches[i]]}, path)
                if within[i, j] is None:
                    if j not in annotated:
                        annotated[j] = self.negate_formats_unread(branches[j], f"{path}/oneOf/{j}")
                    within[i, j] = annotated[j]
                if within[i, j] is None:
                    if j not in by_members:
                        by_members[j] = self.negate_members(branches[j], f"{path}/oneOf/{j}")
                    within[i, j] = by_members[j]
                if within[i, j] is None and subset:
                    if j not in in_part:
                        in_part[j] = self.negate_subset(branches[j], f"{path}/oneOf/{j}")
                    within[i, j] = in_part[j]
                    if in_part[j] is not None:
                        self.subsets.add(path)
                if within[i, j] is None:
                    raise self.fail(
                        f"oneOf branches {i} and {j} may both match the same value, and branch {j} cannot "
                        "be negated to exclude it, so 'exactly one' cannot be enforced (pass lenient=True "
                        "to treat oneOf as anyOf)",
                        path,
                    )
        out: list[Any] = []
        alternatives: dict[int, list[Any]] = {}  # id of a negation -> its alternatives
        written = _Written()
        for i, branch in enumerate(branches):
            others = [(j, within.get((i, j), negations[j])) for (a, j) in sorted(overlaps) if a == i]
            if any(o is True for _, o in others):
                others = [(j, o) for j, o in others if o is not True]
            if any(o is False for _, o in others):
                if subset and any(o is False and j in in_part for j, o in others):
                    raise self._lost_branch(i, min(j for j, o in others if o is False and j in in_part), path)
                continue  # another branch holds whenever this one does
            choices: list[list[Any]] = [[]]
            truncated = False
            context = self.flatten({"allOf": [*extra, branch]} if extra else branch, path)
            for j, negated in others:
                # (alternatives no value of this branch takes are left out: other types, say;
                # the others are read among this branch's values, where many say the same)
                if id(negated) not in alternatives:  # (the same objects for every branch i)
                    alternatives[id(negated)] = _alternatives(negated)
                options = [
                    self.among(o, context, branches[j], path)
                    for o in alternatives[id(negated)]
                    if not self.disjoint(o, context, path)
                ]
                choices = _absorbed([[*c, o] for c in choices for o in options], written)
                if simplest and len(choices) > 1:
                    # a valid subset: the simplest way to exclude them all (the conjunction
                    # shortest written: "type is not Point" before "bbox holds a string")
                    choices = [min(choices, key=lambda c: sum(len(written.text(o)) for o in c))]
                    truncated = True
                    self.subsets.add(path)
                if len(out) + len(choices) > MAX_ONEOF_CHOICES:
                    raise TooManyChoicesError(
                        f"oneOf branch {i} may match the same value as others, and excluding them "
                        f"takes more than {MAX_ONEOF_CHOICES} alternatives, so 'exactly one' cannot be "
                        "enforced (pass lenient=True to treat oneOf as anyOf)",
                        path,
                    )
            kept = [{"allOf": [*extra, branch, *choice]} for choice in choices]
            partial = [j for j, _ in others if j in in_part or truncated]
            if partial and all(_provably_empty(o["allOf"]) for o in kept):
                raise self._lost_branch(i, partial[0], path)
            out += kept
        if annotated and all(_provably_empty(o["allOf"]) for o in out):
            # (formats alone told the branches apart: read as annotations, no value is valid;
            # a schema meaning "one of these formats" is refused rather than made empty)
            i, j = min((i, j) for (i, j) in within if j in annotated)
            raise self.fail(
                f"oneOf branches {i} and {j} may both match the same value, and branch {j} cannot "
                "be negated to exclude it (its format), so 'exactly one' cannot be enforced (pass "
                "lenient=True to treat oneOf as anyOf)",
                path,
            )
        return out or [False]

    def _lost_branch(self: CompilerAPI, i: int, j: int, path: str) -> SchemaError:
        """The refusal of a valid subset that would leave none of branch ``i``'s values."""
        return self.fail(
            f"oneOf branches {i} and {j} may both match the same value, and branch {j} cannot be "
            f"negated to exclude it (what can be written of its negation leaves none of branch {i}'s "
            "values), so 'exactly one' cannot be enforced (pass lenient=True to treat oneOf as anyOf)",
            path,
        )

    def among(self: CompilerAPI, option: Any, context: Any, negated: Any, path: str) -> Any:
        """``option`` (one alternative of the negation of ``negated``: "property p present,
        with a value of F") as it reads among the values of ``context``: where every value
        the context lists for p is one of F, or the context's p and ``negated``'s are
        disjoint, it says "p present" (an address whose country is never another branch's:
        the alternatives of several negations become one)."""
        if not isinstance(option, dict) or not isinstance(context, dict):
            return option
        required, properties = option.get("required"), option.get("properties")
        if set(option) - {"type", "required", "properties"} or not isinstance(properties, dict):
            return option
        if not isinstance(required, list) or len(required) != 1 or list(properties) != required:
            return option
        name = required[0]
        declared = context.get("properties")
        own = self.flatten(declared.get(name, True), path) if isinstance(declared, dict) else True
        present = {"type": "object", "required": [name]}
        theirs = self.flatten(negated, path)
        theirs = theirs.get("properties") if isinstance(theirs, dict) else None
        if isinstance(theirs, dict) and name in theirs and self.disjoint(own, theirs[name], path):
            return present
        if isinstance(theirs, dict) and name in theirs and self._items_disjoint(own, theirs[name], path):
            # every item of the context's array fails the other's items: "some item fails
            # them" is "some item" (an empty array satisfies both)
            return {**present, "properties": {name: {"type": "array", "minItems": 1}}}
        values = _listed_values(own) if isinstance(own, dict) else None
        if not values:
            return option
        try:
            validator = Validator(self.root, MARKER_CHECKS)
            if all(validator.is_valid(properties[name], v) for v in values):
                return present
        except Undecided:
            pass
        return option

    def _items_disjoint(self: CompilerAPI, own: Any, theirs: Any, path: str) -> bool:
        """Whether ``own`` is always an array and ``theirs`` says nothing of arrays but their
        ``items``, which no item of ``own`` satisfies: among ``own``'s values, ``theirs`` fails
        exactly the non-empty arrays."""
        theirs = self.flatten(theirs, path)
        if not isinstance(own, dict) or not isinstance(theirs, dict):
            return False
        if own.get("type") != "array" or not isinstance(own.get("items"), (dict, bool)):
            return False
        if theirs.get("type", "array") != "array" or not isinstance(theirs.get("items"), (dict, bool)):
            return False
        if (set(theirs) & KNOWN_KEYWORDS) - ANNOTATIONS - {"type", "items"}:
            return False
        if (set(own) & KNOWN_KEYWORDS) & {"prefixItems", "additionalItems", "unevaluatedItems"}:
            return False
        return self.disjoint(own["items"], theirs["items"], path)

    def negate_subset(self: CompilerAPI, schema: Any, path: str) -> Any:
        """A subset of the values ``schema`` rejects: ``negate`` leaving out, at any depth, the
        values that only a keyword it cannot negate rejects (a recursive definition's cycle:
        "a competency whose sub-competencies are not all competencies"), and those with an
        item that fails ``items`` (negated again as a ``contains``, a product of automata).
        Beside a oneOf branch, "branch i and not branch j" then keeps fewer of branch i's
        values (documents valid both ways rejected), never one that branch j also matches;
        ``exactly_one`` refuses it where a branch would keep none of its values
        (``oneOf: [{type: object}, {additionalProperties: {type: string}}]`` would lose
        every object)."""
        self.negation_subset = True
        try:
            return self.negate(schema, path)
        finally:
            self.negation_subset = False

    def negate_members(self: CompilerAPI, schema: Any, path: str) -> Any:
        """``negate`` where ``patternProperties``, ``propertyNames`` and ``additionalProperties``
        are negated too, as "some member whose key ... and whose value ..."
        (:data:`SOME_MEMBER_KEY`): exact, but an object that must hold such a member and declares
        more than 3 members (or counts them) writes them in their declared order (a valid
        subset), so this comes after the ways that keep any order (a oneOf branch negated among
        the other's objects)."""
        before, self.member_negation = self.member_negation, True
        try:
            return self.negate(schema, path)
        finally:
            self.member_negation = before

    def negate_formats_unread(self: CompilerAPI, schema: Any, path: str) -> Any:
        """``negate`` reading every ``format`` as the annotation it is by default in JSON Schema:
        the values ``schema`` rejects whatever their format. Where the format is asserted,
        ``schema`` rejects more (strings not of the format), so this is a subset of its exact
        negation; where it is not, it is exact. Beside a branch that still enforces its own
        formats, "branch i and not branch j" is then valid either way (``{format: uri}`` or
        ``{enum: ["."]}``: a URI, never ".", which an annotation reading finds in both)."""
        self.formats_unread = True
        try:
            return self.negate(schema, path)
        finally:
            self.formats_unread = False

    def negate_within(self: CompilerAPI, schema: Any, context: Any, path: str) -> Any:
        """The values of ``context`` that ``schema`` rejects (another oneOf branch's, say), where
        ``schema`` cannot be negated on its own because of its ``additionalProperties`` (or of a
        property's, at any depth), and ``context`` is a closed object (``additionalProperties:
        false``, no patterns): its objects hold only the keys it declares, so "a key ``schema``
        takes as additional, with a value that fails it" is one of those keys present
        (``{"key"}`` and ``{"keys"}`` as closed objects: the other's key written), and "a
        property with a value that fails it" is negated among the values the context's own
        property takes. Exact only beside ``context``. None where that does not apply, and
        past :data:`MAX_WITHIN_DEPTH` nested calls (recursive definitions lead back here)."""
        if self._within_depth >= MAX_WITHIN_DEPTH:
            return None
        self._within_depth += 1
        try:
            return self._negate_within(schema, context, path)
        finally:
            self._within_depth -= 1

    def _negate_within(self: CompilerAPI, schema: Any, context: Any, path: str) -> Any:
        closed = self.flatten(context, path)
        negated = self.flatten(schema, path)
        if not isinstance(closed, dict) or not isinstance(negated, dict):
            return None
        declared = self.held_keys(closed, path)
        if declared is None:
            return None
        additional = negated.get("additionalProperties", True)
        taken = negated.get("properties", {})
        patterns = negated.get("patternProperties", {})
        if not isinstance(taken, dict) or not isinstance(patterns, dict):
            return None
        names = negated.get("propertyNames", True)
        member_keys = ("additionalProperties", "properties", "patternProperties", "propertyNames")
        rest = {k: v for k, v in negated.items() if k not in member_keys}
        options: list[Any] = []
        if (set(rest) & KNOWN_KEYWORDS) - ANNOTATIONS:
            rest_negated = self.negate(rest, path)
            if rest_negated is None:
                return None
            if rest_negated is not False:
                options.append(rest_negated)
        # the schemas each key the context may hold must satisfy in ``schema``
        applied: list[tuple[str, Any]] = [(name, sub) for name, sub in taken.items() if name in declared]
        validator = Validator(self.root, MARKER_CHECKS)
        try:
            for name in declared:
                applied += [(name, sub) for p, sub in patterns.items() if pattern_matches(p, name)]
                if names is not True and not validator.is_valid(names, name):
                    options.append({"type": "object", "required": [name]})  # a name it refuses
        except Undecided:
            return None
        for name, sub in applied:
            # (only the values the context's property takes matter: the rest of ``sub``, an
            # object branch recursing through a definition, say, need not be negated)
            takes = self.possible_types(self.flatten(declared[name], path), path)
            failing_here = self.negate(self.narrow_to(sub, takes, path), path)
            if failing_here is None:  # (a closed object inside: negated among the context's values)
                failing_here = self.negate_within(sub, declared[name], f"{path}/properties/{name}")
                if failing_here is None:
                    return None
            own = self.flatten(declared[name], path)
            for option in _alternatives(failing_here) if failing_here is not False else []:
                if not _safely_disjoint(option, own):  # (what the context's value can be)
                    options.append({"type": "object", "required": [name], "properties": {name: option}})
        failing = True if additional is False else self.negate(additional, path)
        if failing is None:
            return None
        if failing is False:  # (nothing fails as additional, or the context has no other key)
            return {"anyOf": options} if options else False
        try:
            for name in declared:
                if name in taken or any(pattern_matches(p, name) for p in patterns):
                    continue  # not additional for ``schema``
                options.append({"type": "object", "required": [name], "properties": {name: failing}})
        except Undecided:
            return None
        return {"anyOf": options} if options else False

    def narrow_to(
        self: CompilerAPI, schema: Any, types: set[str], path: str, seen: frozenset[str] = frozenset()
    ) -> Any:
        """``schema`` for the values of ``types`` only: the same verdict on each of them, with the
        ``anyOf``/``oneOf`` branches that admit none of them left out (they match none of these
        values, so "exactly one" counts the same) and references followed, so a definition
        that recurses only through objects and arrays is finite for a string. A reference
        met again, or beside other keywords, is left as it is."""
        if not isinstance(schema, dict):
            return schema
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref in seen or (set(schema) - {"$ref"}) & KNOWN_KEYWORDS - ANNOTATIONS:
                return schema
            try:
                target = self.resolve(ref, path)
            except SchemaError:
                return schema
            return self.narrow_to(target, types, path, seen | {ref})
        narrowed = dict(schema)
        for key in ("anyOf", "oneOf"):
            branches = narrowed.get(key)
            if isinstance(branches, list):
                kept = [b for b in branches if self.possible_types(b, path) & types]
                if not kept:
                    return False  # (no branch matches a value of these types)
                narrowed[key] = [self.narrow_to(b, types, path, seen) for b in kept]
        parts = narrowed.get("allOf")
        if isinstance(parts, list):
            narrowed["allOf"] = [self.narrow_to(part, types, path, seen) for part in parts]
        return narrowed

    def held_keys(self: CompilerAPI, schema: dict, path: str) -> dict[str, Any] | None:
        """The keys an object of ``schema`` may hold, each with the schema its value must
        satisfy, where they are finitely many: its properties, if ``additionalProperties`` is
        false without patterns; the names its ``propertyNames`` lists (an ``enum`` or
        ``const``) otherwise. None where any key may appear."""
        properties = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        additional = schema.get("additionalProperties", True)
        if not isinstance(properties, dict) or not isinstance(patterns, dict):
            return None
        if additional is False and not patterns:
            return properties
        names = self.flatten(schema.get("propertyNames", True), path)
        if not isinstance(names, dict) or not ("enum" in names or "const" in names):
            return None
        listed = [names["const"]] if "const" in names else names["enum"]
        if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
            return None
        validator = Validator(self.root, MARKER_CHECKS)
        held: dict[str, Any] = {}
        try:
            for name in dict.fromkeys(listed):
                if not validator.is_valid(names, name):
                    continue
                parts = [sub for p, sub in patterns.items() if pattern_matches(p, name)]
                if name in properties:
                    parts.append(properties[name])
                elif not parts:
                    parts.append(additional)
                if any(part is False for part in parts):
                    continue
                held[name] = parts[0] if len(parts) == 1 else {"allOf": parts}
        except Undecided:
            return None
        return held

    def flatten(self: CompilerAPI, schema: Any, path: str) -> Any:
        """A schema with top-level $ref and mergeable allOf resolved (for disjointness checks)."""
        schema = self.inline_refs(schema, path)
        while (
            isinstance(schema, dict)
            and isinstance(schema.get("allOf"), list)
            and len(schema["allOf"]) == 1
            and not (set(schema) - {"allOf"}) & KNOWN_KEYWORDS
        ):
            schema = self.inline_refs(schema["allOf"][0], path)  # (one part: that part)
        if isinstance(schema, dict) and isinstance(schema.get("allOf"), list):
            merged = _merge_all(conjuncts(schema, lambda part: self.inline_refs(part, path)))
            return merged if merged is not None else schema
        return schema

    def sub_dfa(self: CompilerAPI, schema: Any, path: str, depth: int) -> ByteDFA | None:
        """Compile a sub-schema on its own (for products of automata)."""
        sub = self.sub_compiler(extra_properties=self.extra_properties)
        sub.b.label = f"JSON schema at {path}"  # (a limit it runs into names this piece)
        sub._ref_depth = dict(self._ref_depth)
        sub._spread = self._spread  # one budget for the whole compile
        sub.intersected = True  # (its small objects in any order: see _ObjectRules.object)
        fragment = sub.value(schema, path, depth)
        if fragment is None:
            return None
        try:
            return sub.b.build(fragment)
        except EmptyLanguageError:
            return None

    def apply_not(self: CompilerAPI, schema: dict, path: str) -> dict:
        """The schema without ``not``: the negation rewritten as a positive schema."""
        rest = {k: v for k, v in schema.items() if k != "not"}
        negation = self.negate(schema["not"], path)
        if negation is None:
            negation = self.negate_members(schema["not"], path)
        if negation is None:
            if self.lenient:
                return rest
            raise self.fail(
                "keyword 'not' can only be enforced for types, bounds, lengths and counts, "
                "'required', 'properties', 'patternProperties', 'propertyNames', "
                "'additionalProperties', and anyOf/allOf/not of those (pass lenient=True)",
                path,
            )
        return {"allOf": [rest, negation]} if set(rest) - ANNOTATIONS else negation

    def negate(self: CompilerAPI, schema: Any, path: str, refs: frozenset[str] = frozenset()) -> Any:
        """A schema matching exactly the values ``schema`` rejects (or a subset of them, only
        where noted), or None when we cannot express it. ``refs``: the ``$ref``s being negated
        (a cycle through them is not followed).

        A schema is the conjunction of its keywords, so its negation is the union of the
        keywords' negations, each limited to the types the keyword constrains, and of the
        values of other types than ``type`` allows."""
        while isinstance(schema, dict) and "$ref" in schema and not (set(schema) - {"$ref"}) & KNOWN_KEYWORDS:
            ref = schema["$ref"]  # (followed here, not by flatten: a recursive definition is a cycle)
            if isinstance(ref, str) and ref in refs and self.negation_subset:
                return False  # (a subset: the values failing the cycle left out)
            if not isinstance(ref, str) or ref in refs:
                return None
            refs = refs | {ref}
            schema = self.resolve(ref, path)
        schema = self.flatten(schema, path)
        if isinstance(schema, dict):
            self.check_shapes(schema, f"{path}/not")
        if schema is True or schema == {}:
            return False
        if schema is False:
            return True
        if not isinstance(schema, dict):
            return None
        keys = (set(schema) & KNOWN_KEYWORDS) - ANNOTATIONS
        if self.formats_unread:
            keys.discard("format")
        if keys == {"not"}:
            return schema["not"]
        if "uniqueItems" in keys and schema["uniqueItems"] is not True:
            keys.discard("uniqueItems")  # uniqueItems false constrains nothing
        if "if" not in keys:
            keys -= {"then", "else"}  # ignored without if
        if "contains" not in keys:
            keys -= {"minContains", "maxContains"}
        declared = schema.get("type")
        types = (
            set(_TYPES) if declared is None else set(declared if isinstance(declared, list) else [declared])
        )
        if "number" in types:
            types.add("integer")
        keys -= _vacuous_keywords(schema, keys, types)
        branches: list[Any] = []
        others = set(_TYPES) - types
        if "integer" in types and "number" not in types:
            others.discard("number")
            branches.append({"type": "number", NOT_MULTIPLE_KEY: [1]})  # numbers with a fraction
        if others:
            branches.append({"type": sorted(others)})
        by_key: dict[str, Any] = {}
        for key in sorted(keys - {"type", "then", "else", "minContains", "maxContains"}):
            negated = self.negate_keyword(key, schema, types, path, refs)
            if negated is None and self.negation_subset:
                continue  # (a subset: the values only this keyword rejects left out)
            if negated is None:
                return None
            if negated is not False:
                branches.append(negated)
                by_key[key] = negated
        if _one_required_property(schema):  # (an option of a negation, negated again)
            _absent_or_rejected(branches, by_key.get("required"), by_key.get("properties"))
        return {"anyOf": branches} if branches else False

    def negate_keyword(
        self: CompilerAPI, key: str, schema: dict, types: set[str], path: str, refs: frozenset[str]
    ) -> Any:
        """The values of ``types`` (or any values, for keywords not tied to a type) that
        keyword ``key`` of ``schema`` rejects: a schema, False for none, None if not expressible."""
        value = schema[key]
        if key in _FAMILY or key in _VALUE_FAMILY:
            family = _FAMILY.get(key) or _VALUE_FAMILY[key]
            in_family = sorted(t for t in types if t in family)
            if not in_family:
                return False
            if key in _FAMILY:
                negated = _negate_keyword(key, value, self, path, refs)[1]
            elif key == "pattern":
                negated = {NOT_PATTERN_KEY: [value]}
            elif key == "multipleOf":
                negated = {NOT_MULTIPLE_KEY: [value]}
            elif key == NOT_STRINGS_KEY:
                negated = {"enum": list(value)}
            elif key == NOT_NUMBERS_KEY:
                negated = {"enum": list(value)}
            elif key == NOT_PATTERN_KEY:
                negated = {"anyOf": [{"pattern": p} for p in value]}
            else:  # NOT_MULTIPLE_KEY
                negated = {"anyOf": [{"multipleOf": m} for m in value]}
            if negated is None or negated is False:
                return negated
            if isinstance(negated, dict) and "type" not in negated:
                return {"type": in_family, **negated}
            return {"allOf": [{"type": in_family}, negated]}
        if key == "contains":
            low, high = schema.get("minContains", 1), schema.get("maxContains")
            options: list[Any] = []
            if _is_int(low) and low >= 1:  # fewer matches than minContains
                options.append({"type": "array", "contains": value, "minContains": 0, "maxContains": low - 1})
            if high is not None and _is_int(high):  # more than maxContains
                options.append({"type": "array", "contains": value, "minContains": high + 1})
            return {"anyOf": options} if options else False
        listed = key == "items" and isinstance(value, list) and "prefixItems" not in schema
        if key == "prefixItems" or listed:  # (a draft-4 items array: a prefix too)
            # some item present at its position fails there
            if not isinstance(value, list):
                return None
            options = []
            for i, sub in enumerate(value):
                other = self.negate(sub, path, refs)
                if other is None:
                    return None
                if other is not False:
                    at_i = [*([True] * i), other]
                    options.append({"type": "array", "minItems": i + 1, "prefixItems": at_i})
            return {"anyOf": options} if options else False
        if key == "items":
            if isinstance(value, list) or schema.get("prefixItems"):
                return None  # the items after a prefix: not expressible here
            if self.negation_subset:
                # (left out of a subset: "some item fails" compiles as a contains, whose items
                # are split by negating this negation again, a product of automata)
                return False
            other = self.negate(value, path, refs)
            return None if other is None else other and {"type": "array", "contains": other}
        declared = schema.get("properties", {})
        if (
            key == "additionalProperties"
            and value is False
            and not schema.get("patternProperties")
            and isinstance(declared, dict)
            and len(declared) <= MAX_OUTSIDE_NAMES
        ):
            # some key the object does not declare: of a few declared names, each set of them
            # held (the others absent) beside more keys than that (else a member outside, below)
            names = list(declared)
            return {
                "anyOf": [
                    {
                        "type": "object",
                        "required": list(held),
                        "properties": {n: False for n in names if n not in held},
                        "minProperties": len(held) + 1,
                    }
                    for r in range(len(names) + 1)
                    for held in itertools.combinations(names, r)
                ]
            }
        if key == "patternProperties" and self.member_negation:
            # some member whose key a pattern finds, with a value that pattern's schema rejects
            if not isinstance(value, dict):
                return None
            options = []
            for pattern, sub in value.items():
                other = self.negate(sub, path, refs)
                if other is None:
                    return None
                if other is not False:
                    options.append({"type": "object", SOME_MEMBER_KEY: [[{"pattern": pattern}, other]]})
            return {"anyOf": options} if options else False
        if key == "propertyNames" and self.member_negation:  # some key it rejects
            other = self.negate(value, path, refs)
            if other is None or other is False:
                return other
            return {"type": "object", SOME_MEMBER_KEY: [[other, True]]}
        if key == "additionalProperties" and self.member_negation:
            # some member neither properties nor patternProperties govern, with a value it rejects
            other = True if value is False else self.negate(value, path, refs)
            if other is None or other is False:
                return other
            declared = schema.get("properties", {})
            patterns = schema.get("patternProperties", {})
            if not isinstance(declared, dict) or not isinstance(patterns, dict):
                return None
            governed: list[Any] = [{"enum": list(declared)}] if declared else []
            governed += [{"pattern": p} for p in patterns]
            outside = {"not": {"anyOf": governed}} if governed else True
            return {"type": "object", SOME_MEMBER_KEY: [[outside, other]]}
        if key in ("enum", "const"):
            values = [value] if key == "const" else value
            if not isinstance(values, list):
                return None
            return self.negate_values(values, path)
        if key == "not":
            return value
        if key in ("anyOf", "allOf", "oneOf"):
            if not isinstance(value, list) or not value:
                return None
            parts = [self.negate(x, path, refs) for x in value]
            if any(p is None for p in parts):
                return None
            if key == "anyOf":
                return {"allOf": parts}
            if key == "allOf":
                return {"anyOf": parts}
            # not exactly one: none of them, or two at once
            n = len(value)
            pairs = [{"allOf": [value[i], value[j]]} for i in range(n) for j in range(i + 1, n)]
            return {"anyOf": [{"allOf": parts}, *pairs]}
        if key == "$ref":
            ref = value
            if not isinstance(ref, str) or ref in refs:
                return None
            return self.negate(self.resolve(ref, path), path, refs | {ref})
        if key == "if":
            condition, then, otherwise = value, schema.get("then", True), schema.get("else", True)
            not_condition, not_then, not_else = (
                self.negate(x, path, refs) for x in (condition, then, otherwise)
            )
            options = []
            if not_then is None or not_else is None or (not_condition is None and not_else is not False):
                return None
            if not_then is not False:
                options.append({"allOf": [condition, not_then]})
            if not_else is not False:
                options.append({"allOf": [not_condition, not_else]})
            return {"anyOf": options} if options else False
        if key in _DEPENDENCY_KEYS:
            if not isinstance(value, dict):
                return None
            options = []
            for name, need in value.items():
                if isinstance(need, list):
                    options += [
                        {"type": "object", "required": [name], "properties": {other: False}} for other in need
                    ]
                else:
                    negated = self.negate(need, path, refs)
                    if negated is None:
                        return None
                    if negated is not False:
                        options.append({"allOf": [{"type": "object", "required": [name]}, negated]})
            return {"anyOf": options} if options else False
        return None

    def negate_values(self: CompilerAPI, values: list, path: str) -> Any:
        """Every JSON value except ``values`` (numbers written without an exponent: a subset)."""
        branches: list[Any] = []
        if not any(v is None for v in values):
            branches.append({"type": "null"})
        booleans = [b for b in (True, False) if not any(v is b for v in values)]
        if booleans:
            branches.append({"enum": booleans})
        numbers = [v for v in values if _is_number(v)]
        branches.append({"type": "number", NOT_NUMBERS_KEY: numbers} if numbers else {"type": "number"})
        strings = [v for v in values if isinstance(v, str)]
        branches.append({"type": "string", NOT_STRINGS_KEY: strings} if strings else {"type": "string"})
        negators: tuple[tuple[str, Callable[[Any, str], dict]], ...] = (
            ("array", self.not_array),
            ("object", self.not_object),
        )
        for kind, negate_one in negators:
            listed = [v for v in values if isinstance(v, list if kind == "array" else dict)]
            if not listed:
                branches.append({"type": kind})
                continue
            parts = [negate_one(v, path) for v in listed]
            branches.append(parts[0] if len(parts) == 1 else {"allOf": parts})
        return {"anyOf": branches}

    def not_array(self: CompilerAPI, value: list, path: str) -> dict:
        """Arrays other than ``value``: another length, or another item somewhere."""
        n = len(value)
        options: list[Any] = [{"minItems": n + 1}]
        if n:
            options.append({"maxItems": n - 1})
        for i, item in enumerate(value):
            other = self.negate_values([item], path)
            options.append({"minItems": i + 1, "prefixItems": [*([True] * i), other]})
        return {"type": "array", "anyOf": options}

    def not_object(self: CompilerAPI, value: dict, path: str) -> dict:
        """Objects other than ``value``: a key missing, a key with another value, or a key more."""
        options: list[Any] = [{"required": list(value), "minProperties": len(value) + 1}]
        for name, item in value.items():
            options.append({"properties": {name: False}})
            options.append({"required": [name], "properties": {name: self.negate_values([item], path)}})
        return {"type": "object", "anyOf": options}


_SUBSCHEMA_KEYS = (
    "additionalProperties",
    "additionalItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "items",
)
"""Keywords whose value is one schema applied to some members or items."""


def _vacuous_keywords(schema: dict, keys: set[str], types: set[str]) -> set[str]:
    """The keywords of ``schema`` that constrain only values of a type that ``schema`` rejects
    anyway (by ``type``, or by ``enum``/``const``), such as ``uniqueItems`` beside an enum of
    strings: negating the schema without them is the same, and what they would need may not
    be expressible."""
    listed = [schema["const"]] if "const" in schema else schema.get("enum")
    possible = set(types)
    if isinstance(listed, list):
        try:
            possible &= {json_type(v) for v in listed} | (
                {"number"} if any(json_type(v) == "integer" for v in listed) else set()
            )
        except Undecided:
            return set()
    vacuous = set()
    for kind, keywords in _TYPE_KEYWORDS.items():
        family = {"integer", "number"} if kind == "number" else {kind}
        if not family & possible:
            vacuous |= keys & keywords
    # schemas every value passes, under the keys they apply to
    for key in ("patternProperties", "properties", "dependentSchemas"):
        value = schema.get(key)
        if key in keys and isinstance(value, dict) and all(v is True or v == {} for v in value.values()):
            vacuous.add(key)
    for key in _SUBSCHEMA_KEYS:
        if key in keys and (schema[key] is True or schema[key] == {}):
            vacuous.add(key)
    return vacuous


def _one_required_property(schema: dict) -> bool:
    """``schema`` holds one property, which it requires: the shape of an option of the negation
    of ``properties`` ("p present with a value S rejects")."""
    props, required = schema.get("properties"), schema.get("required")
    return isinstance(props, dict) and len(props) == 1 and required == list(props)


def _absent_or_rejected(branches: list[Any], required: Any, properties: Any) -> None:
    """Join, in a negation's ``branches``, "r absent" (from ``required``) and "r present with a
    value its schema rejects" (from ``properties``) into "r's value rejected if present"
    (``properties: {r: not S}``): the same values. Where a negation is negated again (the
    items beside a ``contains`` of a negation), "r present with S, or r absent" for every
    property made an allOf of unions whose products passed the compile budget (Bitbucket
    Pipelines' steps); joined, it is ``properties`` again. (Only there: a oneOf branch
    negated keeps "r absent" apart, the simplest way to exclude it.)"""
    if not isinstance(required, dict) or not isinstance(properties, dict):
        return
    absent, present = required.get("anyOf"), properties.get("anyOf")
    if not isinstance(absent, list) or not isinstance(present, list):
        return

    def single(option: Any, keys: set[str]) -> str | None:
        """The one property name of an option of exactly ``keys`` (None otherwise)."""
        if not isinstance(option, dict) or set(option) != keys:
            return None
        props = option.get("properties")
        return next(iter(props)) if isinstance(props, dict) and len(props) == 1 else None

    pair = {"properties", "required"}
    absent_names = {single(o, {"properties"}) for o in absent} - {None}
    joined = {
        name
        for o in present
        if (name := single(o, pair)) in absent_names and o["required"] == [name]
    }
    if not joined:
        return
    rejected = [{"properties": o["properties"]} if single(o, pair) in joined else o for o in present]
    still_absent = [o for o in absent if single(o, {"properties"}) not in joined]
    at = next(i for i, b in enumerate(branches) if b is properties)
    branches[at] = {**properties, "anyOf": rejected}
    if still_absent:
        at = next(i for i, b in enumerate(branches) if b is required)
        branches[at] = {**required, "anyOf": still_absent}
    else:
        branches[:] = [b for b in branches if b is not required]


def _requires_itself(schema: Any, root: Any) -> bool:
    """Whether evaluating ``schema`` on a value always evaluates ``schema`` on that same value
    again: through ``$ref``, ``allOf`` parts, ``oneOf`` branches (exactly one: each is
    evaluated), ``not``, ``if``, and the one branch of an ``anyOf``. Its evaluation never ends
    (``jsonschema`` hits its recursion limit), and unrolling it filled the compile budget for
    seconds before refusing it. Other cycles (a branch among several of an ``anyOf``, which a
    validator may not reach; a property) are left to the depth limit."""
    seen: set[int] = set()
    stack = [schema]
    while stack:
        current = stack.pop()
        if not isinstance(current, dict) or id(current) in seen:
            continue
        seen.add(id(current))
        ref = current.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            try:
                target = resolve_local(root, ref)
            except LookupError:
                target = None
            if target is schema:
                return True
            stack.append(target)
        for key in ("allOf", "oneOf"):
            parts = current.get(key)
            if isinstance(parts, list):
                stack.extend(parts)
        branches = current.get("anyOf")
        if isinstance(branches, list) and len(branches) == 1:
            stack.append(branches[0])
        stack.extend(current[key] for key in ("not", "if") if key in current)
    return False


def _member_schemas(schema: dict, name: str) -> list:
    """The schemas a member ``name`` of an object of ``schema`` must satisfy, each of them
    (``properties``, every matching ``patternProperties``, or else ``additionalProperties``):
    OpenAPI's ``oneOf: [Callback, Reference]``, where the callback's members are path items
    (``additionalProperties``) and the reference's ``$ref`` member a string (by pattern).
    Empty where it cannot be told (a pattern no reader decides)."""
    found = []
    props = schema.get("properties")
    if isinstance(props, dict) and name in props:
        found.append(props[name])
    patterns = schema.get("patternProperties")
    if isinstance(patterns, dict):
        try:
            found += [v for p, v in patterns.items() if isinstance(p, str) and pattern_matches(p, name)]
        except Undecided:
            return []
    if not found and "additionalProperties" in schema:
        found.append(schema["additionalProperties"])
    return found
