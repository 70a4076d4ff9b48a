"""``cloob data ...`` sub-commands: ``scenes`` (write the built-in dataset) and ``check`` (scan a source)."""
from __future__ import annotations

import argparse
import time

from cloob.data.policy import add_read_arguments, policy_from


def cmd_scenes(args: argparse.Namespace) -> int:
    from cloob.data.scenes import generate_scenes, read_manifest

    t0 = time.perf_counter()
    cached = read_manifest(args.out)
    m = generate_scenes(args.out, args.n, size=args.size, seed=args.seed, p=args.p, q=args.q,
                        n_eval=args.n_eval, workers=args.workers, progress=True)
    if cached is not None and cached == m:
        print(f"scenes cache at {args.out} is complete (same parameters); nothing regenerated "
              f"({time.perf_counter() - t0:.2f} s)")
    else:
        total = sum(m["splits"].values())
        print(f"wrote {total} images ({m['splits']}) to {args.out} in {m['seconds']:.2f} s: "
              f"{m['images_per_s']:.0f} images/s ({m['workers']} workers, {args.size} px)")
    print(f"preview: {args.out}/preview.png")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from cloob.data import (BadSampleReport, image_transform, make_loader, open_labelled,
                            open_pairs, open_retrieval, spec_kind)

    import logging

    logging.getLogger("cloob.data").setLevel(logging.ERROR)  # the report is printed below instead
    kind = spec_kind(args.spec) if args.kind == "auto" else args.kind
    tf = image_transform(args.size, train=False)
    report = BadSampleReport(args.spec)
    policy = policy_from(args)
    if kind == "pairs":
        ds = open_pairs(args.spec, image_transform=tf, tokenizer=None, strict=args.strict, check=False,
                        policy=policy)
    elif kind == "retrieval":
        ds = open_retrieval(args.spec, image_transform=tf, strict=args.strict, policy=policy)
    else:
        ds = open_labelled(args.spec, image_transform=tf, strict=args.strict, check=False, policy=policy)
    if getattr(ds, "report", None) is not None:  # rows or members refused while indexing
        report.merge(ds.report)
    loader = make_loader(ds, args.batch_size, shuffle=False, seed=0, num_workers=args.workers,
                         drop_last=False, report=report)
    for _ in loader:
        pass
    print(f"{kind} source {args.spec}: {report.n_ok} valid samples")
    print(report.format())
    return 1 if report.n_bad else 0


def cmd_flickr8k(args: argparse.Namespace) -> int:
    from cloob.data.flickr8k import SPLITS, extract_flickr8k

    folder = extract_flickr8k(args.out, args.tar)
    print(f"Flickr8k at {folder}: " + ", ".join(f"{s} {folder / (s + '.csv')}" for s in SPLITS))
    print(f"train with --train-data {folder / 'train.csv'}; choose settings on val.csv, report test.csv")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from cloob.data.decoded import write_cache

    t0 = time.perf_counter()
    m = write_cache(args.spec, args.out, args.size, shard_size=args.shard_size, policy=policy_from(args))
    bad = sum(m["bad"].values())
    print(f"cache of {m['source']} at {args.out}: {m['n']} pairs, {m['size']} px, {len(m['shards'])} shard(s), "
          f"{bad} bad sample(s) skipped ({time.perf_counter() - t0:.1f} s); train with --train-data cache:{args.out}")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("data", help="datasets: write the built-in scenes data, extract Flickr8k, check a source")
    sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    s = sub.add_parser("scenes", help="generate the built-in scenes dataset (cached; a second run is a no-op)")
    s.add_argument("--out", required=True, help="cache directory")
    s.add_argument("--n", type=int, default=50000, help="training pairs")
    s.add_argument("--size", type=int, default=64, help="image size in pixels")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--p", type=float, default=0.7, help="probability of each characteristic object")
    s.add_argument("--q", type=float, default=0.3, help="probability that a caption names the scene")
    s.add_argument("--n-eval", type=int, default=1000, help="images per evaluation split")
    s.add_argument("--workers", type=int, default=None, help="generator processes (default: CPUs, at most 4)")
    s.set_defaults(func=cmd_scenes)

    f = sub.add_parser("flickr8k", help="extract the shared Flickr8k archive (human captions) to a cache; print "
                                        "its CSV specs")
    f.add_argument("--out", default=None, help="cache directory (default $CLOOB_CACHE/flickr8k or ~/.cache/cloob/flickr8k)")
    f.add_argument("--tar", default=None, help="the archive (default <shared>/data/flickr8k/flickr8k.tar)")
    f.set_defaults(func=cmd_flickr8k)

    d = sub.add_parser("cache", help="pre-decode any pairs spec to resized uint8 shards (memory-mapped; resumable); "
                                     "read back as cache:DIR")
    d.add_argument("spec", help="pairs spec (CSV/TSV, wds:..., scenes:DIR, flickr8k:, ...)")
    d.add_argument("--out", required=True, help="cache directory")
    d.add_argument("--size", type=int, required=True, help="side of the square images in pixels")
    d.add_argument("--shard-size", type=int, default=10_000, help="pairs per shard (default 10,000)")
    add_read_arguments(d)
    d.set_defaults(func=cmd_cache)

    c = sub.add_parser("check", help="read every sample of a source; print valid count and bad-sample report "
                                     "(exit 0 all valid, 1 some skipped, 2 error)")
    c.add_argument("spec", help="data spec (see `python -c 'import cloob.data; help(cloob.data)'`)")
    c.add_argument("--strict", action="store_true", help="stop at the first bad sample")
    c.add_argument("--kind", choices=("auto", "pairs", "labelled", "retrieval"), default="auto")
    c.add_argument("--batch-size", type=int, default=64)
    c.add_argument("--workers", type=int, default=0)
    c.add_argument("--size", type=int, default=32, help="resize images to this size while checking")
    add_read_arguments(c)
    c.set_defaults(func=cmd_check)
