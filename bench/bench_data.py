"""Benchmark 5: data pipeline throughput (decoded + transformed + tokenised pairs/s) vs the
rate training consumes them.

Sources: the scenes cache (uint8 memmap), the CIFAR-10 caption view (JPEGs read from the
tar in place) and a TSV of JPEG files, each through `make_loader` with 0, 1 and 2 workers,
open_clip's training transform for cloob-rn-tiny. Consumption: steady-state pairs/s of the
model's training step alone (forward, CLIP loss, backward, AdamW) on tensors in memory,
batch 256, 2 threads.

    python bench/bench_data.py [--batches 20]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, THREADS, scenes_data, steady, write  # noqa: E402

BATCH = 256


def consumption(steps: int = 12) -> float:
    import torch

    from cloob.losses import clip_loss
    from cloob.models import create_model, get_tokenizer

    torch.manual_seed(0)
    model, _, _ = create_model("cloob-rn-tiny")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(BATCH, 3, 64, 64)
    tokens = get_tokenizer("cloob-rn-tiny")(["a large red circle left of a small blue star"] * BATCH)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        x, y = model(images, tokens)
        loss = clip_loss(x, y, model.inv_tau)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    kept = steady(times, min_drop=3)
    return BATCH * len(kept) / sum(kept)


def pipeline(spec: str, workers: int, batches: int) -> float:
    from cloob.data import image_transform, make_loader, open_pairs
    from cloob.models import create_model, get_tokenizer

    model, _, _ = create_model("cloob-rn-tiny")
    ds = open_pairs(spec, image_transform=image_transform(model, train=True),
                    tokenizer=get_tokenizer("cloob-rn-tiny"))
    loader = make_loader(ds, BATCH, shuffle=True, seed=0, num_workers=workers)
    t, n, seen = None, 0, 0
    for i, (images, _) in enumerate(loader):
        if i == 2:  # start the clock after worker start-up and the first batches
            t, n = time.perf_counter(), 0
        elif i > 2:
            n += len(images)
        seen += 1
        if seen >= batches + 3:
            break
    return n / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(THREADS)
    from bench_train import prepare
    scenes = scenes_data(BATCH * 30)
    tsv = prepare(ROOT / "data-cache" / "bench-train", 7680)
    sources = {"scenes (uint8 memmap)": f"scenes:{scenes}", "cifar10 captions (tar JPEG)": "cifar10-captions:",
               "TSV of JPEG files": str(tsv)}
    need = consumption()
    print(f"training consumes {need:.0f} pairs/s (cloob-rn-tiny, batch {BATCH}, step alone)")
    rows = []
    for name, spec in sources.items():
        for workers in (0, 1, 2):
            rate = pipeline(spec, workers, args.batches)
            rows.append({"source": name, "workers": workers, "pairs_per_s": round(rate, 1),
                         "ratio_to_consumption": round(rate / need, 2)})
            print(f"  {name:<28} workers {workers}: {rate:7.0f} pairs/s = {rate / need:.2f}x consumption", flush=True)
    write("data", {"consumption_pairs_per_s": round(need, 1), "rows": rows,
                   "setup": {"batch": BATCH, "transform": "open_clip train transform, 64 px", "timed_batches": args.batches}},
          "python bench/bench_data.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
