"""``cloob embed``: image and caption embeddings of a whole data source, written chunk by chunk.

Each finished chunk is one ``.embed/chunk-XXXXXX.npz`` (embeddings, metadata rows, the chunk's
bad-sample counts, seconds), written to a temporary name, fsync'ed and renamed, so a chunk file
exists whole or not at all. A rerun after a kill reads ``.embed/plan.json``, skips the chunks on
disk and embeds the rest; every position belongs to exactly one chunk, so no row is embedded
twice. When all chunks exist they are concatenated in chunk order into the files of
:mod:`cloob.search.store`, ``manifest.json`` last, and ``.embed/`` is removed.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from cloob.data.bad import BadSampleReport, DataError
from cloob.search.encoder import Encoder
from cloob.search.sources import Rows, chunk_loader
from cloob.search.store import COLUMNS, FORMAT, IMAGES, INDEX, MANIFEST, METADATA, TEXTS, WORK

DTYPES = ("float16", "float32")


def chunk_name(c: int) -> str:
    return f"chunk-{c:06d}.npz"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_chunk(work: Path, c: int, images: np.ndarray, texts: np.ndarray | None, meta: dict) -> Path:
    """One finished chunk: images (n, d), texts (n, d) or None, meta (rows, bad samples, seconds) as JSON."""
    buf = io.BytesIO()
    arrays = {"images": images} if texts is None else {"images": images, "texts": texts}
    np.savez(buf, meta=np.asarray(json.dumps(meta)), **arrays)
    path = work / chunk_name(c)
    _atomic_write(path, buf.getvalue())
    return path


def read_chunk(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    with np.load(path) as z:
        return z["images"], (z["texts"] if "texts" in z.files else None), json.loads(str(z["meta"]))


def make_plan(rows: Rows, encoder: Encoder, chunk_size: int, dtype: str, resize: str) -> dict:
    """Everything that fixes what the rows and their embeddings are; a resume must find the same plan."""
    return {"spec": rows.spec, "kind": rows.kind, **rows.describe_chunks(chunk_size), "dtype": dtype,
            "resize": resize, "model": encoder.info["model"], "sha256": encoder.info["sha256"],
            "policy": dataclasses.asdict(rows.policy)}


def embed(encoder: Encoder, rows: Rows, out: str | Path, *, batch_size: int = 256, chunk_size: int = 4096,
          num_workers: int = 0, dtype: str = "float16", resize: str = "bicubic", progress: bool = True,
          log: Callable[[str], None] = print, on_chunk: Callable[[int], None] | None = None) -> dict:
    """Embed every row of ``rows`` into the directory ``out``; returns its manifest.

    Args:
        encoder: the model (:func:`cloob.search.encoder.load_encoder`); its transform is already in ``rows``.
        chunk_size: positions per chunk of a map-style source (webdataset: one chunk per shard).
        dtype: "float16" or "float32" for the stored unit rows (normalised in float32, then cast).
        resize: recorded for query encoding (the interpolation of ``rows.transform``).
        on_chunk: called with each chunk's number after it is on disk (progress hooks, tests).
    Raises:
        DataError: ``out`` holds embeddings or a plan of other inputs, or no row was valid.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size} and {chunk_size}")
    out = Path(out)
    plan = make_plan(rows, encoder, chunk_size, dtype, resize)
    if (out / MANIFEST).is_file():
        old = json.loads((out / MANIFEST).read_text())
        if old.get("plan") == plan:
            log(f"{out} already holds these embeddings ({old['rows']} rows); nothing to do")
            return old
        raise DataError(f"{out} holds embeddings of other inputs ({old.get('spec')}, "
                        f"{old.get('encoder', {}).get('model')}); choose another --out or delete it")
    work = out / WORK
    work.mkdir(parents=True, exist_ok=True)
    plan_file = work / "plan.json"
    if plan_file.is_file():
        old_plan = json.loads(plan_file.read_text())
        if old_plan != plan:
            changed = sorted(k for k in set(plan) | set(old_plan) if plan.get(k) != old_plan.get(k))
            raise DataError(f"{out} holds an unfinished embedding of other inputs (differs in {', '.join(changed)}); "
                            "rerun with the same arguments to resume, or delete it")
    else:
        _atomic_write(plan_file, json.dumps(plan, indent=1).encode())
    for stale in work.glob(".tmp-*"):  # a chunk being written when the process was killed
        stale.unlink()
    n_chunks = rows.n_chunks(chunk_size)
    done = {c for c in range(n_chunks) if (work / chunk_name(c)).is_file()}
    pending = [c for c in range(n_chunks) if c not in done]
    unit = "shard" if rows.urls is not None else "row"
    log(f"embedding {rows.spec} ({rows.kind}) with {encoder.info['model']}: {n_chunks} chunks"
        + (f", {len(done)} already done (resuming)" if done else ""))
    if pending:
        _embed_chunks(encoder, rows, work, pending, chunk_size, batch_size, num_workers, dtype, progress, unit,
                      on_chunk)
    return finalize(out, plan, rows, encoder, n_chunks, dtype, resize, log)


def _embed_chunks(encoder, rows, work, pending, chunk_size, batch_size, num_workers, dtype, progress, unit, on_chunk):
    from tqdm import tqdm

    if rows.urls is not None:
        total = len(pending)
    else:
        total = sum(min(rows.n, (c + 1) * chunk_size) - c * chunk_size for c in pending)
    bar = tqdm(total=total, unit=unit, desc="embed", disable=not progress, smoothing=0.1)
    buffers: dict[int, dict] = {}
    # each chunk records the wall time since the previous chunk was written (reading, decoding, encoding,
    # writing): over all chunks, and over runs after a resume, they add up to the time spent embedding
    since = time.perf_counter()
    for batch in chunk_loader(rows, pending, chunk_size, batch_size, num_workers):
        c = batch["chunk"]
        buf = buffers.setdefault(c, {"images": [], "texts": [], "rows": [], "bad": BadSampleReport(rows.spec)})
        if batch["images"] is not None:
            buf["images"].append(encoder.encode_images(batch["images"]).astype(dtype))
            if rows.has_text:
                buf["texts"].append(encoder.encode_texts(batch["texts"]).astype(dtype))
            labels = batch["labels"] or [""] * len(batch["sources"])
            captions = batch["texts"] or [""] * len(batch["sources"])
            buf["rows"].extend(zip(batch["sources"], batch["keys"], captions, labels))
        for b in batch["bad"]:
            buf["bad"].add(b)
        buf["bad"].n_ok += len(batch["sources"])
        if rows.urls is None:
            bar.update(len(batch["sources"]) + len(batch["bad"]))
        if batch["last"]:
            _finish_chunk(work, c, buffers.pop(c), rows.has_text, time.perf_counter() - since)
            since = time.perf_counter()
            if rows.urls is not None:
                bar.update(1)
            if on_chunk is not None:
                on_chunk(c)
    bar.close()


def _finish_chunk(work: Path, c: int, buf: dict, has_text: bool, seconds: float) -> None:
    dim = buf["images"][0].shape[1] if buf["images"] else 0
    images = np.concatenate(buf["images"]) if buf["images"] else np.zeros((0, dim), np.float32)
    texts = (np.concatenate(buf["texts"]) if buf["texts"] else np.zeros((0, dim), np.float32)) if has_text else None
    meta = {"rows": buf["rows"], "bad": buf["bad"].to_dict(), "seconds": seconds}
    write_chunk(work, c, images, texts, meta)


def finalize(out: Path, plan: dict, rows: Rows, encoder: Encoder, n_chunks: int, dtype: str, resize: str,
             log: Callable[[str], None] = print) -> dict:
    """Concatenate the chunks (in order) into images.npy, texts.npy, metadata.csv; write the manifest last."""
    work = out / WORK
    paths = [work / chunk_name(c) for c in range(n_chunks)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{work}: chunks {missing[:3]} missing after embedding")
    sizes, dim, report, seconds = [], 0, BadSampleReport(rows.spec), 0.0
    for p in paths:  # a first pass over the small metadata only, for the total size
        images, _, meta = read_chunk(p)
        sizes.append(len(images))
        dim = dim or (images.shape[1] if len(images) else 0)
        report.merge(BadSampleReport.from_dict(meta["bad"]))
        seconds += meta["seconds"]
    if rows.refused is not None:
        report.merge(rows.refused)
    n = sum(sizes)
    if n == 0:
        raise DataError(f"no valid sample in {rows.spec}:\n{report.format()}")
    for stale in (INDEX, "images.faiss", "texts.faiss"):  # an index of older embeddings must not survive
        (out / stale).unlink(missing_ok=True)
    img_out = np.lib.format.open_memmap(out / IMAGES, mode="w+", dtype=dtype, shape=(n, dim))
    txt_out = np.lib.format.open_memmap(out / TEXTS, mode="w+", dtype=dtype, shape=(n, dim)) if rows.has_text else None
    per_image: Counter = Counter()
    with open(out / METADATA, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        at = 0
        for p, size in zip(paths, sizes):
            if not size:  # a chunk of bad samples only
                continue
            images, texts, meta = read_chunk(p)
            img_out[at : at + size] = images
            if txt_out is not None:
                txt_out[at : at + size] = texts
            for i, (source, key, caption, label) in enumerate(meta["rows"]):
                w.writerow((at + i, source, key, caption, label))
                per_image[(source, key)] += 1
            at += size
    img_out.flush()
    del img_out
    if txt_out is not None:
        txt_out.flush()
        del txt_out
    manifest = {
        "format": FORMAT, "version": 1, "spec": rows.spec, "kind": rows.kind, "rows": n, "dim": int(dim),
        "dtype": dtype, "has_text": rows.has_text, "images": len(per_image),
        "max_rows_per_image": max(per_image.values()), "classes": rows.classes, "encoder": encoder.info,
        "resize": resize, "roots": rows.roots, "policy": dataclasses.asdict(rows.policy), "chunks": n_chunks,
        "bad_samples": report.to_dict(), "embed_seconds": round(seconds, 3),
        "rows_per_s": round(n / seconds, 1) if seconds > 0 else None,
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "plan": plan,
    }
    _atomic_write(out / MANIFEST, json.dumps(manifest, indent=1).encode())
    shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {n} rows ({len(per_image)} images, d = {dim}, {dtype}) to {out}")
    if report.n_bad:
        log(report.format())
    return manifest
