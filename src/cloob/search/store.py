"""An embedding directory, as ``cloob embed`` writes it and ``index``/``search``/``serve`` read it.

::

    DIR/
      manifest.json   written last (its presence means complete): spec, kind, rows, dim, dtype,
                      encoder (checkpoint, model, sha256), data roots, read policy, bad samples, timings
      images.npy      (N, d) image embeddings, unit rows, float16 or float32
      texts.npy       (N, d) caption embeddings of the same rows (sources with captions only)
      metadata.csv    row, source, key, caption, label (one line per row, in row order)
      index.json      written by ``cloob index``: backend and its files (images.faiss, texts.faiss)
      .embed/         while embedding: plan.json and one chunk-XXXXXX.npz per finished chunk
"""
from __future__ import annotations

import csv
import json
from functools import cached_property
from pathlib import Path

from cloob.data.bad import DataError

FORMAT = "cloob-embeddings"
MANIFEST, IMAGES, TEXTS, METADATA, INDEX, WORK = (
    "manifest.json", "images.npy", "texts.npy", "metadata.csv", "index.json", ".embed")
COLUMNS = ("row", "source", "key", "caption", "label")
OVER = ("images", "texts")


class Store:
    """A complete embedding directory. Arrays are memory-mapped; metadata is read on first use."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        f = self.path / MANIFEST
        if not f.is_file():
            hint = (" (an embedding in progress or killed: rerun the same `cloob embed` to resume)"
                    if (self.path / WORK).is_dir() else "")
            raise DataError(f"{self.path} is not a complete cloob embedding directory: no {MANIFEST}{hint}")
        try:
            self.manifest = json.loads(f.read_text())
        except ValueError as e:
            raise DataError(f"{f} is not valid JSON ({e})") from None
        if self.manifest.get("format") != FORMAT:
            raise DataError(f"{f} is not a cloob embedding manifest (format {self.manifest.get('format')!r})")

    @property
    def n(self) -> int:
        return int(self.manifest["rows"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def has_text(self) -> bool:
        return bool(self.manifest["has_text"])

    def vectors(self, over: str = "images"):
        """(N, d) memory-mapped embeddings of ``over`` ("images" or "texts")."""
        import numpy as np

        if over not in OVER:
            raise ValueError(f"over must be one of {OVER}, got {over!r}")
        if over == "texts" and not self.has_text:
            raise DataError(f"{self.path} has no caption embeddings ({self.manifest['kind']} source "
                            f"{self.manifest['spec']}); search its images")
        path = self.path / (IMAGES if over == "images" else TEXTS)
        arr = np.load(path, mmap_mode="r")
        if arr.shape != (self.n, self.dim):
            raise DataError(f"{path} has shape {arr.shape}, the manifest says ({self.n}, {self.dim})")
        return arr

    @cached_property
    def rows(self) -> list[dict]:
        """Metadata rows (``row`` as int, the rest as str), in row order."""
        with open(self.path / METADATA, newline="", encoding="utf-8") as f:
            out = [dict(r, row=int(r["row"])) for r in csv.DictReader(f)]
        if len(out) != self.n or any(r["row"] != i for i, r in enumerate(out)):
            raise DataError(f"{self.path / METADATA} does not list rows 0..{self.n - 1} in order")
        return out

    @cached_property
    def reader(self):
        """An :class:`~cloob.search.sources.ImageReader` limited to the recorded roots and read policy."""
        from cloob.data.policy import ReadPolicy
        from cloob.search.sources import ImageReader

        return ImageReader(self.manifest.get("roots"), ReadPolicy(**self.manifest["policy"]))

    def image(self, row: int):
        """The RGB PIL image of a row (read from its source), or :class:`~cloob.data.bad.BadSampleError`."""
        r = self.rows[row]
        return self.reader.read(r["source"], r["key"])
