"""Shared pieces of the benchmarks (docs/bench.md protocol): machine record, A/B
alternation, steady-state statistics, results files."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED = Path(os.environ.get("CLOOB_SHARED", ROOT.parent / "shared"))
THREADS = 2
ENV = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))


def machine() -> dict:
    """What docs/bench.md asks to record beside every figure."""
    import open_clip
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if ln.startswith("Model name")), "?")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
            "torch": torch.__version__, "open_clip": open_clip.__version__, "python": platform.python_version(),
            "nproc": os.cpu_count(), "cpu": cpu, "threads": THREADS}


def steady(values: list[float], min_drop: int = 5, frac: float = 0.2) -> list[float]:
    """Drop start-up: the first max(min_drop, frac·n) values."""
    drop = max(min_drop, int(round(frac * len(values))))
    return values[drop:]


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "values": values}


def paired_ratio(results: dict[str, list], numerator: str, denominator: str) -> dict:
    """Summary of the per-round ratios numerator/denominator of an :func:`alternate` result, printed."""
    ratios = [a / b for a, b in zip(results[numerator], results[denominator])]
    s = summary(ratios)
    print(f"  {numerator} / {denominator}: median {s['median']:.3f} (min {s['min']:.3f}, max {s['max']:.3f})")
    return s


def alternate(cases: dict, repeats: int, run) -> dict[str, list]:
    """Run every case once per round, rounds repeated (A B A B ...): {case: [result per round]}."""
    out = {name: [] for name in cases}
    for r in range(repeats):
        for name, spec in cases.items():
            t0 = time.perf_counter()
            out[name].append(run(name, spec))
            print(f"  round {r + 1}/{repeats} {name}: {out[name][-1]} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def write(name: str, payload: dict, command: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "command": command, "machine": machine(), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def scenes_data(n: int) -> Path:
    """The built-in scenes (64 px, seed 0) with n training pairs, generated once into data-cache/scenes-bench-<n>."""
    from cloob.data.scenes import generate_scenes

    out = ROOT / "data-cache" / f"scenes-bench-{n}"
    generate_scenes(out, n=n, size=64, seed=0, n_eval=100)
    return out


def python() -> str:
    return sys.executable
