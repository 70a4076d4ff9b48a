"""Benchmark 4: zero-shot evaluation throughput vs the bare encode-only rate, CIFAR-10 test.

Same model (cloob-rn-tiny; throughput does not depend on the weights), same images,
batch 256, 2 threads, 0 data workers (--workers to change). Encode-only = decode +
transform + encode_image, nothing else; zero-shot = `evaluate_zeroshot` with CLIP's 18 CIFAR templates (text classifier,
encoding, logits, metrics). Also reported, not a target: model-only = encode_image on the
same images already decoded and transformed in memory (the ceiling if data were free).
Alternating rounds; images/s.

    python bench/bench_zeroshot.py [--repeats 3] [--limit 10000] [--workers 0]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import THREADS, alternate, paired_ratio, summary, write  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=0, help="data loader workers of both paths")
    ap.add_argument("--out", default="zeroshot", help="results name: bench/results/<out>.json (the report reads 'zeroshot')")
    args = ap.parse_args()
    import torch
    from torch.utils.data import Subset

    from cloob.data import image_transform, make_loader, open_labelled
    from cloob.data.cifar10 import CIFAR_ZEROSHOT_TEMPLATES
    from cloob.evals.zeroshot import evaluate_zeroshot
    from cloob.models import create_model, get_tokenizer

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model, _, _ = create_model("cloob-rn-tiny")
    model.eval()
    tokenizer = get_tokenizer("cloob-rn-tiny")
    ds = open_labelled("cifar10-test:", image_transform=image_transform(model, train=False))
    classes = list(ds.classes)
    if args.limit < len(ds):
        ds = Subset(ds, range(args.limit))
    n = len(ds)

    @torch.no_grad()
    def encode_only():
        for images, _ in make_loader(ds, 256, shuffle=False, seed=0, drop_last=False, num_workers=args.workers):
            model.encode_image(images)

    def zeroshot():
        evaluate_zeroshot(model, tokenizer, ds, classes, CIFAR_ZEROSHOT_TEMPLATES, batch_size=256,
                          num_workers=args.workers)

    # For reference (not the target): the encoder alone on the same images already decoded and
    # transformed in memory, i.e. what the model could do if data loading were free.
    batches = [images for images, _ in make_loader(ds, 256, shuffle=False, seed=0, drop_last=False)]

    @torch.no_grad()
    def model_only():
        for images in batches:
            model.encode_image(images)

    encode_only()  # warm-up (first-call kernel set-up, file cache)

    def run(name, fn):
        t = time.perf_counter()
        fn()
        return round(n / (time.perf_counter() - t), 1)

    print(f"zero-shot vs encode-only, {n} CIFAR-10 test images, {args.repeats} rounds")
    res = alternate({"encode_only": encode_only, "zeroshot": zeroshot, "model_only": model_only}, args.repeats, run)
    write(args.out, {"images_per_s": {k: summary(v) for k, v in res.items()},
                       "ratio_zeroshot_over_encode": paired_ratio(res, "zeroshot", "encode_only"),
                       "ratio_zeroshot_over_model_only": paired_ratio(res, "zeroshot", "model_only"),
                       "setup": {"model": "cloob-rn-tiny", "images": n, "batch": 256, "templates": 18,
                                 "workers": args.workers}},
          "python bench/bench_zeroshot.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
