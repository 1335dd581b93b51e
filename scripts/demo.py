"""Constrained generation on the project's embedded default model, or on yours.

    python scripts/demo.py                      # the tiny random-weight Qwen2 test model
    python scripts/demo.py --model path/to/model.gguf

With the test model the text is gibberish (its weights are random) but it
always matches the regex; with a real GGUF model it is also meaningful.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from llama_cpp import Llama, LogitsProcessorList

from outlines_gguf import RegexLogitsProcessor, Vocabulary

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "tiny-qwen2.gguf"

EXAMPLES = [
    ("A year", "The Eiffel Tower was completed in the year ", r"(?:1[89]|20)[0-9]{2}"),
    ("A phone number", "Call me at ", r"\+?[1-9][0-9]{7,14}"),
    ("An email address", "Write to ", r"[a-z]{2,12}(?:\.[a-z]{2,12})?@[a-z]{2,10}\.(?:com|org|net)"),
    ("A yes/no answer", "Is water wet? Answer: ", r"(?:Yes|No)(?:, because [a-z ]{5,40})?\."),
    ("A date", "Today is ", r"20[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"),
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a GGUF model file")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    if not args.model.exists():
        print(f"{args.model} not found: run `python scripts/build_test_models.py` first", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    llm = Llama(model_path=str(args.model), n_ctx=512, seed=args.seed, verbose=False)
    vocab = Vocabulary.from_llama(llm)
    print(f"model {args.model.name}: {vocab.size} tokens, loaded in {time.perf_counter() - t0:.2f} s\n")

    failures = 0
    for label, prompt, pattern in EXAMPLES:
        t0 = time.perf_counter()
        processor = RegexLogitsProcessor(pattern, vocab)
        built = time.perf_counter() - t0
        out = llm.create_completion(
            prompt, max_tokens=args.max_tokens, seed=args.seed, temperature=0.8,
            logits_processor=LogitsProcessorList([processor]),
        )
        processor.raise_if_failed()
        text = out["choices"][0]["text"]
        ok = re.fullmatch(pattern, text) is not None
        failures += not ok
        print(f"{label}\n  regex  {pattern}\n  prompt {prompt!r}\n  output {text!r}")
        print(f"  {'matches' if ok else 'DOES NOT MATCH'} (processor built in {built * 1000:.1f} ms, "
              f"finish: {out['choices'][0]['finish_reason']})\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
