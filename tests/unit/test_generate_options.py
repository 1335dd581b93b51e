"""GenerateOptions: the one object that holds a generator call's settings (no model needed)."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest

from outlines_gguf.generate import GenerateKwargs, GenerateOptions, resolve_options
from outlines_gguf.llama_cpp.generation import SamplingParams
from outlines_gguf.llama_cpp.processors import JSONLogitsProcessor, JSONOptions


def test_defaults_are_the_keyword_defaults() -> None:
    opts = GenerateOptions()
    assert (opts.max_tokens, opts.stop_at, opts.seed, opts.on_incomplete) == (None, (), None, "raise")
    assert opts.sampling == SamplingParams()  # llama-cpp-python's, written once


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 0),
        ("max_tokens", 2.5),
        ("seed", -1),
        ("seed", 2**32 - 1),
        ("temperature", -0.5),
        ("temperature", float("nan")),
        ("top_k", -1),
        ("top_k", 1.5),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("min_p", -0.1),
        ("stop_at", ""),
        ("stop_at", ["ok", ""]),
        ("stop_at", [3]),
        ("on_incomplete", "ignore"),
    ],
)
def test_a_bad_value_fails_when_made_naming_the_option(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        GenerateOptions(**{field: value})
    with pytest.raises(ValueError, match=field):  # and when laid over good options
        resolve_options(GenerateOptions(seed=1), {field: value})


def test_unknown_names_and_wrong_objects_are_type_errors() -> None:
    with pytest.raises(TypeError, match="max_token"):
        GenerateOptions(max_token=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_token"):
        resolve_options(None, {"max_token": 5})
    with pytest.raises(TypeError, match="options must be a GenerateOptions, got dict"):
        resolve_options({"seed": 1}, {})  # type: ignore[arg-type]


def test_keywords_override_the_options_object() -> None:
    base = GenerateOptions(max_tokens=20, seed=1, temperature=0.0, stop_at=["\n"])
    assert resolve_options(base, {}) is base
    over = resolve_options(base, {"seed": 2, "stop_at": None, "top_k": 5})
    assert over == GenerateOptions(max_tokens=20, seed=2, temperature=0.0, top_k=5)
    assert base.seed == 1  # the object itself is unchanged (frozen)
    assert resolve_options(None, {"seed": 4}) == GenerateOptions(seed=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.seed = 3  # type: ignore[misc]


def test_stop_at_is_kept_as_a_tuple() -> None:
    stops = ["a", "b"]
    opts = GenerateOptions(stop_at=stops)
    stops.append("c")
    assert opts.stop_at == ("a", "b") and GenerateOptions(stop_at="a").stop_at == ("a",)
    assert hash(opts) == hash(GenerateOptions(stop_at=("a", "b")))


def test_the_keyword_names_are_the_fields() -> None:
    """GenerateKwargs (for type checkers) and GenerateOptions list the same names."""
    fields = {f.name: f.type for f in dataclasses.fields(GenerateOptions)}
    assert set(typing.get_type_hints(GenerateKwargs)) == set(fields)


def test_json_options_are_the_processors_keywords() -> None:
    """generate.json passes JSONOptions on to JSONLogitsProcessor: the same names."""
    params = inspect.signature(JSONLogitsProcessor.__init__).parameters.values()
    keywords = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    assert set(typing.get_type_hints(JSONOptions)) == keywords
