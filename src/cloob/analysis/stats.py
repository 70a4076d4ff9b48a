"""Per-method summaries with Welch's t-test (the significance marks of the report)."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from cloob.evals.compare import welch_p as compare_welch_p

ALPHA = 0.05


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test, as ``cloob compare`` computes it; NaN where not testable
    (a group with fewer than 2 values, or no variance in either)."""
    p = compare_welch_p(list(a), list(b))
    return math.nan if p is None else p


def welch_table(values_by_method: Mapping[str, Sequence[float]], higher_is_better: bool = True,
                alpha: float = ALPHA) -> list[dict]:
    """One metric, several methods: mean ± std per method and which one is significantly best.

    Args:
        values_by_method: method -> values over runs (seeds). Methods without values are kept (n = 0).
        higher_is_better: direction of the metric.
    Returns:
        One row per method, in the given order: ``{"method", "n", "mean", "std" (ddof=1; NaN if n < 2),
        "best" (highest/lowest mean), "p_vs_best" (Welch p against the best; NaN for the best itself or
        if not testable), "significant"}``. ``significant`` is True only for the best method, and only
        if its Welch p against every other method with values is < ``alpha``.
    """
    rows = []
    for method, values in values_by_method.items():
        v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
        rows.append({
            "method": method,
            "n": int(len(v)),
            "mean": float(v.mean()) if len(v) else math.nan,
            "std": float(v.std(ddof=1)) if len(v) >= 2 else math.nan,
            "values": v.tolist(),
            "best": False,
            "p_vs_best": math.nan,
            "significant": False,
        })
    present = [r for r in rows if r["n"] > 0]
    if not present:
        return rows
    sign = 1 if higher_is_better else -1
    best = max(present, key=lambda r: sign * r["mean"])
    best["best"] = True
    others = [r for r in present if r is not best]
    for r in others:
        r["p_vs_best"] = welch_p(best["values"], r["values"])
    best["significant"] = bool(others) and all(r["p_vs_best"] < alpha for r in others)
    return rows
