"""Compare methods over several runs (seeds): mean ± std per (evaluator, dataset, metric),
Welch's t-test between methods, significant differences (p < 0.05) marked — like Table 1
of the CLOOB paper.

A run directory holds ``config.yaml`` (keys ``method``, ``seed``, ``model``, …),
``checkpoints/`` and ``eval/*.json`` written by ``cloob eval``. Each eval JSON has
``evaluator``, ``dataset`` (its slug), ``method`` and ``metrics`` (flat scalars).
The group of a run is ``config.yaml[group_by]``, else the eval JSON's field of that name;
several keys joined by ``,`` (``method,max_steps``) make groups such as ``cloob/600``.
"""
from __future__ import annotations

import csv
import fnmatch
import glob
import io
import json
import math
import re
from itertools import combinations
from pathlib import Path

import numpy as np

from cloob.rundir import read_config

SKIP_PATTERNS = ("per_class/*", "val_top1/*", "pair*/iou", "*/n_draws", "*/std", "n", "n_*", "k", "steps",
                 "train_seconds", "C", "inv_tau")
# metrics that are better low: losses, errors, perplexities and ranks (a retrieval's median rank)
LOWER_IS_BETTER = re.compile(r"(loss|error|err\b|perplexity|median_rank|mean_rank)", re.I)


def is_metric(name: str) -> bool:
    """Whether an eval JSON's ``metrics`` key is a headline metric (not per-class detail or bookkeeping)."""
    return not any(fnmatch.fnmatchcase(name, p) for p in SKIP_PATTERNS)


def lower_is_better(name: str) -> bool:
    """Direction of a metric (the one rule for compare, the report and benchmark tables): True for losses,
    errors, perplexities and ranks."""
    return bool(LOWER_IS_BETTER.search(name))


def _keep(metric: str, metrics: list[str] | None) -> bool:
    if metrics:
        return any(fnmatch.fnmatchcase(metric, m) for m in metrics)
    return is_metric(metric)


def find_runs(patterns: list[str]) -> list[Path]:
    """Run directories matching the glob patterns (sorted, de-duplicated)."""
    runs = []
    for pat in patterns:
        hits = sorted(glob.glob(pat)) or ([pat] if Path(pat).is_dir() else [])
        runs += [Path(h) for h in hits if Path(h).is_dir()]
    return sorted(set(runs))


def collect(patterns: list[str], *, metric_files: str = "eval/*.json", group_by: str = "method",
            metrics: list[str] | None = None) -> list[dict]:
    """Records {run, group, seed, evaluator, dataset, metric, value} from every run's eval JSONs."""
    runs = find_runs(patterns)
    if not runs:
        raise ValueError(f"no run directory matches {patterns}")
    records = []
    for run in runs:
        cfg = read_config(run)
        files = sorted(run.glob(metric_files))
        for f in files:
            try:
                d = json.loads(f.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{f}: not valid JSON ({e})") from None
            if not isinstance(d, dict) or "metrics" not in d:
                continue
            parts = [cfg.get(k, d.get(k)) for k in group_by.split(",")]
            if any(v is None for v in parts):
                raise ValueError(f"run {run}: no {group_by!r} in config.yaml or in {f.name}")
            group = "/".join(str(v) for v in parts)
            seed = cfg.get("seed", (d.get("config") or {}).get("seed"))
            evaluator = d.get("evaluator", f.stem)
            if d.get("features", "embedding") != "embedding":  # backbone features: a column of their own
                evaluator = f"{evaluator}-{d['features']}"
            for metric, value in d["metrics"].items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not _keep(metric, metrics):
                    continue
                records.append({"run": str(run), "group": str(group), "seed": seed,
                                "evaluator": evaluator, "dataset": d.get("dataset_slug", d.get("dataset", "")),
                                "metric": metric, "value": float(value)})
    if not records:
        raise ValueError(f"no metrics found in {metric_files} of {len(runs)} run(s)")
    return records


def welch_p(a, b) -> float | None:
    """Two-sided p of Welch's t-test (scipy ``ttest_ind(equal_var=False)``); None when either has < 2 values."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return None
    p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def aggregate(records: list[dict], *, baseline: str | None = None, alpha: float = 0.05) -> dict:
    """Rows of mean ± std per group and Welch tests: vs ``baseline`` if given, else every pair of groups."""
    groups = sorted({r["group"] for r in records})
    if baseline is not None and baseline not in groups:
        raise ValueError(f"baseline {baseline!r} is not one of the groups {groups}")
    pairs = [(baseline, g) for g in groups if g != baseline] if baseline else list(combinations(groups, 2))
    keys = sorted({(r["evaluator"], r["dataset"], r["metric"]) for r in records})
    rows = []
    for key in keys:
        vals = {g: [r["value"] for r in records if (r["evaluator"], r["dataset"], r["metric"]) == key and r["group"] == g]
                for g in groups}
        stats = {g: {"mean": float(np.mean(v)) if v else None, "std": float(np.std(v, ddof=1)) if len(v) > 1 else (0.0 if v else None),
                     "n": len(v), "values": v} for g, v in vals.items()}
        lower = lower_is_better(key[2])
        tests = []
        for a, b in pairs:
            p = welch_p(vals[a], vals[b])
            sig = p is not None and p < alpha
            better = None
            if sig:
                ma, mb = stats[a]["mean"], stats[b]["mean"]
                better = (a if ma < mb else b) if lower else (a if ma > mb else b)
            tests.append({"a": a, "b": b, "p": p, "significant": sig, "better": better})
        rows.append({"evaluator": key[0], "dataset": key[1], "metric": key[2], "groups": stats, "tests": tests,
                     "lower_is_better": lower})
    return {"groups": groups, "pairs": [list(p) for p in pairs], "alpha": alpha, "rows": rows}


def _cell(s: dict) -> str:
    if s["mean"] is None:
        return "–"
    return f"{s['mean']:.4g} ± {s['std']:.2g}" if s["n"] > 1 else f"{s['mean']:.4g}"


def to_markdown(result: dict) -> str:
    """Table: one row per (evaluator, dataset, metric); significant winners in bold, p per pair."""
    groups, pairs = result["groups"], result["pairs"]
    head = ["evaluator", "dataset", "metric"] + [f"{g} (n)" for g in groups] + [f"p {a} vs {b}" for a, b in pairs]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in result["rows"]:
        winners = {t["better"] for t in row["tests"] if t["significant"]}
        cells = []
        for g in groups:
            s = row["groups"][g]
            c = f"{_cell(s)} ({s['n']})"
            cells.append(f"**{c}**" if g in winners else c)
        ps = ["–" if t["p"] is None else (f"**{t['p']:.3g}**" if t["significant"] else f"{t['p']:.3g}") for t in row["tests"]]
        lines.append("| " + " | ".join([row["evaluator"], row["dataset"], row["metric"]] + cells + ps) + " |")
    lines.append("")
    lines.append(f"mean ± std over runs (n); bold: Welch's t-test p < {result['alpha']} (the better method bold).")
    return "\n".join(lines) + "\n"


def to_csv(result: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    groups, pairs = result["groups"], result["pairs"]
    head = ["evaluator", "dataset", "metric"]
    for g in groups:
        head += [f"{g}_mean", f"{g}_std", f"{g}_n"]
    for a, b in pairs:
        head += [f"p_{a}_vs_{b}", f"significant_{a}_vs_{b}", f"better_{a}_vs_{b}"]
    w.writerow(head)
    for row in result["rows"]:
        line = [row["evaluator"], row["dataset"], row["metric"]]
        for g in groups:
            s = row["groups"][g]
            line += ["" if s["mean"] is None else s["mean"], "" if s["std"] is None else s["std"], s["n"]]
        for t in row["tests"]:
            line += ["" if t["p"] is None else t["p"], int(t["significant"]), t["better"] or ""]
        w.writerow(line)
    return buf.getvalue()


def compare_runs(patterns: list[str], out_dir: str | Path, *, metric_files: str = "eval/*.json",
                 group_by: str = "method", baseline: str | None = None, metrics: list[str] | None = None,
                 alpha: float = 0.05) -> dict:
    """Write ``compare.md``, ``compare.csv``, ``compare.json`` under ``out_dir``; return the result."""
    records = collect(patterns, metric_files=metric_files, group_by=group_by, metrics=metrics)
    result = aggregate(records, baseline=baseline, alpha=alpha)
    result["runs"] = sorted({(r["run"], r["group"], str(r["seed"])) for r in records})
    result["group_by"] = group_by
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(to_markdown(result))
    (out / "compare.csv").write_text(to_csv(result))
    (out / "compare.json").write_text(json.dumps(result, indent=1))
    return result
