"""Karpathy-split JSON (Flickr8k, Flickr30k, COCO) read as a retrieval set, from local files only."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from cloob.data.bad import BadSampleError, BadSampleReport, DataError, check_caption, handle_bad
from cloob.data.policy import DEFAULT_POLICY, ReadPolicy, resolve_under
from cloob.data.retrieval import CsvRetrieval

# where a missing published dataset sends the user (every reader of published layouts says it)
HINT = 'see README "Reproduce the paper\'s Table 1"'
IMAGE_DIRS = ("images", "Flicker8k_Dataset", "flickr30k-images")  # under the JSON's folder, after the folder itself


def _karpathy_json(path: Path) -> Path:
    """The JSON itself, or the one ``dataset_*.json`` in a folder (``dataset_<folder>.json`` among several)."""
    if path.is_file():
        return path
    found = sorted(path.glob("dataset_*.json")) if path.is_dir() else []
    if len(found) > 1:
        found = [f for f in found if f.name == f"dataset_{path.name}.json"] or found
    if len(found) != 1:
        what = f"several: {', '.join(f.name for f in found)}" if found else "none"
        raise DataError(f"{path}: expected a Karpathy-split JSON (dataset_flickr8k.json, dataset_flickr30k.json, "
                        f"dataset_coco.json) or a folder holding one; found {what}; {HINT}")
    return found[0]


class KarpathyRetrieval(CsvRetrieval):
    """A Karpathy-split JSON (Flickr8k, Flickr30k, COCO) as a retrieval set: CsvRetrieval's reading,
    built from the JSON's images of one ``split`` (its ``split`` field exactly: ``train``, ``val``,
    ``test``, ``restval``), in file order.

    ``paths[i]`` = ``image_root/[filepath/]filename`` (``filepath``: COCO's ``val2014``/``train2014``);
    ``captions[i]`` the image's ``sentences[*].raw``. A path that leaves ``image_root`` and a bad
    caption are counted in ``report``; an image left without captions is dropped.
    """

    def __init__(self, path, split: str = "test", *, image_transform=None, image_root=None, strict=False,
                 policy: ReadPolicy = DEFAULT_POLICY):
        path = _karpathy_json(Path(path))
        self.name, self.image_transform, self.strict, self.policy = str(path), image_transform, strict, policy
        self.report = BadSampleReport(self.name)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            images = [im for im in doc["images"] if im.get("split") == split]
            rel = [os.path.join(im.get("filepath", ""), im["filename"]) for im in images]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataError(f"{path}: not a Karpathy-split JSON ({type(e).__name__}: {e})") from e
        if not images:
            raise DataError(f"{path}: no image with split {split!r}")
        self.dataset = doc.get("dataset")  # "flickr8k", "flickr30k", "coco"
        self.image_root = self._image_root(path, image_root, rel[0])
        self.paths, self.captions = [], []
        for row, (im, r) in enumerate(zip(images, rel)):
            full, problem = resolve_under(r, self.image_root, policy.allow_any_path)  # the JSON names what, not where
            if problem:
                self.report.add(handle_bad(BadSampleError("outside_root", r, row, problem), strict))
                continue
            caps = []
            for s in im.get("sentences", []):
                try:
                    caps.append(check_caption(s.get("raw"), str(path), row))
                except BadSampleError as e:
                    self.report.add(handle_bad(e, strict))
            if caps:
                self.paths.append(full)
                self.captions.append(caps)
        if not self.paths:
            raise DataError(f"{path}: no image of split {split!r} with a usable caption:\n{self.report.format()}")

    @staticmethod
    def _image_root(path: Path, image_root, first: str) -> str:
        if image_root is not None:
            return str(image_root)
        tried = [path.parent, *(path.parent / d for d in IMAGE_DIRS)]
        for d in tried:
            if (d / first).is_file():
                return str(d)
        raise DataError(f"{path}: images not found: tried {', '.join(str(d / first) for d in tried)}; "
                        "pass image_root")


def open_retrieval_json(path_or_root, split: str = "test", *, image_transform: Callable | None = None,
                        image_root=None, strict: bool = False, policy: ReadPolicy | None = None) -> KarpathyRetrieval:
    """Images of one Karpathy split with their captions: ``ds[i] -> (image, i)``, ``ds.captions[i]``
    (list of str), as :func:`cloob.data.open_retrieval` returns (``texts``/``text_image`` apply).

    ``path_or_root``: ``dataset_*.json`` or its folder. ``image_root``: where ``[filepath/]filename``
    lies; default the JSON's folder, then its ``images``, ``Flicker8k_Dataset``, ``flickr30k-images``
    (the first holding the split's first image).
    """
    return KarpathyRetrieval(path_or_root, split, image_transform=image_transform, image_root=image_root,
                             strict=strict, policy=policy or DEFAULT_POLICY)
