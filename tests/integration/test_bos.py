"""A chat prompt that already starts with the BOS text gets no second BOS, and no warning."""

from __future__ import annotations

import pytest
from conftest import MODEL_FILES, MODELS, require

from outlines_gguf import models

pytestmark = pytest.mark.model


def test_chat_prompt_with_bos_text_is_tokenized_once(capfd: pytest.CaptureFixture) -> None:
    model = models.llamacpp(str(require(MODELS / MODEL_FILES["llama3-128k"])), n_ctx=256, n_threads=1)
    bos = model.vocabulary.bos_id
    prompt = model.apply_chat_template([{"role": "user", "content": "hi"}])
    assert prompt.startswith("<|begin_of_text|>")  # the template writes the BOS itself
    capfd.readouterr()
    ids = model.tokenize(prompt)
    assert "BOS" not in capfd.readouterr().err  # before: "... now the final prompt starts with 2 BOS tokens"
    assert ids[0] == bos and ids.count(bos) == 1
    plain = model.tokenize("hello")
    assert plain[0] == bos and plain.count(bos) == 1  # a plain prompt still gets its BOS
