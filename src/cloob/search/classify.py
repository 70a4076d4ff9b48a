"""``cloob classify``: zero-shot labels for every image of a folder, as CSV.

Class weights are the template ensemble of the evaluations
(:func:`cloob.evals.zeroshot.zeroshot_classifier`: each class name in every template, encoded,
normalised, averaged, normalised again). An image's class is the argmax of its cosine
similarity to those weights; ``score`` is that similarity and ``probability`` the softmax over
classes at the model's own temperature (1/τ). Images that cannot be read are rows with an empty
class and the reason in ``skipped``, so every image of the folder has exactly one row.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from cloob.data.bad import BadSampleError, DataError, handle_bad, load_image
from cloob.data.folder import IMAGE_SUFFIXES
from cloob.data.policy import DEFAULT_POLICY, ReadPolicy

COLUMNS = ("path", "class", "score", "probability", "skipped")


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, symbolic links to directories not followed), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {str(folder)!r} does not exist")
    found = []
    for dirpath, dirnames, files in os.walk(folder):
        dirnames.sort()
        found.extend(Path(dirpath) / f for f in files if f.lower().endswith(IMAGE_SUFFIXES))
    if not found:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return sorted(found)


class ImageFiles(Dataset):
    """``ds[i] -> (image tensor, i)`` or a :class:`~cloob.data.bad.BadSample`."""

    def __init__(self, paths: Sequence[Path], transform: Callable, policy: ReadPolicy = DEFAULT_POLICY,
                 strict: bool = False):
        self.paths, self.transform, self.policy, self.strict = list(paths), transform, policy, strict
        self.name = "images"

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            image = load_image(self.paths[i], row=i, policy=self.policy)
        except BadSampleError as e:
            return handle_bad(e, self.strict)
        return self.transform(image), i


def parse_classes(classes: str | None, classes_file: str | None) -> list[str]:
    """Class names from ``a,b,c`` or a file with one name per line (exactly one of the two)."""
    from cloob.evals.templates import load_classnames

    if bool(classes) == bool(classes_file):
        raise ValueError("give the classes with either --classes a,b,c or --classes-file FILE")
    names = [c.strip() for c in classes.split(",")] if classes else load_classnames(classes_file)
    names = [c for c in names if c]
    if len(names) < 2:
        raise ValueError(f"zero-shot labelling needs at least two classes, got {names}")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise ValueError(f"class names repeated: {', '.join(dup)}")
    return names


@torch.no_grad()
def classify(encoder, paths: Sequence[Path], classes: Sequence[str], templates: Sequence[str], *,
             batch_size: int = 256, num_workers: int = 0, policy: ReadPolicy = DEFAULT_POLICY,
             progress: bool = True):
    """Per image (in ``paths`` order): ``(class, score, probability, skipped reason)``; returns
    (that list, the :class:`~cloob.data.bad.BadSampleReport`)."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from cloob.data.bad import BadSampleReport
    from cloob.data.loader import collate
    from cloob.evals.zeroshot import zeroshot_classifier

    W = zeroshot_classifier(encoder.model, encoder.tokenizer, list(classes), list(templates)).float().cpu()  # (C, d)
    inv_tau = float(encoder.model.inv_tau)
    ds = ImageFiles(paths, encoder.transform, policy)
    # cloob's collate hands the bad samples back with their batch; each carries its row (the image's index)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    report = BadSampleReport(str(Path(paths[0]).parent) if paths else "")
    out: list = [None] * len(paths)
    for images, idx, bad in tqdm(loader, total=len(loader), unit="batch", desc="classify", disable=not progress):
        for b in bad:
            report.add(b)
            out[b.row] = ("", float("nan"), float("nan"), b.reason)
        if images is None:
            continue
        report.n_ok += len(images)
        x = torch.from_numpy(encoder.encode_images(images))  # (B, d) unit rows
        sims = x @ W.T  # (B, C) cosine similarities
        prob = torch.softmax(inv_tau * sims, dim=1)
        best = sims.argmax(dim=1)
        for j, i in enumerate(idx.tolist()):
            c = int(best[j])
            out[i] = (classes[c], float(sims[j, c]), float(prob[j, c]), "")
    return out, report


def write_csv(rows, paths: Sequence[Path], root: Path, f) -> None:
    """The CSV of :data:`COLUMNS`; paths relative to ``root``."""
    w = csv.writer(f)
    w.writerow(COLUMNS)
    for p, (cls, score, prob, skipped) in zip(paths, rows):
        rel = os.path.relpath(p, root)
        if skipped:
            w.writerow((rel, "", "", "", skipped))
        else:
            w.writerow((rel, cls, f"{score:.6f}", f"{prob:.6f}", ""))

