"""A pre-decoded image-text cache: any pairs spec resized once to S×S uint8 and memory-mapped (``cache:DIR``).

``cloob data cache SPEC --out DIR --size S`` reads the source once (its bad samples skipped and counted, as
every reader does), resizes each image (shorter side to S, centre crop: the evaluation transform's geometry)
and writes shards::

    DIR/shard-00000.npy      uint8 (n, S, S, 3), read as a memmap
    DIR/shard-00000.jsonl    one caption per line
    DIR/manifest.json        size, source, shards with their counts and byte sizes, the bad-sample report;
                             written last (atomically): a cache without it is unfinished

An interrupted write resumes: finished shards (their files complete, recorded in ``DIR/progress.json``)
are kept and the source is read on from the first unfinished one. Training then skips JPEG decoding: the
random-resized-crop of the training transform still runs, on the cached pixels.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from cloob.data.bad import BadSample, BadSampleReport, DataError

FORMAT_VERSION = 1


def _resize_square(image, size: int) -> np.ndarray:
    from PIL import Image

    w, h = image.size
    scale = size / min(w, h)
    image = image.convert("RGB").resize((max(size, round(w * scale)), max(size, round(h * scale))),
                                        Image.BICUBIC)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def write_cache(spec: str, out: str | Path, size: int, *, shard_size: int = 10_000, progress: bool = True,
                policy=None) -> dict:
    """Write (or finish) the pre-decoded cache of ``spec`` under ``out``; returns the manifest.

    Raises:
        DataError: the source has no valid pair, or ``out`` holds a cache of another source or size.
    """
    from tqdm import tqdm

    from cloob.data import open_pairs

    if size < 8:
        raise DataError(f"cache size must be at least 8 pixels, got {size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    identity = {"format_version": FORMAT_VERSION, "source": str(spec), "size": int(size), "shard_size": shard_size}
    done = read_manifest(out)
    if done is not None:
        if {k: done[k] for k in identity} != identity:
            raise DataError(f"{out} holds a cache of {done['source']} at {done['size']} px; use another --out")
        return done
    prog_file = out / "progress.json"
    prog = json.loads(prog_file.read_text()) if prog_file.is_file() else {**identity, "shards": []}
    if {k: prog[k] for k in identity} != identity:
        raise DataError(f"{out} holds an unfinished cache of another source or size; use another --out")
    shards = [s for s in prog["shards"] if _shard_complete(out, s)]
    # read on after the last complete shard, with the bad-sample counts as they stood there
    read = shards[-1]["read_after"] if shards else 0
    ds = open_pairs(spec, image_transform=None, tokenizer=None, policy=policy, check=read == 0)
    report = BadSampleReport(str(spec))
    report.counts.update(shards[-1]["bad_after"] if shards else {})  # the skips before the resume point
    n_total = len(ds) if hasattr(ds, "__len__") else None
    images, captions = [], []
    bar = tqdm(total=n_total, initial=read, unit="pair", desc=f"cache {spec}", disable=not progress)

    def flush(read_after: int) -> None:
        k = len(shards)
        name = f"shard-{k:05d}"
        arr = np.stack(images)
        np.save(out / f"{name}.npy", arr)
        (out / f"{name}.jsonl").write_text("".join(json.dumps(c) + "\n" for c in captions), encoding="utf-8")
        shards.append({"name": name, "n": len(arr), "bytes": (out / f"{name}.npy").stat().st_size,
                       "read_after": read_after, "bad_after": dict(report.counts)})
        _write_json(prog_file, {**identity, "shards": shards})
        images.clear()
        captions.clear()

    index = range(read, n_total) if n_total is not None else None
    source = (ds[i] for i in index) if index is not None else _skip(iter(ds), read)
    position = read
    for sample in source:
        position += 1
        bar.update(1)
        if isinstance(sample, BadSample):
            report.add(sample)
            continue
        image, caption = sample
        images.append(_resize_square(image, size))
        captions.append(caption)
        if len(images) == shard_size:
            flush(position)
    if images:
        flush(position)
    bar.close()
    if not shards:
        raise DataError(f"{spec}: no valid pair to cache:\n{report.format()}")
    manifest = {**identity, "n": sum(s["n"] for s in shards), "shards": shards, "bad": dict(report.counts)}
    _write_json(out / "manifest.json", manifest)
    prog_file.unlink(missing_ok=True)
    return manifest


def _skip(it, n: int):
    for _ in range(n):
        next(it, None)
    return it


def _shard_complete(out: Path, shard: dict) -> bool:
    npy, jsonl = out / f"{shard['name']}.npy", out / f"{shard['name']}.jsonl"
    if not (npy.is_file() and jsonl.is_file()) or npy.stat().st_size != shard["bytes"]:
        return False
    return sum(1 for _ in open(jsonl, encoding="utf-8")) == shard["n"]


def read_manifest(out: str | Path) -> dict | None:
    """The finished cache's manifest, or None when ``out`` holds none (yet)."""
    path = Path(out) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


class DecodedPairs:
    """Map-style (image, tokens) pairs of a finished cache (``cache:DIR``), shards memory-mapped on first use.

    Validated when opened: the manifest must be there, and every shard's files complete (byte size, row
    count, array shape); a damaged cache is a :class:`DataError` naming the shard.
    """

    def __init__(self, out, *, image_transform: Callable | None, tokenizer: Callable | None):
        out = Path(out)
        manifest = read_manifest(out)
        if manifest is None:
            raise DataError(f"{out}: no finished pre-decoded cache (manifest.json missing); write it with "
                            "`cloob data cache SPEC --out DIR --size S`")
        self.name, self.size = f"cache:{out}", manifest["size"]
        self.image_transform, self.tokenizer = image_transform, tokenizer
        self._paths, self.captions, self._starts = [], [], []
        for s in manifest["shards"]:
            if not _shard_complete(out, s):
                raise DataError(f"{out}: shard {s['name']} is missing or incomplete; write the cache again")
            shape = np.load(out / f"{s['name']}.npy", mmap_mode="r").shape
            if shape != (s["n"], self.size, self.size, 3):
                raise DataError(f"{out}: shard {s['name']} has shape {shape}, expected ({s['n']}, {self.size}, "
                                f"{self.size}, 3)")
            self._starts.append(len(self.captions))
            self._paths.append(out / f"{s['name']}.npy")
            with open(out / f"{s['name']}.jsonl", encoding="utf-8") as f:
                self.captions += [json.loads(line) for line in f]
        self.report = BadSampleReport(self.name)
        self._arrays: list = [None] * len(self._paths)

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_arrays"] = [None] * len(self._paths)  # each worker maps the shards itself
        return d

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int):
        from bisect import bisect_right

        from PIL import Image

        from cloob.data.csvfile import finish_pair

        k = bisect_right(self._starts, i) - 1
        if self._arrays[k] is None:
            self._arrays[k] = np.load(self._paths[k], mmap_mode="r")
        image = Image.fromarray(np.asarray(self._arrays[k][i - self._starts[k]]))
        return finish_pair(image, self.captions[i], self.image_transform, self.tokenizer)
