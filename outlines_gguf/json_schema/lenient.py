"""What ``lenient=True`` leaves out of a schema before it is compiled: the regexes that no
automaton can enforce (a backreference, PCRE recursion such as ``(?1)``, a conditional group),
in ``pattern`` and as ``patternProperties`` keys. Strictly, such a schema is refused with a
:class:`~outlines_gguf.errors.RegexError` naming the pattern; leniently the pattern is not
enforced, as lenient ignores any keyword it cannot enforce (a ``patternProperties`` entry left
out leaves its keys to ``additionalProperties``; a ``not`` holding such a pattern is left out
whole)."""

from __future__ import annotations

import copy
from typing import Any

from outlines_gguf.automata.budget import compile_budget
from outlines_gguf.automata.regex import NFABuilder, regex_may_be_refused
from outlines_gguf.errors import ConstraintTooComplexError, RegexError
from outlines_gguf.json_schema.lexical import _searched
from outlines_gguf.json_schema.refs import subschema_dicts


def drop_unenforceable_patterns(root: Any) -> Any:
    """``root`` without the ``pattern`` keywords and ``patternProperties`` entries whose
    regex cannot be enforced, and without each ``not`` holding one (left out of a ``not``, a
    pattern would forbid more: ``not: {pattern: ...}`` would become ``not: {}``, no value at
    all); ``root`` itself is never modified."""
    found: list[tuple[dict, bool, list[str]]] = []
    for node in subschema_dicts(root):
        pattern = node.get("pattern")
        drop_pattern = isinstance(pattern, str) and not enforceable(pattern)
        patterns = node.get("patternProperties")
        dropped = [p for p in patterns if not enforceable(p)] if isinstance(patterns, dict) else []
        if drop_pattern or dropped:
            found.append((node, drop_pattern, dropped))
    if not found:
        return root
    holding = {id(node) for node, _, _ in found}
    negations = [
        node
        for node in subschema_dicts(root)
        if isinstance(node.get("not"), dict) and any(id(d) in holding for d in subschema_dicts(node["not"]))
    ]
    memo: dict[int, Any] = {}
    out = copy.deepcopy(root, memo)
    for node, drop_pattern, dropped in found:
        twin = memo[id(node)]
        if drop_pattern:
            del twin["pattern"]
        for key in dropped:
            del twin["patternProperties"][key]
    for node in negations:
        del memo[id(node)]["not"]
    return out


def enforceable(pattern: str) -> bool:
    """Whether the regex compiler accepts ``pattern`` (searched, as JSON Schema reads it); built
    only where a look at its parse tree cannot tell (:func:`regex_may_be_refused`)."""
    searched = _searched(pattern)
    if not regex_may_be_refused(searched):
        return True
    try:
        with compile_budget("a pattern"):
            NFABuilder("pattern").regex(searched, ecma=True)
    except RegexError:
        return False
    except ConstraintTooComplexError:
        return True  # (built or refused for its size when compiled, as without lenient)
    return True
