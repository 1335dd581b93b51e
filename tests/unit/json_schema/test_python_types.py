"""Common Python types as constraints: TypedDict, dataclasses, annotations, Literal, Enum, functions."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Literal, NotRequired, TypedDict

import pytest
from conftest import MODEL_FILES, MODELS, load_vocab, require
from hypothesis import given, settings
from hypothesis import strategies as st

from outlines_gguf import JSONLogitsProcessor, generate, models
from outlines_gguf.errors import SchemaError
from outlines_gguf.generate import choice_options
from outlines_gguf.json_schema.python_types import schema_source


class Inner(TypedDict):
    z: int


class Record(TypedDict):
    a: int
    tags: NotRequired[list[Inner]]


@dataclasses.dataclass
class Point:
    x: int
    label: Literal["a", "b"]


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 20


def move(dx: int, dy: int = 0, unit: Literal["px", "em"] = "px") -> None:
    """A function whose parameters make a schema."""


TYPES = [Record, Point, list[int], dict[str, bool], int, Literal["x", "y"], Color, list[Record] | None, move]


@pytest.fixture(scope="module")
def model():
    return models.llamacpp(str(require(MODELS / MODEL_FILES["qwen2-152k"])), n_ctx=512, n_threads=1)


@pytest.mark.parametrize("tp", TYPES, ids=repr)
def test_every_type_gives_a_schema(tp) -> None:
    proc = JSONLogitsProcessor(tp, load_vocab("spm32k"))
    assert proc.schema  # before the fix: "is not a Pydantic model" / "got GenericAlias"


@settings(max_examples=40, deadline=None)
@given(
    value=st.fixed_dictionaries(
        {"a": st.integers(-(10**6), 10**6)},
        optional={"tags": st.lists(st.fixed_dictionaries({"z": st.integers(0, 99)}), max_size=3)},
    )
)
def test_typeddict_schema_accepts_its_values(value: dict) -> None:
    """Oracle: every value of the TypedDict, written as JSON, is complete under its processor,
    and dropping the required key makes it refused (pydantic's parse agrees)."""
    proc = JSONLogitsProcessor(Record, load_vocab("qwen2-152k"))
    value = {key: value[key] for key in ("a", "tags") if key in value}  # generated in declared order
    text = json.dumps(value, separators=(",", ":"))
    assert proc.accepts(text)
    assert proc.parse(text) == value
    broken = json.dumps({k: v for k, v in value.items() if k != "a"}, separators=(",", ":"))
    assert not proc.accepts(broken)
    with pytest.raises(ValueError):
        proc.parse(broken)


@settings(max_examples=40, deadline=None)
@given(x=st.integers(-1000, 1000), label=st.sampled_from(["a", "b", "c"]))
def test_dataclass_schema_matches_pydantic(x: int, label: str) -> None:
    proc = JSONLogitsProcessor(Point, load_vocab("llama3-128k"))
    text = json.dumps({"x": x, "label": label}, separators=(",", ":"))
    valid = label in ("a", "b")
    assert proc.accepts(text) == valid
    if valid:
        assert proc.parse(text) == Point(x, label)


def test_generate_json_returns_the_type(model) -> None:
    point = generate.json(model, Point)("A point: ", max_tokens=40, seed=1)
    assert isinstance(point, Point) and point.label in ("a", "b")
    numbers = generate.json(model, list[int], whitespace_pattern="")("Numbers: ", max_tokens=60, seed=2)
    assert isinstance(numbers, list) and all(isinstance(n, int) for n in numbers)
    size = generate.json(model, Size)("A size: ", max_tokens=10, seed=3)
    assert isinstance(size, Size)
    args = generate.json(model, move)("Move: ", max_tokens=60, seed=11)  # a seed whose integers end
    assert set(args) == {"dx", "dy", "unit"} and isinstance(args["dx"], int)
    move(**args)


def test_function_with_star_args_is_refused() -> None:
    def f(*values: int) -> None: ...

    with pytest.raises(SchemaError, match=r"\*values"):
        schema_source(f)


def test_a_type_without_a_schema_is_named() -> None:
    class Plain:
        pass

    with pytest.raises(SchemaError, match=r"Plain.*Pass a Pydantic model"):
        schema_source(Plain)


def test_choice_returns_the_same_kind(model) -> None:
    color = generate.choice(model, Color)("A color: ", max_tokens=4, seed=1)
    assert isinstance(color, Color)
    size = generate.choice(model, Size)("A size: ", max_tokens=4, seed=1)
    assert isinstance(size, Size)
    lit = generate.choice(model, Literal["yes", 3, None])("Answer: ", max_tokens=4, seed=2)
    assert lit in ("yes", 3, None)
    plain = generate.choice(model, ["up", "down"])("Where: ", max_tokens=4, seed=3)
    assert plain in ("up", "down") and type(plain) is str


def test_choice_texts() -> None:
    assert choice_options(Size) == {"1": Size.SMALL, "20": Size.LARGE}
    assert choice_options(Literal["a", True, 1.5, None]) == {"a": "a", "true": True, "1.5": 1.5, "null": None}
    assert choice_options(Literal[Color.RED]) == {"red": Color.RED}
    for bad in ("abc", [], [1, 2], Literal["1", 1], 42):
        with pytest.raises(ValueError):
            choice_options(bad)


def test_format_str_is_any_text(model) -> None:
    text = generate.format(model, str)("Say something: ", max_tokens=8, seed=5)
    assert isinstance(text, str)
