"""The README's promises: its two commands are what the Makefile and CI run, and its examples work."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
from conftest import MODEL_FILES, MODELS, ROOT, require

README = (ROOT / "README.md").read_text(encoding="utf-8")


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def commands(block: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def makefile_rules() -> dict[str, tuple[list[str], list[str]]]:
    """target -> (prerequisites, recipe lines) for the Makefile's plain rules."""
    rules: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] | None = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line.strip())
            continue
        match = re.match(r"^([\w./$()-]+):(?!=)\s*(.*)$", line)
        if match:
            current = []
            rules[match.group(1)] = (match.group(2).split(), current)
        elif line and not line.startswith("#"):
            current = None
    return rules


def test_the_two_commands_are_the_readmes_first_commands() -> None:
    first_shell_block = code_blocks(README, "bash")[0]
    assert first_shell_block in section(README, "Two commands")
    assert commands(first_shell_block) == ["make demo", "make test"]


def test_ci_runs_make_test() -> None:
    ci = [shlex.split(c) for c in commands((ROOT / ".ci" / "run").read_text()) if not c.startswith("set ")]
    assert any(c[-2:] == ["make", "test"] for c in ci), ci
    assert not any("pytest" in c or "ruff" in c for c in ci)  # CI runs what the README says, nothing else


def test_makefile_demo_and_test() -> None:
    rules = makefile_rules()
    demo_prereqs, demo_recipe = rules["demo"]
    assert "setup" in demo_prereqs and any("scripts/demo.py" in line for line in demo_recipe)
    test_prereqs, test_recipe = rules["test"]
    assert {"setup", "lint"} <= set(test_prereqs) and any("pytest" in line for line in test_recipe)
    assert any("ruff check" in line for line in rules["lint"][1])
    assert any("build_test_models.py" in line for line in rules["models/.built"][1])


def test_demo_runs_on_the_embedded_model() -> None:
    """What `make demo` runs after setup (one thread: quick on a busy two-core machine)."""
    model = require(MODELS / MODEL_FILES["qwen2-152k"])
    proc = subprocess.run(
        [sys.executable, "scripts/demo.py", "--model", str(model), "--n-threads", "1"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for heading in ("JSON from a Pydantic model", "Regular expressions", "A context-free grammar"):
        assert f"== {heading}" in out
    assert out.count("\n  ok (") == 5 and "FAILED" not in out and "INCOMPLETE" not in out
    assert re.search(r"^ pos  chosen .*\n(\s+\d+  .*\n?)+", out, flags=re.M)


def test_high_level_api_example(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    (example,) = code_blocks(section(README, "High-level API"), "python")
    model = require(MODELS / MODEL_FILES["qwen2-152k"])
    call = 'models.llamacpp("models/tiny-qwen2.gguf")'
    assert call in example
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(example.replace(call, f"models.llamacpp({str(model)!r}, n_threads=1)"), namespace)
    assert isinstance(namespace["pet"], namespace["Pet"])
    assert isinstance(namespace["year"], int)
    assert namespace["color"] in ("red", "green", "blue") and namespace["answer"] in ("yes", "no")
    assert re.fullmatch(r"\+?[1-9][0-9]{7,14}", capsys.readouterr().out)
