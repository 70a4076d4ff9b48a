"""Prompt-template sets for zero-shot classification, and class-name files.

Sets by name: ``cifar`` (CLIP's 18 CIFAR templates, from clip-benchmark's file), ``imagenet`` (OpenAI's
80 ImageNet templates, from open_clip's ``zero_shot_metadata``), every dataset name of
:mod:`cloob.evals.prompts` (its templates), ``generic`` (a small domain-free set),
``scenes`` / ``scenes-object`` (the scenes data's own sets).
A user file holds one template per line, each containing ``{}`` (blank lines and lines
starting with ``#`` are ignored). A class-name file holds one class name per line.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

from cloob.data.scenes import OBJECT_TEMPLATES, SCENE_TEMPLATES
from cloob.evals import prompts

GENERIC_TEMPLATES = (
    "{}", "a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a photo of the {}.",
    "a close-up photo of a {}.", "a low resolution photo of a {}.", "a photo of a small {}.",
)


# set name -> how to get it; the packages' sets are read on first use, not on import
_SETS = {
    "cifar": lambda: tuple(prompts.templates("cifar10")),  # clip-benchmark's cifar10 set (CLIP's 18)
    "imagenet": lambda: tuple(prompts.templates("imagenet")),  # open_clip's OPENAI_IMAGENET_TEMPLATES (80)
    "generic": lambda: GENERIC_TEMPLATES,
    "scenes": lambda: tuple(SCENE_TEMPLATES),
    "scenes-object": lambda: tuple(OBJECT_TEMPLATES),
}


class _TemplateSets(Mapping):
    """Read-only ``{set name: tuple of templates}``, each set built when first looked up."""

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return _set(name)

    def __contains__(self, name) -> bool:
        return name in _SETS

    def __iter__(self):
        return iter(_SETS)

    def __len__(self) -> int:
        return len(_SETS)


@functools.lru_cache(maxsize=None)
def _set(name: str) -> tuple[str, ...]:
    return _SETS[name]()


TEMPLATE_SETS: Mapping[str, tuple[str, ...]] = _TemplateSets()


def __getattr__(name: str):
    # the old module-level tuple, kept for existing imports
    if name == "IMAGENET_TEMPLATES":
        return TEMPLATE_SETS["imagenet"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _lines(path: Path) -> list[str]:
    return [s.strip() for s in path.read_text(encoding="utf-8").splitlines()
            if s.strip() and not s.strip().startswith("#")]


def load_templates(name_or_file: str) -> list[str]:
    """Templates of a set (:data:`TEMPLATE_SETS`), of a file (one per line, each with ``{}``), or of a
    dataset name of :mod:`cloob.evals.prompts` (an existing file of that name wins)."""
    if name_or_file in TEMPLATE_SETS:
        return list(TEMPLATE_SETS[name_or_file])
    path = Path(name_or_file)
    if not path.is_file() and name_or_file in prompts.known():
        return prompts.templates(name_or_file)
    if not path.is_file():
        raise ValueError(f"templates {name_or_file!r}: not a set ({', '.join(TEMPLATE_SETS)}, or a dataset "
                         "name of cloob.evals.prompts) and not a file")
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
