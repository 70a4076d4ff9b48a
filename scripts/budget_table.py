"""The budget curve of a grid with a ``max_steps`` axis: each method's metrics and training diagnostics per budget.

    python scripts/budget_table.py runs/budget-scenes [runs/budget-ablation-scenes ...] \
        --metric "zeroshot-scenes-scene-*/top1" --metric "zeroshot-scenes-object-*/top1" \
        --plot docs/figures/budget-scenes.png
    python scripts/budget_table.py results/flickr8k --by label \
        --metric "retrieval-flickr8k-test/text_to_image/R@1" --metric "retrieval-flickr8k-test/image_to_text/R@1"

Reads every finished cell of the grid directories (``<grid>/*/DONE``): each cell's ``eval/*.json`` (metric =
``<eval file stem glob>/<key>``), its wall seconds (``DONE``, summed over resumes:
:func:`cloob.analysis.runs.cell_seconds`) and the last training record of ``metrics.jsonl`` (the collapse
diagnostics). Prints Markdown: per budget and metric, mean ± std over seeds (n) for every
method, and the difference of each method to the first (the baseline, CLIP) with Welch's p
(* when p < 0.05); then the diagnostics at the end of training, and those of ``cloob analyze``
(``analysis/analysis.json``) where the cells ran it. Only finished cells count.

Cells are grouped by ``method`` (default) or, with ``--by label``, by their recipe label without its
budget suffix (``cloob-paper-1200`` -> ``cloob-paper``), so two recipes of one method stay apart.
``--inline`` adds one table per budget with each difference and p in its cell, the layout of docs/results.md.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from cloob.analysis.reading import last_analysis_entries
from cloob.analysis.runs import cell_metric, cell_seconds, last_train_record, read_run
from cloob.analysis.stats import welch_p

DIAGNOSTICS = [
    ("loss above collapse (nats/dir.; sigmoid: nats/anchor, summed over the batch)", "loss_gap_nats"),
    ("image–image cosine", "cos/x"),
    ("text–text cosine", "cos/y"),
    ("patterns per retrieval (U_x, U_y, V_x, V_y mean)", "eff_patterns"),
    ("retrieved cosine (mean of 4)", "cos/retrieved"),
]


# cloob analyze's embedding diagnostics of the last analysed checkpoint (the paper's §4 / Figure 3 measures):
# (label, key, getter on an analysis.json checkpoint entry, decimals)
ANALYSIS = [
    ("effective eigenvalues, image (99 %)", "eig/image", lambda e: e["image"]["effective_eigenvalues"], 0),
    ("effective eigenvalues, text (99 %)", "eig/text", lambda e: e["text"]["effective_eigenvalues"], 0),
    ("uniformity, image (W&I, lower = more uniform)", "unif/image", lambda e: e["image"]["uniformity"], 2),
    ("uniformity, text", "unif/text", lambda e: e["text"]["uniformity"], 2),
    ("alignment (W&I, lower = closer)", "alignment", lambda e: e["alignment"], 2),
    ("matched cosine: mean", "sim/matched_mean", lambda e: e["similarity"]["matched_mean"], 2),
    ("matched cosine: width (std)", "sim/matched_std", lambda e: e["similarity"]["matched_std"], 2),
    ("top-10 unmatched cosine: mean", "sim/unmatched_mean", lambda e: e["similarity"]["unmatched_mean"], 2),
    ("top-10 unmatched cosine: width (std)", "sim/unmatched_std", lambda e: e["similarity"]["unmatched_std"], 2),
]


def _analysis(cell: Path) -> dict:
    entries = last_analysis_entries([read_run(cell)])
    return {key: get(entries[0][1]) for _, key, get, _ in ANALYSIS} if entries else {}


def group_name(cfg: dict, by: str) -> str:
    """The row a cell belongs to: its method, or its label without the ``-<max_steps>`` suffix."""
    method = cfg.get("method", "clip")
    if by == "method":
        return method
    label = str(cfg.get("label") or method)
    suffix = f"-{int(cfg['max_steps'])}"
    return label[: -len(suffix)] if label.endswith(suffix) else label


def _last_train(cell: Path) -> dict:
    last = last_train_record(cell) or {}
    out = {k: last[k] for k in ("loss_gap_nats", "cos/x", "cos/y") if isinstance(last.get(k), (int, float))}
    eff = [last[f"eff_patterns/{n}"] for n in ("U_x", "U_y", "V_x", "V_y") if f"eff_patterns/{n}" in last]
    cos = [last[f"cos/{n}"] for n in ("U_x", "U_y", "V_x", "V_y") if f"cos/{n}" in last]
    if eff:
        out["eff_patterns"] = sum(eff) / len(eff)
        out["cos/retrieved"] = sum(cos) / len(cos)
    return out


def _fmt(vals: list[float], scale: float, digits: int = 1) -> str:
    if not vals:
        return "—"
    m = statistics.fmean(vals) * scale
    s = statistics.stdev(vals) * scale if len(vals) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f} ({len(vals)})"


def collect(grids: list[Path], metrics: list[str], by: str = "method") -> tuple[dict, list[str], dict]:
    """{(group, budget): {"metric:<spec>": [...], "diag:<key>": [...], "ana:<key>": [...], "seconds": [...]}},
    the groups in order, and each group's method.

    Several grids pool their cells (e.g. a budget grid and its ablation cells on the same data)."""
    # every finished cell on disk: cells.json lists only the cells of the last `--only` selection
    dones = sorted(p for grid in grids for p in grid.glob("*/DONE"))
    data: dict = defaultdict(lambda: defaultdict(list))
    methods: list[str] = []
    method_of: dict[str, str] = {}
    for done in dones:
        cell = done.parent
        finished = json.loads(done.read_text())
        cfg = finished["config"]
        group, budget = group_name(cfg, by), int(cfg["max_steps"])
        if group not in methods:
            methods.append(group)
            method_of[group] = cfg.get("method", "clip")
        bucket = data[(group, budget)]
        wall = cell_seconds(cell)
        bucket["seconds"].append(math.nan if wall is None else wall)
        for spec in metrics:
            v = cell_metric(cell, spec)
            if v is not None:
                bucket[f"metric:{spec}"].append(v)
        for k, v in _last_train(cell).items():
            bucket[f"diag:{k}"].append(v)
        for k, v in _analysis(cell).items():
            bucket[f"ana:{k}"].append(v)
    # the paper's order of the ablation cells, then SigLIP's pair; the first group present is the
    # baseline (CLIP); recipes of one method follow it, in name order
    order = ["clip", "infoloob", "infonce-hopfield", "cloob", "siglip", "siglip-hopfield"]
    rank = {m: (order.index(m) if m in order else len(order)) for m in method_of.values()}
    methods.sort(key=lambda g: (g != "clip", rank[method_of[g]], g != method_of[g], g))
    return data, methods, method_of


def table(data: dict, methods: list[str], metrics: list[str]) -> str:
    budgets = sorted({b for _, b in data})
    base = methods[0]
    head = "| budget (steps) | metric | " + " | ".join(methods) + " | " + " | ".join(
        f"{m} − {base}" for m in methods[1:]) + " |"
    lines = [head, "| --- " * (2 + 2 * len(methods) - 1) + "|"]
    for b in budgets:
        for spec in metrics:
            vals = {m: data.get((m, b), {}).get(f"metric:{spec}", []) for m in methods}
            if not any(vals.values()):
                continue
            cells = [_fmt(vals[m], 100) for m in methods]
            diffs = []
            for m in methods[1:]:
                if vals[m] and vals[base]:
                    d = 100 * (statistics.fmean(vals[m]) - statistics.fmean(vals[base]))
                    p = welch_p(vals[m], vals[base])
                    mark = "*" if p == p and p < 0.05 else ""
                    diffs.append(f"{d:+.1f} (p={p:.2g}{mark})" if p == p else f"{d:+.1f}")
                else:
                    diffs.append("—")
            lines.append(f"| {b} | {spec} | " + " | ".join(cells + diffs) + " |")
    lines += _diagnostic_rows(data, methods, budgets, "Training diagnostics at the last logged step",
                              [(label, f"diag:{key}", 2) for label, key in DIAGNOSTICS])
    if any(k.startswith("ana:") for bucket in data.values() for k in bucket):
        lines += _diagnostic_rows(data, methods, budgets, "Embedding diagnostics of `cloob analyze` at the last step",
                                  [(label, f"ana:{key}", digits) for label, key, _, digits in ANALYSIS])
    lines += ["", "| budget (steps) | " + " | ".join(f"{m} wall s / cell" for m in methods) + " |",
              "| --- " * (1 + len(methods)) + "|"]
    for b in budgets:
        lines.append(f"| {b} | " + " | ".join(_fmt(data.get((m, b), {}).get("seconds", []), 1, 0)
                                               for m in methods) + " |")
    return "\n".join(lines)


def inline_tables(data: dict, methods: list[str], metrics: list[str], names: dict[str, str] | None = None) -> str:
    """One Markdown table per budget, a row per metric and a column per group, as docs/results.md prints them:
    ``mean ± std`` in %, the best mean in bold, and after each group but the first its difference to the first
    with Welch's p, ``(−2.5, p=0.024*)``. Where the groups' numbers of seeds differ, each cell shows its ``[n=…]``."""
    names = names or {}
    out = []
    for b in sorted({b for _, b in data}):
        rows = []
        for spec in metrics:
            vals = {m: [100 * v for v in data.get((m, b), {}).get(f"metric:{spec}", [])] for m in methods}
            if not any(vals.values()):
                continue
            means = {m: statistics.fmean(v) for m, v in vals.items() if v}
            best = max(means.values())
            base = vals[methods[0]]
            show_n = len({len(x) for x in vals.values() if x}) > 1
            cells = []
            for i, m in enumerate(methods):
                v = vals[m]
                if not v:
                    cells.append("—")
                    continue
                sd = statistics.stdev(v) if len(v) > 1 else 0.0
                cell = f"{means[m]:.1f} ± {sd:.1f}"
                if f"{means[m]:.1f}" == f"{best:.1f}":
                    cell = f"**{cell}**"
                if i and base:
                    d = means[m] - means[methods[0]]
                    p = welch_p(v, base)
                    sign = "−" if f"{d:.1f}".startswith("-") else "+"
                    ptxt = f", p={p:.2g}{'*' if p < 0.05 else ''}" if p == p else ""
                    cell += f" ({sign}{abs(d):.1f}{ptxt})"
                if show_n:
                    cell += f" [n={len(v)}]"
                cells.append(cell)
            rows.append(f"| {spec} | " + " | ".join(cells) + " |")
        if rows:
            out += [f"| {b} steps | " + " | ".join(names.get(m, m) for m in methods) + " |",
                    "| --- " * (1 + len(methods)) + "|", *rows, ""]
    return "\n".join(out).rstrip()


def _diagnostic_rows(data: dict, methods: list[str], budgets: list[int], title: str,
                     rows: list[tuple[str, str, int]]) -> list[str]:
    """A Markdown table (budget, diagnostic, one column per method) of the (label, bucket key, decimals) rows
    that have a value; mean ± std over seeds."""
    lines = ["", f"{title} (mean ± std over seeds):", "",
             "| budget (steps) | diagnostic | " + " | ".join(methods) + " |", "| --- " * (2 + len(methods)) + "|"]
    for b in budgets:
        for label, key, digits in rows:
            vals = {m: data.get((m, b), {}).get(key, []) for m in methods}
            if any(vals.values()):
                lines.append(f"| {b} | {label} | " + " | ".join(_fmt(vals[m], 1, digits) for m in methods) + " |")
    return lines


def plot(data: dict, methods: list[str], metrics: list[str], out: Path, title: str,
         method_of: dict | None = None) -> None:
    from cloob.analysis.plots import _figure, method_colour, save_png

    from matplotlib.ticker import NullLocator

    ncols = min(2, len(metrics))
    nrows = (len(metrics) + ncols - 1) // ncols
    fig, axes = _figure(4.6 * ncols, 3.2 * nrows, ncols=ncols, nrows=nrows)
    budgets = sorted({b for _, b in data})
    # a second recipe of a method keeps the method's colour, dashed and with its own marker (a recipe run at one
    # budget only is a single point, told apart from the method's other recipes by the marker alone)
    markers, seen = {}, defaultdict(int)
    for m in methods:
        method = (method_of or {}).get(m, m)
        markers[m] = "os^Dvp"[seen[method] % 6]
        seen[method] += 1
    for ax, spec in zip(axes, metrics):
        for m in methods:
            xs, ys, es = [], [], []
            for b in budgets:
                v = data.get((m, b), {}).get(f"metric:{spec}", [])
                if v:
                    xs.append(b)
                    ys.append(100 * statistics.fmean(v))
                    es.append(100 * statistics.stdev(v) if len(v) > 1 else 0.0)
            if xs:
                method = (method_of or {}).get(m, m)
                ax.errorbar(xs, ys, yerr=es, color=method_colour(method), marker=markers[m], ms=4, capsize=3, lw=1.4,
                            ls="-" if m == method else "--", label=m)
        ax.set_xscale("log")
        ax.set_xticks(budgets)
        ax.set_xticklabels([str(b) for b in budgets])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("training steps (batch 256)")
        ax.set_ylabel("%")
        stem, _, key = spec.partition("/")
        ax.set_title(f"{stem.replace('-*', '').replace('*', '')} {key}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    save_png(fig, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid", nargs="+", help="grid output dirs (their cells are pooled)")
    ap.add_argument("--metric", action="append", required=True, help="<eval file stem glob>/<key> (repeatable)")
    ap.add_argument("--plot", default=None, help="write the budget curve PNG here")
    ap.add_argument("--by", choices=["method", "label"], default="method",
                    help="group cells by method, or by recipe label without its budget suffix")
    ap.add_argument("--inline", action="store_true",
                    help="also print one table per budget with each difference to the first group inline, "
                         "as docs/results.md shows them")
    args = ap.parse_args(argv)
    grids = [Path(g) for g in args.grid]
    data, methods, method_of = collect(grids, args.metric, args.by)
    if not data:
        print(f"no finished cells in {', '.join(map(str, grids))}", file=sys.stderr)
        return 1
    print(table(data, methods, args.metric))
    if args.inline:
        print("\n" + inline_tables(data, methods, args.metric))
    if args.plot:
        plot(data, methods, args.metric, Path(args.plot), " + ".join(g.name for g in grids), method_of)
        print(f"\nwrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
