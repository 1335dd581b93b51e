"""The texts an item of an array with ``uniqueItems`` may spell a value with.

Items are written canonically (``strings.canonical_json_dfa``: one spelling per scalar, spaces
as ``json.dumps`` puts them), but the members of a small object come in any order
(:data:`~outlines_gguf.json_schema.objects.CANONICAL_ANY_ORDER_MAX`), as documents list them.
So an item written is left out of the items after it by all of its spellings: every order of
the members of each of its small objects, the rest as written. Two texts outside this set are
two values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from outlines_gguf.automata.dfa import ByteDFA
from outlines_gguf.automata.nfa import Fragment
from outlines_gguf.automata.regex import NFABuilder
from outlines_gguf.json_schema.objects import CANONICAL_ANY_ORDER_MAX


class _Number(str):
    """A number as written (its text is its one spelling)."""


class _Members(list):
    """An object's members, ``(name, value)`` in the order written."""


@lru_cache(maxsize=256)
def spellings_of(text: bytes) -> ByteDFA:
    """:func:`spellings_dfa` of one item (the tokens that go on past an item ask, one by one,
    about the item just ended)."""
    found = spellings_dfa([text])
    assert found is not None
    return found


def spellings_dfa(texts: Iterable[bytes]) -> ByteDFA | None:
    """Every spelling of the values of the canonical item ``texts`` (None: no texts)."""
    builder = NFABuilder("the items written")
    pieces = [_spelled(builder, _parse(text)) for text in texts]
    if not pieces:
        return None
    return builder.build(builder.alt(pieces))


def _parse(text: bytes) -> Any:
    decoded = text.decode("utf-8", "surrogatepass")
    return json.loads(decoded, parse_int=_Number, parse_float=_Number, object_pairs_hook=_Members)


def _spelled(b: NFABuilder, value: Any) -> Fragment:
    if isinstance(value, _Number):
        return b.literal(str(value))
    if isinstance(value, _Members):
        return _object(b, value)
    if isinstance(value, list):
        parts = [b.literal("[")]
        for i, item in enumerate(value):
            parts += [b.literal(", ")] if i else []
            parts.append(_spelled(b, item))
        return b.seq([*parts, b.literal("]")])
    return b.literal(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _object(b: NFABuilder, members: _Members) -> Fragment:
    """``{`` the members, in any order where there are few enough, ``}``: a state per set of
    members written, each member's text an automaton copied onto every edge it labels."""
    if len(members) < 2 or len(members) > CANONICAL_ANY_ORDER_MAX:
        parts = [b.literal("{")]
        for i, (name, value) in enumerate(members):
            parts += [b.literal(", ")] if i else []
            parts += [_key(b, name), _spelled(b, value)]
        return b.seq([*parts, b.literal("}")])
    texts = []
    for name, value in members:
        own = NFABuilder("a member written")
        texts.append(own.build(own.seq([_key(own, name), _spelled(own, value)])))
    eps = b.nfa.eps
    opened = b.literal("{")
    states = {0: opened[1]}
    everything = (1 << len(members)) - 1
    for written in range(everything):  # ascending: a set comes after its subsets
        source = states.get(written)
        if source is None:
            continue
        for i, text in enumerate(texts):
            if written >> i & 1:
                continue
            target = states.setdefault(written | 1 << i, b.nfa.state())
            piece = b.seq([b.literal(", "), b.dfa(text)]) if written else b.dfa(text)
            eps[source].append(piece[0])
            eps[piece[1]].append(target)
    closed = b.literal("}")
    eps[states[everything]].append(closed[0])
    return opened[0], closed[1]


def _key(b: NFABuilder, name: str) -> Fragment:
    return b.literal(json.dumps(name, ensure_ascii=False).encode("utf-8", "surrogatepass") + b": ")
