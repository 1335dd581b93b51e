"""Whatever the logits, JSON generation yields text that parses and validates."""

from __future__ import annotations

import json
from enum import Enum
from functools import cache
from typing import Literal

import jsonschema
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field
from sampling import closing_bias, generate

from outlines_gguf import JSONLogitsProcessor, Vocabulary


class Color(str, Enum):
    red = "red"
    green = "green"


class Address(BaseModel):
    street: str = Field(max_length=20)
    zip: str = Field(pattern=r"^[0-9]{5}$")


class Person(BaseModel):
    name: str = Field(min_length=1, max_length=12)
    age: int = Field(ge=0, le=130)
    email: str | None = None
    tags: list[Literal["a", "b", "c"]] = Field(max_length=3)
    address: Address
    color: Color
    score: float = Field(ge=0, le=1)
    ident: int | str


class Tree(BaseModel):
    value: int = Field(ge=-5, le=5)
    children: list[Tree] = Field(default_factory=list, max_length=2)


SCHEMAS: list = [
    {"type": "object", "properties": {"id": {"type": "integer"}, "ok": {"type": "boolean"}},
     "required": ["id", "ok"], "additionalProperties": False},
    {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 4},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"},
                                      "ip": {"type": "string", "format": "ipv4"}},
     "required": ["when"]},
    {"anyOf": [{"type": "integer", "minimum": 10}, {"enum": ["x", [1, 2], None]}]},
    {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number", "maximum": 5}},
     "required": ["kind", "r"], "additionalProperties": False},
    {},
    Person,
    Tree,
]


@cache
def bias_for(vocab: Vocabulary) -> np.ndarray:
    return closing_bias(vocab)


@settings(max_examples=24, deadline=None)
@given(index=st.integers(0, len(SCHEMAS) - 1), seed=st.integers(0, 2**32 - 1))
def test_random_logits_produce_valid_json(real_vocab: Vocabulary, index: int, seed: int) -> None:
    schema = SCHEMAS[index]
    proc = JSONLogitsProcessor(schema, real_vocab)
    rng = np.random.default_rng(seed)
    ids, ended = generate(proc, rng, [int(rng.integers(0, 1000))], max_tokens=400, bias=bias_for(real_vocab))
    assert proc.error is None
    assume(ended)  # unbounded parts (free-form keys) may rarely run on; too many and hypothesis fails
    text = real_vocab.decode(ids).decode("utf-8")
    data = json.loads(text)
    if isinstance(schema, type):
        schema.model_validate_json(text)
        jsonschema.validate(data, schema.model_json_schema())
    else:
        jsonschema.validate(data, schema)


@pytest.mark.model
@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_create_completion_returns_valid_pydantic_json(llm, temperature: float) -> None:
    from llama_cpp import LogitsProcessorList

    class Answer(BaseModel):
        verdict: Literal["yes", "no"]
        confidence: int = Field(ge=0, le=100)
        reason: str = Field(max_length=15)

    proc = JSONLogitsProcessor(Answer, llm)
    out = llm.create_completion(
        "Answer in JSON:", max_tokens=120, temperature=temperature, seed=3,
        logits_processor=LogitsProcessorList([proc]),
    )
    proc.raise_if_failed()
    assert out["choices"][0]["finish_reason"] == "stop"
    Answer.model_validate_json(out["choices"][0]["text"])
