"""``oneOf`` branches whose negation is read among the other branch's arrays, or can only be
written in part (``negate_subset``): judged by ``jsonschema`` on small universes of documents."""

from __future__ import annotations

import itertools
import json

import jsonschema
from conftest import load_vocab

from outlines_gguf import JSONLogitsProcessor

# zypper-like: the branches differ in what their items require; an empty array matches both
ITEMS_TOLD_APART = {
    "type": "object",
    "required": ["repos"],
    "oneOf": [
        {
            "properties": {
                "kind": {"const": "zypp"},
                "repos": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["url"],
                        "properties": {"url": {"type": "string"}},
                    },
                },
            }
        },
        {
            "properties": {
                "kind": {"const": "yum"},
                "repos": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["url"],
                        "properties": {"url": {"type": "array"}},
                    },
                },
            }
        },
    ],
}

# a recursive definition in both branches: "not a competency" cannot be written whole
RECURSIVE = {
    "$ref": "#/$defs/competency",
    "$defs": {
        "competency": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
            "oneOf": [
                {
                    "required": ["subs"],
                    "properties": {"subs": {"type": "array", "items": {"$ref": "#/$defs/competency"}}},
                },
                {
                    "required": ["skills"],
                    "properties": {"skills": {"type": "array", "items": {"type": "string"}}},
                },
            ],
        }
    },
}


def _universe(keys: dict[str, list]) -> list[dict]:
    out: list[dict] = []
    names = list(keys)
    for n in range(len(names) + 1):
        for chosen in itertools.combinations(names, n):
            for values in itertools.product(*(keys[k] for k in chosen)):
                out.append(dict(zip(chosen, values, strict=True)))
    return out


def test_branches_told_apart_by_their_items_are_exact() -> None:
    processor = JSONLogitsProcessor(ITEMS_TOLD_APART, load_vocab("spm32k"))
    assert not processor.guide.schema.subsets  # type: ignore[attr-defined]
    validator = jsonschema.Draft202012Validator(ITEMS_TOLD_APART)
    repos = [[], [{"url": "u"}], [{"url": ["u"]}], [{"url": "u"}, {"url": ["u"]}], [{}], "x"]
    for document in _universe({"kind": ["zypp", "yum", "apt"], "repos": repos}):
        assert processor.accepts(json.dumps(document)) == validator.is_valid(document), document


def test_recursive_branches_are_a_valid_subset() -> None:
    processor = JSONLogitsProcessor(RECURSIVE, load_vocab("spm32k"))
    assert processor.guide.schema.subsets  # type: ignore[attr-defined]
    validator = jsonschema.Draft202012Validator(RECURSIVE)
    leaf = {"name": "b", "skills": ["s"]}
    subs = [[], [leaf], [{"name": "c"}], [{"name": "c", "subs": [], "skills": []}], "x"]
    documents = _universe({"name": ["a", 1], "subs": subs, "skills": [[], ["s"], [1]]})
    accepted = 0
    for document in documents:
        valid = validator.is_valid(document)
        if processor.accepts(json.dumps(document)):
            assert valid, document  # never a document that matches no branch, or both
            accepted += 1
    # what one branch alone says is kept: a competency with skills, or with valid sub-competencies
    assert processor.accepts(json.dumps({"name": "a", "skills": ["s"]}))
    assert processor.accepts(json.dumps({"name": "a", "subs": [leaf]}))
    # of the 12 valid documents, those lost hold both keys, with a sub-competency that is none
    # ("some item is not a competency" is what the subset leaves out)
    assert accepted >= 8
