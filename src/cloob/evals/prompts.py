"""Class names and zero-shot prompt templates of the benchmark datasets, from the field's packages.

Nothing is retyped here: the packages' files are read as installed.

- ``imagenet``, ``imagenetv2``: open_clip's ``zero_shot_metadata`` (``IMAGENET_CLASSNAMES``, and
  ``OPENAI_IMAGENET_TEMPLATES``: 80).
- a clip-benchmark dataset (cloob's name mapped to its key by :data:`PACKAGE_KEYS`): templates from its
  ``en_zeroshot_classification_templates.json``; class names from its ``en_classnames.json`` where it
  lists them, else from CLIP's published list shipped as ``prompts/<name>.json``.
- ``birdsnap``, ``ucf101`` (in neither package): names and templates from ``prompts/<name>.json``,
  CLIP's published prompt lists (openai/CLIP ``data/prompts.md``, as the CLOOB reference repository).

``classnames(name, dataset_classes)``: where clip-benchmark lists no names it takes the dataset's own
(torchvision's), ``_`` read as a space, as CLIP_benchmark does; CLIP's list stands in when the dataset
has none (bare ids), or always for :data:`LABEL_ORDER` datasets, whose list fixes the label order.
:data:`PROMPT_SOURCES` says where each dataset's names and templates come from (for result files).
"""
from __future__ import annotations

import difflib
import functools
import json
from importlib import resources

IMAGENET = ("imagenet", "imagenetv2")  # open_clip's metadata
# cloob's name -> clip-benchmark's key, where they differ (other vtab/<x> -> x)
PACKAGE_KEYS = {"flowers102": "flowers", "stanford_cars": "cars", "imagenet": "imagenet1k",
                "imagenetv2": "imagenet1k", "vtab/flowers": "flowers", "vtab/pets": "pets",
                "vtab/caltech101": "caltech101_vtab"}
# prompts/<name>.json: CLIP's lists, for the datasets whose class names neither package has
SHIPPED = ("birdsnap", "ucf101", "stanford_cars", "cifar10", "cifar100", "dtd", "fgvc_aircraft", "food101",
           "sun397", "stl10", "resisc45", "renderedsst2")
# the shipped order is the label order of the reference repository's zips: it beats a dataset's own names
LABEL_ORDER = ("birdsnap", "ucf101", "stanford_cars")
_OPEN_CLIP = "open_clip.zero_shot_metadata"
_CB_NAMES, _CB_TEMPLATES = "en_classnames.json", "en_zeroshot_classification_templates.json"


@functools.lru_cache(maxsize=None)
def _package_json(name: str) -> dict:
    return json.loads((resources.files("clip_benchmark") / "datasets" / name).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def _shipped(name: str) -> dict:
    return json.loads((resources.files("cloob.evals") / "prompts" / f"{name}.json").read_text(encoding="utf-8"))


def _key(dataset: str) -> str:
    return PACKAGE_KEYS.get(dataset, dataset.split("/")[-1])


def _template_key(dataset: str) -> str | None:
    table = _package_json(_CB_TEMPLATES)
    for k in (_key(dataset), _key(dataset).removesuffix("_vtab")):  # VTAB's caltech101 has caltech101's
        if k in table:
            return k
    return None


@functools.lru_cache(maxsize=None)
def _known() -> tuple[str, ...]:
    from cloob.data.published import VTAB  # CLIP_benchmark's VTAB+ selection, as cloob reads it

    theirs = set(_package_json(_CB_NAMES)) | set(_package_json(_CB_TEMPLATES))
    theirs -= {"dummy"} | {PACKAGE_KEYS[k] for k in ("flowers102", "stanford_cars", "imagenet")}
    names = theirs | set(IMAGENET) | set(SHIPPED) | {"flowers102", "stanford_cars"} | {f"vtab/{n}" for n in VTAB}
    return tuple(sorted(n for n in names if n in IMAGENET or n in SHIPPED or _template_key(n)))


def known() -> list[str]:
    """Every dataset name with templates here."""
    return list(_known())


def _check(dataset: str) -> None:
    if dataset not in _known():
        ranked = difflib.get_close_matches(dataset, _known(), n=len(_known()), cutoff=0.0)
        raise ValueError(f"unknown dataset {dataset!r} for class names and templates; known (closest first): "
                         f"{', '.join(ranked)} (or pass --classnames/--templates files)")


def _own(dataset: str, dataset_classes) -> list[str] | None:
    """A dataset's own names as CLIP_benchmark words them; None when it has none (ids only)."""
    if dataset_classes is None or all(str(c).isdigit() for c in dataset_classes):
        return None
    out = [str(c).replace("_", " ") for c in dataset_classes]
    return [c.replace("/", " ") for c in out] if _key(dataset) == "sun397" else out


def classnames(dataset: str, dataset_classes=None) -> list[str]:
    """Class names in label order.

    ``dataset_classes``: the dataset's own names (e.g. torchvision's ``classes``), which CLIP_benchmark
    uses where its JSON lists none; without them (or with bare ids) CLIP's published list is used.
    """
    _check(dataset)
    if dataset in IMAGENET:
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        return list(IMAGENET_CLASSNAMES)
    names = _package_json(_CB_NAMES).get(_key(dataset))
    if names is not None:
        return list(names)
    shipped = _key(dataset) if _key(dataset) in SHIPPED else dataset if dataset in SHIPPED else None
    own = None if dataset in LABEL_ORDER else _own(dataset, dataset_classes)
    if own is not None:
        return own
    if shipped is not None:
        return list(_shipped(shipped)["classnames"])
    raise ValueError(f"dataset {dataset!r}: neither clip-benchmark, open_clip nor CLIP's lists name its classes; "
                     "pass the dataset's own class names (dataset_classes) or a --classnames file")


def templates(dataset: str) -> list[str]:
    """Prompt templates, each with one ``{}``."""
    _check(dataset)
    if dataset in IMAGENET:
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        return [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]  # the metadata holds them as lambdas
    key = _template_key(dataset)
    if key is not None:
        return [t.replace("{c}", "{}") for t in _package_json(_CB_TEMPLATES)[key]]  # clip-benchmark writes {c}
    return list(_shipped(dataset)["templates"])


def source(dataset: str, dataset_classes=None) -> str:
    """Where a dataset's names and templates come from (given ``dataset_classes`` as for :func:`classnames`)."""
    _check(dataset)
    if dataset in IMAGENET:
        return f"class names: {_OPEN_CLIP}.IMAGENET_CLASSNAMES; templates: {_OPEN_CLIP}.OPENAI_IMAGENET_TEMPLATES"
    key, tkey = _key(dataset), _template_key(dataset)
    shipped = key if key in SHIPPED else dataset if dataset in SHIPPED else None
    if key in _package_json(_CB_NAMES):
        names = f"clip-benchmark {_CB_NAMES}[{key!r}]"
    elif dataset not in LABEL_ORDER and _own(dataset, dataset_classes) is not None:
        names = "the dataset's own class names ('_' as a space, as CLIP_benchmark)"
    elif shipped is not None:
        names = f"cloob.evals/prompts/{shipped}.json ({_shipped(shipped)['source']})"
    else:
        names = "the dataset's own class names (none listed by the packages)"
    where = f"clip-benchmark {_CB_TEMPLATES}[{tkey!r}]" if tkey else f"cloob.evals/prompts/{dataset}.json"
    return f"class names: {names}; templates: {where}"


@functools.lru_cache(maxsize=None)
def _prompt_sources() -> dict[str, str]:
    return {name: source(name) for name in _known()}


def __getattr__(name: str):
    # PROMPT_SOURCES is built on first use: it reads every package file, which importing this module should not
    if name == "PROMPT_SOURCES":
        return _prompt_sources()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
