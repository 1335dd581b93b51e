"""The command line, run as a subprocess (``python -m outlines_gguf``) on the demo model."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import lark
import pytest
from conftest import MODEL_FILES, MODELS, ROOT, require

from outlines_gguf.cli import Progress, default_model_path

pytestmark = pytest.mark.model

GRAMMAR = """
start: NUMBER "+" NUMBER "=" NUMBER
NUMBER: /[0-9]+/
"""


# uniqueItems beside contains
UNENFORCEABLE = '{"type": "array", "contains": {"type": "string"}, "uniqueItems": true}'


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the command line; one thread keeps it quick on a busy two-core machine."""
    model = require(MODELS / MODEL_FILES["qwen2-152k"])
    argv = [sys.executable, "-m", "outlines_gguf", *args]
    if args and args[0] in ("regex", "json", "cfg", "choice") and "--model" not in args:
        argv += ["--n-threads", "1"]
    environment = {**os.environ, "OUTLINES_GGUF_MODELS": str(model.parent), **(env or {})}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=environment, cwd=ROOT)


def assert_one_line_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("loading ")]
    assert len(lines) == 1 and lines[0].startswith("outlines-gguf: error: "), proc.stderr
    assert re.search(pattern, lines[0]), lines[0]


def test_regex_stream_and_track() -> None:
    plain = cli("regex", r"[0-9]{3}-[a-z]{2,5}", "-p", "Code: ", "--seed", "3")
    assert plain.returncode == 0, plain.stderr
    assert re.fullmatch(r"[0-9]{3}-[a-z]{2,5}\n", plain.stdout)
    streamed = cli("regex", r"[0-9]{3}-[a-z]{2,5}", "-p", "Code: ", "--seed", "3", "--stream", "--track")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == plain.stdout  # same seed, same text
    table = streamed.stderr[streamed.stderr.index(" pos  chosen") :].splitlines()
    n_tokens = len(table) - 1
    assert n_tokens >= 3 and all(re.match(r"\s+\d+\s+'", line) for line in table[1:])


def test_json_schema_file(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 8},
            "age": {"type": "integer", "minimum": 0, "maximum": 130},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    path = tmp_path / "person.json"
    path.write_text(json.dumps(schema))
    proc = cli("json", str(path), "-p", "A person: ", "--seed", "1", "--max-tokens", "80")
    assert proc.returncode == 0, proc.stderr
    jsonschema.validate(json.loads(proc.stdout), schema)


def test_choice_with_chat_template() -> None:
    proc = cli("choice", "yes", "no", "maybe so", "-p", "Is it raining?", "--chat", "--seed", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout in ("yes\n", "no\n", "maybe so\n")


def test_cfg_with_a_shipped_grammar() -> None:
    from lark import Lark

    from outlines_gguf import grammars

    # a random-weight model rarely closes every bracket: either a sentence or an honest "incomplete"
    proc = cli("cfg", "arithmetic", "-p", "Sum: ", "--seed", "3", "--max-tokens", "60")
    if proc.returncode == 0:
        Lark(grammars.ARITHMETIC, parser="lalr").parse(proc.stdout.rstrip("\n"))
    else:
        assert proc.returncode == 1 and "before the grammar was complete" in proc.stderr, proc.stderr


def test_cfg(tmp_path: Path) -> None:
    path = tmp_path / "sum.lark"
    path.write_text(GRAMMAR)
    proc = cli("cfg", str(path), "-p", "Sum: ", "--seed", "1", "--max-tokens", "200")
    assert proc.returncode == 0, proc.stderr
    lark.Lark(GRAMMAR, parser="lalr").parse(proc.stdout.rstrip("\n"))


def test_cfg_with_a_gbnf_file(tmp_path: Path) -> None:
    path = tmp_path / "sum.gbnf"
    path.write_text('root ::= num "+" num "=" num\nnum ::= [0-9]{1,3}\n', encoding="utf-8")
    proc = cli("cfg", str(path), "-p", "Sum: ", "--seed", "1", "--max-tokens", "40")
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"[0-9]{1,3}\+[0-9]{1,3}=[0-9]{1,3}\n", proc.stdout)


def test_a_gbnf_error_comes_before_the_model(tmp_path: Path) -> None:
    grammar = tmp_path / "bad.gbnf"
    grammar.write_text('root ::= "a" item\nitem ::= "\\q"\n', encoding="utf-8")
    proc = cli("cfg", str(grammar), "-p", "x", "--model", "no-such-model.gguf")
    assert_one_line_error(proc, r"line 2, column 11: unknown escape")
    grammar.write_text('start: "a"\n', encoding="utf-8")  # a .gbnf file must hold GBNF
    proc = cli("cfg", str(grammar), "-p", "x", "--model", "no-such-model.gguf")
    assert_one_line_error(proc, r"no GBNF rule")


def test_incomplete_generation_exits_1() -> None:
    proc = cli("regex", "[a-z]{40}", "-p", "x", "--seed", "1", "--max-tokens", "2")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "--max-tokens 2" in proc.stderr and "partial text" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["regex", "(a)\\1", "-p", "x"], r"backreference is not supported"),
        (["regex", "[0-9", "-p", "x"], r"regex '\[0-9'"),
        (["json", "no-such-schema.json", "-p", "x"], r"neither a file nor inline JSON"),
        (["json", "{not json", "-p", "x"], r"inline schema is not valid JSON"),
        (["cfg", "no-such-grammar.lark", "-p", "x"], r"cannot read grammar file"),
        (["regex", "a", "-p", "x", "--model", "no-such-model.gguf"], r"model file not found"),
        (["regex", "a", "-p", "x", "--max-tokens", "0"], r"max_tokens must be a positive integer"),
        (["choice", "a", "b", "-p", "x", "--top-p", "2"], r"top_p must be in \(0, 1\]"),
        # schema and grammar errors come before the model is even looked for
        (["json", '{"type": "strin"}', "-p", "x", "--model", "no-such-model.gguf"], r"unknown type 'strin'"),
        (["json", "[1, 2]", "-p", "x", "--model", "no-such-model.gguf"], r"a schema must be .* got list"),
        (
            [
                "json", UNENFORCEABLE,
                "-p", "x", "--model", "no-such-model.gguf",
            ],
            r"keyword 'uniqueItems' can only be enforced .* pass --lenient",
        ),
        (["cfg", "-", "-p", "x", "--model", "no-such-model.gguf"], r"cannot read grammar file"),
    ],
)
def test_bad_input_before_loading(args: list[str], message: str) -> None:
    assert_one_line_error(cli(*args), message)


def test_other_documents_come_with_ref(tmp_path: Path) -> None:
    common = tmp_path / "common.json"
    common.write_text('{"$defs": {"id": {"type": "string", "pattern": "^[a-z]{3}$"}}}', encoding="utf-8")
    schema = '{"$id": "https://example.com/s.json", "$ref": "common.json#/$defs/id"}'
    proc = cli("json", schema, "-p", "x", "--model", "no-such-model.gguf")
    assert_one_line_error(proc, r"only local \$ref.*--ref URI=FILE")
    # with the document, the schema compiles: the next complaint is the model
    ref = f"https://example.com/common.json={common}"
    proc = cli("json", schema, "-p", "x", "--model", "no-such-model.gguf", "--ref", ref)
    assert_one_line_error(proc, r"model file not found")
    assert_one_line_error(cli("json", schema, "-p", "x", "--ref", "common.json"), r"expected URI=FILE")
    proc = cli("json", schema, "-p", "x", "--seed", "1", "--ref", ref)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r'"[a-z]{3}"', proc.stdout.strip()), proc.stdout


def test_a_grammar_error_comes_before_the_model(tmp_path: Path) -> None:
    grammar = tmp_path / "bad.lark"
    grammar.write_text("start: missing_rule\n", encoding="utf-8")
    proc = cli("cfg", str(grammar), "-p", "x", "--model", "no-such-model.gguf")
    assert_one_line_error(proc, r"missing_rule")


def test_lenient_is_a_flag() -> None:
    """The flag the schema error names: the unenforceable keyword is ignored."""
    schema = '{"type": "array", "contains": {"format": "email"}, "maxItems": 2}'
    proc = cli("json", schema, "-p", "x", "--lenient",
               "--max-tokens", "40", "--seed", "1")
    assert proc.returncode in (0, 1), proc.stderr  # 1: cut off at max_tokens on a random model
    assert "cannot be enforced" not in proc.stderr
    proc = cli("regex", "[0-9]", "-p", "word " * 600, "--n-ctx", "256")
    assert_one_line_error(proc, r"the prompt is \d+ tokens but the context window holds 256")


def test_missing_default_model(tmp_path: Path) -> None:
    proc = cli("regex", "a", "-p", "x", env={"OUTLINES_GGUF_MODELS": str(tmp_path)})
    assert_one_line_error(proc, r"default demo model .* is missing: run `make setup`")


def test_usage_errors() -> None:
    proc = cli("regex", "[0-9]")  # no prompt
    assert proc.returncode == 2 and "the following arguments are required: -p/--prompt" in proc.stderr
    proc = cli("--help")
    assert proc.returncode == 0
    assert all(name in proc.stdout for name in ("regex", "json", "cfg", "choice"))


def test_entry_point_and_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    scripts = pyproject.split("[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    assert 'outlines-gguf = "outlines_gguf.cli:main"' in scripts.splitlines()
    monkeypatch.delenv("OUTLINES_GGUF_MODELS", raising=False)
    assert default_model_path() == ROOT / "models" / "tiny-qwen2.gguf"
    monkeypatch.setenv("OUTLINES_GGUF_MODELS", "/elsewhere")
    assert default_model_path() == Path("/elsewhere/tiny-qwen2.gguf")


def test_progress_line_only_for_slow_steps() -> None:
    quick = io.StringIO()
    with Progress("loading quick", quick, delay=0.5):
        pass
    assert quick.getvalue() == ""
    slow = io.StringIO()
    with Progress("loading slow", slow, delay=0.01):
        time.sleep(0.2)
    assert re.fullmatch(r"loading slow \.\.\. done \(\d+\.\d s\)\n", slow.getvalue())
