"""Benchmark 1: training throughput, `cloob train` vs open_clip's own trainer.

Same registered config (../shared/bench/tiny-rn.json), same TSV of the same
CIFAR-10 JPEGs (captions from cloob's CIFAR-10 caption view), batch 256, fp32,
2 threads, 1 data worker, CLIP loss on both sides. Steady-state pairs/s: the
first max(5, 20 %) steps of each run are dropped. Runs alternate A B A B A B.

    python bench/bench_train.py [--images 7680] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import ENV, ROOT, SHARED, alternate, paired_ratio, python, steady, summary, write  # noqa: E402

BATCH = 256


def prepare(workdir: Path, n: int) -> Path:
    """n CIFAR-10 train JPEGs (a seeded sample, bytes as stored) and train.tsv with captions."""
    from cloob.data.cifar10 import CLASSES, caption

    tsv = workdir / "train.tsv"
    if tsv.is_file() and len(tsv.read_text().splitlines()) == n + 1:
        return tsv
    (workdir / "images").mkdir(parents=True, exist_ok=True)
    with tarfile.open(SHARED / "data" / "cifar10" / "train.tar") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        chosen = random.Random(0).sample(members, n)
        rows = ["filepath\ttitle"]
        for i, m in enumerate(chosen):
            label = CLASSES.index(Path(m.name).parent.name)
            rel = f"images/{i:05d}.jpg"
            (workdir / rel).write_bytes(tar.extractfile(m).read())
            rows.append(f"{rel}\t{caption(label, 0, i)}")
    tsv.write_text("\n".join(rows) + "\n")
    return tsv


def run_openclip(workdir: Path, logs: Path) -> list[float]:
    cmd = [python(), str(SHARED / "bench" / "run_openclip.py"), "--device", "cpu", "--dataset-type", "csv",
           "--train-data", "train.tsv", "--csv-img-key", "filepath", "--csv-caption-key", "title",
           "--csv-separator", "\t", "--model", "tiny-rn", "--batch-size", str(BATCH), "--workers", "1",
           "--epochs", "1", "--lr", "5e-4", "--wd", "0.2", "--warmup", "10", "--precision", "fp32",
           "--logs", str(logs), "--save-frequency", "0", "--log-every-n-steps", "1"]
    out = subprocess.run(cmd, cwd=workdir, env=ENV, capture_output=True, text=True)
    text = out.stdout + out.stderr
    if out.returncode:
        raise RuntimeError(f"open_clip trainer failed:\n{text[-3000:]}")
    times = [float(t) for t in re.findall(r"Batch \(t\): ([0-9.]+)", text)]
    return [BATCH / t for t in times]


def run_cloob(workdir: Path, run_dir: Path) -> list[float]:
    cmd = [python(), "-m", "cloob.cli", "train", "--model", "tiny-rn",
           "--model-config", str(SHARED / "bench" / "tiny-rn.json"), "--train-data", str(workdir / "train.tsv"),
           "--method", "clip", "--batch-size", str(BATCH), "--workers", "1", "--epochs", "1", "--lr", "5e-4",
           "--weight-decay", "0.2", "--warmup-steps", "10", "--precision", "fp32", "--threads", "2",
           "--log-every", "1", "--save-every", "1000000", "--eval-every", "1000000", "--run-dir", str(run_dir),
           "--no-progress"]
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"cloob train failed:\n{(out.stdout + out.stderr)[-3000:]}")
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["pairs_per_s"] for r in rows if r["kind"] == "train"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=7680, help="30 steps of 256")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=str(ROOT / "data-cache" / "bench-train"))
    args = ap.parse_args()
    workdir = Path(args.workdir)
    prepare(workdir, args.images)
    tmp = Path(tempfile.mkdtemp(prefix="cloob-bench-"))
    counter = iter(range(10**6))

    def run(name, _):
        i = next(counter)
        per_step = run_openclip(workdir, tmp / f"oc{i}") if name == "open_clip" else run_cloob(workdir, tmp / f"cl{i}")
        kept = steady(per_step)
        # pairs/s over the steady steps: total pairs / total time
        return round(len(kept) / sum(1 / v for v in kept), 2)

    print(f"training throughput, tiny-rn, batch {BATCH}, {args.images} images, {args.repeats} rounds")
    res = alternate({"open_clip": None, "cloob": None}, args.repeats, run)
    payload = {"pairs_per_s": {k: summary(v) for k, v in res.items()},
               "ratio_cloob_over_open_clip": paired_ratio(res, "cloob", "open_clip"),
               "setup": {"model": "tiny-rn (../shared/bench/tiny-rn.json)", "batch": BATCH, "images": args.images,
                         "workers": 1, "precision": "fp32", "steady": "first max(5, 20%) steps dropped"}}
    write("train", payload, "python bench/bench_train.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
