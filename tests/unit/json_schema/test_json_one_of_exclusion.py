"""``oneOf`` branches that may overlap, made exclusive: "branch i and not branch j".

Configuration schemas (SchemaStore's Azure Functions ``host.json``, ``pubspec``, ``.swcrc``)
list alternative shapes of one object as closed objects that share keys, with closed objects
inside them, or tell a branch by the names it allows (``propertyNames``) or by the values of
its patterns. Such a branch cannot be negated on its own (any key may be added to make it
fail), but among the objects of the other branch, which hold only keys from a known list, it
can. Every test judges the processor by ``jsonschema`` on every combination of keys and
values listed, so an enumeration of the shapes, not a sample.
"""

from __future__ import annotations

import itertools
import json

import jsonschema
import pytest
from conftest import load_vocab

from outlines_gguf import JSONLogitsProcessor
from outlines_gguf.errors import SchemaError


def _judge(schema: dict, documents: list) -> None:
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    processor.guide.schema.compile_all()  # type: ignore[attr-defined]  # every node within the limits
    validator = jsonschema.Draft202012Validator(schema)
    assert any(validator.is_valid(d) for d in documents) and not all(validator.is_valid(d) for d in documents)
    for document in documents:
        assert processor.accepts(json.dumps(document)) == validator.is_valid(document), document


def _objects(values: dict[str, list], most: int) -> list[dict]:
    """Every object of at most ``most`` of the keys, each with each of its values."""
    out: list[dict] = []
    for n in range(most + 1):
        for keys in itertools.combinations(values, n):
            for chosen in itertools.product(*(values[k] for k in keys)):
                out.append(dict(zip(keys, chosen, strict=True)))
    return out


OFFSETS_FULL = {
    "type": "object",
    "properties": {"type": {"enum": ["fromStart", "fromEnd"]}, "time": {"type": "string"}},
    "additionalProperties": False,
}
OFFSETS_TYPE = {
    "type": "object",
    "properties": {"type": {"enum": ["fromStart", "fromEnd", "fromTime"]}},
    "additionalProperties": False,
}
EVENT_HUBS = {
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "batch": {"type": "integer"},
                "prefetch": {"type": "integer"},
                "offsets": OFFSETS_FULL,
            },
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "batch": {"type": "integer"},
                "offsets": OFFSETS_TYPE,
                "processor": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "prefetch": {"type": "integer"},
                "batch": {"type": "integer"},
                "size": {"type": "integer"},
            },
            "additionalProperties": False,
        },
    ]
}
"""The shape of ``host.json``'s ``eventHubs``: three closed objects sharing keys, two of them
with a closed ``offsets`` object whose keys and values differ."""


def test_closed_objects_sharing_keys_are_told_apart_by_the_keys_held() -> None:
    offsets = [{}, {"type": "fromStart"}, {"type": "fromTime"}, {"time": ""}, {"type": "fromEnd", "time": ""}]
    values = {"batch": [1], "prefetch": [2, 2.5], "offsets": offsets, "processor": [True], "size": [3]}
    _judge(EVENT_HUBS, _objects(values, 3))


def test_a_branch_closed_by_the_names_it_allows() -> None:
    """Versions (keys from a list, integer values) against flags (a closed object of one
    boolean): ``{}`` is both, so neither; a browser's version is only the first."""
    schema = {
        "oneOf": [
            {
                "type": "object",
                "propertyNames": {"enum": ["chrome", "edge"]},
                "patternProperties": {"": {"type": "integer"}},
            },
            {
                "type": "object",
                "properties": {"esmodules": {"type": "boolean"}},
                "additionalProperties": False,
            },
        ]
    }
    values = {"chrome": [1, "x", False], "edge": [2], "esmodules": [True, 3]}
    _judge(schema, _objects(values, 2))


def test_patterns_of_the_negated_branch_apply_to_the_keys_the_other_holds() -> None:
    """Each branch negated among the other's objects: the second's patterns and its list of
    names apply to the keys the first declares."""
    schema = {
        "oneOf": [
            {
                "type": "object",
                "properties": {"x-a": {"type": "integer"}, "b": {"type": "integer"}},
                "additionalProperties": False,
            },
            {
                "type": "object",
                "patternProperties": {"^x-": {"minimum": 5}},
                "properties": {"b": {"maximum": 3}},
                "propertyNames": {"enum": ["x-a", "x-b", "b"]},
            },
        ]
    }
    values = {"x-a": [1, 7], "b": [1, 4], "x-b": [6], "c": [0]}
    _judge(schema, _objects(values, 3))


def test_branches_disjoint_through_a_referenced_property_need_no_negation() -> None:
    """Swagger 2.0's response schema: a schema object whose ``type`` (a reference to a list
    of names, or an array of them) never holds ``"file"``, and a file schema that requires
    it. Both allow vendor extensions (``^x-``), so neither can be negated; none needs to be."""
    schema = {
        "$defs": {
            "names": {"enum": ["string", "object", "array"]},
            "type": {
                "anyOf": [{"$ref": "#/$defs/names"}, {"type": "array", "items": {"$ref": "#/$defs/names"}}]
            },
            "schema": {
                "type": "object",
                "properties": {"type": {"$ref": "#/$defs/type"}, "title": {"type": "string"}},
                "patternProperties": {"^x-": True},
                "additionalProperties": False,
            },
            "file": {
                "type": "object",
                "properties": {"type": {"enum": ["file"]}, "title": {"type": "string"}},
                "required": ["type"],
                "patternProperties": {"^x-": True},
                "additionalProperties": False,
            },
        },
        "oneOf": [{"$ref": "#/$defs/schema"}, {"description": "a file", "$ref": "#/$defs/file"}],
    }
    values = {"type": ["file", "string", ["array"]], "title": ["t"], "x-y": [1], "z": [0]}
    _judge(schema, _objects(values, 2))


def test_integers_and_numbers_with_a_fraction_are_disjoint() -> None:
    """A closed object whose ``n`` is an integer against one whose ``n`` may be any number: the
    second, negated among the first's objects, fails only by keys (a fraction never occurs)."""
    schema = {
        "oneOf": [
            {
                "type": "object",
                "properties": {"n": {"type": "integer"}, "a": {}},
                "additionalProperties": False,
            },
            {"type": "object", "properties": {"n": {"type": "number"}}, "additionalProperties": False},
        ]
    }
    _judge(schema, _objects({"n": [1, 1.5, "s"], "a": [0]}, 2))


def test_a_small_closed_object_is_negated_by_the_keys_it_does_not_declare() -> None:
    """Integers by any name against flags (a closed object of one boolean, ``.swcrc``'s
    targets): "not the flags" is an object holding another key, written as each set of the
    declared names held beside more keys than that."""
    schema = {
        "oneOf": [
            {"type": "object", "patternProperties": {"": {"type": "integer"}}},
            {"type": "object", "properties": {"a": {"type": "boolean"}}, "additionalProperties": False},
        ]
    }
    _judge(schema, _objects({"a": [1, True], "b": [2, False], "c": [3]}, 3))


def test_branches_open_to_any_key_are_told_apart_by_some_member() -> None:
    """Neither branch holds keys from a list, nor declares a few: "not the second" is "some key
    with ``a`` first whose value is a number below 3" (``SOME_MEMBER_KEY``), exact."""
    schema = {
        "oneOf": [
            {"type": "object", "patternProperties": {"": {"type": "integer"}}},
            {"type": "object", "patternProperties": {"^a": {"minimum": 3}}},
        ]
    }
    _judge(schema, _objects({"a": [1, 5, "x"], "ab": [2, 7.5], "b": [0, "y"]}, 2))


def test_a_branch_whose_negation_is_not_expressed_is_refused() -> None:
    schema = {
        "oneOf": [
            {"type": "object", "patternProperties": {"": {"type": "array", "uniqueItems": True}}},
            {"type": "object", "patternProperties": {"^a": {"minimum": 3}}},
        ]
    }
    with pytest.raises(SchemaError, match="cannot be negated"):
        JSONLogitsProcessor(schema, load_vocab("spm32k"))


STATES = {"CAN": ["AB", "NV", "ON"], "MEX": ["jalisco", "sonora"], "USA": ["NV", "TX", "WY"]}
ADDRESS = {
    "type": "object",
    "oneOf": [
        *(
            {
                "properties": {
                    "country": {"type": "string", "enum": [country]},
                    "state": {"type": "string", "enum": states},
                    "postalCode": {"type": "string", "maxLength": 10},
                }
            }
            for country, states in STATES.items()
        ),
        {
            "properties": {
                "country": {"not": {"type": "string", "enum": list(STATES)}},
                "state": {"type": "string", "maxLength": 51},
                "postalCode": {"type": "string", "maxLength": 51},
            }
        },
    ],
    "properties": {"street": {"type": "string", "maxLength": 50}},
}
"""A US government form's address (GitHub): a oneOf of countries whose discriminator is not
required, so an address without a country (or with a state two countries share) matches
several branches. Each branch is negated by 'this property present, with another value';
read among the branch's own values, most of those say only 'present', and the products of
the negations shrink from more than 64 alternatives to a few."""


def test_an_optional_discriminator_is_made_exclusive() -> None:
    values = {
        "country": ["CAN", "USA", "FRA"],
        "state": ["NV", "ON", "jalisco", "WY", "Bavaria"],
        "postalCode": ["12345", "x" * 20],
    }
    _judge(ADDRESS, _objects(values, 3))


def test_not_a_closed_object() -> None:
    """``not`` of an object closed over two names: another key, or a declared one that fails."""
    schema = {
        "type": "object",
        "not": {"properties": {"a": {"type": "integer"}, "b": {}}, "additionalProperties": False},
    }
    _judge(schema, _objects({"a": [1, "x"], "b": [2], "c": [3]}, 3))


def test_a_one_of_is_disjoint_from_what_each_of_its_branches_is() -> None:
    """A font definition (a closed object that requires ``size``, or one that requires
    ``px``, each of three members) against a reference (a closed object of ``ref`` only):
    every branch of the first is disjoint from the second, so the oneOf needs no negation
    (the first cannot be negated: its objects declare more than two names)."""
    definition = {
        "oneOf": [
            {
                "type": "object",
                "properties": {"size": {"type": "number"}, "style": {}, "weight": {}},
                "required": ["size"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"px": {"type": "integer"}, "em": {}, "pt": {}},
                "required": ["px"],
                "additionalProperties": False,
            },
        ]
    }
    reference = {
        "type": "object",
        "properties": {"ref": {"type": "string"}},
        "required": ["ref"],
        "additionalProperties": False,
    }
    schema = {"oneOf": [definition, reference]}
    documents = [{"size": 3}, {"px": 2}, {"ref": "x"}, {"ref": "x", "size": 3}, {"size": 1, "px": 1}, {}, "s"]
    _judge(schema, documents)


def test_branches_told_apart_by_file_name_patterns_need_no_negation(monkeypatch) -> None:
    """SchemaStore's ``bundleconfig``: a ``oneOf`` of JavaScript, CSS and HTML bundles, told
    apart by the pattern of the output file name, which the ``oneOf``'s siblings require and
    make a string. Without ``type: object`` every other value matches all three (none is
    valid); among objects the patterns are disjoint, so the union is exact with no branch
    negated (the negations of their open, many-keyed ``minify`` objects multiplied beyond the
    automaton limit)."""
    minify = {"type": "object", "properties": {f"k{i}": {"type": "boolean"} for i in range(6)}}
    schema = {
        "$defs": {
            "js": {
                "properties": {"out": {"pattern": "\\.js$"}, "minify": minify, "map": {"type": "boolean"}}
            },
            "css": {"properties": {"out": {"pattern": "\\.css$"}, "minify": minify}},
            "html": {"properties": {"out": {"pattern": "\\.(html|htm)$"}}},
        },
        "oneOf": [{"$ref": "#/$defs/js"}, {"$ref": "#/$defs/css"}, {"$ref": "#/$defs/html"}],
        "properties": {"out": {"type": "string", "minLength": 1}, "inputs": {"type": "array"}},
        "required": ["out"],
    }

    def no_negation(*args, **kwargs):
        raise AssertionError("a branch was negated")

    from outlines_gguf.json_schema import combinators

    monkeypatch.setattr(combinators._CombinatorRules, "exactly_one", no_negation)
    values = {
        "out": ["a.js", "b.css", "c.htm", "d.html", "e.txt", "", 3],
        "map": [True, 1],
        "minify": [{}, {"k1": 2}],
    }
    _judge(schema, [*_objects(values, 2), 5, "a.js", None, [], True])


def test_a_required_member_told_apart_by_the_other_branchs_additional_members(monkeypatch) -> None:
    """OpenAPI 3.0's ``oneOf: [Callback, Reference]``: a reference requires a ``$ref`` member
    that is a string (by ``patternProperties``); a callback's members other than ``x-...``
    extensions are path items, objects (``additionalProperties``). Both branches are open to
    extensions, so neither can be negated; none needs to be."""
    schema = {
        "$defs": {
            "PathItem": {"type": "object", "properties": {"summary": {"type": "string"}}},
            "Callback": {
                "type": "object",
                "additionalProperties": {"$ref": "#/$defs/PathItem"},
                "patternProperties": {"^x-": {}},
            },
            "Reference": {
                "type": "object",
                "required": ["$ref"],
                "patternProperties": {"^\\$ref$": {"type": "string"}},
            },
        },
        "oneOf": [{"$ref": "#/$defs/Callback"}, {"$ref": "#/$defs/Reference"}],
    }

    def no_negation(*args, **kwargs):
        raise AssertionError("a branch was negated")

    from outlines_gguf.json_schema import combinators

    monkeypatch.setattr(combinators._CombinatorRules, "exactly_one", no_negation)
    values = {"$ref": ["#/a", {}, {"summary": "s"}], "/p": [{}, "x"], "x-y": [1, {}]}
    _judge(schema, _objects(values, 2))


# Tabris fonts (MaskBench's Github_easy o37787): a reference {"ref": string} beside a locale
# selector whose 2-3 letter keys, "ref" among them, hold a recursive font resource, which is a
# string of a pattern or objects that lead back to it. "A reference and not a selector" needs
# "a string that is not a font resource": the resource narrowed to strings (its object branches
# left out) is no longer recursive, and negates.
FONTS = {
    "definitions": {
        "resource": {"oneOf": [{"$ref": "#/definitions/definition"}, {"$ref": "#/definitions/selector"}]},
        "definition": {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"size": {"type": "number"}},
                    "required": ["size"],
                    "additionalProperties": False,
                },
                {"type": "string", "pattern": "^[1-9][0-9]*px$"},
            ]
        },
        "selector": {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"ref": {"type": "string"}},
                    "required": ["ref"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "patternProperties": {"^[a-z][a-z][a-z]?$": {"$ref": "#/definitions/resource"}},
                    "additionalProperties": False,
                    "minProperties": 1,
                },
            ]
        },
    },
    "$ref": "#/definitions/resource",
}


def test_a_recursive_value_is_negated_among_the_values_the_other_branch_takes() -> None:
    values = ["x", "", "font1", "12px", "0px", 3, {"size": 2}, {"ref": "y"}, {"ref": "4px"}]
    _judge(FONTS, [*_objects({"ref": values}, 1), *_objects({"en": values, "ref": ["a", "7px"]}, 2), "9px"])


def _nested_numbers(depth: int) -> dict:
    schema: dict = {"type": "number"}
    for _ in range(depth):
        schema = {"type": "array", "minItems": 2, "items": schema}
    return schema


def _geojson_with_open_types() -> dict:
    """GeoJSON as a real schema of it writes it (GitHub): geometries told apart by their
    ``type`` enum, but the collections' and the feature's ``type`` spelled ``emum``, so any
    string: each of those may match a geometry (one with their keys added) and each other."""
    bbox = {"type": "array", "minItems": 4, "items": {"type": "number"}}
    geometries = [
        {
            "type": "object",
            "required": ["type", "coordinates"],
            "properties": {
                "type": {"type": "string", "enum": [name]},
                "coordinates": _nested_numbers(depth),
                "bbox": bbox,
            },
        }
        for name, depth in (("Point", 1), ("LineString", 2), ("Polygon", 3))
    ]
    open_type = {"type": "string", "emum": ["..."]}
    collection = {
        "type": "object",
        "required": ["type", "geometries"],
        "properties": {
            "type": open_type,
            "geometries": {"type": "array", "items": {"oneOf": geometries}},
            "bbox": bbox,
        },
    }
    feature = {
        "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": open_type,
            "geometry": {"oneOf": [{"type": "null"}, *geometries]},
            "properties": {"type": ["object", "null"]},
            "bbox": bbox,
        },
    }
    features = {
        "type": "object",
        "required": ["type", "features"],
        "properties": {"type": open_type, "features": {"type": "array", "items": feature}, "bbox": bbox},
    }
    return {"oneOf": [*geometries, collection, feature, features]}


def test_exclusions_past_the_limit_keep_the_simplest_way() -> None:
    """Excluding the overlapping branches of that GeoJSON takes more than 64 alternatives
    (each negation is "another type, or no coordinates, or bad coordinates, or a bad bbox",
    multiplied over the branches); each branch then keeps the simplest (a geometry with no
    ``geometries``, ``geometry`` nor ``features`` key): a valid subset that holds every
    document as a model writes it, and never one that two branches match."""
    schema = _geojson_with_open_types()
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    validator = jsonschema.Draft202012Validator(schema)
    point = {"type": "Point", "coordinates": [1, 2]}
    written = [
        point,
        {"type": "LineString", "coordinates": [[1, 2], [3, 4]], "bbox": [0, 0, 1, 1]},
        {"type": "GeometryCollection", "geometries": [point]},
        {"type": "Feature", "geometry": point, "properties": {"name": "x"}},
        {"type": "Feature", "geometry": None, "properties": None},
        {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": point, "properties": {}}]},
    ]
    for document in written:
        assert validator.is_valid(document)
        assert processor.accepts(json.dumps(document)), document
    values = {
        "type": ["Point", "LineString", "GeometryCollection"],
        "coordinates": [[1, 2], [[1, 2], [3, 4]], [1]],
        "geometries": [[], [point], [{"type": "Point", "coordinates": [1]}]],
        "geometry": [None, point],
        "properties": [{}],
        "bbox": [[1, 2, 3, 4], [1]],
    }
    documents = _objects(values, 4)
    assert any(validator.is_valid(d) for d in documents) and not all(validator.is_valid(d) for d in documents)
    for document in documents:
        if processor.accepts(json.dumps(document)):
            assert validator.is_valid(document), document


def test_a_negation_negated_again_stays_one_object() -> None:
    """Bitbucket Pipelines' pipeline: an item is a parallel group of steps or one step, and "a
    step, and not a group" negates "parallel holds an array of steps": an item beside a
    ``contains`` of a non-step, the negation negated again. Each of the step's properties
    became "present with its schema, or absent", an allOf of eleven unions whose products
    passed the compile budget when generation reached them; it is ``properties`` again."""
    names = ["size", "name", "trigger", "deployment", "image", "services", "caches", "artifacts",
             "variables", "after-script", "script"]
    step = {
        "type": "object",
        "properties": {n: {"type": "string"} for n in names},
        "required": ["name"],
    }
    steps = {"type": "object", "properties": {"step": step}}
    schema = {
        "type": "array",
        "items": {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"parallel": {"type": "array", "items": steps}},
                    "required": ["parallel"],
                },
                steps,
            ]
        },
    }
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    processor.guide.schema.compile_all()  # type: ignore[attr-defined]  # (the late piece included)
    validator = jsonschema.Draft202012Validator(schema)
    one = {"step": {"name": "build", "size": "2x"}}
    documents = [
        [one],
        [{"parallel": [one, one]}],
        [{"parallel": [one], "step": {"name": "x"}}],  # (both: a group of steps, and a step)
        [{"parallel": [{"step": {"size": "2x"}}], "step": {"name": "x"}}],  # (a step, not a group)
        [{"step": {"size": "2x"}}],
    ]
    for document in documents:
        assert processor.accepts(json.dumps(document)) == validator.is_valid(document), document
