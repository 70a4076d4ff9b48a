"""Benchmark 2: CLOOB vs CLIP step time in `cloob train`, same model, batch 256 and 1,024.

cloob-rn-tiny on the built-in scenes data (generated once into data-cache/scenes-bench-<n>),
fp32, 2 threads, 0 data workers; steady-state seconds per step from metrics.jsonl.

    python bench/bench_step.py [--repeats 3] [--steps 30]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import ENV, alternate, paired_ratio, python, scenes_data, steady, summary, write  # noqa: E402


def run_train(method: str, batch: int, steps: int, data: Path, run_dir: Path) -> float:
    cmd = [python(), "-m", "cloob.cli", "train", "--model", "cloob-rn-tiny", "--train-data", f"scenes:{data}",
           "--method", method, "--batch-size", str(batch), "--max-steps", str(steps), "--threads", "2",
           "--log-every", "1", "--save-every", "1000000", "--eval-every", "1000000", "--run-dir", str(run_dir),
           "--no-progress"]
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError((out.stdout + out.stderr)[-3000:])
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    per_step = [batch / r["pairs_per_s"] for r in rows if r["kind"] == "train"]
    kept = steady(per_step)
    return round(sum(kept) / len(kept), 4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batches", default="256,1024")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    data = scenes_data(max(batches) * args.steps)
    tmp = Path(tempfile.mkdtemp(prefix="cloob-bench-"))
    counter = iter(range(10**6))
    payload = {"setup": {"model": "cloob-rn-tiny", "steps": args.steps, "workers": 0, "precision": "fp32"}}
    for batch in batches:
        print(f"step time at batch {batch}: clip vs cloob, {args.repeats} rounds")
        res = alternate({"clip": None, "cloob": None}, args.repeats,
                        lambda m, _: run_train(m, batch, args.steps, data, tmp / f"r{next(counter)}"))
        payload[f"batch_{batch}"] = {"seconds_per_step": {k: summary(v) for k, v in res.items()},
                                     "ratio_cloob_over_clip": paired_ratio(res, "cloob", "clip")}
    write("step", payload, "python bench/bench_step.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
