"""Pretrained towers: training-step time of each tower setting, and the speed-up of the feature cache.

`steps`: `cloob train` on the CIFAR-10 caption view, batch 128, 1 thread, no data workers; the
seconds per optimiser step (data loading included) of steps after start-up (the first
max(5, 20 %) dropped), one run per setting. These set the step budgets of the equal-wall-time
grids in experiments/towers-*.yaml, which run two cells at a time: measure with `--jobs 2` so
that each step pays for the other core's run as it does there (on a quiet box a lone run is
faster; a run beside a third process is much slower, which is how an earlier, single-job
measurement came out 1.5-3.4x slower than the grids' own clocks).

`cache`: the same locked model with `feature_cache` on and off, alternated (A B A B A B), on a
scenes cache of 2,560 pairs (20 steps of 128 per epoch) for 3 epochs: seconds per step in the
first epoch and in the later ones, and the median ratio off/on of the later epochs.

1 thread (not docs/bench.md's 2): the box is shared and every run of the grids uses 1 thread.

    python bench/bench_towers.py steps [--only NAME] [--jobs 2]
    python bench/bench_towers.py cache [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, alternate, python, scenes_data, steady, summary, write  # noqa: E402

ENV1 = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
MODELS = ROOT / "experiments" / "models"


def model_args(model: str) -> list[str]:
    """--model, plus --model-config for the resolution variants in experiments/models/."""
    extra = MODELS / f"{model}.json"
    return ["--model", model] + (["--model-config", str(extra)] if extra.is_file() else [])


# name -> (model, extra cloob train flags, steps)
SETTINGS = {
    "scratch-clip": ("cloob-rn-tiny", [], 30),
    "cbow-clip": ("cloob-cbow-rn-tiny", [], 30),
    "lit-clip (no cache)": ("cloob-minilm-rn-tiny", ["--lock-text"], 30),
    "lit-clip": ("cloob-minilm-rn-tiny", ["--lock-text", "--feature-cache"], 30),
    "lit-cloob": ("cloob-minilm-rn-tiny", ["--lock-text", "--feature-cache", "--method", "cloob"], 30),
    "lit2-clip-32": ("cloob-minilm-efficientnet-lite0-32", ["--lock-text", "--feature-cache"], 30),
    "lit2-clip-64": ("cloob-minilm-efficientnet-lite0-64", ["--lock-text", "--feature-cache"], 30),
    "lit2-cloob-64": ("cloob-minilm-efficientnet-lite0-64", ["--lock-text", "--feature-cache", "--method", "cloob"], 30),
    "lit2-clip-128": ("cloob-minilm-efficientnet-lite0-128", ["--lock-text", "--feature-cache"], 25),
    "lit2-clip-224": ("cloob-minilm-efficientnet-lite0", ["--lock-text", "--feature-cache"], 12),  # ~25 s/step
}


def train_times(model: str, flags: list[str], steps: int, data: str, workdir: Path) -> list[float]:
    """Seconds of each optimiser step of one `cloob train` run (from metrics.jsonl, log_every 1)."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    cmd = [python(), "-m", "cloob.cli", "train", "--train-data", data, *model_args(model), *flags,
           "--batch-size", "128", "--max-steps", str(steps), "--warmup-steps", "0", "--log-every", "1",
           "--eval-every", str(10 * steps), "--save-every", str(10 * steps), "--val-fraction", "0",
           "--threads", "1", "--no-progress", "--run-dir", str(run_dir), "--keep-last", "1"]
    out = subprocess.run(cmd, env=ENV1, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    times = [json.loads(line)["time"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(line).get("kind") == "train"]
    return [b - a for a, b in zip([0.0] + times[:-1], times)]


def bench_steps(only: str | None, jobs: int) -> None:
    names = [name for name in SETTINGS if not only or only == name]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        def one(name: str) -> None:
            model, flags, steps = SETTINGS[name]
            kept = steady(train_times(model, flags, steps, "cifar10-captions:", Path(tmp)))
            results[name] = {"model": model, "flags": flags, **summary(kept)}
            print(f"{name:<22} {statistics.median(kept):6.2f} s/step (min {min(kept):.2f}, max {max(kept):.2f}, "
                  f"{len(kept)} steps)", flush=True)

        # Threads only wait on the `cloob train` subprocesses: `jobs` runs share the cores.
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, names))
    command = "python bench/bench_towers.py steps" + (f" --only '{only}'" if only else "") + f" --jobs {jobs}"
    write("towers-steps" + (f"-{only}" if only else ""), {"batch": 128, "threads": 1, "jobs": jobs,
                                                          "data": "cifar10-captions:",
                                                          "results": {n: results[n] for n in names}}, command)


CACHE_CASES = {
    "locked text (lit-clip)": ("cloob-minilm-rn-tiny", ["--lock-text"]),
    "locked text and image (EfficientNet 64 px)": ("cloob-minilm-efficientnet-lite0-64", ["--lock-text", "--lock-image"]),
}


def bench_cache(repeats: int) -> None:
    data = f"scenes:{scenes_data(2560)}"
    per_epoch = 2560 // 128
    payload = {}
    with tempfile.TemporaryDirectory() as tmp:
        for title, (model, flags) in CACHE_CASES.items():
            print(title, flush=True)
            cases = {"cache off": flags, "cache on": flags + ["--feature-cache"]}

            def run(name, case_flags):
                times = train_times(model, case_flags, 3 * per_epoch, data, Path(tmp))
                first = statistics.median(times[2:per_epoch])  # the first two steps carry start-up
                later = statistics.median(times[per_epoch:])
                return round(first, 3), round(later, 3)

            rounds = alternate(cases, repeats, run)
            ratios = [off[1] / on[1] for off, on in zip(rounds["cache off"], rounds["cache on"])]
            payload[title] = {"model": model, "flags": flags, "rounds": rounds,
                              "later_epochs_speedup": summary(ratios)}
            print(f"  epochs 2-3, off/on: median {statistics.median(ratios):.2f}x "
                  f"(min {min(ratios):.2f}, max {max(ratios):.2f})", flush=True)
    write("towers-cache", {"batch": 128, "threads": 1, "data": data, "epochs": 3, "steps_per_epoch": per_epoch,
                           "results": payload}, f"python bench/bench_towers.py cache --repeats {repeats}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("steps", "cache"))
    ap.add_argument("--only", default=None, help="steps: one setting by name")
    ap.add_argument("--jobs", type=int, default=2, help="steps: settings run this many at a time (as the grids do)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.what == "steps":
        bench_steps(args.only, args.jobs)
    else:
        bench_cache(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
