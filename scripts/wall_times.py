"""Measured wall times of a grid's cells, by variant: training-loop seconds, steps, seconds per step.

    python scripts/wall_times.py runs/towers-cifar10 [--group-by label]

Training seconds are the loop's own clock at the last logged step (``time`` of the last ``train``
record of metrics.jsonl: after setup, before the final evaluation and checkpoint); cell seconds
are the grid runner's (train + evaluations, from DONE). Mean ± std over the cells of a group.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml


def cell_times(cell: Path) -> dict | None:
    metrics = cell / "metrics.jsonl"
    if not metrics.is_file() or not (cell / "DONE").is_file():
        return None
    train = [json.loads(line) for line in metrics.read_text().splitlines() if '"kind": "train"' in line]
    if not train:
        return None
    last = max(train, key=lambda r: r["step"])
    return {"train_s": last["time"], "steps": last["step"], "cell_s": json.loads((cell / "DONE").read_text())["seconds"]}


def fmt(values: list[float], digits: int = 0) -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("--group-by", default="label")
    args = ap.parse_args()
    groups: dict[str, list[dict]] = {}
    for cell in sorted(Path(args.grid).iterdir()):
        if not (cell / "config.yaml").is_file():
            continue
        times = cell_times(cell)
        if times is None:
            continue
        group = yaml.safe_load((cell / "config.yaml").read_text()).get(args.group_by) or cell.name
        groups.setdefault(str(group), []).append(times)
    print(f"| {args.group_by} | cells | steps | training s | s / step | cell s (train + evals) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for group, rows in groups.items():
        print(f"| {group} | {len(rows)} | {fmt([r['steps'] for r in rows])} | {fmt([r['train_s'] for r in rows])} | "
              f"{fmt([r['train_s'] / r['steps'] for r in rows], 2)} | {fmt([r['cell_s'] for r in rows])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
