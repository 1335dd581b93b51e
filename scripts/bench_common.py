"""Statistics and formatting shared by the benchmark scripts in this folder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation), NaN for no values."""
    return float(np.percentile(values, q)) if len(values) else float("nan")


def fmt_time(seconds: float) -> str:
    """A duration with a unit that keeps 3 significant digits readable."""
    if seconds != seconds:  # NaN
        return "–"
    if abs(seconds) >= 1.0:
        return f"{seconds:.2f} s"
    if abs(seconds) >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"
