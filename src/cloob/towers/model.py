"""Two-tower models from pretrained local weights: open_clip's towers plus cloob's CBOW, in open_clip's layout.

A tower model is an open_clip-style JSON config (``model_configs/towers/``)
whose text tower is a Hugging Face model (``text_cfg.hf_model_name``, e.g.
sentence-transformers' all-MiniLM-L6-v2 with ``hf_pooler_type: mean_pooler``)
or cloob's CBOW (``text_cfg.cloob_tower: cbow``), and whose image tower is any
open_clip one (the small ModifiedResNet, or a timm model such as
``tf_efficientnet_lite0``). open_clip builds its towers from the config as
usual; the difference from ``open_clip.create_model`` is where pretrained
weights come from: the installed weight packages of :mod:`cloob.towers.packages`,
never the hub. ``timm_model_pretrained`` / ``hf_model_pretrained`` say whether a
tower starts from them (true) or from random initialisation (false).

:class:`TowerCLIP` keeps open_clip's ``CustomTextCLIP`` state-dict names
(``visual.*``, ``text.*``, ``logit_scale``), so checkpoints load like open_clip's.
Each pretrained tower is a body and a trainable projection head (timm: ``trunk``
-> ``head``; Hugging Face: transformer + mean pooling -> ``proj``; CBOW: mean
embedding -> ``proj``): locking freezes the body, and the optional
:class:`~cloob.towers.cache.FeatureCache` memoises a locked body's outputs.
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import _build_text_tower, _build_vision_tower  # open_clip's own tower builders (pinned 3.3.0)
from open_clip.timm_model import TimmModel
from open_clip.transform import PreprocessCfg
from torch import nn

from cloob.towers.cache import FeatureCache
from cloob.towers.cbow import CBOWText
from cloob.towers.efficientnet import load_efficientnet_lite
from cloob.towers.packages import has_local_weights, weights_path

TEXT_TOWERS = ("cbow",)  # values of text_cfg.cloob_tower
IMAGE_LOADERS = {"tf_efficientnet_lite0": load_efficientnet_lite}  # timm name -> loads its package's weights


def is_tower_config(cfg: dict | None) -> bool:
    """True for configs built here: a Hugging Face or CBOW text tower, or a timm image tower with local weights."""
    if not cfg:
        return False
    text, vision = cfg.get("text_cfg", {}), cfg.get("vision_cfg", {})
    return "cloob_tower" in text or "hf_model_name" in text or has_local_weights(vision.get("timm_model_name") or "")


@contextlib.contextmanager
def _quiet_transformers():
    """transformers prints a load report (BERT's unused pooler weights) and a progress bar; neither is news here."""
    from transformers.utils import logging as hf_logging

    level, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def build_image_tower(embed_dim: int, vision_cfg: dict, model_name: str = "") -> nn.Module:
    """open_clip's image tower for ``vision_cfg``, with local pretrained timm weights if it asks for them."""
    name = vision_cfg.get("timm_model_name")
    pretrained = bool(name) and bool(vision_cfg.get("timm_model_pretrained", False))
    path = weights_path(name, model_name) if pretrained else None  # fail before building anything
    if pretrained and name not in IMAGE_LOADERS:
        raise ValueError(f"model {model_name!r}: no loader maps the weights of {name!r} onto timm")
    visual = _build_vision_tower(embed_dim, {**vision_cfg, "timm_model_pretrained": False})
    if pretrained:
        IMAGE_LOADERS[name](visual.trunk, path)
    return visual


def build_text_tower(embed_dim: int, text_cfg: dict, model_name: str = "") -> nn.Module:
    """CBOW (``cloob_tower: cbow``) or open_clip's Hugging Face tower loaded from the installed weight package."""
    kind = text_cfg.get("cloob_tower")
    if kind is not None:
        if kind not in TEXT_TOWERS:
            raise ValueError(f"model {model_name!r}: unknown text_cfg.cloob_tower {kind!r}; expected one of {TEXT_TOWERS}")
        return CBOWText(text_cfg.get("vocab_size", 49408), text_cfg["width"], embed_dim, text_cfg["context_length"])
    path = str(weights_path(text_cfg["hf_model_name"], model_name))
    with _quiet_transformers():
        return _build_text_tower(embed_dim, {**text_cfg, "hf_model_name": path, "hf_tokenizer_name": path})


def preprocess_cfg(visual: nn.Module) -> dict:
    """open_clip's preprocess config of a tower: a timm model's own mean/std (EfficientNet-Lite: 0.5), else OpenAI's."""
    cfg = asdict(PreprocessCfg())
    size = visual.image_size
    cfg["size"] = tuple(size) if isinstance(size, (tuple, list)) else size
    trunk_cfg = getattr(getattr(visual, "trunk", None), "pretrained_cfg", None) or {}
    cfg["mean"] = tuple(trunk_cfg.get("mean", OPENAI_DATASET_MEAN))
    cfg["std"] = tuple(trunk_cfg.get("std", OPENAI_DATASET_STD))
    return cfg


class TowerCLIP(nn.Module):
    """Image and text towers with open_clip's ``CustomTextCLIP`` interface and state-dict names.

    Attributes:
        visual: image tower, (B, 3, H, W) -> (B, embed_dim).
        text: text tower, (B, context_length) token ids -> (B, embed_dim).
        logit_scale: ln(1/tau), 0-dim.
        context_length: the tokenizer's context (from ``text_cfg``; Hugging Face towers report 512).
        image_cache, text_cache: :class:`FeatureCache` of a locked body, used in training mode only, or None.
    """

    def __init__(self, visual: nn.Module, text: nn.Module, context_length: int,
                 init_logit_scale: float = math.log(1 / 0.07)):
        super().__init__()
        self.visual = visual
        self.text = text
        self.context_length = int(context_length)
        self.vocab_size = text.vocab_size
        self.logit_scale = nn.Parameter(torch.ones([]) * init_logit_scale)
        self.logit_bias = None
        self.image_cache: FeatureCache | None = None
        self.text_cache: FeatureCache | None = None

    # ---- locking (open_clip's interface) ----------------------------------
    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        self.visual.lock(unlocked_groups=unlocked_groups, freeze_bn_stats=freeze_bn_stats)

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        self.text.lock(unlocked_layers, freeze_layer_norm)

    # ---- bodies and heads ---------------------------------------------------
    @property
    def image_head(self) -> nn.Module | None:
        """The trainable projection after the image body (timm towers), or None when the tower has no split."""
        return self.visual.head if isinstance(self.visual, TimmModel) else None

    def image_body(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, trunk features), the input of :attr:`image_head` (timm towers)."""
        return self.visual.trunk(images)

    def text_body(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, width) pooled features before the projection ``text.proj``.

        Padding after the batch's longest caption is cut first: exact, because both
        towers ignore padding (BERT masks it out of attention and the mean; CBOW
        averages up to the end token), and short captions then cost a fraction of the context.
        """
        text = self.text
        if isinstance(text, CBOWText):
            return text.pool(tokens[:, : int(text.lengths(tokens).max())])
        keep = tokens != text.config.pad_token_id
        length = int((keep * torch.arange(1, tokens.shape[1] + 1, device=tokens.device)).max())
        tokens, keep = tokens[:, :length], keep[:, :length].long()
        out = text.transformer(input_ids=tokens, attention_mask=keep)
        return text.pooler(out, keep)

    # ---- encoders -------------------------------------------------------------
    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """(B, 3, H, W) -> (B, embed_dim) (unit rows if normalize)."""
        if self.image_cache is not None and self.training:
            features = self.image_head(self.image_cache(image, self.image_body))
        else:
            features = self.visual(image)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """(B, context_length) token ids -> (B, embed_dim) (unit rows if normalize)."""
        if self.text_cache is not None and self.training:
            pooled = self.text_cache(text, self.text_body)  # keyed by the uncut row: the cut depends on the batch
        else:
            pooled = self.text_body(text)
        features = self.text.proj(pooled)
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, image: torch.Tensor | None = None, text: torch.Tensor | None = None):
        """(image_features, text_features, logit_scale.exp()), features unit rows (open_clip's tuple)."""
        image_features = self.encode_image(image, normalize=True) if image is not None else None
        text_features = self.encode_text(text, normalize=True) if text is not None else None
        return image_features, text_features, self.logit_scale.exp()


def build_tower_clip(cfg: dict, model_name: str = "", image_size: int | None = None) -> TowerCLIP:
    """A :class:`TowerCLIP` from an open_clip-style config dict (see the module docstring).

    Args:
        cfg: ``{"embed_dim", "vision_cfg", "text_cfg"}``.
        model_name: for error messages.
        image_size: overrides ``vision_cfg.image_size`` (a CNN tower runs at any size).
    Raises:
        MissingWeights: a pretrained tower's weight package is not installed (one line naming it).
    """
    cfg = copy.deepcopy(cfg)
    if image_size is not None:
        cfg["vision_cfg"]["image_size"] = image_size
    embed_dim, text_cfg = cfg["embed_dim"], cfg["text_cfg"]
    text = build_text_tower(embed_dim, text_cfg, model_name)
    visual = build_image_tower(embed_dim, cfg["vision_cfg"], model_name)
    clip = TowerCLIP(visual, text, text_cfg["context_length"])
    visual.preprocess_cfg = preprocess_cfg(visual)  # where open_clip's set_model_preprocess_cfg puts it
    return clip


def tower_tokenizer(cfg: dict, model_name: str = ""):
    """open_clip's tokenizer for a tower config: HFTokenizer on the installed package's files, or CLIP's BPE."""
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    text_cfg = cfg["text_cfg"]
    if "hf_model_name" in text_cfg:
        path = weights_path(text_cfg.get("hf_tokenizer_name") or text_cfg["hf_model_name"], model_name)
        return HFTokenizer(str(path), context_length=text_cfg["context_length"])
    return SimpleTokenizer(context_length=text_cfg["context_length"])


def enable_feature_cache(clip: nn.Module, image: bool, text: bool) -> list[str]:
    """Give the locked bodies of a :class:`TowerCLIP` a :class:`FeatureCache`; returns the towers cached.

    Raises:
        ValueError: the model has no cacheable body for a requested tower (only
            tower models split a tower into body and head; a ModifiedResNet has no split).
    """
    if not isinstance(clip, TowerCLIP):
        raise ValueError(f"feature_cache needs a tower model (cloob info lists them), not {type(clip).__name__}")
    cached = []
    if image:
        if clip.image_head is None:
            raise ValueError(f"feature_cache: the image tower {type(clip.visual).__name__} has no locked body "
                             "and separate head to cache (timm towers do)")
        clip.image_cache = FeatureCache()
        cached.append("image")
    if text:
        clip.text_cache = FeatureCache()
        cached.append("text")
    return cached
