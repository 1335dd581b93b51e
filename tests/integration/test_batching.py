"""Batches of prompts and the async wrapper of the high-level generators."""

from __future__ import annotations

import asyncio
import re

import pytest
from conftest import MODEL_FILES, MODELS, require

from outlines_gguf import generate, models
from outlines_gguf.errors import IncompleteGenerationError
from outlines_gguf.generate import prompt_batch

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def model():
    return models.llamacpp(str(require(MODELS / MODEL_FILES["qwen2-152k"])), n_ctx=512, n_threads=1)


def test_a_list_of_prompts_returns_a_list(model) -> None:
    gen = generate.regex(model, r"[0-9]{2,4}")
    prompts = ["A number: ", "Another: ", "A third one: "]
    batch = gen(prompts, max_tokens=8, seed=5)  # before: 'str' object has no attribute 'role'
    assert isinstance(batch, list) and len(batch) == 3
    assert all(re.fullmatch(r"[0-9]{2,4}", text) for text in batch)
    assert [r.seed for r in gen.last_results] == [5, 6, 7]
    one_by_one = [gen(p, max_tokens=8, seed=5 + i) for i, p in enumerate(prompts)]
    assert batch == one_by_one  # the same as calling once per prompt with seed + i


def test_a_batch_of_chats(model) -> None:
    gen = generate.choice(model, ["yes", "no"])
    chats = [[{"role": "user", "content": "Rain?"}], [{"role": "user", "content": "Sun?"}]]
    answers = gen(chats, max_tokens=4, seed=1)
    assert len(answers) == 2 and set(answers) <= {"yes", "no"}
    single = gen(chats[0], max_tokens=4, seed=1)  # one chat is still one prompt
    assert single == answers[0]


def test_incomplete_in_a_batch_names_the_prompt(model) -> None:
    gen = generate.regex(model, r"[a-z]{20}")
    with pytest.raises(IncompleteGenerationError, match=r"^prompt 0 of 2: "):
        gen(["a", "b"], max_tokens=3, seed=1)
    texts = gen(["a", "b"], max_tokens=3, seed=1, on_incomplete="return")
    assert [len(t) > 0 for t in texts] == [True, True]


def test_prompt_kinds() -> None:
    assert prompt_batch("x") is None
    assert prompt_batch([{"role": "user", "content": "x"}]) is None
    assert prompt_batch(["a", "b"]) == ["a", "b"]
    with pytest.raises(ValueError, match="mixing"):
        prompt_batch(["a", {"role": "user", "content": "x"}])


def test_stream_refuses_a_batch(model) -> None:
    with pytest.raises(ValueError, match="one prompt"):
        generate.regex(model, "[0-9]").stream(["a", "b"])


def test_acall_runs_concurrent_calls_one_after_another(model) -> None:
    gens = [
        generate.regex(model, r"[0-9]{3}"),
        generate.format(model, int),
        generate.choice(model, ["x", "y"]),
    ]

    async def main() -> list:
        return await asyncio.gather(*(g.acall("Go: ", max_tokens=6, seed=3) for g in gens))

    results = asyncio.run(main())
    assert re.fullmatch(r"[0-9]{3}", results[0]) and isinstance(results[1], int) and results[2] in ("x", "y")
    assert results == [g("Go: ", max_tokens=6, seed=3) for g in gens]  # the same seed, the same text
