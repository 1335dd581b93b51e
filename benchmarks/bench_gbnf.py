"""Mask time per token on llama.cpp GBNF grammars (ours; llguidance as the peer).

For each grammar, documents of its language are tokenized with the vocabulary (llama.cpp, no BOS)
and walked token by token: before each token the mask is computed (timed) and the token must be
allowed; at the end, end-of-generation must be allowed. Ours is called the way llama-cpp-python
calls a processor (a strided float32 view); llguidance computes its bitmask with
``LLMatcher.unsafe_compute_mask_ptr`` on ``llguidance.gbnf_to_lark`` of the same text.

    .venv/bin/python benchmarks/bench_gbnf.py                       # json.gbnf on the Qwen2 vocabulary
    .venv/bin/python benchmarks/bench_gbnf.py --vocab models/vocab/ggml-vocab-llama-spm.gguf --grammar list

The first document runs on cold caches (compile, then masks computed for the first time); the
others reuse the guide (as a server does for a repeated grammar) and are reported apart.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from bench_engines import eog_ids_of, llguidance_tokenizer, load_vocab_only
from bench_stats import median, percentile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOCS = {
    "json": [
        {"name": "Ada Lovelace", "born": 1815, "langs": ["en", "fr"], "ok": True, "ratio": -0.25,
         "note": None},
        {"order": {"id": 1048576, "items": [{"sku": "ABC-1234", "qty": 2}, {"sku": "XYZ-42", "qty": 1}],
                   "gift": False, "tags": ["a", "b\u00e9", "\u65e5\u672c"]}, "total": 12.5e3},
        {"matrix": [[1, 2, 3], [4, 5, 6], [7, 8, 9]], "empty": {}, "list": [], "s": "line\nbreak \"q\""},
    ],
    "list": ["- milk\n- eggs\n- a loaf of bread\n", "- one item only\n"],
    "chess": ["1. e4 e5\n2. Nf3 Nc6\n3. Bb5 a6\n4. Ba4 Nf6\n5. O-O Be7\n"],
    "english": ["The quick brown fox jumps over the lazy dog, again and again!"],
}


def render(grammar: str, doc) -> str:
    if grammar == "json":
        return json.dumps(doc, ensure_ascii=False)
    return doc


def strided(n: int) -> tuple[np.ndarray, np.ndarray]:
    records = np.zeros(n, dtype=[("id", np.intc), ("logit", np.single), ("p", np.single)])
    return records, records["logit"]


def run_ours(text: str, vocab, docs: list[list[int]]) -> dict:
    from outlines_gguf import CFGLogitsProcessor

    t0 = time.perf_counter()
    processor = CFGLogitsProcessor.from_gbnf(text, vocab)
    _ = processor.guide.trie  # the trie over the grammar's byte classes: part of compiling
    compile_s = time.perf_counter() - t0
    eog = int(vocab.eog_array[0])
    per_doc: list[list[float]] = []
    for ids in docs:
        processor = CFGLogitsProcessor.from_gbnf(text, vocab)  # same guide, fresh sequence
        prompt = [eog]
        times = []
        for k in range(len(ids) + 1):
            records, view = strided(vocab.size)
            start = time.perf_counter()
            processor(np.array(prompt + ids[:k], dtype=np.intc), view)
            times.append(time.perf_counter() - start)
            allowed = np.isfinite(records["logit"])
            want = ids[k] if k < len(ids) else eog
            if not allowed[want]:
                raise AssertionError(f"ours refused token {k} ({vocab.tokens[want]!r})")
        processor.raise_if_failed()
        per_doc.append(times)
    return {"compile_s": compile_s, "per_doc": per_doc}


def run_llguidance(text: str, gguf: Path, docs: list[list[int]]) -> dict:
    import llguidance

    llm = load_vocab_only(gguf)
    n_vocab = llm.n_vocab()
    eog = eog_ids_of(llm)
    tokenizer = llguidance_tokenizer(llm, eos_token=eog)
    t0 = time.perf_counter()
    from llguidance.gbnf_to_lark import gbnf_to_lark

    grammar = llguidance.LLMatcher.grammar_from_lark(gbnf_to_lark(text))
    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    if matcher.is_error():
        raise ValueError(matcher.get_error())
    compile_s = time.perf_counter() - t0
    bitmask = np.zeros((n_vocab + 31) // 32, dtype=np.int32)
    per_doc = []
    for ids in docs:
        matcher.reset()
        times = []
        for k in range(len(ids) + 1):
            start = time.perf_counter()
            matcher.unsafe_compute_mask_ptr(bitmask.ctypes.data, bitmask.nbytes)
            times.append(time.perf_counter() - start)
            want = ids[k] if k < len(ids) else eog[0]
            if not (int(bitmask[want // 32]) >> (want % 32)) & 1:
                raise AssertionError(f"llguidance refused token {k}")
            if k < len(ids):
                matcher.consume_token(want)
        per_doc.append(times)
    return {"compile_s": compile_s, "per_doc": per_doc}


def summary(result: dict, n_docs: int) -> str:
    """Pass 1: every document once on fresh caches; warm: the later passes."""
    first = [t * 1e3 for doc in result["per_doc"][:n_docs] for t in doc]
    rest = [t * 1e3 for doc in result["per_doc"][n_docs:] for t in doc] or first
    return (
        f"compile {result['compile_s'] * 1e3:7.1f} ms"
        f" | pass 1 mean {statistics.mean(first):6.3f} ms, median {median(first):6.3f},"
        f" max {max(first):6.1f}"
        f" | warm mean {statistics.mean(rest):6.3f} ms, median {median(rest):6.3f},"
        f" p99 {percentile(rest, 99):6.3f} ({len(rest)} masks)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab", type=Path, default=ROOT / "models" / "vocab" / "ggml-vocab-qwen2.gguf")
    parser.add_argument("--grammar", default="json", choices=sorted(DOCS))
    parser.add_argument("--repeat", type=int, default=3, help="walk the documents this many times")
    parser.add_argument("--no-peer", action="store_true", help="skip llguidance")
    args = parser.parse_args()

    from outlines_gguf import Vocabulary

    text = (ROOT / "tests" / "corpus" / "gbnf" / f"{args.grammar}.gbnf").read_text(encoding="utf-8")
    vocab = Vocabulary.from_gguf(args.vocab)
    llm = load_vocab_only(args.vocab)
    texts = [render(args.grammar, d).encode() for d in DOCS[args.grammar]]
    docs = [llm.tokenize(t, add_bos=False, special=False) for t in texts] * args.repeat
    print(f"{args.grammar}.gbnf on {args.vocab.name} ({vocab.size} tokens), {sum(map(len, docs))} tokens")
    vocab.prepare()  # the vocabulary's tries, built once per model (and cached on disk), before timing
    n = len(DOCS[args.grammar])
    print(f"ours       {summary(run_ours(text, vocab, docs), n)}")
    if not args.no_peer:
        try:
            print(f"llguidance {summary(run_llguidance(text, args.vocab, docs), n)}")
        except ImportError:
            print("llguidance not installed")


if __name__ == "__main__":
    main()
