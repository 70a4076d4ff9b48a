"""The numbers a report compares, read off runs, and the generated sentences of its Reading section.

Metric scale: an eval metric whose values all lie in [0, 1] is shown ×100 (percent), and differences of
accuracy-like metrics (top-k, R@k, acc, recall, mAP) are in points.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

from cloob.analysis.runs import Run, eval_metrics, series
from cloob.analysis.stats import ALPHA, welch_table
from cloob.evals.compare import lower_is_better

ACCURACY_LIKE = re.compile(r"(top\d|acc|r@\d|recall|map|precision|f1)", re.I)

# ---------------------------------------------------------------- data

def methods_of(runs: Sequence[Run]) -> list[str]:
    return list(OrderedDict.fromkeys(r.method for r in runs))


def eval_values(runs: Sequence[Run]) -> "OrderedDict[tuple[str, str, str], dict[str, list[float]]]":
    """(evaluator, dataset, metric) -> method -> values over runs (one per run: its last eval file)."""
    per_run: list[tuple[str, dict]] = []
    for r in runs:
        latest: dict[tuple[str, str, str], float] = {}
        for ev in r.evals:
            for metric, v in eval_metrics(ev).items():
                latest[(str(ev["evaluator"]), str(ev["dataset"]), metric)] = v
        per_run.append((r.method, latest))
    keys = sorted({k for _, d in per_run for k in d})
    methods = methods_of(runs)
    out: OrderedDict = OrderedDict()
    for key in keys:
        out[key] = {m: [d[key] for meth, d in per_run if meth == m and key in d] for m in methods}
    return out


def metric_scale(values_by_method: dict[str, list[float]], metric: str) -> tuple[float, str]:
    """(display factor, unit of differences): fractions in [0, 1] are shown ×100."""
    vals = [v for vs in values_by_method.values() for v in vs]
    frac = bool(vals) and all(0.0 <= v <= 1.0 for v in vals) and not lower_is_better(metric)
    unit = "points" if ACCURACY_LIKE.search(metric) else ""
    return (100.0 if frac else 1.0), unit


def last_analysis_entries(runs: Sequence[Run]) -> list[tuple[Run, dict]]:
    """Each run's diagnostics of its latest analysed checkpoint of its own run (or the last entry)."""
    out = []
    for r in runs:
        if not r.analysis or not r.analysis.get("checkpoints"):
            continue
        own = [e for e in r.analysis["checkpoints"]
               if Path(str(e.get("run_dir", ""))).name == r.path.name] or r.analysis["checkpoints"]
        out.append((r, max(own, key=lambda e: e.get("step", 0))))
    return out


DIAGNOSTICS = (  # (label, getter, higher means)
    ("matched cosine similarity", lambda e: e["similarity"]["matched_mean"], "more aligned pairs"),
    ("top-k unmatched cosine similarity", lambda e: e["similarity"]["unmatched_mean"], "closer negatives"),
    ("effective eigenvalues (image)", lambda e: e["image"]["effective_eigenvalues"], "a richer embedding"),
    ("effective eigenvalues (text)", lambda e: e["text"]["effective_eigenvalues"], "a richer embedding"),
    ("Ajne A (image)", lambda e: e["image"]["ajne"], "less uniform"),
    ("Ajne A (text)", lambda e: e["text"]["ajne"], "less uniform"),
    ("Wang–Isola uniformity (image)", lambda e: e["image"]["uniformity"], "less uniform"),
    ("Wang–Isola alignment", lambda e: e["alignment"], "worse alignment"),
    ("InfoNCE term a/(a+b)", lambda e: e["saturation"]["infonce_term"], "closer to saturation"),
    ("InfoLOOB term a/b", lambda e: e["saturation"]["infoloob_term"], "a larger non-saturating signal"),
)


def diagnostic_values(runs: Sequence[Run]) -> "OrderedDict[str, dict[str, list[float]]]":
    entries = last_analysis_entries(runs)
    methods = methods_of([r for r, _ in entries])
    out: OrderedDict = OrderedDict()
    for label, get, _ in DIAGNOSTICS:
        vals: dict[str, list[float]] = {m: [] for m in methods}
        for r, e in entries:
            try:
                vals[r.method].append(float(get(e)))
            except (KeyError, TypeError):
                pass
        out[label] = vals
    return out


# ---------------------------------------------------------------- reading

def _n_text(table: list[dict]) -> str:
    return ", ".join(f"n = {r['n']} {r['method']}" for r in table if r["n"] > 0)


def compare_sentence(name: str, vbm: dict[str, list[float]], higher_is_better: bool = True, scale: float = 1.0,
                     unit: str = "") -> tuple[str, dict]:
    """One sentence on which method is ahead on ``name``; returns (text, facts)."""
    table = welch_table(vbm, higher_is_better=higher_is_better)
    present = [r for r in table if r["n"] > 0]
    absent = [r["method"] for r in table if r["n"] == 0]
    facts = {"leader": None, "significant": False}
    if not present:
        return f"{name}: no values.", facts
    if len(present) == 1:
        r = present[0]
        txt = f"{name}: only {r['method']} has a value ({r['mean'] * scale:.2f}, n = {r['n']}); no comparison"
        return txt + (f" (missing for {', '.join(absent)})." if absent else "."), facts
    best = next(r for r in present if r["best"])
    sign = 1 if higher_is_better else -1
    runner = max((r for r in present if r is not best), key=lambda r: sign * r["mean"])
    num = (lambda v: f"{v:.2f}") if (scale != 1.0 or unit) else (lambda v: f"{v:.4g}")
    diff = abs(best["mean"] - runner["mean"]) * scale
    u = f" {unit}" if unit else ""
    if diff <= 1e-12 * max(1.0, abs(best["mean"] * scale)):
        tied = [r["method"] for r in present if abs(r["mean"] - best["mean"]) * scale <= 1e-12 * max(1.0, diff)]
        txt = f"{name}: {' and '.join(tied)} are tied at {num(best['mean'] * scale)} ({_n_text(table)})"
        return txt + (f"; missing for {', '.join(absent)}." if absent else "."), facts
    txt = (f"{name}: {best['method']} is ahead of {runner['method']} by {num(diff)}{u} "
           f"({num(best['mean'] * scale)} vs {num(runner['mean'] * scale)}; {_n_text(table)})")
    facts["leader"] = best["method"]
    if best["n"] < 2 or runner["n"] < 2:
        txt += "; with a single run in a group no significance test is possible, so the difference is anecdotal"
    elif math.isnan(runner["p_vs_best"]):
        txt += "; the values have no spread, so Welch's test is undefined"
    else:
        p = runner["p_vs_best"]
        facts["significant"] = bool(best["significant"])
        if best["significant"]:
            txt += f"; significant (Welch p = {p:.3g} < {ALPHA})"
        else:
            txt += (f"; not significant (Welch p = {p:.3g})" if p >= ALPHA else
                    f"; significant against {runner['method']} (p = {p:.3g}) but not against every other method")
    if absent:
        txt += f"; missing for {', '.join(absent)}"
    return txt + ".", facts


def reading(runs: Sequence[Run]) -> list[str]:
    """The generated sentences of the Reading section (plain text)."""
    methods = methods_of(runs)
    counts = {m: sum(r.method == m for r in runs) for m in methods}
    out = [f"{len(runs)} run(s): " + ", ".join(f"{m} (n = {c})" for m, c in counts.items()) + "."]
    if len(methods) < 2:
        out.append(f"Only one method ({methods[0]}) is present, so nothing is compared between methods; "
                   "the numbers below describe it alone.")
    values = eval_values(runs)
    if not values:
        out.append("No evaluation results (eval/*.json) were found; run the evaluators to compare methods.")
    leads: dict[str, list[bool]] = {}
    for (evaluator, dataset, metric), vbm in values.items():
        scale, unit = metric_scale(vbm, metric)
        name = f"{evaluator} {metric}" + (f" on {dataset}" if dataset else "")
        txt, facts = compare_sentence(name, vbm, not lower_is_better(metric), scale, unit)
        out.append(txt[0].upper() + txt[1:])
        if facts["leader"]:
            leads.setdefault(facts["leader"], []).append(facts["significant"])
    if len(methods) > 1 and leads:
        total = sum(len(v) for v in leads.values())
        parts = [f"{m} leads on {len(v)} of {total} compared metrics ({sum(v)} significantly)"
                 for m, v in sorted(leads.items(), key=lambda kv: -len(kv[1]))]
        out.append("Overall: " + "; ".join(parts) + ".")
    # training
    final = {m: [] for m in methods}
    for r in runs:
        _, vals = series(r.metrics, "loss", "train")
        if vals:
            final[r.method].append(vals[-1])
    if any(final.values()):
        out.append("Final training loss: " + ", ".join(
            f"{m} {sum(v) / len(v):.3f} (n = {len(v)})" for m, v in final.items() if v)
            + ". Losses of different objectives are not on the same scale; compare them within a method, "
            "or use the curve of the loss above its collapsed value.")
    # diagnostics
    diag = diagnostic_values(runs)
    if not diag or not any(v for vbm in diag.values() for v in vbm.values()):
        out.append("No embedding diagnostics (analysis/analysis.json) were found; "
                   "run `cloob analyze` on each run to add them.")
    elif len([m for m in methods_of(runs) if any(diag[next(iter(diag))].get(m, []))]) > 1:
        for (label, _, meaning) in DIAGNOSTICS:
            txt, facts = compare_sentence(label, diag[label])
            if facts["leader"]:
                txt = txt.replace(" is ahead of ", " is higher than ", 1)
                out.append(f"Diagnostics, {txt[:-1]} (higher = {meaning}).")
            elif " tied at " in txt:
                out.append(f"Diagnostics, {txt}")
    else:
        e = last_analysis_entries(runs)[0][1]
        out.append(f"Diagnostics ({e['method']}, step {e['step']}): matched cosine similarity "
                   f"{e['similarity']['matched_mean']:.3f} vs {e['similarity']['unmatched_mean']:.3f} for the "
                   f"top-{e['similarity']['k']} unmatched; {e['image']['effective_eigenvalues']} effective "
                   f"eigenvalues (image), Ajne A {e['image']['ajne']:.2f}.")
    return out
