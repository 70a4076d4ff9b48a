"""The early collapse and its cure in four panels, from the training logs of recipe-tuning runs.

    python scripts/collapse_figure.py \
        "CLOOB inv_tau 30 (paper)=runs/tune-recipe-scenes/cloob_t30-s0" \
        "CLOOB inv_tau 10=runs/tune-recipe-scenes/cloob_t10-s0" \
        "CLOOB inv_tau 10, CLIP warm start 50 %=runs/tune-recipe2-scenes/cloob_t10_clip50-s0" \
        "CLIP inv_tau 10, warm-up 50 %=runs/tune-recipe2-scenes/clip_t10_w50-s0" \
        --out docs/figures/collapse.png

Each argument is ``LABEL=RUN_DIR``. Panels (every logged training step): the loss above its
all-identical (collapsed) value in nats per direction (``loss_gap_nats``), the global gradient
norm, the mean off-diagonal image–image cosine of the raw embeddings (``cos/x``) and the effective
number of patterns a cross-modal retrieval averages (mean of ``eff_patterns/U_y`` and ``V_x``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cloob.analysis.plots import _figure, save_png
from cloob.analysis.runs import read_metrics

PANELS = [
    ("loss above collapse (nats / direction)", lambda r: r.get("loss_gap_nats")),
    ("gradient norm", lambda r: r.get("grad_norm")),
    ("image–image cosine (raw embeddings)", lambda r: r.get("cos/x")),
    ("patterns per cross-modal retrieval (U_y, V_x)",
     lambda r: (r["eff_patterns/U_y"] + r["eff_patterns/V_x"]) / 2 if "eff_patterns/U_y" in r else None),
]
COLOURS = ["#b2182b", "#ef8a62", "#2166ac", "#1b7837", "#762a83"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    fig, axes = _figure(10.0, 6.0, ncols=2, nrows=2)
    for i, spec in enumerate(args.runs):
        label, _, run = spec.rpartition("=")
        recs = [r for r in read_metrics(Path(run) / "metrics.jsonl")[0] if r.get("kind") == "train"]
        for ax, (title, get) in zip(axes, PANELS):
            pts = [(r["step"], get(r)) for r in recs if get(r) is not None]
            if pts:
                ax.plot(*zip(*pts), color=COLOURS[i % len(COLOURS)], lw=1.3, label=label or run)
    for ax, (title, _) in zip(axes, PANELS):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step (batch 256)")
        ax.grid(alpha=0.3)
    axes[0].axhline(0, color="black", lw=0.7)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    save_png(fig, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
