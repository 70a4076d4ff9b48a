"""Training-step time of cloob's small model configs at batch 256 (in-memory tensors, no data loading).

Forward, method loss, backward and AdamW step; 2 threads; the first 3 of 10 steps dropped.

    python bench/bench_models.py [--batch 256] [--steps 10]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    import torch

    from cloob.losses import method_loss
    from cloob.models import SMALL_MODELS, create_model, get_tokenizer

    torch.set_num_threads(2)
    for name in SMALL_MODELS:
        for method in ("clip", "cloob"):
            torch.manual_seed(0)
            model, _, _ = create_model(name, inv_tau=30.0, hopfield_beta=14.3 if method == "cloob" else None)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            images = torch.randn(args.batch, 3, model.image_size, model.image_size)
            tokens = get_tokenizer(name)(["a large red circle left of a small blue star, in the harbor"] * args.batch)
            times = []
            for _ in range(args.steps):
                t = time.perf_counter()
                x, y = model(images, tokens)
                loss = method_loss(method, x, y, model.inv_tau, model.hopfield_beta)
                opt.zero_grad()
                loss.backward()
                opt.step()
                times.append(time.perf_counter() - t)
            kept = times[3:]
            print(f"{name:<16} {method:<6} {statistics.mean(kept):.3f} s/step (median {statistics.median(kept):.3f}, "
                  f"min {min(kept):.3f}, max {max(kept):.3f}) at batch {args.batch}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
