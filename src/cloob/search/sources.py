"""What ``cloob embed`` reads: a data spec as numbered rows in chunks, each row with where it came from.

A *row* is one sample: an image with its caption (pairs; retrieval sets give one row per
caption) or an image with its class (labelled sources: folders, tars, scenes eval splits).
Where it came from is ``(source, key)``:

=====================================  ===========================  ===========================
source                                 ``source``                   ``key``
=====================================  ===========================  ===========================
CSV/TSV, image folder                  the image file               ""
tar of class folders, CIFAR-10         the tar                      member name
webdataset shard                       the shard                    ``<sample key>.<image ext>``
scenes (``scenes:``, ``scenes-*:``)    the split's ``images.npy``   row in it
=====================================  ===========================  ===========================

Chunks are the unit of resumption: chunk ``c`` of a map-style source holds positions
``[c*C, (c+1)*C)``; a webdataset source has one chunk per shard. :class:`ChunkStream` yields
each chunk's batches in order (one DataLoader worker per chunk), so the writer never sees a
chunk half from one worker and half from another.

:class:`ImageReader` reads a row's image back (thumbnails for ``search --html`` and ``serve``):
only from the roots the embedding recorded, with the same byte and pixel limits as training data.
"""
from __future__ import annotations

import os
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset, IterableDataset

from cloob.data.bad import BadSample, BadSampleError, BadSampleReport, DataError, decode_image, load_image
from cloob.data.policy import DEFAULT_POLICY, ReadPolicy, member_problem

KINDS = ("pairs", "labelled", "retrieval")


@dataclass
class Rows:
    """A data spec opened for embedding.

    Attributes:
        kind: "pairs", "labelled" or "retrieval" (retrieval sets are flattened to one row per caption).
        has_text: rows carry captions (pairs, retrieval) rather than class names (labelled).
        dataset: map-style, ``dataset[i] -> (image tensor, caption str | label int)`` or a
            :class:`BadSample`; None for webdataset.
        urls: webdataset shard paths (one chunk each); None for map-style sources.
        locate: position -> (source, key) of a map-style row (see the module table).
        classes: class names of a labelled source.
        roots: files or directories every ``source`` lies in (None: anywhere, ``allow_any_path``).
        refused: samples refused before reading (tar members, CSV rows of a retrieval set).
    """

    spec: str
    kind: str
    has_text: bool
    transform: Callable
    policy: ReadPolicy = DEFAULT_POLICY
    strict: bool = False
    dataset: Dataset | None = None
    urls: list[str] | None = None
    locate: Callable[[int], tuple[str, str]] | None = None
    classes: list[str] | None = None
    roots: list[str] | None = None
    refused: BadSampleReport | None = None
    caption_key: str = "txt"

    @property
    def n(self) -> int | None:
        """Positions of a map-style source (None for webdataset)."""
        return None if self.dataset is None else len(self.dataset)

    def n_chunks(self, chunk_size: int) -> int:
        return len(self.urls) if self.urls is not None else -(-self.n // chunk_size)

    def describe_chunks(self, chunk_size: int) -> dict:
        """What fixes the chunk plan (compared on resume)."""
        if self.urls is not None:
            return {"shards": list(self.urls)}
        return {"positions": self.n, "chunk_size": chunk_size}


def _abs(p) -> str:
    return os.path.normpath(os.path.abspath(str(p)))


class _FlatRetrieval(Dataset):
    """A retrieval set (images with several captions) as one (image, caption) row per caption.

    Rows of one image are consecutive; the last decoded image is kept, so each image is decoded once
    when read in order. A bad image counts once per caption row (rows are the unit of an embedding).
    """

    def __init__(self, base):
        self.base = base
        self.pairs = [(i, c) for i, caps in enumerate(base.captions) for c in caps]
        self._last: tuple[int, object] | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, j):
        i, caption = self.pairs[j]
        if self._last is None or self._last[0] != i:
            self._last = (i, self.base[i])
        s = self._last[1]
        return s if isinstance(s, BadSample) else (s[0], caption)


def open_rows(spec: str, kind: str = "auto", *, transform: Callable, policy: ReadPolicy = DEFAULT_POLICY,
              strict: bool = False) -> Rows:
    """Open ``spec`` (any cloob data spec) as rows; raises :class:`DataError` for a source without a valid sample."""
    from cloob.data import open_labelled, open_pairs, open_retrieval, spec_kind
    from cloob.data.cifar10 import Cifar10Captions
    from cloob.data.csvfile import CsvPairs
    from cloob.data.folder import ImageFolder, TarFolder
    from cloob.data.retrieval import CsvRetrieval
    from cloob.data.scenes import ScenesLabelled, ScenesPairs, ScenesRetrieval
    from cloob.data.wds import WdsPairs

    kind = spec_kind(spec) if kind == "auto" else kind
    if kind not in KINDS:
        raise DataError(f"kind must be one of {', '.join(KINDS)} or auto, got {kind!r}")
    common = dict(spec=str(spec), kind=kind, transform=transform, policy=policy, strict=strict)
    if kind == "pairs":
        ds = open_pairs(spec, image_transform=transform, tokenizer=None, strict=strict, policy=policy)
        if isinstance(ds, WdsPairs):
            local = all("://" not in u and not u.startswith("pipe:") for u in ds.urls)
            roots = sorted({_abs(Path(u).parent) for u in ds.urls}) if local else []
            return Rows(**common, has_text=True, urls=list(ds.urls), roots=roots, caption_key=ds.caption_key)
        rows = Rows(**common, has_text=True, dataset=ds)
        if isinstance(ds, CsvPairs):
            table = ds.table.rows
            rows.locate = lambda i: (table[i].image, "")
            rows.roots = None if policy.allow_any_path else [_abs(policy.data_root or ds.table.path.parent)]
        elif isinstance(ds, ScenesPairs):
            rows.locate, rows.roots = _npy_locator(ds)
        elif isinstance(ds, Cifar10Captions):
            rows.locate, rows.roots = _tar_locator(ds.images)
            rows.refused = ds.images.report
        else:  # a new pair source must say where its rows come from
            raise DataError(f"cloob embed cannot yet locate the rows of {type(ds).__name__} ({spec})")
        return rows
    if kind == "labelled":
        ds = open_labelled(spec, image_transform=transform, strict=strict, policy=policy)
        rows = Rows(**common, has_text=False, dataset=ds, classes=list(ds.classes))
        if isinstance(ds, ImageFolder):
            items = ds.items
            rows.locate, rows.roots = (lambda i: (items[i][0], "")), [_abs(ds.name)]
        elif isinstance(ds, TarFolder):
            rows.locate, rows.roots = _tar_locator(ds)
            rows.refused = ds.report
        elif isinstance(ds, ScenesLabelled):
            rows.locate, rows.roots = _npy_locator(ds)
        else:
            raise DataError(f"cloob embed cannot yet locate the rows of {type(ds).__name__} ({spec})")
        return rows
    base = open_retrieval(spec, image_transform=transform, strict=strict, policy=policy)
    flat = _FlatRetrieval(base)
    rows = Rows(**common, has_text=True, dataset=flat)
    if isinstance(base, ScenesRetrieval):
        locate, rows.roots = _npy_locator(base)
        rows.locate = lambda j: locate(flat.pairs[j][0])
    elif isinstance(base, CsvRetrieval):
        paths = base.paths
        rows.locate = lambda j: (paths[flat.pairs[j][0]], "")
        rows.roots = None if policy.allow_any_path else [_abs(policy.data_root or Path(spec).parent)]
        rows.refused = base.report
    else:
        raise DataError(f"cloob embed cannot yet locate the rows of {type(base).__name__} ({spec})")
    return rows


def _npy_locator(ds):
    path = _abs(ds._path)
    return (lambda i: (path, str(i))), [path]


def _tar_locator(ds):
    path, items = _abs(ds.path), ds.items
    return (lambda i: (path, items[i][0])), [path]


# ------------------------------------------------------------------ chunks
def _identity(x):
    return x


class ChunkStream(IterableDataset):
    """Batches of the given chunks: dicts with ``chunk``, ``last`` (the chunk's final batch),
    ``images`` ((b, 3, H, W) or None when no sample of the batch was valid), ``texts`` (captions,
    pairs only), ``labels`` (class names, labelled only), ``sources``, ``keys`` and ``bad``
    (:class:`BadSample` list). Worker ``w`` of ``W`` reads chunks ``w, w + W, ...`` of the list."""

    def __init__(self, rows: Rows, chunks: list[int], chunk_size: int, batch_size: int):
        self.rows, self.chunks, self.chunk_size, self.batch_size = rows, list(chunks), chunk_size, batch_size

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        mine = self.chunks[info.id :: info.num_workers] if info is not None else self.chunks
        for c in mine:
            samples = self._shard(c) if self.rows.urls is not None else self._positions(c)
            batch = []
            for item in samples:
                batch.append(item)
                if len(batch) == self.batch_size:
                    yield self._collate(c, batch, last=False)
                    batch = []
            yield self._collate(c, batch, last=True)

    def _positions(self, c: int):
        ds = self.rows.dataset
        for i in range(c * self.chunk_size, min(len(ds), (c + 1) * self.chunk_size)):
            s = ds[i]
            if isinstance(s, BadSample):
                yield None, None, s
            else:
                yield (*self.rows.locate(i), s)

    def _shard(self, c: int):
        from cloob.data.wds import iter_pairs

        url, rows = self.rows.urls[c], self.rows
        for member, s in iter_pairs(url, rows.caption_key, rows.policy, rows.strict):
            if isinstance(s, BadSample):
                yield url, member, s
            else:
                yield url, member, (rows.transform(s[0]), s[1])

    def _collate(self, c: int, batch: list, last: bool) -> dict:
        good = [b for b in batch if not isinstance(b[2], BadSample)]
        second = [b[2][1] for b in good]
        out = {"chunk": c, "last": last, "images": torch.stack([b[2][0] for b in good]) if good else None,
               "sources": [b[0] for b in good], "keys": [b[1] for b in good],
               "bad": [b[2] for b in batch if isinstance(b[2], BadSample)],
               "texts": second if self.rows.has_text else None,
               "labels": [self.rows.classes[y] for y in second] if not self.rows.has_text else None}
        return out


def chunk_loader(rows: Rows, chunks: list[int], chunk_size: int, batch_size: int, num_workers: int = 0):
    """A DataLoader over :class:`ChunkStream` (batches are formed in the workers)."""
    from torch.utils.data import DataLoader

    return DataLoader(ChunkStream(rows, chunks, chunk_size, batch_size), batch_size=None, collate_fn=_identity,
                      num_workers=min(num_workers, len(chunks)), persistent_workers=False)


# ------------------------------------------------------------------ reading a row back
@dataclass
class ImageReader:
    """Reads the image of a row back from ``(source, key)``.

    Only sources inside ``roots`` (the embedding's recorded data roots; None = anywhere) are
    read, as a file (empty key), a row of an ``.npy`` array or a member of a tar, each with
    ``policy``'s byte and pixel limits. A metadata file edited to name another path gets
    ``outside_root``. Thread-safe: serve's request threads share one reader.
    """

    roots: list[str] | None
    policy: ReadPolicy = DEFAULT_POLICY
    _arrays: dict = field(default_factory=dict)
    _tars: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _inside(self, source: str) -> bool:
        if self.roots is None:
            return True
        src = _abs(source)
        return any(src == r or os.path.commonpath([r, src]) == r for r in self.roots)

    def read(self, source: str, key: str):
        """RGB PIL image, or :class:`BadSampleError` (a reason of :mod:`cloob.data.bad`)."""
        from PIL import Image

        if "://" in source or source.startswith("pipe:"):
            raise BadSampleError("missing_file", source, key, "a remote source is not read back")
        if not self._inside(source):
            raise BadSampleError("outside_root", source, key, f"not under the embedding's data roots {self.roots}")
        if not key:
            return load_image(source, policy=self.policy)
        if source.endswith(".npy"):
            arr = self._array(source)
            if not key.isdigit() or int(key) >= len(arr):
                raise BadSampleError("missing_file", source, key, f"no row {key} in an array of {len(arr)}")
            return Image.fromarray(arr[int(key)].copy())
        return self._member(source, key)

    def _array(self, source: str):
        import numpy as np

        with self._lock:
            if source not in self._arrays:
                if not os.path.isfile(source):
                    raise BadSampleError("missing_file", source, None, "no such file")
                self._arrays[source] = np.load(source, mmap_mode="r")
            return self._arrays[source]

    def _member(self, source: str, key: str):
        from cloob.data.wds import split_key

        with self._lock:
            index = self._tars.get(source)
            if index is None:
                if not os.path.isfile(source):
                    raise BadSampleError("missing_file", source, key, "no such archive")
                try:
                    with tarfile.open(source, mode="r:") as tar:
                        members = [m for m in tar.getmembers() if not m.isdir()]
                except (tarfile.TarError, OSError) as e:
                    raise BadSampleError("truncated_shard", source, key, f"cannot index the archive: {e}") from None
                index = {m.name: m for m in members}
                for m in members:  # webdataset keys: "<key>.<ext>" with the ext lower-cased (cloob.data.wds)
                    k, ext = split_key(m.name)
                    index.setdefault(f"{k}.{ext}", m)
                self._tars[source] = index
        info = index.get(key)
        if info is None:
            raise BadSampleError("missing_file", source, key, "no such member")
        problem = member_problem(info, self.policy)
        if problem is not None:
            raise BadSampleError(problem[0], source, key, problem[1])
        with open(source, "rb") as f:
            f.seek(info.offset_data)
            data = f.read(info.size)
        if len(data) < info.size:
            raise BadSampleError("truncated_image", source, key, "archive ends inside the member")
        return decode_image(data, f"{source}:{key}", None, self.policy)
