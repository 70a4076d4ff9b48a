"""How often does searching a row's own caption put that row's image first?

    python scripts/own_image_rate.py EMBEDDING_DIR [--sizes 10,100,1000] [--backend faiss|torch]

Runs the search path of `cloob search` (the recorded encoder encodes each caption string, the
index ranks the images) for every caption of an embedding directory made by `cloob embed` from
pairs or a retrieval set, and prints the share whose top hit is the caption's own image. With
--sizes, also over the first m images only (a smaller collection is an easier search), using
exact torch search over those rows. For a retrieval set this share is the evaluation's
text→image R@1 (`cloob eval retrieval`).
"""
from __future__ import annotations

import argparse
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--sizes", default="", help="comma-separated collection sizes (first m images) to report too")
    ap.add_argument("--backend", default=None, choices=("faiss", "torch"))
    args = ap.parse_args()
    import numpy as np

    from cloob.search.encoder import describe, recorded_encoder
    from cloob.search.index import TorchIndex, open_index
    from cloob.search.query import ranked
    from cloob.search.store import Store

    store = Store(args.dir)
    if not store.has_text:
        raise SystemExit(f"{args.dir} has no captions ({store.manifest['kind']} source)")
    enc = recorded_encoder(store.manifest)
    index = open_index(store, "images", args.backend)
    rows = store.rows
    ident = [(r["source"], r["key"]) for r in rows]
    t0 = time.perf_counter()
    queries = enc.encode_texts([r["caption"] for r in rows])
    first = 0
    for q, own in zip(queries, ident):
        top = ranked(store, index, q, 1)[0]
        first += (top.source, top.key) == own
    seconds = time.perf_counter() - t0
    print(f"encoder: {describe(store.manifest['encoder'])}")
    print(f"collection: {store.manifest['spec']}: {store.manifest['images']} images, {store.n} captions")
    print(f"own image first: {first}/{store.n} = {first / store.n:.3f} ({index.backend}, {seconds:.1f} s)")
    images = list(dict.fromkeys(ident))  # in row order
    vectors = store.vectors("images")
    for m in [int(s) for s in args.sizes.split(",") if s.strip()]:
        if m >= len(images):
            continue
        keep = set(images[:m])
        sub = np.array([i for i, x in enumerate(ident) if x in keep])
        top = TorchIndex(vectors[sub]).search(queries[sub], 1)[1][:, 0]
        hits = sum(ident[sub[t]] == ident[r] for t, r in zip(top, sub))
        print(f"  first {m} images ({len(sub)} captions): {hits / len(sub):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
