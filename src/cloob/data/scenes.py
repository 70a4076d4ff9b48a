"""The built-in "scenes" dataset: concepts recognisable only through co-occurring parts.

A deterministic generator (numpy + Pillow drawing, no downloads) of image–caption
pairs. Each scene type (``SCENES``, e.g. "tea house") is a set of 3–5
characteristic (colour, shape) objects; an image of the scene contains each of
them with probability ``p`` (at least one is always kept) plus 0–2 distractor
objects, drawn at random positions (overlap allowed) and two sizes on a textured
background. The caption names 1–3 of the objects present (colour, often size,
spatial words) and the scene name only with probability ``q``, so a model must
learn the scene from the co-occurrence of its parts.

Every image is drawn from its own generator ``default_rng([seed, split, index])``:
the output depends only on the parameters, not on the number of workers.

Cache layout (``generate_scenes(out_dir, ...)``)::

    out_dir/manifest.json            parameters + counts, written last (atomically)
    out_dir/preview.png              a grid of training images with their captions
    out_dir/<split>/images.npy       uint8 (N, size, size, 3), read as a memmap
    out_dir/<split>/meta.jsonl       one JSON object per image (caption(s), scene, objects)

splits: ``train`` (n pairs), and, generated with seed ``seed + EVAL_SEED_OFFSET``,
``eval_scene`` (label = scene), ``eval_object`` (one object on a plain
background, label = colour + shape), ``eval_retrieval`` (``CAPTIONS_PER_IMAGE``
captions per image). :func:`export_scenes` writes a split as PNG + CSV or as
webdataset shards for the other loaders.

The world (scene types, objects, caption templates) and the drawing of one sample live in
:mod:`cloob.data.scenes_draw`; this module writes and reads the cache.
"""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import textwrap
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cloob.data.bad import DataError
from cloob.data.scenes_draw import (  # noqa: F401 - the world's names are read from here (cloob.data.scenes.SCENES)
    CAPTIONS_PER_IMAGE, COLOURS, EVAL_SEED_OFFSET, OBJECT_CLASSES, OBJECT_TEMPLATES, SCENE_NAMES, SCENE_TEMPLATES,
    SCENES, SHAPES, SIZES, SPLITS, background_textures, make_sample)

FORMAT_VERSION = 1

_TEXTURES: dict = {}


def _chunk(args) -> list[dict]:
    """Worker: generate images [start, stop) of a split into its memmap; return their metadata."""
    path, split, start, stop, size, seed, p, q = args
    key = (size, seed)
    if key not in _TEXTURES:
        _TEXTURES[key] = background_textures(size, seed)
    arr = np.load(path, mmap_mode="r+")
    metas = []
    for i in range(start, stop):
        arr[i], meta = make_sample(split, i, size=size, seed=seed, p=p, q=q, textures=_TEXTURES[key])
        metas.append(meta)
    arr.flush()
    del arr
    return metas


# ------------------------------------------------------------------ cache
def _params(n, size, seed, p, q, n_eval) -> dict:
    return {"format_version": FORMAT_VERSION, "n": int(n), "size": int(size), "seed": int(seed), "p": float(p),
            "q": float(q), "n_eval": int(n_eval)}


def read_manifest(out_dir) -> dict | None:
    f = Path(out_dir) / "manifest.json"
    if not f.is_file():
        return None
    return json.loads(f.read_text())


def generate_scenes(out_dir, n: int, size: int = 64, seed: int = 0, p: float = 0.7, q: float = 0.3,
                    n_eval: int = 1000, workers: int | None = None, progress: bool = False,
                    chunk: int = 500) -> dict:
    """Write the scenes cache (see the module docstring); return the manifest.

    A complete cache with the same parameters is detected (manifest.json, written
    last) and returned without regenerating; a cache with other parameters is an error.
    The manifest records ``images_per_s`` measured over all splits.
    """
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    out = Path(out_dir)
    params = _params(n, size, seed, p, q, n_eval)
    old = read_manifest(out)
    if old is not None:
        if old.get("params") == params:
            return old
        raise DataError(f"{out} holds a scenes cache with other parameters {old.get('params')}; "
                        f"choose another --out or delete it (asked for {params})")
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or min(os.cpu_count() or 1, 4)
    sizes = {"train": n, "eval_scene": n_eval, "eval_object": n_eval, "eval_retrieval": n_eval}
    jobs, arrays = [], {}
    for split, count in sizes.items():
        d = out / split
        d.mkdir(exist_ok=True)
        arrays[split] = d / "images.npy"
        a = np.lib.format.open_memmap(arrays[split], mode="w+", dtype=np.uint8, shape=(count, size, size, 3))
        del a
        jobs += [(str(arrays[split]), split, s, min(s + chunk, count), size, seed, p, q) for s in range(0, count, chunk)]
    metas: dict[str, list] = {s: [] for s in sizes}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(sizes.values()), unit="img", desc="scenes")
    t0 = time.perf_counter()
    if workers > 1 and len(jobs) > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(workers) as pool:
            for job, m in zip(jobs, pool.imap(_chunk, jobs)):
                metas[job[1]].extend(m)
                if bar:
                    bar.update(len(m))
    else:
        for job in jobs:
            m = _chunk(job)
            metas[job[1]].extend(m)
            if bar:
                bar.update(len(m))
    seconds = time.perf_counter() - t0
    if bar:
        bar.close()
    for split, ms in metas.items():
        with open(out / split / "meta.jsonl", "w", encoding="utf-8") as f:
            for m in ms:
                f.write(json.dumps(m) + "\n")
    write_preview(out, out / "preview.png")
    total = sum(sizes.values())
    manifest = {"params": params, "splits": sizes, "seconds": round(seconds, 3),
                "images_per_s": round(total / max(seconds, 1e-9), 1), "workers": workers}
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / "manifest.json")
    return manifest


def _require(out_dir, split: str) -> tuple[Path, dict]:
    out = Path(out_dir)
    m = read_manifest(out)
    if m is None:
        raise DataError(f"no scenes cache at {str(out)!r} (manifest.json missing); create it with "
                        f"`cloob data scenes --out {out} --n 50000 --size 64`")
    return out / split, m


def load_split(out_dir, split: str) -> tuple[np.ndarray, list[dict]]:
    """(images memmap (N, S, S, 3) uint8, metadata list) of a cached split."""
    d, _ = _require(out_dir, split)
    with open(d / "meta.jsonl", encoding="utf-8") as f:
        metas = [json.loads(line) for line in f]
    return np.load(d / "images.npy", mmap_mode="r"), metas


def write_preview(out_dir, path, n: int = 16, cols: int = 4, cell: int = 192) -> Path:
    images, metas = np.load(Path(out_dir) / "train" / "images.npy", mmap_mode="r"), None
    with open(Path(out_dir) / "train" / "meta.jsonl", encoding="utf-8") as f:
        metas = [json.loads(next(f)) for _ in range(min(n, len(images)))] if len(images) else []
    n = len(metas)
    rows = max(1, math.ceil(n / cols))
    text_h = 56
    grid = Image.new("RGB", (cols * cell, rows * (cell + text_h)), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for i, m in enumerate(metas):
        x, y = (i % cols) * cell, (i // cols) * (cell + text_h)
        grid.paste(Image.fromarray(np.asarray(images[i])).resize((cell - 8, cell - 8), Image.NEAREST), (x + 4, y + 4))
        draw.multiline_text((x + 4, y + cell), "\n".join(textwrap.wrap(m["caption"], 30)[:4]), fill="black", font=font)
    grid.save(path)
    return Path(path)


def export_scenes(out_dir, dest, *, split: str = "train", format: str = "csv", per_shard: int = 1000) -> str:
    """Write a cached split as PNG + CSV (returns the CSV path) or as webdataset shards
    (returns the brace spec) so any loader (or open_clip's trainer) can read it."""
    images, metas = load_split(out_dir, split)
    pairs = ((Image.fromarray(np.asarray(images[i])), metas[i]["caption"]) for i in range(len(metas)))
    if format == "csv":
        from cloob.data.csvfile import write_csv

        return str(write_csv(pairs, Path(dest) / f"{split}.csv"))
    if format == "wds":
        from cloob.data.wds import write_wds

        return write_wds(pairs, dest, per_shard=per_shard, prefix=split)
    raise ValueError(f"format must be 'csv' or 'wds', got {format!r}")


# ------------------------------------------------------------------ datasets
class _Cached:
    def _arr(self):
        if self._images is None:  # opened lazily, once per worker process
            self._images = np.load(self._path, mmap_mode="r")
        return self._images

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_images"] = None
        return d

    def image(self, i: int) -> Image.Image:
        return Image.fromarray(np.asarray(self._arr()[i]))


class ScenesPairs(_Cached):
    """Map-style (image, tokens) pairs of the cached ``train`` split."""

    def __init__(self, out_dir, *, image_transform: Callable | None, tokenizer: Callable | None, split: str = "train"):
        d, _ = _require(out_dir, split)
        self._path, self._images, self.name = d / "images.npy", None, f"scenes:{out_dir}"
        with open(d / "meta.jsonl", encoding="utf-8") as f:
            self.captions = [json.loads(line)["caption"] for line in f]
        self.image_transform, self.tokenizer = image_transform, tokenizer

    def __len__(self):
        return len(self.captions)

    def __getitem__(self, i):
        from cloob.data.csvfile import finish_pair

        return finish_pair(self.image(i), self.captions[i], self.image_transform, self.tokenizer)


class ScenesLabelled(_Cached):
    """(image, label) of ``eval_scene`` (classes = scene names) or ``eval_object`` (e.g. "red circle")."""

    def __init__(self, out_dir, split: str, *, image_transform: Callable | None):
        d, _ = _require(out_dir, split)
        self._path, self._images, self.name = d / "images.npy", None, f"scenes-{split}:{out_dir}"
        with open(d / "meta.jsonl", encoding="utf-8") as f:
            self.labels = [json.loads(line)["label"] for line in f]
        self.classes = list(SCENE_NAMES if split == "eval_scene" else OBJECT_CLASSES)
        self.image_transform = image_transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = self.image(i)
        return (self.image_transform(img) if self.image_transform else img), self.labels[i]


class ScenesRetrieval(_Cached):
    """Images of ``eval_retrieval`` with ``CAPTIONS_PER_IMAGE`` captions each."""

    def __init__(self, out_dir, *, image_transform: Callable | None):
        d, _ = _require(out_dir, "eval_retrieval")
        self._path, self._images, self.name = d / "images.npy", None, f"scenes-retrieval:{out_dir}"
        with open(d / "meta.jsonl", encoding="utf-8") as f:
            self.captions = [json.loads(line)["captions"] for line in f]
        self.image_transform = image_transform

    def __len__(self):
        return len(self.captions)

    def __getitem__(self, i):
        img = self.image(i)
        return (self.image_transform(img) if self.image_transform else img), i
