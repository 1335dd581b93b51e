"""The JSON Schema compiler's rules for arrays: items, prefixItems, contains, runs of items, uniqueItems."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from outlines_gguf.automata.dfa import ByteDFA, language_size
from outlines_gguf.automata.nfa import Fragment
from outlines_gguf.automata.ops import intersect
from outlines_gguf.errors import EmptyLanguageError, OutlinesGGUFError
from outlines_gguf.json_schema.algebra import _unique_domain
from outlines_gguf.json_schema.keywords import (
    _CONTAINS_KEYS,
    ITEMS_RUN,
    ITEMS_RUN_KEY,
    MAX_ITEMS_CAP,
    UNIQUE_EXCLUDED_KEY,
    UNIQUE_ITEM_KEY,
    _is_int,
)
from outlines_gguf.json_schema.strings import canonical_json_dfa

if TYPE_CHECKING:
    from outlines_gguf.json_schema.compiler_api import CompilerAPI


class _ArrayRules:
    """Array rules of the JSON Schema compiler (mixed into ``_Compiler``)."""

    def array(self: CompilerAPI, schema: dict, path: str, depth: int) -> Fragment | None:
        """An array (entered through ``_Compiler.container``)."""
        if "contains" in schema:
            return self.contains_array(schema, path, depth)
        domain = _unique_domain(schema) if schema.get("uniqueItems") is True else None
        if domain is not None:
            return self.unique_array(domain, schema)
        prefix = schema.get("prefixItems")
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 4: items as a tuple
            prefix, items = items, schema.get("additionalItems", True)
        unique = domain is None and self.unique_items(schema, path) is not None
        distinct: int | None = None  # how many items a unique array can hold at most
        prefix = prefix or []
        if unique:
            try:
                item_dfa = self.item_texts(items, f"{path}/items")
            except (OutlinesGGUFError, RecursionError) as exc:
                # (items the scan did not meet, merged parts, or left to build here: at most one
                # item where minItems allows, see ``SplitSchema._scan_unique_items``)
                unique = self.unique_too_large(schema, path, exc)
        if unique:  # each item its own node, which the guide keeps from repeating (``unique``)
            # (a finite language of more than MAX_ITEMS_CAP values counts as that many: a subset)
            size = 0 if item_dfa is None else language_size(item_dfa, MAX_ITEMS_CAP)
            distinct = None if size is None else len(prefix) + size
            items = {UNIQUE_ITEM_KEY: items, UNIQUE_EXCLUDED_KEY: []}
            prefix = [{UNIQUE_ITEM_KEY: p, UNIQUE_EXCLUDED_KEY: []} for p in prefix]  # (one memory for all)
        min_items = int(schema.get("minItems", 0))
        max_items = schema.get("maxItems")
        if domain is None and not unique and self.one_unique_item(schema, path):
            max_items = 1 if max_items is None else min(int(max_items), 1)  # (``check_keywords``)
        next_depth = depth - 1 if not schema or items is True else depth

        def item(i: int) -> Fragment | None:
            if i < len(prefix):
                return self.value(prefix[i], f"{path}/prefixItems/{i}", next_depth)
            return self.value(items, f"{path}/items", next_depth)

        # prefix positions one by one, then the repeated items
        n_prefix = len(prefix)
        top = None if max_items is None else int(max_items)
        # split mode: long counts are chains of runs, not states (but one node for unique items,
        # whose written texts the guide keeps per node)
        runs = self.calls is not None and not unique
        if top is not None and top > MAX_ITEMS_CAP and not runs:
            top = max(MAX_ITEMS_CAP, min_items)
        if distinct is not None:  # (so that the array never opens an item no value is left for)
            top = distinct if top is None else min(top, distinct)
        if top is not None and top < min_items:
            return None
        options: list[Fragment | None] = []
        if min_items == 0:
            options.append(self.b.seq([self.open("["), self.close("]")]))
        # sequences of length k >= 1
        first_len = max(1, min_items)

        def tail(start: int) -> Fragment | None:
            """Items start.. with a comma before each, obeying the count limits."""
            parts: list[Fragment | None] = []
            for i in range(start, n_prefix):
                if top is not None and i >= top:
                    break
                required = i < min_items
                piece = self.b.seq([self.comma(), item(i)])
                if required:
                    parts.append(piece)
                else:
                    # optional from here on: the rest is nested inside
                    rest = tail(i + 1)
                    return self.b.seq(
                        [*parts, self.b.optional(self.b.seq([piece, rest]) if rest is not None else piece)]
                    )
            done = max(start, n_prefix)
            if top is not None and done >= top:
                return self.b.seq(parts) if parts else self.b.empty()
            extra_min = max(0, min_items - done)
            extra_max = None if top is None else top - done
            if items is False:
                if extra_min:
                    return None
                return self.b.seq(parts) if parts else self.b.empty()
            if runs and max(extra_min, extra_max or 0) > MAX_ITEMS_CAP:
                run = {ITEMS_RUN_KEY: [extra_min, extra_max], "items": items}
                return self.b.seq([*parts, self.call_maker(run, f"{path}/items")()])
            repeated = self.b.repeat(lambda: self.b.seq([self.comma(), item(done)]), extra_min, extra_max)
            return self.b.seq([*parts, repeated])

        if top is None or top >= 1:
            first = item(0)
            if first is not None:
                rest = tail(1)
                nonempty = (
                    self.b.seq([self.open("["), first, rest, self.close("]")]) if rest is not None else None
                )
                if nonempty is not None and first_len >= 1:
                    options.append(nonempty)
        return self.b.alt(options)

    def contains_negation(self: CompilerAPI, schema: dict, path: str) -> Any:
        """The negation of ``schema``'s ``contains`` schema (what the other items match), or
        None when ``contains`` is ignored (lenient); a SchemaError when it cannot be enforced
        (beside uniqueItems, or not negatable). Builds no automaton."""
        where = f"{path}/contains"
        unwanted = self.negate(schema["contains"], where)
        refusal = None
        if schema.get("uniqueItems") is True:
            refusal = "keyword 'contains' beside uniqueItems cannot be enforced"
        elif unwanted is None:
            refusal = "keyword 'contains': its schema cannot be negated (for the other items)"
        if refusal is None:
            return unwanted
        if not self.lenient:
            raise self.fail(f"{refusal} (pass lenient=True to ignore it)", where)
        return None

    def contains_array(self: CompilerAPI, schema: dict, path: str, depth: int) -> Fragment | None:
        """An array with ``contains``: each item matches the ``contains`` schema or its negation,
        and the automaton counts items and matches (minContains/maxContains, minItems/maxItems).
        Items of a prefix (``prefixItems``, a draft-4 ``items`` array) each have their own
        schema: the count of items written tells which. Refused (a SchemaError naming the
        keyword) with ``uniqueItems``, or a ``contains`` schema that cannot be negated."""
        wanted = schema["contains"]
        unwanted = self.contains_negation(schema, path)
        if unwanted is None:  # lenient: contains ignored
            rest = {k: v for k, v in schema.items() if k not in _CONTAINS_KEYS}
            return self.container("array", rest, path, depth)
        listed = schema.get("items") if isinstance(schema.get("items"), list) else None
        prefix = listed if listed is not None else schema.get("prefixItems", [])
        items = schema.get("additionalItems", True) if listed is not None else schema.get("items", True)
        low, high = int(schema.get("minContains", 1)), schema.get("maxContains")
        min_items, max_items = int(schema.get("minItems", 0)), schema.get("maxItems")
        too_few = max_items is not None and int(max_items) < max(low, min_items)
        if (high is not None and high < low) or too_few:
            return None
        if max_items is not None:  # (capped, never below minItems: a valid subset)
            max_items = max(min(int(max_items), MAX_ITEMS_CAP), min_items)
        # items written, counted up to here (past the prefix: every further item is alike)
        count_cap = max(1, min_items, max_items or 0, len(prefix))
        match_cap = low if high is None else int(high) + 1  # matches: high + 1 is dead

        def choices(k: int) -> list[tuple[int, Any]]:
            at = prefix[k] if k < len(prefix) else items
            return [(1, {"allOf": [at, wanted]}), (0, {"allOf": [at, unwanted]})]

        b = self.b
        entry = self.open("[")
        end = b.nfa.state()
        state: dict[tuple[int, int], int] = {(0, 0): entry[1]}
        for k in range(count_cap + 1):
            for c in range(match_cap + 1):
                source = state.get((k, c))
                if source is None:
                    continue
                if k >= min_items and c >= low:
                    close = self.close("]")
                    b.nfa.eps[source].append(close[0])
                    b.nfa.eps[close[1]].append(end)
                if max_items is not None and k >= max_items:
                    continue
                for matched, item_schema in choices(k):
                    nk, nc = min(k + 1, count_cap), min(c + matched, match_cap)
                    if high is not None and nc > high:
                        continue
                    item = self.value(item_schema, f"{path}/items", depth)
                    if item is None:
                        continue
                    piece = b.seq([self.comma(), item]) if k else item
                    if (nk, nc) not in state:
                        state[(nk, nc)] = b.nfa.state()
                    b.nfa.eps[source].append(piece[0])
                    b.nfa.eps[piece[1]].append(state[(nk, nc)])
        return entry[0], end

    def items_run(self: CompilerAPI, schema: dict, path: str, depth: int) -> Fragment | None:
        """``, item`` min..max times (split mode): up to ``ITEMS_RUN`` of them, or exactly that
        many and then a call to the run of the rest, so that ``maxItems: 1000`` is a chain of
        small nodes, compiled as generation reaches them, the count kept by the return stack."""
        low, high = schema[ITEMS_RUN_KEY]
        items = schema["items"]

        def piece() -> Fragment | None:
            return self.b.seq([self.comma(), self.value(items, path, depth)])

        with self.nested():  # the items are nested values
            if (high is not None and high <= ITEMS_RUN) or (high is None and low <= ITEMS_RUN):
                return self.b.repeat(piece, low, high)
            rest = [max(low - ITEMS_RUN, 0), None if high is None else high - ITEMS_RUN]
            following = self.call_maker({**schema, ITEMS_RUN_KEY: rest}, path)
            full = self.b.seq([self.b.repeat(piece, ITEMS_RUN, ITEMS_RUN), following()])
            return self.b.alt([self.b.repeat(piece, low, ITEMS_RUN - 1) if low < ITEMS_RUN else None, full])

    def item_texts(self: CompilerAPI, items: Any, path: str) -> ByteDFA | None:
        """:meth:`unique_item_dfa`, from the split schema's automata where it keeps them (the
        scan builds each at construction: a node's compile then builds none again)."""
        if self.known_item_texts is not None:
            return self.known_item_texts(items, path)
        return self.unique_item_dfa(items, path)

    def unique_item_dfa(self: CompilerAPI, items: Any, path: str) -> ByteDFA | None:
        """The texts of an item of an array with ``uniqueItems``, spelled canonically (one text
        per value: equal texts are equal items; a subset of the values where objects would
        need extra members beside others); None if there are none."""
        compiler = self.sub_compiler()
        compiler.canonical = True
        compiler.builder.label = f"JSON schema at {path}"
        fragment = compiler.value(items, path, self.max_depth)
        if fragment is None:
            return None
        try:
            dfa = compiler.builder.build(fragment)
        except EmptyLanguageError:
            return None
        return intersect(dfa, canonical_json_dfa())

    def unique_array(self: CompilerAPI, domain: list, schema: dict) -> Fragment | None:
        """An array of distinct items from a few values: one state per set of values used."""
        b = self.b
        low = int(schema.get("minItems", 0))
        top = schema.get("maxItems")
        high = len(domain) if top is None else min(int(top), len(domain))
        entry = self.open("[")
        end = b.nfa.state()
        state = {0: entry[1]}
        for used in range(1 << len(domain)):  # ascending: a set's subsets come first
            if used not in state:
                continue
            count = used.bit_count()
            if low <= count <= high:
                close = self.close("]")
                b.nfa.eps[state[used]].append(close[0])
                b.nfa.eps[close[1]].append(end)
            if count >= high:
                continue
            for i, value in enumerate(domain):
                if used >> i & 1:
                    continue
                nxt = used | 1 << i
                if nxt not in state:
                    state[nxt] = b.nfa.state()
                item = self.literal_value(value)
                parts = [self.comma(), item] if count else [item]
                piece = b.seq(parts)
                b.nfa.eps[state[used]].append(piece[0])
                b.nfa.eps[piece[1]].append(state[nxt])
        return entry[0], end


def one_item_unique(schema: dict) -> bool:
    """An array with ``uniqueItems`` whose values are not listed (``enum``/``const``) and that
    may hold at most one item (``minItems`` of 0 or 1): inside a canonically spelled item of
    another unique array (one automaton, no memory of its own), it is taken with at most one
    item, unique whatever it holds (a valid subset)."""
    least = schema.get("minItems", 0)
    listed = "enum" in schema or "const" in schema
    return schema.get("uniqueItems") is True and not listed and _is_int(least) and least <= 1
