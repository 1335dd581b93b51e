"""Per-token mask time of the CFG engine: shipped grammars (LALR mode) and non-LALR ones (general mode).

    python benchmarks/bench_cfg_general.py [--vocab qwen2-152k] [--walks 3] [--tokens 40]

Each walk samples tokens with random logits from the allowed ones; every mask along
the walk is timed on a guide whose mask cache is empty (a state never seen before,
as in generation). Prints the mean and p95 per grammar, and the mode it ran in.

Random walks are the hard case: uniform choices among the allowed tokens pile up what no
model writes (runs of forty unary minus signs, hundreds of open parentheses), and the
stacks they build are deep. ``text mean`` is the same timing along texts of each shipped
grammar as they are written (tokenized by llama.cpp, every mask cold), for scale; ``next
texts`` along other texts of the same kind written after them on the same guide (what a
second output costs: the walks of lexemes already met are shared, new stacks are not).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench_engines import load_vocab_only  # noqa: E402
from bench_stats import percentile  # noqa: E402
from conftest import VOCAB_FILES, VOCABS, load_vocab  # noqa: E402

from outlines_gguf import grammars  # noqa: E402
from outlines_gguf.compiler import grammar_guide  # noqa: E402

NON_LALR = {
    "ambiguous_sum": ('?start: start start | start "+" start | NUMBER\nNUMBER: /[0-9]+/\n', "start"),
    "ambiguous_expr": (
        'start: e\ne: e "+" e | e "*" e | "(" e ")" | NUMBER\n'
        "%import common.NUMBER\n%import common.WS\n%ignore WS\n",
        "start",
    ),
    "dangling_else": (
        'start: stmt+\nstmt: "if" "(" NAME ")" stmt ["else" stmt] | NAME "=" NAME ";"\n'
        "%import common.CNAME -> NAME\n%import common.WS\n%ignore WS\n",
        "start",
    ),
    "fruitflies": (
        'sentence: noun verb noun | noun verb "like" noun\nnoun: adj? NOUN\nverb: VERB\nadj: ADJ\n'
        'NOUN: "flies" | "bananas" | "fruit"\nVERB: "like" | "flies"\nADJ: "fruit"\n'
        "%import common.WS\n%ignore WS\n",
        "sentence",
    ),
    "json_dynamic": (grammars.load("json"), "start"),  # the shipped JSON grammar forced into the general mode
}


TEXTS = {
    "arithmetic": [
        "(12.5 + 3) * 4 - 7 / 2",
        "-(3 + 4 * (2 - 1)) / 0.25 + 100",
        "((1 + 2) * (3 + 4) - 5) * 6 / 7 - -8",
    ],
    "json": [
        '{"name": "Ada Lovelace", "born": 1815, "langs": ["en", "fr"], "ok": true, "note": null}',
        '{"order": {"id": 1048576, "items": [{"sku": "ABC-1234", "qty": 2}], "total": 12.5e3}}',
    ],
    "program": [
        'x = 10;\ny = x * 2 + 1;\nif (y > 15) { print("big"); } else { print("small"); }\n',
        "# count down\nn = 5;\nwhile (n > 0) {\n  print(n);\n  n = n - 1;\n}\n",
    ],
    "sql_select": [
        "SELECT name, COUNT(*) AS n FROM users AS u JOIN orders AS o ON u.id = o.user_id "
        "WHERE o.total > 100 AND u.active = 1 GROUP BY name ORDER BY n DESC LIMIT 10;",
        "select distinct city from customers where country = 'France' order by city",
    ],
}


MORE_TEXTS = {  # written after TEXTS on the same guide: what a second output of a kind costs
    "arithmetic": ["3 * (4 + 5) / -2 - (7 - 1) * 8", "((10 / 4) + 2.5) * (3 - -1)"],
    "json": [
        '{"id": 7, "tags": ["x", "y"], "meta": {"a": null, "b": false}}',
        '[1, 2.5, {"k": "v"}, [true, false]]',
    ],
    "program": [
        "a = 3;\nb = a * (a + 2) - 7 / 2;\nif (b >= 10) { print(b); } else { a = a - 1; }\n",
        'i = 0;\nwhile (i < 10) {\n  if (i == 5) { print("half"); }\n  i = i + 1;\n}\n',
    ],
    "sql_select": [
        "SELECT id, title FROM books WHERE year < 1950 AND author = 'Austen' ORDER BY year;",
        "SELECT c.name, SUM(i.amount) AS total FROM clients AS c JOIN invoices AS i ON c.id = i.client_id "
        "GROUP BY c.name ORDER BY total DESC LIMIT 3;",
    ],
}


def along(guide, tokens: list[int]) -> list[float]:
    """Mask times along ``tokens`` (each mask cold), checking that each token is allowed."""
    times = []
    state = guide.initial_state
    for token in tokens:
        guide._masks.clear()
        t0 = time.perf_counter()
        mask = guide.mask(state)
        times.append(time.perf_counter() - t0)
        if not (mask.allowed_ids(guide.vocabulary.size) == token).any():  # (no set of Python ints:
            # the garbage would be collected inside the next timed mask)
            raise AssertionError(f"token {token} refused along a sample text")
        state = guide.next_state(state, token)
    return times


def walk(guide, vocab, rng, tokens: int) -> list[float]:
    times = []
    state = guide.initial_state
    for _ in range(tokens):
        guide._masks.clear()
        t0 = time.perf_counter()
        mask = guide.mask(state)
        times.append(time.perf_counter() - t0)
        allowed = mask.allowed_ids(vocab.size)
        choice = int(rng.choice(allowed))
        if choice in vocab.eog_ids:
            break
        state = guide.next_state(state, choice)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab", default="qwen2-152k")
    parser.add_argument("--walks", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=40)
    args = parser.parse_args()
    vocab = load_vocab(args.vocab).prepare()  # the tries a process loads with its vocabulary
    tokenizer = load_vocab_only(VOCABS / VOCAB_FILES[args.vocab])
    cases = {name: (grammars.load(name), "start", "auto") for name in grammars.names()}
    cases.update({name: (text, start, "dynamic") for name, (text, start) in NON_LALR.items()})
    print(
        f"{'grammar':<16} {'mode':<8} {'compile+first':>13} {'mean ms':>8} {'p95 ms':>7} {'masks':>6}"
        f" {'text mean':>9} {'masks':>6} {'next texts':>10}"
    )
    for name, (text, start, lexer) in cases.items():
        t0 = time.perf_counter()
        guide = grammar_guide(text, vocab, start, lexer)
        guide.mask(guide.initial_state)
        first = time.perf_counter() - t0
        times: list[float] = []
        for seed in range(args.walks):
            times += walk(guide, vocab, np.random.default_rng(seed), args.tokens)
        mode = getattr(guide.grammar, "mode", "lalr")
        columns = []
        for batch in (TEXTS, MORE_TEXTS):
            texts: list[float] = []
            for text in batch.get(name, []):
                texts += along(guide, tokenizer.tokenize(text.encode(), add_bos=False, special=False))
            columns.append(texts)
        first_texts, next_texts = columns
        in_texts = (
            f"{1000 * np.mean(first_texts):>9.2f} {len(first_texts):>6} {1000 * np.mean(next_texts):>10.2f}"
            if first_texts
            else f"{'-':>9} {'':>6} {'-':>10}"
        )
        print(
            f"{name:<16} {mode:<8} {first:>12.2f}s {1000 * np.mean(times):>8.2f} "
            f"{1000 * percentile(times, 95):>7.2f} {len(times):>6} {in_texts}",
            flush=True,
        )


if __name__ == "__main__":
    main()
