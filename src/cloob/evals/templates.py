"""Prompt-template sets for zero-shot classification, and class-name files.

Shipped sets (by name): ``cifar`` (CLIP's 18 CIFAR templates), ``imagenet`` (CLIP's 80
ImageNet templates from its "Prompt Engineering for ImageNet" notebook), ``generic`` (a
small domain-free set), ``scenes`` / ``scenes-object`` (the scenes data's own sets).
A user file holds one template per line, each containing ``{}`` (blank lines and lines
starting with ``#`` are ignored). A class-name file holds one class name per line.
"""
from __future__ import annotations

from pathlib import Path

from cloob.data.cifar10 import CIFAR_ZEROSHOT_TEMPLATES
from cloob.data.scenes import OBJECT_TEMPLATES, SCENE_TEMPLATES

IMAGENET_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)
GENERIC_TEMPLATES = (
    "{}", "a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a photo of the {}.",
    "a close-up photo of a {}.", "a low resolution photo of a {}.", "a photo of a small {}.",
)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "cifar": tuple(CIFAR_ZEROSHOT_TEMPLATES),
    "imagenet": IMAGENET_TEMPLATES,
    "generic": GENERIC_TEMPLATES,
    "scenes": tuple(SCENE_TEMPLATES),
    "scenes-object": tuple(OBJECT_TEMPLATES),
}


def _lines(path: Path) -> list[str]:
    return [s.strip() for s in path.read_text(encoding="utf-8").splitlines()
            if s.strip() and not s.strip().startswith("#")]


def load_templates(name_or_file: str) -> list[str]:
    """Templates of a shipped set (:data:`TEMPLATE_SETS`) or of a file (one per line, each with ``{}``)."""
    if name_or_file in TEMPLATE_SETS:
        return list(TEMPLATE_SETS[name_or_file])
    path = Path(name_or_file)
    if not path.is_file():
        raise ValueError(f"templates {name_or_file!r}: not a shipped set ({', '.join(TEMPLATE_SETS)}) "
                         "and not a file")
    templates = _lines(path)
    if not templates:
        raise ValueError(f"template file {path} holds no template")
    for i, t in enumerate(templates, 1):
        if t.count("{}") != 1:
            raise ValueError(f"template file {path}, template {i} {t!r}: expected exactly one '{{}}'")
    return templates


def load_classnames(path: str | Path, n_classes: int | None = None) -> list[str]:
    """Class names from a file, one per line (in label order)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"class-name file {path} not found")
    names = _lines(path)
    if n_classes is not None and len(names) != n_classes:
        raise ValueError(f"class-name file {path} has {len(names)} names, the dataset has {n_classes} classes")
    return names


def default_templates(spec: str) -> str:
    """The template-set name that suits a dataset spec (used when ``--templates`` is not given)."""
    spec = str(spec)
    if spec.startswith("cifar10"):
        return "cifar"
    if spec.startswith("scenes-scene:"):
        return "scenes"
    if spec.startswith("scenes-object:"):
        return "scenes-object"
    return "generic"
