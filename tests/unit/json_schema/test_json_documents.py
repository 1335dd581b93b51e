"""References to other documents: the shipped JSON Schema meta-schemas, and documents a caller
passes as ``refs`` (``json_schema/documents.py``). Judged by ``jsonschema``."""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import load_vocab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from outlines_gguf import JSONLogitsProcessor, SchemaError
from outlines_gguf.json_schema.documents import metaschemas

DRAFTS = {
    "https://json-schema.org/draft/2020-12/schema": jsonschema.Draft202012Validator,
    "https://json-schema.org/draft/2019-09/schema": jsonschema.Draft201909Validator,
    "http://json-schema.org/draft-07/schema#": jsonschema.Draft7Validator,
    "http://json-schema.org/draft-06/schema#": jsonschema.Draft6Validator,
}

# values for keywords, right and wrong: schemas are what the meta-schemas judge
KEYWORD_VALUES = {
    "type": st.sampled_from(["string", "integer", "strnig", 3, ["string", "null"], [], ["a", "a"]]),
    "minLength": st.sampled_from([0, 3, -1, 1.5, "2"]),
    "maximum": st.sampled_from([3, 2.5, "x", None]),
    "required": st.sampled_from([["a"], ["a", "a"], [], "a", [1]]),
    "enum": st.sampled_from([[1, "a"], [], "x"]),
    "pattern": st.sampled_from(["^a+$", 3]),
    "$id": st.sampled_from(["http://example.com/s", "#frag", 3]),
}
SCHEMAS = st.recursive(
    st.booleans() | st.fixed_dictionaries({}, optional=KEYWORD_VALUES),
    lambda inner: st.fixed_dictionaries(
        {},
        optional={
            "properties": st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
            "items": inner,
            "allOf": st.lists(inner, min_size=0, max_size=2),
            "not": inner,
            **KEYWORD_VALUES,
        },
    ),
    max_leaves=5,
)


@pytest.mark.parametrize("uri", list(DRAFTS))
def test_schemas_validate_against_the_shipped_metaschemas_as_jsonschema_says(uri: str) -> None:
    processor = JSONLogitsProcessor({"$ref": uri}, load_vocab("spm32k"))
    judge = DRAFTS[uri]({"$ref": uri})

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(SCHEMAS)
    def check(schema: object) -> None:
        text = json.dumps(schema)
        accepted = processor.accepts(text)
        assert accepted == judge.is_valid(schema), text
        if schema is True or schema == {}:
            assert accepted

    check()
    for schema in ({"type": "string", "minLength": 2}, {"properties": {"a": {"type": ["integer", "null"]}}}):
        assert processor.accepts(json.dumps(schema))
    for schema in ({"type": "strnig"}, {"minLength": -1}, {"required": "a"}, 3):
        assert not processor.accepts(json.dumps(schema))


def test_every_shipped_metaschema_is_a_resource_of_its_uri() -> None:
    shipped = metaschemas()
    assert {
        "https://json-schema.org/draft/2020-12/meta/core",
        "http://json-schema.org/draft-04/schema",
    } <= set(shipped)
    for uri, document in shipped.items():
        assert (document.get("$id") or document.get("id")).rstrip("#") == uri


COMMON = {
    "$id": "https://example.com/common.json",
    "$defs": {"id": {"type": "string", "pattern": "^[a-z]+$"}, "tree": {"$ref": "tree.json"}},
}
TREE = {
    "$id": "https://example.com/tree.json",
    "type": "object",
    "properties": {
        "id": {"$ref": "common.json#/$defs/id"},
        "kids": {"type": "array", "items": {"$ref": "#"}},
    },
    "required": ["id"],
    "additionalProperties": False,
}


def test_documents_passed_as_refs_resolve_relative_to_the_schema_id() -> None:
    schema = {
        "$id": "https://example.com/root.json",
        "type": "object",
        "properties": {
            "owner": {"$ref": "common.json#/$defs/id"},
            "tree": {"$ref": "common.json#/$defs/tree"},
        },
    }
    refs = {"https://example.com/common.json": COMMON, "https://example.com/tree.json": TREE}
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"), refs=refs)
    registry = Registry().with_resources(
        (uri, Resource.from_contents(document, default_specification=DRAFT202012))
        for uri, document in refs.items()
    )
    judge = jsonschema.Draft202012Validator(schema, registry=registry)
    for value in (
        {"owner": "ab"},
        {"owner": "Ab"},
        {"tree": {"id": "x", "kids": [{"id": "y", "kids": []}]}},
        {"tree": {"id": "x", "kids": [{"id": "Y"}]}},
        {"tree": {"kids": []}},
    ):
        assert processor.accepts(json.dumps(value)) == judge.is_valid(value), value


def test_a_document_neither_shipped_nor_given_is_refused_at_construction() -> None:
    schema = {"properties": {"a": {"$ref": "https://example.com/elsewhere.json"}}}
    with pytest.raises(SchemaError, match=r"only local \$ref.*pass the document it points to as refs="):
        JSONLogitsProcessor(schema, load_vocab("spm32k"))
    with pytest.raises(SchemaError, match="must be a schema"):
        JSONLogitsProcessor(schema, load_vocab("spm32k"), refs={"https://example.com/elsewhere.json": 3})
