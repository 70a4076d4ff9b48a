"""``cloob index``: nearest-neighbour search over an embedding directory, by inner product of unit rows.

Two exact backends that return the same top-k (up to ties):

- ``faiss``: ``faiss.IndexFlatIP`` (faiss-cpu, the field's standard; ``pip install -e '.[search]'``),
  written to ``images.faiss`` / ``texts.faiss``.
- ``torch``: blockwise ``queries @ rows.T`` and a running top-k; nothing to build (it reads
  ``images.npy`` itself), so it is also what ``cloob search`` uses when no index was built.

``index.json`` records the backend, files and build time. Both backends see the same float32
numbers (the stored float16 rows converted once), so their scores agree to float32 rounding.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable

import numpy as np

from cloob.data.bad import DataError
from cloob.search.store import INDEX, OVER, Store

BACKENDS = ("faiss", "torch")
BLOCK = 65536  # rows per block when adding to faiss or scoring with torch
IN_MEMORY_BYTES = 1 << 30  # the torch backend keeps float32 rows in memory up to this size, else streams blocks


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def pick_backend(backend: str = "auto") -> str:
    if backend == "auto":
        return "faiss" if faiss_available() else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be auto, faiss or torch, got {backend!r}")
    if backend == "faiss" and not faiss_available():
        raise DataError("faiss is not installed: pip install faiss-cpu (or -e '.[search]'), or use --backend torch")
    return backend


def build_index(store: Store, backend: str = "auto", log: Callable[[str], None] = print) -> dict:
    """Build the index of every embedding matrix of ``store`` and write ``index.json``; returns it."""
    backend = pick_backend(backend)
    t0 = time.perf_counter()
    files = {}
    for over in OVER:
        if over == "texts" and not store.has_text:
            continue
        if backend == "faiss":
            import faiss

            x = store.vectors(over)
            index = faiss.IndexFlatIP(store.dim)
            for i in range(0, store.n, BLOCK):
                index.add(np.ascontiguousarray(x[i : i + BLOCK], dtype=np.float32))
            name = f"{over}.faiss"
            tmp = store.path / f".tmp-{name}"
            faiss.write_index(index, str(tmp))
            os.replace(tmp, store.path / name)
            files[over] = name
        else:
            store.vectors(over)  # checks the shape
            files[over] = f"{over}.npy"
    seconds = time.perf_counter() - t0
    info = {"backend": backend, "files": files, "rows": store.n, "dim": store.dim, "exact": True,
            "seconds": round(seconds, 3), "built": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if backend == "faiss":
        import faiss

        info["faiss"] = faiss.__version__
    tmp = store.path / f".tmp-{INDEX}"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, store.path / INDEX)
    log(f"built a {backend} index of {store.n} rows ({', '.join(files)}) in {seconds:.2f} s")
    return info


class TorchIndex:
    """Exact top-k by ``queries @ rows.T`` in float32, over blocks of rows."""

    backend = "torch"

    def __init__(self, vectors: np.ndarray):
        import torch

        self.n = len(vectors)
        self._mmap = vectors
        nbytes = vectors.shape[0] * vectors.shape[1] * 4
        # a copy: float32 rows in memory (the file may be float16, and a memory map is read-only)
        self._rows = torch.from_numpy(np.array(vectors, dtype=np.float32)) if nbytes <= IN_MEMORY_BYTES else None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (Q, d) -> (scores (Q, k') float32, rows (Q, k') int64), best first; k' = min(k, N)."""
        import torch

        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        k = min(k, self.n)
        best_s = torch.full((len(q), 0), -float("inf"))
        best_i = torch.zeros((len(q), 0), dtype=torch.long)
        with torch.no_grad():
            for start in range(0, self.n, BLOCK):
                block = (self._rows[start : start + BLOCK] if self._rows is not None
                         else torch.from_numpy(np.asarray(self._mmap[start : start + BLOCK], dtype=np.float32)))
                s = q @ block.T
                top = torch.topk(s, min(k, s.shape[1]), dim=1)
                cand_s = torch.cat([best_s, top.values], dim=1)
                cand_i = torch.cat([best_i, top.indices + start], dim=1)
                keep = torch.topk(cand_s, min(k, cand_s.shape[1]), dim=1)
                best_s, best_i = keep.values, torch.gather(cand_i, 1, keep.indices)
        return best_s.numpy(), best_i.numpy().astype(np.int64)


class FaissIndex:
    """A faiss index read from disk (``IndexFlatIP``: exact inner products)."""

    backend = "faiss"

    def __init__(self, path):
        import faiss

        self.index = faiss.read_index(str(path))
        self.n = self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (Q, d) -> (scores (Q, k') float32, rows (Q, k') int64), best first; k' = min(k, N)."""
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, self.n))
        return scores, rows.astype(np.int64)


def open_index(store: Store, over: str = "images", backend: str | None = None):
    """The index to search ``over`` with: ``backend`` if given, else the one ``cloob index`` built,
    else the exact torch search (which needs no build)."""
    built = None
    if (store.path / INDEX).is_file():
        built = json.loads((store.path / INDEX).read_text())
    want = backend or (built["backend"] if built else "torch")
    if want == "faiss":
        pick_backend("faiss")
        name = (built or {}).get("files", {}).get(over) if (built or {}).get("backend") == "faiss" else None
        if name is None:
            raise DataError(f"{store.path} has no faiss index of its {over}: "
                            f"run `cloob index {store.path} --backend faiss`")
        return FaissIndex(store.path / name)
    if want != "torch":
        raise ValueError(f"backend must be faiss or torch, got {want!r}")
    return TorchIndex(store.vectors(over))
