"""Measured wall times of a grid's cells, by variant: training-loop seconds, steps, seconds per step.

    python scripts/wall_times.py runs/towers-cifar10 [--group-by label]

Training seconds are the loop's own clock at the last logged step (``time`` of the last ``train``
record of metrics.jsonl: after setup, before the final evaluation and checkpoint); cell seconds
are the grid runner's (train + evaluations, from DONE). Both are summed over resumes. Mean ± std over
the cells of a group.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from cloob.analysis.runs import cell_seconds, finished_runs_by, last_train_record, train_seconds


def cell_times(cell: Path) -> dict | None:
    last = last_train_record(cell)
    if last is None or not (cell / "DONE").is_file():
        return None
    return {"train_s": train_seconds(cell), "steps": last["step"], "cell_s": cell_seconds(cell)}


def fmt(values: list[float], digits: int = 0) -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid")
    ap.add_argument("--group-by", default="label")
    args = ap.parse_args()
    groups = {group: [t for t in map(cell_times, cells) if t is not None]
              for group, cells in finished_runs_by(args.grid, args.group_by).items()}
    groups = {group: rows for group, rows in groups.items() if rows}
    print(f"| {args.group_by} | cells | steps | training s | s / step | cell s (train + evals) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for group, rows in groups.items():
        print(f"| {group} | {len(rows)} | {fmt([r['steps'] for r in rows])} | {fmt([r['train_s'] for r in rows])} | "
              f"{fmt([r['train_s'] / r['steps'] for r in rows], 2)} | {fmt([r['cell_s'] for r in rows])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
