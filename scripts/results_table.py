"""A paper-style table (in %) from a grid's `cloob compare` output.

    python scripts/results_table.py runs/ablation-scenes [--methods clip,infoloob,infonce-hopfield,cloob]
    python scripts/results_table.py results/tune-towers-cifar10 --group-by label   # an archive
Rows: headline metrics; cells: mean ± std over seeds (n); p: Welch's t-test against the first
method (the baseline), marked * when p < 0.05; bold: the best mean when it is significantly
better than every other method.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROWS = [
    ("zeroshot", "top1", "zero-shot top-1"),
    ("retrieval", "image_to_text/R@1", "image→text R@1"),
    ("retrieval", "text_to_image/R@1", "text→image R@1"),
    ("linear-probe", "top1", "linear probe top-1"),
    ("few-shot", "k=1/mean", "1-shot top-1"),
    ("few-shot", "k=4/mean", "4-shot top-1"),
    ("few-shot", "k=16/mean", "16-shot top-1"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("--methods", default=None)
    ap.add_argument("--group-by", default="method", help="without <grid>/compare (an archive): group cells by this key")
    args = ap.parse_args()
    written = Path(args.grid) / "compare" / "compare.json"
    if written.is_file():
        data = json.loads(written.read_text())
    else:  # an archive (results/<grid>) has no compare output: compare its cells here, writing nothing
        from cloob.evals.compare import aggregate, collect

        data = aggregate(collect([str(Path(args.grid) / "*")], group_by=args.group_by), baseline=None)
    methods = args.methods.split(",") if args.methods else data["groups"]
    base = methods[0]
    print("| dataset | metric | " + " | ".join(methods) + " |")
    print("| --- | --- |" + " --- |" * len(methods))
    for evaluator, metric, label in ROWS:
        for row in data["rows"]:
            if row["evaluator"] != evaluator or row["metric"] != metric:
                continue
            g = row["groups"]
            p_vs_base = {t["b"] if t["a"] == base else t["a"]: t for t in row["tests"] if base in (t["a"], t["b"])}
            best = max(methods, key=lambda m: g[m]["mean"])
            best_sig = all(
                t["significant"] and t["better"] == best
                for t in row["tests"] if best in (t["a"], t["b"]))
            cells = []
            for m in methods:
                s = f"{100 * g[m]['mean']:.1f} ± {100 * g[m]['std']:.1f}"
                if m != base and m in p_vs_base and p_vs_base[m]["p"] is not None:
                    s += f" (p={p_vs_base[m]['p']:.2g}{'*' if p_vs_base[m]['p'] < 0.05 else ''})"
                cells.append(f"**{s}**" if m == best and best_sig else s)
            dataset = row["dataset"].split("-scenes-demo")[0].replace("-", " ")
            print(f"| {dataset} | {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
