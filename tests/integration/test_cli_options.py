"""Command-line options that error messages name exist, and bad model files are named early."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import MODEL_FILES, MODELS, VOCAB_FILES, VOCABS, require
from test_cli import assert_one_line_error, cli

pytestmark = pytest.mark.model

SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
)


def test_incomplete_names_the_flags_and_on_incomplete_return() -> None:
    cut = cli("json", SCHEMA, "-p", "x", "--max-tokens", "2", "--seed", "1")
    assert cut.returncode == 1 and cut.stdout == ""
    assert "--max-tokens" in cut.stderr and "--on-incomplete return" in cut.stderr
    assert "on_incomplete=" not in cut.stderr and "max_tokens" not in cut.stderr
    kept = cli("json", SCHEMA, "-p", "x", "--max-tokens", "2", "--seed", "1", "--on-incomplete", "return")
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.startswith("{") and "incomplete" in kept.stderr
    with pytest.raises(json.JSONDecodeError):
        json.loads(kept.stdout)


def test_lenient_message_names_the_flag() -> None:
    unenforceable = '{"type": "array", "contains": {"type": "string"}, "uniqueItems": true}'
    proc = cli("json", unenforceable, "-p", "x")
    assert_one_line_error(proc, r"pass --lenient to ignore it")
    assert "lenient=True" not in proc.stderr


def test_chat_template_flag(tmp_path: Path) -> None:
    no_template = require(MODELS / MODEL_FILES["spm32k"])
    proc = cli("choice", "a", "b", "-p", "hi", "--chat", "--model", str(no_template), "--n-threads", "1")
    assert_one_line_error(proc, r"has no chat template.*--chat-template FILE")
    assert "models.llamacpp" not in proc.stderr
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}[{{ m['content'] }}]{% endfor %}Answer:")
    proc = cli(
        "choice", "a", "b", "-p", "hi", "--chat", "--model", str(no_template), "--n-threads", "1",
        "--chat-template", str(template), "--seed", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout in ("a\n", "b\n")
    template.write_text("{{ raise_exception('the custom template ran') }}")
    proc = cli("choice", "a", "b", "-p", "hi", "--chat", "--chat-template", str(template))
    assert_one_line_error(proc, "the custom template ran")


def test_not_a_gguf_file(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"PK\x03\x04" + bytes(100))
    proc = cli("regex", "[0-9]", "-p", "x", "--model", str(bogus))
    assert_one_line_error(proc, r"not a GGUF file \(magic b'PK")


def test_vocabulary_only_gguf_is_refused_before_loading() -> None:
    vocab_only = require(VOCABS / VOCAB_FILES["qwen2-152k"])
    start = time.perf_counter()
    proc = cli("regex", "[0-9]", "-p", "x", "--model", str(vocab_only))
    assert_one_line_error(proc, r"vocabulary-only GGUF .*pass a model file")
    assert "done" not in proc.stderr and "loading" not in proc.stderr
    assert time.perf_counter() - start < 60  # generous: the point is no model load, not a timing


def test_track_rows() -> None:
    proc = cli(
        "regex", "[a-z]{30}", "-p", "x", "--seed", "1", "--track", "--track-rows", "4"
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = proc.stderr[proc.stderr.index(" pos  chosen") :].splitlines()
    assert len(table) == 1 + 4 + 1 and "positions not shown" in table[3]


def test_llamacpp_names_bad_model_files(tmp_path: Path) -> None:
    from outlines_gguf import models
    from outlines_gguf.errors import GGUFFormatError

    with pytest.raises(GGUFFormatError, match="vocabulary-only GGUF"):
        models.llamacpp(str(require(VOCABS / VOCAB_FILES["spm32k"])))
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a model at all")
    with pytest.raises(GGUFFormatError, match="not a GGUF file"):
        models.llamacpp(str(text))
