"""Locked towers (LiT, Zhai et al. 2022): a locked tower is a fixed function, its projection head keeps training.

:func:`lock_towers` does three things:

1. ``requires_grad``: open_clip's own lock of each tower, leaving its last N
   groups (image: timm's ``group_matcher`` groups, a ViT's blocks) or layers
   (text: a Hugging Face model's layers, a CLIP text transformer's blocks) trainable,
   as ``--lock-image-unlocked-groups`` / ``--lock-text-unlocked-layers`` do in
   ``open_clip_train``. BatchNorm layers are *not* swapped for open_clip's
   ``FrozenBatchNorm2d`` (that would rename the state dict and break checkpoints);
   step 3 fixes their statistics instead.
2. The projection head into the joint space is made trainable again (open_clip's
   lock freezes it in some towers): timm ``head``, Hugging Face / CBOW ``proj``,
   a ViT's ``proj``, a ModifiedResNet's ``attnpool.c_proj``, CLIP's ``text_projection``.
3. Every largest submodule whose parameters are all frozen goes into
   ``model.locked_modules``; :meth:`cloob.models.ContrastiveModel.train` keeps those
   in eval mode, so BatchNorm running statistics do not move and dropout is off.
   No gradient is kept for them: with ``requires_grad`` off and inputs that need
   none, autograd records nothing until the first trainable layer.
"""
from __future__ import annotations

import warnings

from open_clip.hf_configs import arch_dict
from open_clip.hf_model import HFTextEncoder
from open_clip.modified_resnet import ModifiedResNet
from open_clip.timm_model import TimmModel
from open_clip.transformer import VisionTransformer
from torch import nn


def _image_head(visual: nn.Module) -> list[nn.Parameter]:
    if isinstance(visual, TimmModel):
        return list(visual.head.parameters())
    if isinstance(visual, ModifiedResNet):
        return list(visual.attnpool.c_proj.parameters())
    if isinstance(visual, VisionTransformer) and visual.proj is not None:
        return [visual.proj]
    return []


def _text_head(clip: nn.Module) -> list[nn.Parameter]:
    text = getattr(clip, "text", None)
    if text is not None and isinstance(getattr(text, "proj", None), nn.Module):
        return list(text.proj.parameters())
    proj = getattr(clip, "text_projection", None)
    if isinstance(proj, nn.Parameter):
        return [proj]
    return list(proj.parameters()) if isinstance(proj, nn.Module) else []


def _lock_hf_layers(text: HFTextEncoder, unlocked_layers: int) -> None:
    """``HFTextEncoder.lock(unlocked_layers)``: freeze the embeddings and all but the last ``unlocked_layers`` layers.

    open_clip 3.3's table of Hugging Face layouts lacks BERT's layer names (its ``lock``
    raises KeyError for MiniLM); BERT names them as RoBERTa does, which is the default here.
    """
    names = arch_dict.get(text.config.model_type, {}).get("config_names", {})
    encoder = getattr(text.transformer, "encoder", text.transformer)
    layers = getattr(encoder, names.get("layer_attr", "layer"))
    embeddings = getattr(text.transformer, names.get("token_embeddings_attr", "embeddings"))
    for module in [embeddings, *layers][: -unlocked_layers]:
        for p in module.parameters():
            p.requires_grad_(False)  # LayerNorm included, as open_clip's freeze_layer_norm=True


def frozen_subtrees(module: nn.Module) -> list[nn.Module]:
    """The largest submodules of ``module`` that have parameters, none of them trainable (top-down, in order)."""
    found = []
    for child in module.children():
        params = list(child.parameters())
        if not params:
            continue  # parameter-free (activations, pooling): follows its parent
        if not any(p.requires_grad for p in params):
            found.append(child)
        else:
            found.extend(frozen_subtrees(child))
    return found


def lock_towers(model, lock_image: bool = False, lock_text: bool = False, image_unlocked_groups: int = 0,
                text_unlocked_layers: int = 0) -> None:
    """Lock the image and/or text tower of a :class:`~cloob.models.ContrastiveModel` in place (see module docstring).

    Args:
        image_unlocked_groups: last groups of the locked image tower left trainable (0: the whole body locked).
        text_unlocked_layers: last layers of the locked text tower left trainable (0: the whole body locked).
    Raises:
        ValueError: negative counts, or partial locking of a tower open_clip cannot split (ModifiedResNet).
    """
    if image_unlocked_groups < 0 or text_unlocked_layers < 0:
        raise ValueError("unlocked groups / layers must be >= 0")
    clip = model.clip
    if lock_image:
        if image_unlocked_groups and isinstance(clip.visual, ModifiedResNet):
            raise ValueError("a ModifiedResNet image tower can only be locked whole (open_clip has no groups for it); "
                             "set lock_image_unlocked_groups: 0")
        with warnings.catch_warnings():  # open_clip imports timm's group helpers from a deprecated path
            warnings.simplefilter("ignore", FutureWarning)
            clip.lock_image_tower(unlocked_groups=image_unlocked_groups, freeze_bn_stats=False)
        for p in _image_head(clip.visual):
            p.requires_grad_(True)
    if lock_text:
        text = getattr(clip, "text", None)
        if isinstance(text, HFTextEncoder) and text_unlocked_layers:
            _lock_hf_layers(text, text_unlocked_layers)
        else:
            clip.lock_text_tower(unlocked_layers=text_unlocked_layers, freeze_layer_norm=True)
        for p in _text_head(clip):
            p.requires_grad_(True)
    model.locked_modules = frozen_subtrees(clip)
    model.train(model.training)  # apply eval mode to the locked parts now


def trainable_summary(model) -> str:
    """'trainable 1.23M of 26.1M parameters' for the log."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable {trainable / 1e6:.2f}M of {total / 1e6:.2f}M parameters"
