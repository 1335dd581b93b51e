"""Grammar oracles: lark as the judge of sentences, the language up to a length by brute
force, small vocabularies, and a check of a guide's masks after given prefixes against lark."""

from __future__ import annotations

import itertools
from functools import cache

from lark import Lark
from lark.exceptions import LarkError

from outlines_gguf import CFGGuide, Grammar, Vocabulary


@cache
def lark_parser(text: str) -> Lark:
    return Lark(text, parser="lalr", lexer="contextual")


def lark_parses(text: str, data: bytes | str) -> bool:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            return False
    try:
        lark_parser(text).parse(data)
        return True
    except LarkError:
        return False


@cache
def sentences(text: str, alphabet: str, lmax: int) -> frozenset[str]:
    """Every sentence of up to ``lmax`` characters over ``alphabet`` (brute force with lark)."""
    found = set()
    for n in range(lmax + 1):
        for chars in itertools.product(alphabet, repeat=n):
            s = "".join(chars)
            if lark_parses(text, s):
                found.add(s)
    return frozenset(found)


def small_vocabulary(alphabet: str, extra: list[str]) -> Vocabulary:
    pieces = {c.encode() for c in alphabet}
    pieces |= {(a + b).encode() for a, b in itertools.product(alphabet, repeat=2)}
    pieces |= {e.encode() for e in extra}
    tokens = [b"", b"", *sorted(pieces)]  # 0: EOG, 1: a control token
    return Vocabulary(tokens, eog_ids=[0], special_ids=[1], name="cfg-synthetic")


def check_masks(text: str, alphabet: str, prefixes: list[str], lmax: int, extra: list[str]) -> int:
    """Check the guide's masks after each prefix against lark; returns how many tokens were checked."""
    vocab = small_vocabulary(alphabet, extra)
    guide = CFGGuide(Grammar(text), vocab)
    grammar = guide.grammar
    language = sentences(text, alphabet, lmax)
    prefixes_of_language = {s[:i] for s in language for i in range(len(s) + 1)}
    checked = 0
    completions: dict = {}
    for prefix in prefixes:
        config = grammar.advance(grammar.initial_state, prefix.encode())
        assert config is not None, f"{prefix!r} should be a viable prefix"
        allowed = set(guide.mask(config).allowed_ids(vocab.size).tolist())
        assert (0 in allowed) == lark_parses(text, prefix), f"EOG after {prefix!r}"
        for tid in range(2, vocab.size):
            candidate = prefix + vocab.tokens[tid].decode()
            if tid in allowed:
                after = grammar.advance(config, vocab.tokens[tid])
                assert after is not None
                if after not in completions:
                    completions[after] = grammar.shortest_completion(after)
                completion = completions[after]
                assert completion is not None
                witness = candidate.encode() + completion
                assert lark_parses(text, witness), f"{prefix!r} + {vocab.tokens[tid]!r}: {witness!r}"
            elif len(candidate) <= lmax:
                assert candidate not in prefixes_of_language, (
                    f"{prefix!r} + {vocab.tokens[tid]!r} is forbidden but lark accepts a sentence "
                    "starting with it"
                )
            checked += 1
        assert 1 not in allowed
    return checked


def viable_prefixes(text: str, samples: list[str], limit: int = 40) -> list[str]:
    out = {""}
    for s in samples:
        out |= {s[:i] for i in range(len(s) + 1)}
    return sorted(out, key=lambda p: (len(p), p))[:limit]
