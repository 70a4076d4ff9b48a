"""cloob's data layer: image–text pairs and labelled images from every supported source.

Pairs (``open_pairs``)          CSV/TSV (open_clip keys), webdataset shards, the built-in
                                 scenes cache, CIFAR-10 captions view
Labelled (``open_labelled``)    image folders, tar of folders, CIFAR-10, scenes eval splits
Retrieval (``open_retrieval``)  scenes retrieval split, CSV with several rows per image
Batches (``make_loader``)       seeded, per-rank, resumable; bad samples counted in
                                 a :class:`BadSampleReport` (see :mod:`cloob.data.bad`)

Spec strings:

=================================  ==============================================
``path/x.csv``, ``path/x.tsv``     CSV/TSV (pairs; retrieval groups rows by image)
``wds:<brace pattern>``            webdataset shards (pairs); also any ``*.tar`` path for pairs
``scenes:<DIR>``                   scenes cache, train split (pairs)
``cifar10-captions:[<DIR>]``       CIFAR-10 train split with captions (pairs)
``<DIR>`` / ``<file>.tar``         image folder / tar of ``<root>/<class>/*`` (labelled)
``cifar10:[<DIR|tar>]``            CIFAR-10 test split (labelled); ``cifar10-train:``/``cifar10-test:``
``scenes-scene:<DIR>``             scenes scene-classification split (labelled)
``scenes-object:<DIR>``            scenes object-classification split (labelled)
``scenes-retrieval:<DIR>``         scenes retrieval split (retrieval)
``flickr8k:[<DIR>]``               Flickr8k train split, human captions (pairs)
``flickr8k-val:``/``flickr8k-test:``  Flickr8k val/test split (retrieval, 5 captions per photo)
``cache:<DIR>``                    a pre-decoded uint8 cache of any pairs spec (``cloob data cache``)
=================================  ==============================================

CIFAR-10 specs with an empty path read ``shared_dir()/data/cifar10``. Flickr8k specs read the CSVs that
:func:`cloob.data.flickr8k.extract_flickr8k` extracts from ``shared_dir()/data/flickr8k/flickr8k.tar`` to
``<DIR>`` (default ``$CLOOB_CACHE/flickr8k`` or ``~/.cache/cloob/flickr8k``), extracting on first use.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from cloob.lazy import lazy_exports

# imported on first use: the modules behind these names load numpy, Pillow, torch or open_clip
_EXPORTS = {
    **dict.fromkeys(("BadSample", "BadSampleReport", "DataError", "REASONS", "to_rgb"), "cloob.data.bad"),
    "ReadPolicy": "cloob.data.policy",
    **dict.fromkeys(("collate", "first_valid", "make_loader", "rank_indices"), "cloob.data.loader"),
    **dict.fromkeys(("text_image", "texts"), "cloob.data.retrieval"),
    "image_transform": "cloob.data.transforms",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "BadSample", "BadSampleReport", "DataError", "REASONS", "ReadPolicy", "to_rgb", "collate", "make_loader",
    "rank_indices", "image_transform", "open_pairs", "open_labelled", "open_retrieval", "shared_dir", "texts",
    "text_image", "spec_kind",
]


def shared_dir() -> Path:
    """``$CLOOB_SHARED``, else ``<repo root>/../shared`` (may not exist)."""
    env = os.environ.get("CLOOB_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared"


def _split(spec: str) -> tuple[str, str]:
    spec = str(spec)
    head, sep, rest = spec.partition(":")
    if sep and head in PREFIXES:
        return head, rest
    return "", spec


def _given(**options) -> dict:
    """The options that are not None (so a dataset's own default applies otherwise)."""
    return {k: v for k, v in options.items() if v is not None}


PREFIXES = ("wds", "scenes", "cifar10-captions", "cifar10", "cifar10-train", "cifar10-test", "scenes-scene",
            "scenes-object", "scenes-retrieval", "flickr8k", "flickr8k-val", "flickr8k-test", "cache")


def _flickr8k_csv(rest: str, split: str) -> str:
    from cloob.data.flickr8k import extract_flickr8k

    return str(extract_flickr8k(rest or None, log=lambda *_: None) / f"{split}.csv")


def spec_slug(spec: str, short: bool = False) -> str:
    """The one name of a dataset spec in file names and metric keys.

    ``"scenes-scene:/x/cache"`` -> ``"scenes-scene-cache"`` (``short``: ``"scenes-scene"``);
    ``"cifar10-test:"`` -> ``"cifar10-test"``; ``"/d/pairs.csv"`` -> ``"pairs"``; ``"birdsnap:/root"`` (a
    published ``NAME:ROOT``) -> ``"birdsnap-root"`` (``short``: ``"birdsnap"``). A prefix is the text before
    the first ":" when it holds no "/"; the name is the last path component without .csv/.tsv/.tar.
    """
    import re

    spec = str(spec)
    head, sep, rest = spec.partition(":")
    prefix = head if sep and head and "/" not in head else ""
    name = re.sub(r"\.(csv|tsv|tar)$", "", Path((rest if prefix else spec).rstrip("/")).name)
    parts = (prefix,) if short and prefix else (prefix, name)
    slug = "-".join(x for x in parts if x)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", slug).strip("-") or "dataset"


def spec_kind(spec: str) -> str:
    """'pairs', 'labelled' or 'retrieval': what a spec naturally opens as."""
    prefix, rest = _split(spec)
    if prefix in ("wds", "scenes", "cifar10-captions", "flickr8k", "cache"):
        return "pairs"
    if prefix in ("scenes-retrieval", "flickr8k-val", "flickr8k-test"):
        return "retrieval"
    if prefix:
        return "labelled"
    if rest.lower().endswith((".csv", ".tsv")):
        return "pairs"
    if rest.lower().endswith(".tar") and "{" in rest:
        return "pairs"
    return "labelled"


def open_pairs(spec: str, *, image_transform: Callable | None, tokenizer: Callable | None, strict: bool = False,
               check: bool = True, policy=None, **format_options):
    """Dataset of (image, tokens) pairs (tokens = ``tokenizer([caption])[0]``; the caption
    string when ``tokenizer`` is None). Map-style for CSV/scenes/CIFAR, iterable for webdataset.

    format_options: CSV ``csv_img_key="filepath"``, ``csv_caption_key="title"``,
    ``csv_separator`` (tab for .tsv, comma for .csv); webdataset ``caption_key``,
    ``shuffle_buffer``; CIFAR ``seed``. With ``check`` (default) a source without a
    single valid sample raises :class:`DataError` here, before training starts.
    ``policy``: a :class:`~cloob.data.policy.ReadPolicy` for CSV and webdataset sources
    (data root, path check, byte and pixel limits); None = the defaults.
    """
    from cloob.data.bad import DataError
    from cloob.data.cifar10 import Cifar10Captions
    from cloob.data.csvfile import CsvPairs
    from cloob.data.loader import first_valid
    from cloob.data.scenes import ScenesPairs
    from cloob.data.wds import WdsPairs

    prefix, rest = _split(spec)
    common = dict(image_transform=image_transform, tokenizer=tokenizer, strict=strict)
    if prefix == "wds" or (not prefix and rest.lower().endswith(".tar")):
        ds = WdsPairs(rest, **common, **_given(policy=policy), **format_options)
    elif prefix == "scenes":
        # a scenes cache is validated when written (no per-sample failures to be strict about)
        ds = ScenesPairs(rest, image_transform=image_transform, tokenizer=tokenizer, **format_options)
    elif prefix == "cifar10-captions":
        ds = Cifar10Captions(rest or None, **common, **format_options)
    elif prefix == "flickr8k":
        ds = CsvPairs(_flickr8k_csv(rest, "train"), **common, **_given(policy=policy), **format_options)
    elif prefix == "cache":
        from cloob.data.decoded import DecodedPairs

        # validated when written and when opened (no per-sample failures to be strict about)
        ds = DecodedPairs(rest, image_transform=image_transform, tokenizer=tokenizer)
    elif not prefix and rest.lower().endswith((".csv", ".tsv")):
        ds = CsvPairs(rest, **common, **_given(policy=policy), **format_options)
    else:
        raise DataError(f"cannot open {spec!r} as image-text pairs: expected a .csv/.tsv file, "
                        "wds:<shards>, a .tar shard pattern, scenes:<DIR>, cifar10-captions:<DIR> or flickr8k:")
    if check:
        first_valid(ds, str(spec))
    return ds


def open_labelled(spec: str, *, image_transform: Callable | None, strict: bool = False, check: bool = True,
                  policy=None):
    """Dataset of (image, label int) with ``classes: list[str]`` (human-readable names).

    ``policy``: a :class:`~cloob.data.policy.ReadPolicy` for image folders and tars; None = the defaults.
    """
    from cloob.data.bad import DataError
    from cloob.data.cifar10 import open_cifar10
    from cloob.data.folder import ImageFolder, TarFolder
    from cloob.data.loader import first_valid
    from cloob.data.scenes import ScenesLabelled

    prefix, rest = _split(spec)
    if prefix in ("cifar10", "cifar10-test", "cifar10-train"):
        split = "train" if prefix == "cifar10-train" else "test"
        if prefix == "cifar10" and rest.endswith(".tar"):
            split = Path(rest).stem
        ds = open_cifar10(rest or None, split, image_transform=image_transform, strict=strict)
    elif prefix in ("scenes-scene", "scenes-object"):
        ds = ScenesLabelled(rest, "eval_scene" if prefix == "scenes-scene" else "eval_object",
                            image_transform=image_transform)
    elif not prefix and Path(rest).is_dir():
        ds = ImageFolder(rest, image_transform=image_transform, strict=strict, **_given(policy=policy))
    elif not prefix and rest.lower().endswith(".tar"):
        ds = TarFolder(rest, image_transform=image_transform, strict=strict, **_given(policy=policy))
    else:
        raise DataError(f"cannot open {spec!r} as labelled images: expected an image folder, a .tar of "
                        "<root>/<class>/*, cifar10[-train|-test]:<DIR>, scenes-scene:<DIR> or scenes-object:<DIR>")
    if check:
        first_valid(ds, str(spec))
    return ds


def open_retrieval(spec: str, *, image_transform: Callable | None, strict: bool = False, policy=None,
                   **format_options):
    """Images with a list of captions each: ``ds[i] -> (image, i)``, ``ds.captions[i]``;
    ``texts(ds)``/``text_image(ds)`` give the flat caption list and its image indices.
    ``policy`` (CSV): a :class:`~cloob.data.policy.ReadPolicy`; None = the defaults."""
    from cloob.data.bad import DataError
    from cloob.data.retrieval import CsvRetrieval
    from cloob.data.scenes import ScenesRetrieval

    prefix, rest = _split(spec)
    if prefix == "scenes-retrieval":
        return ScenesRetrieval(rest, image_transform=image_transform)
    if prefix in ("flickr8k-val", "flickr8k-test"):
        rest = _flickr8k_csv(rest, prefix.split("-")[1])
    if rest.lower().endswith((".csv", ".tsv")) and (not prefix or prefix.startswith("flickr8k")):
        return CsvRetrieval(rest, image_transform=image_transform, strict=strict, **_given(policy=policy),
                            **format_options)
    raise DataError(f"cannot open {spec!r} as a retrieval set: expected scenes-retrieval:<DIR>, flickr8k-val:, "
                    "flickr8k-test: or a .csv/.tsv")
