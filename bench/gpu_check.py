"""The GPU check (issue 26): CLIP and CLOOB at the paper's architecture on one (and two) CUDA devices.

    python bench/gpu_check.py [--steps 200] [--batch 256] [--model RN50] [--out bench/results/gpu.json]

Without a CUDA device it prints one line and exits 0. With one (about 3 minutes on an H200):
- trains CLIP and CLOOB for ``--steps`` steps each with ``--model`` at ``--batch`` in bf16 autocast on
  synthetic scenes (generated here, 64 px, read at the model's input size);
- prints each method's steady-state pairs/s, its peak GPU memory, and CLOOB's step time over CLIP's;
- times CLIP's step on one batch kept on the GPU (no loader, no logging): the model's own ceiling;
- prints the bf16-vs-fp32 loss difference at step 1 (same weights, same batch);
- with torchrun and more than one GPU, runs both methods again with 2 processes (DDP, nccl).
It writes the figures to ``--out`` (bench/report.py puts them in docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _train(method: str, scenes: Path, run_dir: Path, args, precision: str = "bf16", steps: int | None = None) -> dict:
    """One in-process `cloob train` of ``method``; returns pairs/s (steady state), peak memory, loss at step 1."""
    import torch

    from cloob.train.config import build_config
    from cloob.train.loop import train

    torch.cuda.reset_peak_memory_stats()
    cfg = build_config(None, {"train_data": f"scenes:{scenes}", "model": args.model, "method": method,
                              "batch_size": args.batch, "max_steps": steps or args.steps, "precision": precision,
                              "run_dir": str(run_dir), "progress": False, "log_every": 1, "save_every": 100000,
                              "eval_every": 100000, "workers": args.workers, "device": "cuda", "seed": 0,
                              "clip_warm_start": 0.0, "warmup_steps": 10})
    train(cfg, log=lambda *_: None)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    rates = [r["pairs_per_s"] for r in rows]
    steady = rates[max(5, len(rates) // 5):] or rates
    return {"pairs_per_s": sorted(steady)[len(steady) // 2], "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            "loss_step1": rows[0]["loss"]}


def _resident_batch_rate(args, steps: int = 30) -> float:
    """CLIP's training step on one synthetic batch kept on the GPU (no loader, no logging, no checkpointing): the
    rate the model and optimiser alone allow, so the trained rates above can be read as loader- or model-bound."""
    import torch

    from cloob.losses import clip_loss
    from cloob.models import create_model

    torch.manual_seed(0)
    model, _, _ = create_model(args.model, device="cuda")
    model.train()
    images = torch.randn(args.batch, 3, model.image_size, model.image_size, device="cuda")
    tokens = torch.randint(1, 1000, (args.batch, model.context_length), device="cuda")
    tokens[:, 20] = tokens.max() + 1  # an end-of-text position for the argmax pooling
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            x, y = model.encode_image(images), model.encode_text(tokens)
        loss = clip_loss(x.float(), y.float(), model.inv_tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return args.batch * steps / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--model", default="RN50")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu.json"))
    parser.add_argument("--no-ddp", action="store_true", help="skip the 2-process run")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: skipped, no CUDA device (torch.cuda.is_available() is False)")
        return 0
    from cloob.data.scenes import generate_scenes

    work = Path(tempfile.mkdtemp(prefix="cloob-gpu-check-"))
    try:
        scenes = work / "scenes"
        generate_scenes(scenes, n=max(args.batch * 20, 5000), size=64, n_eval=64, workers=min(8, os.cpu_count() or 1))
        device = torch.cuda.get_device_name(0)
        print(f"gpu_check: {device}, torch {torch.__version__}, {args.model}, batch {args.batch}, bf16, "
              f"{args.steps} steps per method")
        # CLOOB_COMMIT first: a copy of the working tree sent to a GPU machine can carry stale git metadata
        commit = os.environ.get("CLOOB_COMMIT") or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip() or "unknown"
        result = {"device": device, "torch": torch.__version__, "commit": commit, "model": args.model, "batch": args.batch,
                  "steps": args.steps, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "one_gpu": {}}
        for method in ("clip", "cloob"):
            r = _train(method, scenes, work / method, args)
            result["one_gpu"][method] = r
            print(f"  {method}: {r['pairs_per_s']:.0f} pairs/s, peak memory {r['peak_memory_gib']:.2f} GiB")
        resident = _resident_batch_rate(args)
        result["resident_batch_clip_pairs_per_s"] = resident
        print(f"  clip, one resident batch (no loader, no logging): {resident:.0f} pairs/s")
        ratio = result["one_gpu"]["clip"]["pairs_per_s"] / result["one_gpu"]["cloob"]["pairs_per_s"]
        result["cloob_over_clip_step_time"] = ratio
        print(f"  CLOOB step time / CLIP step time: {ratio:.3f}")
        fp32 = _train("cloob", scenes, work / "cloob-fp32", args, precision="fp32", steps=1)
        bf16 = result["one_gpu"]["cloob"]["loss_step1"]
        result["bf16_minus_fp32_loss_step1"] = bf16 - fp32["loss_step1"]
        print(f"  loss at step 1: bf16 {bf16:.6f}, fp32 {fp32['loss_step1']:.6f}, "
              f"difference {bf16 - fp32['loss_step1']:+.2e}")
        if torch.cuda.device_count() > 1 and shutil.which("torchrun") and not args.no_ddp:
            result["two_gpus"] = {}
            for method in ("clip", "cloob"):
                cmd = ["torchrun", "--nproc_per_node", "2", "-m", "cloob.cli", "train",
                       "--train-data", f"scenes:{scenes}", "--model", args.model, "--method", method,
                       "--batch-size", str(args.batch), "--max-steps", str(args.steps), "--precision", "bf16",
                       "--run-dir", str(work / f"ddp-{method}"), "--no-progress", "--log-every", "1",
                       "--save-every", "100000", "--eval-every", "100000", "--clip-warm-start", "0",
                       "--device", "cuda", "--workers", str(args.workers)]
                subprocess.run(cmd, check=True, cwd=ROOT)
                rows = [json.loads(x) for x in (work / f"ddp-{method}" / "metrics.jsonl").read_text().splitlines()
                        if '"train"' in x]
                rates = [r["pairs_per_s"] for r in rows][max(5, len(rows) // 5):]
                result["two_gpus"][method] = {"pairs_per_s": sorted(rates)[len(rates) // 2]}
                print(f"  2 processes, {method}: {result['two_gpus'][method]['pairs_per_s']:.0f} pairs/s")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
