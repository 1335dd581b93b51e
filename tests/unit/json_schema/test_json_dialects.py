"""A schema declaring draft 4, 6 or 7 is read as that draft's validators read it: keywords of
later drafts are unknown there, so they constrain nothing, and neither do the keywords beside a
``$ref`` (``json_schema/dialects.py``)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import load_vocab

from outlines_gguf import JSONLogitsProcessor, SchemaError
from outlines_gguf.json_schema.dialects import drop_undefined_keywords, ignore_ref_siblings

DRAFT4 = "http://json-schema.org/draft-04/schema#"
DRAFT6 = "http://json-schema.org/draft-06/schema#"
DRAFT7 = "http://json-schema.org/draft-07/schema#"

CASES = [
    # minContains 0 would let contains pass on no match: draft 7 has no minContains
    ({"$schema": DRAFT7, "contains": {"const": 1}, "minContains": 0}, [[], [2], [1], [2, 1]]),
    # prefixItems would exempt the first item from items: draft 7 applies items to every one
    (
        {"$schema": DRAFT7, "prefixItems": [{"type": "string"}], "items": {"type": "integer"}},
        [["a"], [1, 2], []],
    ),
    # dependentRequired is unknown to draft 7 (its dependencies keyword says the same)
    ({"$schema": DRAFT7, "dependentRequired": {"a": ["b"]}}, [{"a": 1}, {"a": 1, "b": 2}]),
    # draft 6 has no if/then/else; draft 4 no const, contains or propertyNames
    ({"$schema": DRAFT6, "if": {"type": "integer"}, "then": {"minimum": 5}}, [3, 7, "x"]),
    ({"$schema": DRAFT4, "const": 3, "type": "integer"}, [3, 4, "x"]),
    ({"$schema": DRAFT4, "propertyNames": {"maxLength": 1}}, [{"ab": 1}, {"a": 1}]),
    # beside a $ref, keywords are ignored (yamllint's root: a definition "extended" so)
    (
        {
            "$schema": DRAFT4,
            "definitions": {"base": {"properties": {"ignore": {"type": "string"}}}},
            "$ref": "#/definitions/base",
            "properties": {"rules": {"type": "integer"}},
            "required": ["rules"],
        },
        [{"rules": "x"}, {"ignore": 1}, {"ignore": "s", "rules": 2}, {}],
    ),
    (
        {
            "$schema": DRAFT7,
            "definitions": {"list": {"type": "array"}},
            "properties": {"a": {"$ref": "#/definitions/list", "maxItems": 1, "items": {"type": "string"}}},
        },
        [{"a": [1, 2, 3]}, {"a": "x"}, {"a": []}],
    ),
    # a property named like a keyword is a name, not a keyword
    (
        {"$schema": DRAFT7, "type": "object", "properties": {"minContains": {"type": "integer"}}},
        [{"minContains": 1}, {"minContains": "x"}],
    ),
]


def _validator(schema: dict) -> jsonschema.protocols.Validator:
    return jsonschema.validators.validator_for(schema)(schema)


@pytest.mark.parametrize(("schema", "values"), CASES, ids=lambda c: json.dumps(c)[:50])
def test_later_keywords_are_annotations_in_an_earlier_draft(schema: dict, values: list) -> None:
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    for value in values:
        assert processor.accepts(json.dumps(value)) == _validator(schema).is_valid(value), value


def test_an_anchor_names_nothing_in_draft_7() -> None:
    anchored = {"allOf": [{"$ref": "#foo"}], "$defs": {"A": {"$anchor": "foo", "type": "integer"}}}
    processor = JSONLogitsProcessor(anchored, load_vocab("spm32k"))  # (2020-12: it names A)
    assert processor.accepts("1") and not processor.accepts('"x"')
    with pytest.raises(SchemaError, match="points to nothing"):
        JSONLogitsProcessor({"$schema": DRAFT7, **anchored}, load_vocab("spm32k"))


def test_the_schema_given_is_not_modified() -> None:
    schema = {"$schema": DRAFT7, "items": [{"contains": {}, "minContains": 0}]}
    before = json.dumps(schema)
    assert drop_undefined_keywords(schema) == {"$schema": DRAFT7, "items": [{"contains": {}}]}
    assert json.dumps(schema) == before
    plain = {"contains": {}, "minContains": 0}
    assert drop_undefined_keywords(plain) is plain  # (no draft declared: every keyword counts)


def test_keywords_beside_a_ref_apply_from_2019_09_on() -> None:
    schema = {"$defs": {"list": {"type": "array"}}, "$ref": "#/$defs/list", "maxItems": 1}
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    assert processor.accepts("[1]") and not processor.accepts("[1, 2]")
    assert ignore_ref_siblings(schema) is schema


def test_a_keyword_beside_a_ref_that_a_reference_points_into_is_kept() -> None:
    """Removing it would leave the reference pointing to nothing; kept, it is enforced (more
    than draft 7 says: a subset of the valid values, never a superset)."""
    schema = {
        "$schema": DRAFT7,
        "definitions": {"base": {"type": "object"}},
        "$ref": "#/definitions/base",
        "properties": {"a": {"type": "integer"}, "b": {"$ref": "#/properties/a"}},
    }
    assert ignore_ref_siblings(schema) == schema
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    assert processor.accepts('{"b": 1}') and not processor.accepts('{"b": "x"}')
