"""The transfer study's table (in %) and its k-shot figure, from a transfer grid's cells or archive.

    python scripts/transfer_table.py results/transfer-cifar10 [--baseline imagenet-lite0] \
        [--rows imagenet-lite0,lit-clip,clip-5400,cloob-5400] [--plot docs/figures/transfer-cifar10-kshot.png]

Only finished cells (``<cell>/DONE``) count. Rows: the grid's labels. Columns: linear probe on the backbone features (and on the joint embedding where
there is one), fine-tuned with the last block and with everything trainable, zero-shot, and k-shot at
k = 1, 16, 128. Cells: mean ± std over seeds (n when it differs from 3); p: Welch's t-test against the
baseline row, * when p < 0.05. The figure: k-shot top-1 against k (log axis), mean ± std over seeds, one
line per row, the zero-shot accuracy of the CLIP-like rows as dashed lines.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

COLUMNS = [
    ("linear-probe-backbone", "top1", "linear probe (backbone)"),
    ("linear-probe", "top1", "linear probe (embedding)"),
    ("finetune-linear-last-backbone", "top1", "fine-tuned, last block"),
    ("finetune-linear-all-backbone", "top1", "fine-tuned, all"),
    ("zeroshot", "top1", "zero-shot"),
    ("few-shot-backbone", "k=1/mean", "1-shot"),
    ("few-shot-backbone", "k=16/mean", "16-shot"),
    ("few-shot-backbone", "k=128/mean", "128-shot"),
]


def _rows(grid: str, baseline: str | None):
    from cloob.evals.compare import aggregate, collect

    finished = sorted(str(done.parent) for done in Path(grid).glob("*/DONE"))  # a running cell's results are partial
    if not finished:
        raise SystemExit(f"error: no finished cell (*/DONE) in {grid}")
    return aggregate(collect(finished, group_by="label"), baseline=baseline)


def table(data: dict, rows: list[str], baseline: str | None) -> str:
    """Markdown: one line per row label, one column per :data:`COLUMNS` entry present."""
    found = {(r["evaluator"], r["metric"]): r for r in data["rows"]}
    cols = [c for c in COLUMNS if (c[0], c[1]) in found]
    lines = ["| model | " + " | ".join(c[2] for c in cols) + " |", "| --- |" + " --- |" * len(cols)]
    for label in rows:
        cells = []
        for evaluator, metric, _ in cols:
            row = found[(evaluator, metric)]
            s = row["groups"].get(label)
            if not s or s["mean"] is None:
                cells.append("–")
                continue
            text = f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}" + (f" (n={s['n']})" if s["n"] != 3 else "")
            test = next((t for t in row["tests"] if baseline in (t["a"], t["b"]) and label in (t["a"], t["b"])
                         and label != baseline), None)
            if test and test["p"] is not None:
                text += f" (p={test['p']:.2g}{'*' if test['p'] < 0.05 else ''})"
            cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(data: dict, rows: list[str], path: Path) -> Path:
    """k-shot top-1 against k per row (mean ± std over seeds), zero-shot as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shots = {}
    for r in data["rows"]:
        if r["evaluator"] == "few-shot-backbone" and r["metric"].startswith("k=") and r["metric"].endswith("/mean"):
            k = int(r["metric"][2:].split("/")[0])
            if k > 0:
                shots[k] = r["groups"]
    zeroshot = next((r["groups"] for r in data["rows"] if (r["evaluator"], r["metric"]) == ("zeroshot", "top1")), {})
    ks = sorted(shots)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, label in enumerate(rows):
        colour = f"C{i}"
        mean = np.array([100 * (shots[k].get(label) or {}).get("mean", np.nan) or np.nan for k in ks], dtype=float)
        std = np.array([100 * ((shots[k].get(label) or {}).get("std") or 0.0) for k in ks], dtype=float)
        if np.all(np.isnan(mean)):
            continue
        ax.plot(ks, mean, marker="o", ms=3, color=colour, label=label)
        ax.fill_between(ks, mean - std, mean + std, color=colour, alpha=0.15, linewidth=0)
        z = zeroshot.get(label)
        if z and z["mean"] is not None:
            ax.axhline(100 * z["mean"], color=colour, linestyle="--", linewidth=1, label=f"{label} zero-shot")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("labelled images per class (k)")
    ax.set_ylabel("top-1 on the held-out half (%)")
    ax.set_title("CIFAR-10: k-shot logistic regression on backbone features")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid", help="a transfer grid's out directory or its archive (results/transfer-cifar10)")
    ap.add_argument("--baseline", default="imagenet-lite0", help="the row the Welch tests compare with")
    ap.add_argument("--rows", default=None, help="row labels in order (default: the baseline, then the rest)")
    ap.add_argument("--plot", default=None, help="write the k-shot figure here (PNG)")
    args = ap.parse_args()
    data = _rows(args.grid, args.baseline)
    rows = args.rows.split(",") if args.rows else [args.baseline] + [g for g in data["groups"] if g != args.baseline]
    unknown = [r for r in rows if r not in data["groups"]]
    if unknown:
        print(f"error: rows {unknown} are not labels of {args.grid} ({', '.join(data['groups'])})", file=sys.stderr)
        return 2
    print(table(data, rows, args.baseline))
    if args.plot:
        print(f"\nwrote {plot(data, rows, Path(args.plot))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
