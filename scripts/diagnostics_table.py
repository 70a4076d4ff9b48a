"""Markdown table of the embedding diagnostics (cloob analyze) per method over a grid's runs.

    python scripts/diagnostics_table.py runs/ablation-scenes
Mean ± std over runs (seeds) of: effective eigenvalues (99 %), Ajne/Prentice A, Wang–Isola
uniformity (image and text), alignment, matched and top-10 unmatched cosine similarity.
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

FIELDS = [
    ("eff. eig. image", lambda c: c["image"]["effective_eigenvalues"]),
    ("eff. eig. text", lambda c: c["text"]["effective_eigenvalues"]),
    ("Ajne A image", lambda c: c["image"]["ajne"]),
    ("Ajne A text", lambda c: c["text"]["ajne"]),
    ("W&I uniformity image", lambda c: c["image"]["uniformity"]),
    ("W&I alignment", lambda c: c["alignment"]),
    ("matched cos", lambda c: c["similarity"]["matched_mean"]),
    ("top-10 unmatched cos", lambda c: c["similarity"]["unmatched_mean"]),
]


def main(grid: str) -> int:
    by_method = defaultdict(list)
    for path in sorted(Path(grid).glob("*/analysis/analysis.json")):
        for ck in json.loads(path.read_text())["checkpoints"]:
            by_method[ck["method"]].append(ck)
    if not by_method:
        print(f"no */analysis/analysis.json under {grid}", file=sys.stderr)
        return 2
    methods = list(by_method)
    print("| diagnostic | " + " | ".join(f"{m} (n={len(by_method[m])})" for m in methods) + " |")
    print("| --- |" + " --- |" * len(methods))
    for name, get in FIELDS:
        cells = []
        for m in methods:
            vals = [float(get(c)) for c in by_method[m]]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.3g} ± {sd:.2g}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/ablation-scenes"))
