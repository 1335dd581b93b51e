"""Patterns under ``not``, ``patternProperties`` beside other keys, ``propertyNames`` and ``oneOf``
exclusion: what is accepted is valid under every reading of the pattern (Python's ``re`` and
ECMA-262), where a complemented ``\\s`` must take every Unicode space.

Found by ``benchmarks/soundness_fuzz.py``: ``{"not": {"pattern": "\\s"}}`` accepted ``"\\u3000"``.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import load_vocab

from outlines_gguf import compile_json_schema
from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.split import SplitSchema
from outlines_gguf.json_schema.validate import Undecided, pattern_matches

SPACES = ["\u00a0", "\u3000", "\u2028", "\x1c", "\ufeff"]

CASES = [
    # (schema, texts valid under every reading, texts invalid under some reading)
    (
        {"type": "string", "not": {"pattern": r"^\s*$"}},
        ['"a"', '"a b"'],
        ['""', '" "', *map(json.dumps, SPACES)],
    ),
    ({"not": {"pattern": r"\s"}}, ['"ab"'], ['"a b"', *(json.dumps(f"a{s}b") for s in SPACES)]),
    ({"not": {"pattern": r"\d"}}, ['"ab"'], ['"1"', json.dumps("\u0663"), json.dumps("x\uff11")]),
    ({"not": {"pattern": r"^\w+$"}}, ['"a b"'], ['"ab"', json.dumps("\u00e9t\u00e9")]),
    ({"not": {"pattern": "a$"}}, ['"ab"'], ['"a"', '"xa\\n"']),
    ({"not": {"pattern": "(?i)k"}}, ['"x"'], ['"K"', json.dumps("\u212a")]),
    (
        {"type": "object", "patternProperties": {r"\s": False}},
        ['{"ab": 1}'],
        ['{"a b": 1}', '{"a\u00a0b": 1}'],
    ),
    (
        {"type": "object", "propertyNames": {"not": {"pattern": r"\s"}}},
        ['{"ab": 1}'],
        ['{"a b": 1}', '{"a\u3000b": 1}'],
    ),
    ({"oneOf": [{"pattern": r"\s"}, {"type": "string"}]}, ['"x"', "1"], ['" "', json.dumps("\u2028")]),
    (
        {
            "type": "object",
            "patternProperties": {r"^\S+$": {"type": "integer"}, r"^\s+$": {"type": "string"}},
        },
        ['{"a": 1}', '{" ": "x"}'],
        ['{"\u00a0": 1}', '{"a": "x"}'],
    ),
    (
        {
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "patternProperties": {r"\s": {"type": "integer"}},
        },
        ['{"a": "x", "b c": 1}'],
        ['{"b\u00a0c": "x"}'],
    ),
    ({"enum": ["a\u00a0", "b"], "not": {"pattern": r"\s"}}, ['"b"'], ['"a\u00a0"']),
    # ECMA-262's . and $ in patterns to be matched: no \r, U+2028, U+2029; nothing after $
    ({"pattern": "^a.b$"}, ['"axb"'], ['"a\\rb"', '"a\\u2028b"', '"a\\nb"']),
    ({"pattern": "a$|^b"}, ['"xa"', '"bx"'], ['"xa\\n"']),
    ({"enum": ["a\rb", "axb"], "pattern": "^a.b$"}, ['"axb"'], ['"a\\rb"']),
]
IDS = [json.dumps(c[0])[:60] for c in CASES]


def _check(schema: dict, good: list[str], bad: list[str], accepts) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    for text in good:
        assert validator.is_valid(json.loads(text)), text
        assert accepts(text), text
    for text in bad:  # invalid under Python's reading, ECMA-262's, or both
        assert not accepts(text), text


@pytest.mark.parametrize(("schema", "good", "bad"), CASES, ids=IDS)
def test_pushdown_engine(schema: dict, good: list[str], bad: list[str]) -> None:
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))

    def accepts(text: str) -> bool:
        state = guide.advance(guide.initial_state, text.encode())
        return bool(state and guide.is_final(state))

    _check(schema, good, bad, accepts)


@pytest.mark.parametrize(("schema", "good", "bad"), CASES, ids=IDS)
def test_whole_schema_engine(schema: dict, good: list[str], bad: list[str]) -> None:
    dfa = compile_json_schema(schema)
    _check(schema, good, bad, lambda text: dfa.matches(text.encode()))


def test_a_pattern_match_is_undecided_where_readers_differ() -> None:
    assert pattern_matches(r"\s", "a b") is True
    assert pattern_matches(r"\s", "ab") is False
    assert pattern_matches("a$", "a") is True
    for pattern, text in [(r"\s", "a\u00a0b"), (r"\d", "\u0663"), ("a$", "a\n")]:
        with pytest.raises(Undecided):
            pattern_matches(pattern, text)
