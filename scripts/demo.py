"""Constrained generation with the high-level API, on the embedded default model or on yours.

    python scripts/demo.py                      # the tiny random-weight Qwen2 demo model
    python scripts/demo.py --model path/to/model.gguf

It generates JSON from a Pydantic model, text matching regular expressions
and text in a context-free grammar, checks each result, and shows how the
constraint changed the model's probabilities for one of them. With the demo
model the text is gibberish (its weights are random) but always fits the
constraint; with a real GGUF model it is also meaningful. A model with a
chat template gets chat-formatted prompts.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import lark
from pydantic import BaseModel, Field, ValidationError

from outlines_gguf import IncompleteGenerationError, generate, models

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "tiny-qwen2.gguf"


class Character(BaseModel):
    name: str = Field(pattern=r"^[A-Z][a-z]{1,11}$")
    age: int = Field(ge=0, le=120)
    occupation: str = Field(min_length=3, max_length=24)


REGEXES = [
    ("A year", "In which year was the Eiffel Tower completed?", r"(?:1[89]|20)[0-9]{2}"),
    (
        "A date",
        "Write today's date as YYYY-MM-DD.",
        r"20[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])",
    ),
    (
        "An email address",
        "Invent an email address.",
        r"[a-z]{2,12}(?:\.[a-z]{2,12})?@[a-z]{2,10}\.(?:com|org|net)",
    ),
]

GRAMMAR = r"""
start: NUMBER "+" NUMBER "=" NUMBER
NUMBER: /[0-9]{1,3}/
"""


def prompt_for(model: models.LlamaCpp, request: str) -> str:
    """The request as a chat turn when the model has a chat template, else as plain text."""
    if model.chat_template:
        return model.apply_chat_template([{"role": "user", "content": request}])
    return f"{request}\nAnswer: "


def run(
    model: models.LlamaCpp,
    gen: generate.SequenceGenerator,
    label: str,
    request: str,
    check: Callable[[str], bool],
    options: dict[str, Any],
) -> bool:
    """Generate for ``request``, print the output and whether ``check`` accepts it."""
    started = time.perf_counter()
    print(f"{label}\n  request {request!r}")
    try:
        value = gen(prompt_for(model, request), **options)
    except IncompleteGenerationError as exc:
        print(f"  INCOMPLETE after {len(exc.token_ids)} tokens: {exc.text!r}\n")
        return False
    result = gen.last_result
    ok = check(result.text)
    print(f"  output  {result.text}")
    if not isinstance(value, str):
        print(f"  parsed  {value!r}")
    ms = (time.perf_counter() - started) * 1000
    print(f"  {'ok' if ok else 'CHECK FAILED'} ({len(result.token_ids)} tokens, {ms:.0f} ms)\n")
    return ok


def fullmatches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


def is_character(text: str) -> bool:
    try:
        Character.model_validate_json(text)
    except ValidationError:
        return False
    return True


def parses(grammar: str) -> Callable[[str], bool]:
    parser = lark.Lark(grammar, parser="lalr")

    def check(text: str) -> bool:
        try:
            parser.parse(text)
        except lark.LarkError:
            return False
        return True

    return check


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a GGUF model file")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument(
        "--n-threads", type=int, default=None, help="CPU threads (default: llama.cpp's choice)"
    )
    args = parser.parse_args()
    if not args.model.exists():
        print(f"{args.model} not found: run `make setup` first (it builds the demo model)", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    model = models.llamacpp(str(args.model), n_threads=args.n_threads)
    template = "a chat template" if model.chat_template else "no chat template"
    print(
        f"model {model.name}: {model.vocabulary.size} tokens, {template}, "
        f"loaded in {time.perf_counter() - t0:.2f} s"
    )
    if args.model.resolve() == DEFAULT_MODEL.resolve():
        print("(the demo model has random weights: gibberish that always fits the constraint)")
    print()
    options = {"seed": args.seed, "max_tokens": args.max_tokens, "temperature": 0.7}
    results = []

    print("== JSON from a Pydantic model ==")
    request = "Invent a fictional character. Reply in JSON with name, age and occupation."
    gen = generate.json(model, Character)
    results.append(run(model, gen, "A character", request, is_character, options))

    print("== Regular expressions ==")
    tracked = generate.regex(model, REGEXES[0][2], track=True)
    for label, request, pattern in REGEXES:
        gen = tracked if pattern == REGEXES[0][2] else generate.regex(model, pattern)
        matches = partial(fullmatches, pattern)
        results.append(run(model, gen, f"{label}  /{pattern}/", request, matches, options))

    print("== A context-free grammar (Lark) ==")
    request = "Write an addition with its result, like 2+3=5."
    label = "An addition  " + GRAMMAR.strip().splitlines()[0]
    results.append(run(model, generate.cfg(model, GRAMMAR), label, request, parses(GRAMMAR), options))

    print(f"== What the constraint did: {REGEXES[0][0].lower()} ==")
    print("per token: the chosen token, its probability without (p(nat)) and with (p(con)) the")
    print("constraint, and the most likely tokens of either")
    print(tracked.logits_processor.table(k=3))
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
