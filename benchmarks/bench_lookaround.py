"""Compile time of regexes with lookarounds (issue #15): the user examples and a fuzz corpus.

Run: ``python benchmarks/bench_lookaround.py [N]`` (N random regexes from the test strategy,
default 300). Also reports whether the peers (llguidance, outlines-core) accept each example.
Times are for a cold compile (the in-process and disk caches are bypassed).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "support")]

from bench_stats import median  # noqa: E402

from outlines_gguf.automata.budget import compile_budget  # noqa: E402
from outlines_gguf.automata.regex import NFABuilder  # noqa: E402
from outlines_gguf.errors import OutlinesGGUFError  # noqa: E402

EXAMPLES = [
    r"(?=.*[A-Z])(?=.*[0-9])[A-Za-z0-9]{8,12}",
    r"(?!0)[0-9]{3}-[0-9]{4}",
    r"\b[A-Z][a-z]+\b",
    r"[+*]|[?](?![a-z])",
    r"/\*(\*(?!/)|[^*])*\*/",
    r'".*?(?<!\\)(\\\\)*?"',
    r"(?:a(?=[ab]{9}b|[ab]{0,9}$)|b)*",  # a heavy one: 1,024 states
]


def cold_compile(pattern: str) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        with compile_budget(f"regex {pattern!r}"):
            builder = NFABuilder("bench")
            dfa = builder.build(builder.regex(pattern))
        outcome = f"{dfa.n_states} states"
    except OutlinesGGUFError as exc:
        outcome = type(exc).__name__
    return time.perf_counter() - start, outcome


def peers(pattern: str) -> str:
    out = []
    try:
        import llguidance

        ok, msgs = llguidance.LLMatcher.validate_grammar_with_warnings(
            llguidance.LLMatcher.grammar_from_regex(pattern)
        )
        out.append("llguidance: " + ("ok" if ok else f"refused ({str(msgs)[:70]})"))
    except Exception as exc:
        out.append(f"llguidance: {type(exc).__name__} {str(exc)[:60]}")
    try:
        import outlines_core

        vocab = outlines_core.Vocabulary(0, {c: [i + 1] for i, c in enumerate("abcAB0123-*/?\\\" ")})
        outlines_core.Index(pattern, vocab)
        out.append("outlines-core: ok")
    except Exception as exc:
        out.append(f"outlines-core: refused ({str(exc)[:70]})")
    return "; ".join(out)


def fuzz_corpus(n: int) -> list[str]:
    from hypothesis import HealthCheck, given, settings
    from regex_strategies import lookaround_regexes

    found: list[str] = []

    @settings(max_examples=n, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(lookaround_regexes())
    def collect(pattern: str) -> None:
        found.append(pattern)

    collect()
    return found


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    print("| pattern | ours | time | peers |\n| --- | --- | --- | --- |")
    cold_compile(r"\b(?!\d)")  # one-time setup (class tables), not counted
    for pattern in EXAMPLES:
        runs = [cold_compile(pattern) for _ in range(3)]
        seconds, outcome = median([r[0] for r in runs]), runs[0][1]
        print(f"| `{pattern}` | {outcome} | {seconds * 1000:.1f} ms | {peers(pattern)} |")
    times, outcomes, slowest = [], {}, []
    for pattern in fuzz_corpus(n):
        seconds, outcome = cold_compile(pattern)
        times.append(seconds)
        slowest.append((seconds, pattern))
        kind = outcome if not outcome[0].isdigit() else "ok"
        outcomes[kind] = outcomes.get(kind, 0) + 1
    times.sort()
    print(f"\nfuzz corpus: {len(times)} regexes, {outcomes}; compile median "
          f"{median(times) * 1000:.2f} ms, p90 {times[int(0.9 * len(times))] * 1000:.2f} ms, "
          f"max {times[-1] * 1000:.1f} ms")
    for seconds, pattern in sorted(slowest)[-3:]:
        print(f"  slow: {seconds * 1000:.0f} ms {pattern}")


if __name__ == "__main__":
    main()
