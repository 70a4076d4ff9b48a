"""Figure of a towers grid: each variant's metric per seed (dots) and mean (bar), with its training time.

    python scripts/towers_figure.py results/towers-cifar10 \
        --metric "zeroshot-cifar10-test*/top1" --metric "linear-probe-cifar10-test*/top1" \
        --variants scratch-clip,cbow-clip,lit-clip,lit-cloob,lit2-clip,lit2-cloob \
        --out docs/figures/towers-cifar10.png

Reads every finished cell (``<grid>/*/DONE``) of a grid or its archive: the variant is the cell's
``label``, a metric is ``<eval file stem glob>/<key>`` of its ``eval/*.json``, the training time
the loop's own clock at its last logged step (as scripts/wall_times.py). Only measured values
are drawn; a variant without finished cells is left out with a line on stderr.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from cloob.analysis.runs import cell_metric, finished_runs_by, train_seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid", type=Path)
    ap.add_argument("--metric", action="append", required=True, help="<eval file stem glob>/<key>; repeatable")
    ap.add_argument("--title", action="append", default=None, help="a panel title per --metric")
    ap.add_argument("--variants", default=None, help="comma-separated labels, in plot order (default: all, sorted)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cells = finished_runs_by(args.grid, "label")
    if not cells:
        print(f"error: no finished cells (*/DONE) under {args.grid}", file=sys.stderr)
        return 2
    variants = args.variants.split(",") if args.variants else sorted(cells)
    for v in [v for v in variants if v not in cells]:
        print(f"note: no finished cells for {v!r}, left out", file=sys.stderr)
    variants = [v for v in variants if v in cells]
    titles = args.title or args.metric
    if len(titles) != len(args.metric):
        ap.error("give one --title per --metric, or none")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.metric), figsize=(0.9 * len(variants) * len(args.metric) + 1.5, 3.8),
                             squeeze=False)
    for ax, spec, title in zip(axes[0], args.metric, titles):
        values = {v: [100 * x for x in (cell_metric(c, spec) for c in cells[v]) if x is not None] for v in variants}
        top = max((max(vals) for vals in values.values() if vals), default=1.0)
        for i, v in enumerate(variants):
            vals = values[v]
            if not vals:
                continue
            ax.bar(i, statistics.fmean(vals), color="C0" if "cloob" not in v else "C1", alpha=0.35, width=0.7)
            ax.scatter([i] * len(vals), vals, color="k", s=12, zorder=3)
            ax.text(i, max(vals) + 0.015 * top, f"{statistics.fmean(vals):.1f}", ha="center", va="bottom", fontsize=8)
        labels = []
        for v in variants:
            secs = [t for t in map(train_seconds, cells[v]) if t is not None]
            labels.append(f"{v}\n{statistics.fmean(secs):.0f} s, n={len(cells[v])}" if secs else v)
        ax.set_xticks(range(len(variants)), labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("%")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{args.grid.name}: per seed (dots) and mean (bar); training seconds under each variant",
                 fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
