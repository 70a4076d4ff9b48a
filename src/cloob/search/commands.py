"""``cloob embed``, ``cloob index``, ``cloob search``, ``cloob serve``, ``cloob classify``.

Thin commands over :mod:`cloob.search`; heavy modules load inside them, so building the parser
stays cheap. Bad input is one line ``error: …`` on stderr and exit code 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

from cloob.data.policy import add_read_arguments, policy_from


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _threads(args) -> None:
    """--threads for torch and faiss (both default to every core; on a busy machine fewer can be faster)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
        try:
            import faiss

            faiss.omp_set_num_threads(args.threads)
        except ImportError:
            pass


def _limits(args):
    """The read policy of --max-image-bytes/--max-image-pixels (uploads and query images)."""
    from cloob.data.policy import ReadPolicy

    given = {k: getattr(args, k) for k in ("max_image_bytes", "max_image_pixels") if getattr(args, k, None) is not None}
    return ReadPolicy(**given)


def _query_image(args, policy):
    """The --image file as an RGB PIL image, read under the training data's byte and pixel limits."""
    from cloob.data.bad import BadSampleError, load_image

    if not args.image:
        return None
    try:
        return load_image(args.image, policy=policy)
    except BadSampleError as e:
        raise ValueError(f"--image {args.image}: {e.reason}: {e.detail}") from None


# ------------------------------------------------------------------ commands
def cmd_embed(args) -> int:
    from cloob.search.embed import embed
    from cloob.search.encoder import describe, load_encoder
    from cloob.search.sources import open_rows

    _threads(args)
    enc = load_encoder(args.checkpoint, args.model, device=args.device, resize=args.resize, warn=_log)
    rows = open_rows(args.data, args.kind, transform=enc.transform, policy=policy_from(args), strict=args.strict)
    _log(f"encoder: {describe(enc.info)}")
    m = embed(enc, rows, args.out, batch_size=args.batch_size, chunk_size=args.chunk_size, num_workers=args.workers,
              dtype=args.dtype, resize=args.resize, progress=not args.no_progress, log=_log)
    rate = f", {m['rows_per_s']} rows/s" if m.get("rows_per_s") else ""
    print(f"{m['rows']} rows of {m['spec']} in {args.out} ({m['embed_seconds']:.1f} s embedding{rate}); "
          f"next: cloob index {args.out}")
    return 0


def cmd_index(args) -> int:
    from cloob.search.index import build_index
    from cloob.search.store import Store

    build_index(Store(args.dir), args.backend, log=print)
    return 0


def cmd_search(args) -> int:
    import time

    from cloob.search.encoder import recorded_encoder
    from cloob.search.index import open_index
    from cloob.search.query import format_hits, query_vector, ranked
    from cloob.search.store import Store

    if args.text is None and args.image is None:
        raise ValueError("give --text, --image or both")
    _threads(args)
    store = Store(args.dir)
    policy = _limits(args)
    image = _query_image(args, policy)
    enc = recorded_encoder(store.manifest, args.checkpoint, device=args.device, warn=_log)
    index = open_index(store, args.over, args.backend)
    t0 = time.perf_counter()
    store.rows  # noqa: B018 - read the metadata now, so that the search time below is the search's
    t1 = time.perf_counter()
    q = query_vector(enc, args.text, image)
    t2 = time.perf_counter()
    hits = ranked(store, index, q, args.k, distinct=not args.all_rows)
    t3 = time.perf_counter()
    print(format_hits(hits))
    _log(f"{len(hits)} hits of {store.n} rows ({index.backend}); metadata read in {1000 * (t1 - t0):.1f} ms, "
         f"query encoded in {1000 * (t2 - t1):.1f} ms, searched in {1000 * (t3 - t2):.1f} ms")
    if args.html:
        from cloob.search.page import data_uri, describe_query, results_html

        html = results_html(store, hits, query=describe_query(args.text, Path(args.image).name if args.image else None),
                            thumb=lambda h: data_uri(store, h.row))
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        Path(args.html).write_text(html, encoding="utf-8")
        print(f"wrote {args.html}")
    return 0


def cmd_serve(args) -> int:
    from cloob.search.encoder import describe, recorded_encoder
    from cloob.search.index import open_index
    from cloob.search.serve import SearchApp, make_server
    from cloob.search.store import Store

    _threads(args)
    store = Store(args.dir)
    enc = recorded_encoder(store.manifest, args.checkpoint, device=args.device, warn=_log)
    app = SearchApp(store, open_index(store, args.over, args.backend), enc, _limits(args), k=args.k)
    server = make_server(app, args.host, args.port)
    host, port = server.server_address[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        _log(f"warning: listening on {args.host}: anyone who can reach this machine can search the collection")
    print(f"serving {store.n} rows of {store.manifest['spec']} ({describe(enc.info)}) at http://{host}:{port}/ "
          "(Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_classify(args) -> int:
    import contextlib

    from cloob.evals.templates import load_templates
    from cloob.search.classify import classify, list_images, parse_classes, write_csv
    from cloob.search.encoder import describe, load_encoder

    _threads(args)
    classes = parse_classes(args.classes, args.classes_file)
    templates = load_templates(args.templates)
    paths = list_images(args.images)
    enc = load_encoder(args.checkpoint, args.model, device=args.device, resize=args.resize, warn=_log)
    _log(f"encoder: {describe(enc.info)}; {len(paths)} images, {len(classes)} classes, {len(templates)} templates")
    rows, report = classify(enc, paths, classes, templates, batch_size=args.batch_size, num_workers=args.workers,
                            policy=_limits(args), progress=not args.no_progress)
    with contextlib.ExitStack() as stack:
        f = sys.stdout if args.out in (None, "-") else stack.enter_context(
            open(args.out, "w", newline="", encoding="utf-8"))
        write_csv(rows, paths, Path(args.images), f)
    if args.out not in (None, "-"):
        _log(f"wrote {args.out}: {report.n_ok} images labelled, {report.n_bad} skipped")
    if report.n_bad:
        _log(report.format())
    return 0


# ------------------------------------------------------------------ parser
def _checkpoint_args(p, required: bool = True) -> None:
    p.add_argument("--checkpoint", required=required, default=None,
                   help="cloob run or checkpoint directory, or an open_clip weights file (with --model)"
                   + ("" if required else "; default: the one the embeddings were made with"))
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of torch and faiss (default: all cores)")


def _limit_args(p) -> None:
    from cloob.data.policy import DEFAULT_POLICY

    g = p.add_argument_group("limits on query images and uploads (those of training data)")
    g.add_argument("--max-image-bytes", type=int, default=None,
                   help=f"refuse larger image files (default {DEFAULT_POLICY.max_image_bytes})")
    g.add_argument("--max-image-pixels", type=int, default=None,
                   help=f"refuse images with more pixels, from the header (default {DEFAULT_POLICY.max_image_pixels})")


def _backend_args(p) -> None:
    p.add_argument("--over", choices=("images", "texts"), default="images",
                   help="search the image embeddings (default) or the caption embeddings")
    p.add_argument("--backend", choices=("faiss", "torch"), default=None,
                   help="default: the index `cloob index` built, else exact torch search")


def add_commands(subparsers) -> None:
    e = subparsers.add_parser("embed", help="embed a data source: image and caption embeddings (.npy) + metadata CSV; "
                                            "resumable")
    _checkpoint_args(e)
    e.add_argument("--model", default=None, help="open_clip architecture of a weights file (e.g. ViT-B-32)")
    e.add_argument("--data", required=True, help="data spec: CSV/TSV, wds:SHARDS, image folder, .tar, scenes:DIR, ...")
    e.add_argument("--out", required=True, help="output directory (rerun the same command to resume)")
    e.add_argument("--kind", choices=("auto", "pairs", "labelled", "retrieval"), default="auto",
                   help="read the spec as pairs, labelled images or a retrieval set (default: its natural kind)")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--chunk-size", type=int, default=4096, help="rows per resumable chunk (webdataset: one per shard)")
    e.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    e.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="stored embedding precision")
    e.add_argument("--resize", choices=("bicubic", "bilinear"), default="bicubic")
    e.add_argument("--strict", action="store_true", help="stop at the first bad sample instead of skipping it")
    e.add_argument("--no-progress", action="store_true")
    add_read_arguments(e)
    e.set_defaults(func=cmd_embed)

    i = subparsers.add_parser("index", help="build the nearest-neighbour index of an embedding directory")
    i.add_argument("dir", help="directory written by cloob embed")
    i.add_argument("--backend", choices=("auto", "faiss", "torch"), default="auto",
                   help="faiss (exact IndexFlatIP) when installed, else exact torch matrix products")
    i.set_defaults(func=cmd_index)

    s = subparsers.add_parser("search", help="rank the rows of an embedding directory by a text and/or image query")
    s.add_argument("dir", help="directory written by cloob embed")
    s.add_argument("--text", default=None, help="text query")
    s.add_argument("--image", default=None, help="image query (a file)")
    s.add_argument("-k", "--k", type=int, default=20, help="hits to show")
    s.add_argument("--html", default=None, metavar="OUT.html", help="also write a self-contained page of thumbnails")
    s.add_argument("--all-rows", action="store_true", help="rank rows, not distinct images (several captions "
                                                           "of one image each count)")
    _backend_args(s)
    _checkpoint_args(s, required=False)
    _limit_args(s)
    s.set_defaults(func=cmd_search)

    v = subparsers.add_parser("serve", help="a local search page over an embedding directory")
    v.add_argument("dir", help="directory written by cloob embed")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    v.add_argument("-k", "--k", type=int, default=24, help="hits per query unless the page asks for another number")
    _backend_args(v)
    _checkpoint_args(v, required=False)
    _limit_args(v)
    v.set_defaults(func=cmd_serve)

    c = subparsers.add_parser("classify", help="zero-shot labels of every image of a folder (CSV: path, class, score)")
    _checkpoint_args(c)
    c.add_argument("--model", default=None, help="open_clip architecture of a weights file")
    c.add_argument("--images", required=True, help="folder of images (searched recursively)")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--classes", default=None, help="comma-separated class names: a,b,c")
    g.add_argument("--classes-file", default=None, help="file with one class name per line")
    c.add_argument("--templates", default="generic",
                   help="template set (generic, imagenet, cifar, scenes, scenes-object) or a file, one per line")
    c.add_argument("--out", default=None, help="CSV file (default: standard output)")
    c.add_argument("--batch-size", type=int, default=256)
    c.add_argument("--workers", type=int, default=0)
    c.add_argument("--resize", choices=("bicubic", "bilinear"), default="bicubic")
    c.add_argument("--no-progress", action="store_true")
    _limit_args(c)
    c.set_defaults(func=cmd_classify)

