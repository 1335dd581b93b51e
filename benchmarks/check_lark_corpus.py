"""Compile every ``.lark`` grammar of a folder, generate with random logits, and check with lark.

    python benchmarks/check_lark_corpus.py FOLDER [--vocab qwen2-152k] [--samples 5] [--max-tokens 48]

For each grammar lark itself loads (Earley), in the mode ``lexer="auto"`` picks and in the
general mode (``lexer="dynamic"``): compile time, outputs whose (completed) text lark parses
(LALR's parser for the LALR mode, Earley ``dynamic_complete`` for the general mode), and the
mean time per mask. Grammars lark refuses, or that need a Python postlexer (``%declare``),
are listed as skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import load_vocab  # noqa: E402
from lark import Lark  # noqa: E402
from lark.exceptions import LarkError  # noqa: E402
from sampling import generate  # noqa: E402

from outlines_gguf import CFGLogitsProcessor, GrammarError, compile_grammar  # noqa: E402
from outlines_gguf.grammar.general import GeneralGrammar  # noqa: E402


def judge(text: str, general: bool) -> Lark:
    if general:
        return Lark(text, parser="earley", lexer="dynamic_complete")
    return Lark(text, parser="lalr", lexer="contextual")


def check(path: Path, vocab, samples: int, max_tokens: int) -> list[str]:
    text = path.read_text()
    try:
        Lark(text, parser="earley")
    except LarkError as exc:
        return [f"{path.name}: skipped, lark refuses it ({type(exc).__name__})"]
    lines = []
    for lexer in ("auto", "dynamic"):
        start = time.perf_counter()
        try:
            grammar = compile_grammar(text, lexer=lexer)
        except GrammarError as exc:
            lines.append(f"{path.name} [{lexer}]: GrammarError: {str(exc)[:100]}")
            continue
        compiled = time.perf_counter() - start
        general = isinstance(grammar, GeneralGrammar)
        parser = judge(text, general)
        ok, mask_times = 0, []
        for seed in range(samples):
            processor = CFGLogitsProcessor(text, vocab, lexer=lexer)
            guide = processor.guide
            rng = np.random.default_rng(seed)
            t0 = time.perf_counter()
            ids, ended = generate(processor, rng, prompt=[5, 6], max_tokens=max_tokens)
            mask_times.append((time.perf_counter() - t0) / max(1, len(ids) + ended))
            processor.raise_if_failed()
            state = guide.initial_state
            for t in ids:
                state = guide.next_state(state, t)
            data = vocab.decode(ids)
            if not ended:
                tail = guide.grammar.shortest_completion(state)
                if tail is None:
                    continue
                data += tail
            try:
                parser.parse(data.decode("utf-8"))
                ok += 1
            except (LarkError, UnicodeDecodeError):
                lines.append(f"    NOT PARSED: {data[:120]!r}")
        lines.insert(
            len(lines) - (samples - ok),
            f"{path.name} [{lexer} -> {'general' if general else 'lalr'}]: compile {compiled:.2f} s, "
            f"{ok}/{samples} parsed, {1000 * float(np.mean(mask_times)):.1f} ms per token",
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--vocab", default="qwen2-152k")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    vocab = load_vocab(args.vocab)
    for path in sorted(args.folder.glob("*.lark")):
        for line in check(path, vocab, args.samples, args.max_tokens):
            print(line, flush=True)


if __name__ == "__main__":
    main()
