"""Encode datasets to features once, and cache them on disk.

``encode_labelled(model, dataset)`` -> :class:`Features` (image features, labels, the dataset
indices that survived the bad-sample rule). ``encode_retrieval(model, tokenizer, dataset)``
-> :class:`RetrievalFeatures`. :func:`cached` wraps either with a ``.npz`` cache keyed by
a hash of (checkpoint path, its step and weights mtime, dataset spec, transform repr),
stored under ``<checkpoint dir>/features/`` or a user cache directory.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cloob.data import BadSample, BadSampleReport, make_loader


@dataclass
class Features:
    """features: (N, d) float32 unit rows; labels: (N,) int64; indices: (N,) dataset indices."""

    features: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    classes: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    cached: bool = False


@dataclass
class RetrievalFeatures:
    """image_features: (N_img, d); text_features: (N_txt, d); text_image: (N_txt,) image row of each text;
    indices: (N_img,) dataset indices of the images (bad images dropped, with their captions)."""

    image_features: np.ndarray
    text_features: np.ndarray
    text_image: np.ndarray
    indices: np.ndarray
    report: dict = field(default_factory=dict)
    cached: bool = False


class _Indexed(torch.utils.data.Dataset):
    """(x, label) -> (x, tensor([label, index])) so the survivors of bad-sample dropping are known."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.name = getattr(dataset, "name", "")

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        s = self.dataset[i]
        if isinstance(s, BadSample):
            return s
        return s[0], torch.tensor([int(s[1]), i])


class FirstCaption(torch.utils.data.Dataset):
    """A retrieval set (``ds[i] -> (image, i)``, ``ds.captions[i]``) read as pairs of (image, first caption)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        s = self.dataset[i]
        return s if isinstance(s, BadSample) else (s[0], self.dataset.captions[int(s[1])][0])


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


@torch.no_grad()
def encode_images(model, loader, *, progress: bool = False, desc: str = "encode") -> tuple[np.ndarray, np.ndarray]:
    """Run ``model.encode_image`` over ``(images, ys)`` batches -> (features (N, d) float32, ys (N, ...))."""
    from tqdm import tqdm

    device = _model_device(model)
    feats, ys = [], []
    total = len(loader) if hasattr(loader, "__len__") else None
    for images, y in tqdm(loader, total=total, desc=desc, unit="batch", disable=not progress, leave=False):
        f = model.encode_image(images.to(device))
        feats.append(f.float().cpu())
        ys.append(y)
    if not feats:
        raise ValueError("no images to encode")
    return torch.cat(feats).numpy(), torch.cat(ys).numpy()


@torch.no_grad()
def encode_texts(model, tokenizer: Callable, texts: list[str], *, batch_size: int = 256) -> torch.Tensor:
    """(N_txt, d) float32 text features (on the model's device) of a list of strings."""
    device = _model_device(model)
    out = [model.encode_text(tokenizer(texts[i : i + batch_size]).to(device)).float()
           for i in range(0, len(texts), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def encode_pairs(model, tokenizer: Callable, loader, *, limit: int | None = None, batch_size: int = 256,
                 progress: bool = False, desc: str = "encode") -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Features of matched pairs from ``(images, captions)`` batches, the first ``limit`` pairs (None = all).

    Returns (image_features (N, d), text_features (N, d), captions): float32 on the CPU, row i of each is one
    pair. The texts are encoded after the images, ``batch_size`` at a time.
    """
    from tqdm import tqdm

    device = _model_device(model)
    feats, captions = [], []
    with tqdm(total=limit, desc=desc, unit="pair", disable=not progress, leave=False) as bar:
        for images, caps in loader:
            caps = list(caps)[: None if limit is None else limit - len(captions)]
            feats.append(model.encode_image(images[: len(caps)].to(device)).float().cpu())
            captions += caps
            bar.update(len(caps))
            if limit is not None and len(captions) >= limit:
                break
    if not captions:
        raise ValueError("no pairs to encode")
    return torch.cat(feats), encode_texts(model, tokenizer, captions, batch_size=batch_size).cpu(), captions


def encode_labelled(model, dataset, *, batch_size: int = 256, num_workers: int = 0,
                    progress: bool = False) -> Features:
    """Image features of a labelled dataset (bad images skipped and counted in ``report``)."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    loader = make_loader(_Indexed(dataset), batch_size, shuffle=False, seed=0, drop_last=False,
                         num_workers=num_workers)
    feats, li = encode_images(model, loader, progress=progress, desc=f"encode {getattr(dataset, 'name', '')}")
    if was_training:
        model.train()
    report = loader.report
    if getattr(dataset, "report", None) is not None:  # tar members refused while indexing
        report.merge(dataset.report)
    return Features(feats, li[:, 0].astype(np.int64), li[:, 1].astype(np.int64),
                    list(getattr(dataset, "classes", [])), report.to_dict())


def encode_retrieval(model, tokenizer: Callable, dataset, *, batch_size: int = 256, num_workers: int = 0,
                     progress: bool = False) -> RetrievalFeatures:
    """Image features of a retrieval set and text features of all captions of its valid images."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    loader = make_loader(dataset, batch_size, shuffle=False, seed=0, drop_last=False, num_workers=num_workers)
    img, idx = encode_images(model, loader, progress=progress, desc=f"encode {getattr(dataset, 'name', '')}")
    texts, owner = [], []
    for row, i in enumerate(idx.tolist()):
        for c in dataset.captions[i]:
            texts.append(c)
            owner.append(row)
    txt = encode_texts(model, tokenizer, texts, batch_size=batch_size).cpu().numpy()
    if was_training:
        model.train()
    report = loader.report
    if getattr(dataset, "report", None) is not None:  # captions dropped while reading a CSV
        report.merge(dataset.report)
    return RetrievalFeatures(img, txt, np.asarray(owner, dtype=np.int64), idx.astype(np.int64), report.to_dict())


# ------------------------------------------------------------------ cache
def cache_key(checkpoint: str | Path | None, step, spec: str, transform, kind: str) -> str:
    """Hash of (checkpoint path, step, weights mtime, dataset spec, transform repr, kind)."""
    mtime = None
    if checkpoint is not None:
        w = Path(checkpoint) / "model.safetensors" if Path(checkpoint).is_dir() else Path(checkpoint)
        mtime = w.stat().st_mtime_ns if w.is_file() else None
        checkpoint = str(Path(checkpoint).resolve())
    blob = json.dumps([checkpoint, step, mtime, str(spec), repr(transform), kind])
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def cache_path(cache_dir: str | Path, key: str, slug: str, kind: str) -> Path:
    return Path(cache_dir) / f"{kind}-{slug}-{key}.npz"


def save_features(path: Path, feats) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in vars(feats).items() if isinstance(v, np.ndarray)}
    extra = {k: v for k, v in vars(feats).items() if not isinstance(v, np.ndarray) and k != "cached"}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, __meta__=np.asarray(json.dumps(extra)), **arrays)
    tmp.replace(path)


def load_features(path: Path, cls):
    with np.load(path) as z:
        kw = {k: z[k] for k in z.files if k != "__meta__"}
        kw.update(json.loads(str(z["__meta__"])))
    return cls(**kw, cached=True)


def cached(compute: Callable[[], object], cls, cache_file: Path | None, log: Callable[[str], None] = print):
    """Load ``cache_file`` if it exists, else ``compute()`` and save it there (None = no cache)."""
    if cache_file is not None and cache_file.is_file():
        log(f"features: reusing {cache_file}")
        return load_features(cache_file, cls)
    t0 = time.perf_counter()
    feats = compute()
    if cache_file is not None:
        save_features(cache_file, feats)
        log(f"features: encoded in {time.perf_counter() - t0:.1f} s, cached at {cache_file}")
    return feats


def report_text(report: dict) -> str:
    """The bad-sample report of a features object as text ('' when nothing was skipped)."""
    if not report:
        return ""
    r = BadSampleReport.from_dict(report)
    return r.format() if r.n_bad else ""
