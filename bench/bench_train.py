"""Benchmark 1: training throughput, `cloob train` vs open_clip's own trainer.

Same registered config (../shared/bench/tiny-rn.json), same TSV of the same
CIFAR-10 JPEGs (captions from cloob's CIFAR-10 caption view), batch 256,
2 threads, 1 data worker, CLIP loss on both sides. Steady-state pairs/s: the
first max(5, 20 %) steps of each run are dropped. Runs alternate A B A B A B.

Two rows (issue 26): fp32 on both sides, and each side at its best CPU setting: cloob with bf16 autocast
and the pre-decoded uint8 cache of the same pairs (`cloob data cache`), plus torch.compile with
``--compile``; open_clip with ``--precision amp_bf16`` (plus ``--torchcompile`` with ``--compile``).
Also the FLOPs of one fp32 training step (torch.utils.flop_counter) against this machine's measured
fp32 matmul rate: the fraction of peak the step reaches.

    python bench/bench_train.py [--images 7680] [--repeats 3] [--rows fp32,best] [--compile] [--out train]
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


def run_openclip(workdir: Path, logs: Path, precision: str = "fp32", compile_: bool = False) -> list[float]:
    cmd = [python(), str(SHARED / "bench" / "run_openclip.py"), "--device", "cpu", "--dataset-type", "csv",
           "--train-data", "train.tsv", "--csv-img-key", "filepath", "--csv-caption-key", "title",
           "--csv-separator", "\t", "--model", "tiny-rn", "--batch-size", str(BATCH), "--workers", "1",
           "--epochs", "1", "--lr", "5e-4", "--wd", "0.2", "--warmup", "10", "--precision", precision,
           "--logs", str(logs), "--save-frequency", "0", "--log-every-n-steps", "1"] + (["--torchcompile"] if compile_ else [])
    out = subprocess.run(cmd, cwd=workdir, env=ENV, capture_output=True, text=True)
    text = out.stdout + out.stderr
    if out.returncode:
        raise RuntimeError(f"open_clip trainer failed:\n{text[-3000:]}")
    times = [float(t) for t in re.findall(r"Batch \(t\): ([0-9.]+)", text)]
    return [BATCH / t for t in times]


def run_cloob(workdir: Path, run_dir: Path, precision: str = "fp32", data: str | None = None,
              compile_: bool = False) -> list[float]:
    cmd = [python(), "-m", "cloob.cli", "train", "--model", "tiny-rn",
           "--model-config", str(SHARED / "bench" / "tiny-rn.json"), "--train-data", data or str(workdir / "train.tsv"),
           "--method", "clip", "--batch-size", str(BATCH), "--workers", "1", "--epochs", "1", "--lr", "5e-4",
           "--weight-decay", "0.2", "--warmup-steps", "10", "--precision", precision, "--threads", "2",
           "--log-every", "1", "--save-every", "1000000", "--eval-every", "1000000", "--run-dir", str(run_dir),
           "--no-progress"] + (["--torch-compile", "model"] if compile_ else [])
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"cloob train failed:\n{(out.stdout + out.stderr)[-3000:]}")
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["pairs_per_s"] for r in rows if r["kind"] == "train"]


def step_flops_and_peak(tsv: Path) -> dict:
    """FLOPs of one fp32 training step of tiny-rn at batch 256 on the benchmark's own captions (forward +
    backward, CLIP loss; cloob cuts the text at the batch's longest caption) and the fp32 matmul rate this
    machine sustains at 2 threads (a 2048³ matmul, best of 5)."""
    import time

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cloob.losses import clip_loss
    from cloob.models import create_model, get_tokenizer, register_model_config

    torch.set_num_threads(2)
    register_model_config(str(SHARED / "bench" / "tiny-rn.json"))
    model, _, _ = create_model("tiny-rn")
    images = torch.randn(BATCH, 3, 64, 64)
    captions = [ln.split("\t", 1)[1] for ln in tsv.read_text().splitlines()[1 : BATCH + 1]]
    tokens = get_tokenizer("tiny-rn")(captions)
    with FlopCounterMode(display=False) as counter:
        x, y = model(images, tokens)
        clip_loss(x, y, model.inv_tau).backward()
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return {"step_gflop": counter.get_total_flops() / 1e9, "matmul_peak_gflops": 2 * 2048**3 / best / 1e9}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=7680, help="30 steps of 256")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", default="fp32,best", help="fp32 (both sides fp32) and/or best (each side's best)")
    ap.add_argument("--compile", action="store_true", help="best row: torch.compile on both sides too")
    ap.add_argument("--workdir", default=str(ROOT / "data-cache" / "bench-train"))
    ap.add_argument("--out", default="train", help="results name: bench/results/<out>.json (the report reads 'train')")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    prepare(workdir, args.images)
    rows = [r for r in args.rows.split(",") if r]
    cache = workdir / "cache-64"
    if "best" in rows:
        from cloob.data.decoded import write_cache

        write_cache(str(workdir / "train.tsv"), cache, 64, progress=False)
    tmp = Path(tempfile.mkdtemp(prefix="cloob-bench-"))
    counter = iter(range(10**6))
    cases = {}
    if "fp32" in rows:
        cases.update({"open_clip": lambda d: run_openclip(workdir, d), "cloob": lambda d: run_cloob(workdir, d)})
    if "best" in rows:
        cases.update({
            "open_clip_best": lambda d: run_openclip(workdir, d, "amp_bf16", args.compile),
            "cloob_best": lambda d: run_cloob(workdir, d, "bf16", f"cache:{cache}", args.compile)})

    def run(name, fn):
        kept = steady(fn(tmp / f"{name}{next(counter)}"))
        # pairs/s over the steady steps: total pairs / total time
        return round(len(kept) / sum(1 / v for v in kept), 2)

    print(f"training throughput, tiny-rn, batch {BATCH}, {args.images} images, {args.repeats} rounds, rows {rows}")
    res = alternate(cases, args.repeats, run)
    payload = {"pairs_per_s": {k: summary(v) for k, v in res.items()},
               "setup": {"model": "tiny-rn (../shared/bench/tiny-rn.json)", "batch": BATCH, "images": args.images,
                         "workers": 1, "steady": "first max(5, 20%) steps dropped",
                         "rows": {"fp32": "fp32 on both sides, JPEGs decoded per step",
                                  "best": "cloob: bf16 autocast, pre-decoded uint8 cache (64 px)"
                                          + (", torch.compile model" if args.compile else "")
                                          + "; open_clip: --precision amp_bf16"
                                          + (", --torchcompile" if args.compile else "")
                                          + " (it has no pre-decoded cache)"}}}
    if "fp32" in rows:
        payload["ratio_cloob_over_open_clip"] = paired_ratio(res, "cloob", "open_clip")
    if "best" in rows:
        payload["ratio_best_cloob_over_open_clip"] = paired_ratio(res, "cloob_best", "open_clip_best")
    flops = step_flops_and_peak(workdir / "train.tsv")
    if "fp32" in rows:
        steps_per_s = payload["pairs_per_s"]["cloob"]["median"] / BATCH
        flops["fraction_of_peak_fp32"] = flops["step_gflop"] * steps_per_s / flops["matmul_peak_gflops"]
    payload["flops"] = flops
    print(f"  one step: {flops['step_gflop']:.1f} GFLOP; fp32 matmul rate {flops['matmul_peak_gflops']:.0f} GFLOP/s"
          + (f"; cloob fp32 reaches {flops['fraction_of_peak_fp32']:.1%} of it" if "fp32" in rows else ""))
    write(args.out, payload, "python bench/bench_train.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
