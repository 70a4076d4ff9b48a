"""Benchmark: what each precision costs in accuracy against fp32 (issue 26), on this machine.

For CLIP, CLOOB and SigLIP on cloob-vit-tiny and cloob-rn-tiny, one first step from the same weights on the
same batch (64 scenes pairs): the loss and the gradient in each precision that runs here (bf16 autocast,
pure bf16) against fp32. The towers run in the precision; the losses' logsumexp and the Hopfield softmax
always run in fp32 (cloob.train.precision). fp16 needs CUDA (bench/gpu_check.py).

    python bench/bench_precision.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

MODELS = ("cloob-vit-tiny", "cloob-rn-tiny")
METHODS = ("clip", "cloob", "siglip")
BATCH = 64


def first_step(scenes: Path, work: Path, model: str, method: str, precision: str):
    import torch

    from cloob.data import make_loader
    from cloob.train.config import build_config
    from cloob.train.run import setup
    from cloob.train.step import train_step

    torch.manual_seed(0)
    cfg = build_config(None, {"train_data": f"scenes:{scenes}", "model": model, "method": method,
                              "batch_size": BATCH, "max_steps": 1, "precision": precision, "progress": False,
                              "run_dir": str(work / f"{model}-{method}-{precision}"), "clip_warm_start": 0.0,
                              "threads": 2})
    run = setup(cfg, log=lambda *_: None)
    batch = next(iter(make_loader(run.dataset, BATCH, shuffle=False, seed=0)))
    run.optimizer.step = lambda *a, **k: None  # keep the first step's gradients
    run.optimizer.zero_grad = lambda *a, **k: None
    out = train_step(run, [batch])
    grads = torch.cat([p.grad.float().flatten() for p in run.model.parameters() if p.grad is not None])
    return out["loss"], grads


def main() -> int:
    from cloob.data.scenes import generate_scenes

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scenes = work / "scenes"
        generate_scenes(scenes, n=BATCH, size=64, n_eval=16, workers=1)
        for model in MODELS:
            for method in METHODS:
                ref_loss, ref_grad = first_step(scenes, work, model, method, "fp32")
                for precision in ("bf16", "pure_bf16"):
                    loss, grad = first_step(scenes, work, model, method, precision)
                    row = {"model": model, "method": method, "precision": precision, "loss_fp32": ref_loss,
                           "loss": loss, "loss_rel_diff": abs(loss - ref_loss) / abs(ref_loss),
                           "grad_rel_diff": float((grad - ref_grad).norm() / ref_grad.norm())}
                    rows.append(row)
                    print(f"{model} {method} {precision}: loss {loss:.6f} vs {ref_loss:.6f} "
                          f"(rel {row['loss_rel_diff']:.1e}), gradient rel {row['grad_rel_diff']:.1e}")
    write("precision", {"batch": BATCH, "rows": rows}, "python bench/bench_precision.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
