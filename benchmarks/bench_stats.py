"""The statistics every benchmark uses: medians, percentiles, and the unconstrained floor of end-to-end runs.

End-to-end method (``bench_e2e.py``, ``bench_regex.py``): every ``create_completion`` call reuses the
cached prompt, so a call costs ``overhead + steps × per_step``. Each round makes two unconstrained calls
of different lengths; :func:`fit_floor` fits ``per_step`` from their differences (median over rounds)
and the fixed per-call ``overhead`` from the short ones, and :meth:`Floor.step_time` takes that
overhead out of any call. :func:`paired` compares an engine's calls with the unconstrained calls of the
same rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Call = tuple[float, int]
"""One timed call: (wall seconds, decode+sample steps)."""


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return float(np.median(values)) if len(values) else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation), NaN for no values."""
    return float(np.percentile(values, q)) if len(values) else float("nan")


@dataclass
class Floor:
    """wall = overhead + steps × per_step, fitted on the unconstrained calls of every round."""

    per_step: float
    overhead: float

    def step_time(self, seconds: float, steps: int) -> float:
        """One call's per-step time, the fixed per-call overhead taken out."""
        return (seconds - self.overhead) / max(1, steps)


def fit_floor(long: Sequence[Call], short: Sequence[Call]) -> Floor:
    """Per-step time of unconstrained decoding and the fixed per-call overhead, from paired rounds.

    ``long[r]`` and ``short[r]`` are round r's two unconstrained calls: per step = the median over
    rounds of (long − short) / (its extra steps); overhead = the median of short − steps × per step.
    The rounds must pair up (a ValueError otherwise), and a fit that has nothing to go on (no rounds,
    or no round where the long call took more steps) is NaN, never a made-up zero: the figures
    computed from it then show as missing instead of silently keeping the per-call overhead.
    """
    per_step = [(a_s - b_s) / (a_n - b_n)
                for (a_s, a_n), (b_s, b_n) in zip(long, short, strict=True) if a_n > b_n]
    step = median(per_step)
    overhead = median([b_s - b_n * step for b_s, b_n in short])
    return Floor(step, overhead)


def paired(calls: Sequence[Call], baseline: Sequence[Call], floor: Floor) -> tuple[float, float]:
    """Median over rounds of (baseline ÷ engine per-step time, engine − baseline per-step time).

    ``calls[r]`` and ``baseline[r]`` are the same round's engine call and unconstrained call of the
    same length; the rounds must pair up (a ValueError otherwise)."""
    ratios, extra = [], []
    for (e_s, e_n), (b_s, b_n) in zip(calls, baseline, strict=True):
        e, b = floor.step_time(e_s, e_n), floor.step_time(b_s, b_n)
        ratios.append(b / e)
        extra.append(e - b)
    return median(ratios), median(extra)
