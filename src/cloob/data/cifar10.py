"""CIFAR-10 from ``<shared>/data/cifar10/{train,test}.tar`` (JPEG members
``cifar10/<split>/<class>/<NNNN>.jpg``), read in place from the tar.

Labelled sets: :func:`open_cifar10` (labels in :data:`CLASSES` order).
Image–text view of the train split (:class:`Cifar10Captions`) for pretraining:
the caption of image ``i`` is a pure function of ``(seed, i)`` (exact resume):
a template from :data:`PRETRAIN_TEMPLATES`, filled with a noun phrase made of a
synonym from :data:`SYNONYMS` (with its article) and, for templates with a
``{where}`` slot, a class-specific context from :data:`CONTEXTS`.

Zero-shot evaluation uses :data:`CIFAR_ZEROSHOT_TEMPLATES` (CLIP's 18 CIFAR
prompts). The pretraining templates are disjoint from them, and no rendered
pretraining caption equals a rendered zero-shot prompt (tested).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from cloob.data.bad import BadSample, DataError
from cloob.data.folder import TarFolder

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

SYNONYMS: dict[str, tuple[str, ...]] = {
    "airplane": ("airplane", "plane", "jet", "aircraft", "airliner", "propeller plane"),
    "automobile": ("automobile", "car", "sedan", "hatchback", "sports car", "station wagon"),
    "bird": ("bird", "sparrow", "songbird", "ostrich", "finch", "little bird"),
    "cat": ("cat", "kitten", "tabby cat", "house cat", "kitty"),
    "deer": ("deer", "stag", "doe", "fawn", "reindeer"),
    "dog": ("dog", "puppy", "terrier", "hound", "pet dog"),
    "frog": ("frog", "toad", "tree frog", "bullfrog"),
    "horse": ("horse", "pony", "stallion", "mare", "foal"),
    "ship": ("ship", "boat", "cargo ship", "ferry", "sailing ship", "cruise liner"),
    "truck": ("truck", "lorry", "pickup truck", "fire truck", "dump truck", "delivery truck"),
}
CONTEXTS: dict[str, tuple[str, ...]] = {
    "airplane": ("in the sky", "on the runway", "above the clouds", "at the airport"),
    "automobile": ("parked on the street", "on the road", "in a parking lot", "in front of a house"),
    "bird": ("on a branch", "in the grass", "on a fence", "near the water"),
    "cat": ("on the sofa", "in the garden", "on the floor", "by the window"),
    "deer": ("in the forest", "in a meadow", "in the snow", "at the edge of the woods"),
    "dog": ("in the park", "on the lawn", "on the beach", "in the yard"),
    "frog": ("on a leaf", "in the pond", "on a rock", "in the mud"),
    "horse": ("in a field", "in the paddock", "on the farm", "near a fence"),
    "ship": ("at sea", "in the harbour", "on the water", "near the coast"),
    "truck": ("on the highway", "at a construction site", "parked on the street", "on a dirt road"),
}
# {} = noun phrase with its article ("a jet", "an automobile"); {where} = a context from CONTEXTS
PRETRAIN_TEMPLATES = (
    "{}",
    "{} {where}",
    "a picture of {}",
    "a picture of {} {where}",
    "a snapshot of {} {where}",
    "an image showing {}",
    "a close-up of {}",
    "a low-resolution image of {}",
    "a tiny photograph of {} {where}",
    "there is {} {where}",
    "my photo of {}",
    "a shot of {} {where}",
)
CIFAR_ZEROSHOT_TEMPLATES = (
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.",
    "a low contrast photo of a {}.", "a high contrast photo of a {}.", "a bad photo of a {}.",
    "a good photo of a {}.", "a photo of a small {}.", "a photo of a big {}.", "a photo of the {}.",
    "a blurry photo of the {}.", "a black and white photo of the {}.", "a low contrast photo of the {}.",
    "a high contrast photo of the {}.", "a bad photo of the {}.", "a good photo of the {}.",
    "a photo of the small {}.", "a photo of the big {}.",
)


def _with_article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def caption(label: int, seed: int, index: int) -> str:
    """Pretraining caption of image ``index`` with class ``label``; pure in (seed, index)."""
    rng = random.Random(f"cifar10-captions/{seed}/{index}")
    cls = CLASSES[label]
    t = PRETRAIN_TEMPLATES[rng.randrange(len(PRETRAIN_TEMPLATES))]
    noun = _with_article(SYNONYMS[cls][rng.randrange(len(SYNONYMS[cls]))])
    where = CONTEXTS[cls][rng.randrange(len(CONTEXTS[cls]))]
    return t.format(noun, where=where)


def all_pretrain_captions() -> set[str]:
    """Every caption the pretraining view can produce (for the disjointness check)."""
    out = set()
    for cls in CLASSES:
        for t in PRETRAIN_TEMPLATES:
            for syn in SYNONYMS[cls]:
                for where in CONTEXTS[cls]:
                    out.add(t.format(_with_article(syn), where=where))
    return out


def resolve(path: str | Path | None, split: str) -> Path:
    """A directory holding ``{split}.tar`` or the tar itself -> the tar path."""
    if path in (None, ""):
        from cloob.data import shared_dir

        path = shared_dir() / "data" / "cifar10"
    p = Path(path)
    if p.is_dir():
        p = p / f"{split}.tar"
    if not p.is_file():
        raise DataError(f"CIFAR-10 {split} archive not found at {str(p)!r} "
                        "(set CLOOB_SHARED or pass the directory holding train.tar/test.tar)")
    return p


def open_cifar10(path=None, split: str = "test", *, image_transform: Callable | None = None,
                 strict: bool = False) -> TarFolder:
    """Labelled CIFAR-10 split (``classes`` = :data:`CLASSES`) read from its tar."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return TarFolder(resolve(path, split), image_transform=image_transform, strict=strict, classes=CLASSES)


class Cifar10Captions(Dataset):
    """Image–text view of a CIFAR-10 split: ``self[i] -> (image, tokens)``."""

    def __init__(self, path=None, *, image_transform: Callable | None, tokenizer: Callable | None,
                 strict: bool = False, seed: int = 0, split: str = "train"):
        self.images = open_cifar10(path, split, image_transform=image_transform, strict=strict)
        self.tokenizer, self.seed = tokenizer, seed
        self.name = f"cifar10-captions:{self.images.path}"

    def __len__(self):
        return len(self.images)

    def caption(self, i: int) -> str:
        return caption(self.images.items[i][1], self.seed, i)

    def __getitem__(self, i):
        s = self.images[i]
        if isinstance(s, BadSample):
            return s
        text = self.caption(i)
        return s[0], (self.tokenizer([text])[0] if self.tokenizer is not None else text)
