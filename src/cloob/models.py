"""Models: open_clip architectures plus cloob's learnable/fixed temperatures.

Every architecture comes from open_clip (`create_model_and_transforms`, its
tokenizer and state-dict conventions). cloob registers its small configs in
``model_configs/*.json`` with open_clip on import, so open_clip's own tools
(e.g. ``open_clip_train``) can build them by name too.

:class:`ContrastiveModel` wraps an open_clip ``CLIP`` and adds what CLIP and
CLOOB differ in: ``inv_tau`` (exp-parametrised through open_clip's own
``logit_scale``, clamped at 100) and, for Hopfield methods, ``hopfield_beta``.
"""
from __future__ import annotations

import contextlib
import difflib
import logging
import math
from pathlib import Path
from typing import Callable

import open_clip
import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.timm_model import TimmModel
import torch.nn.functional as F
from torch import nn

from cloob.errors import CloobError
from cloob.hopfield import HopfieldMemory
from cloob.towers import build_tower_clip, is_tower_config, tower_tokenizer
from cloob.weights import load_state_dict_file

CONFIG_DIR = Path(__file__).parent / "model_configs"
SMALL_MODELS = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
# pretrained-tower models (cloob.towers): built by create_model from installed weight packages, not by open_clip alone
TOWER_CONFIG_DIR = CONFIG_DIR / "towers"
TOWER_MODELS = tuple(sorted(p.stem for p in TOWER_CONFIG_DIR.glob("*.json")))
MAX_INV_TAU = 100.0


def register_model_configs() -> None:
    """Register cloob's model configs with open_clip (idempotent)."""
    known = set(open_clip.list_models())
    for name in SMALL_MODELS:
        if name not in known:
            open_clip.add_model_config(CONFIG_DIR / f"{name}.json")
    for name in TOWER_MODELS:
        if name not in known:
            open_clip.add_model_config(TOWER_CONFIG_DIR / f"{name}.json")


register_model_configs()


def register_model_config(path: str | Path) -> str:
    """Register an extra open_clip model JSON (e.g. a benchmark's config); returns its name (the file stem)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model config {path} does not exist")
    if path.stem not in open_clip.list_models():
        open_clip.add_model_config(path)
    return path.stem


def list_models() -> list[str]:
    """Every architecture name open_clip can build (cloob's small configs included)."""
    return list(open_clip.list_models())


class UnknownModelError(CloobError, ValueError):
    """A model name that no registered architecture has."""


def check_model_name(model_name: str) -> None:
    """Raise :class:`UnknownModelError` naming the closest registered names unless ``model_name`` is one."""
    names = list_models()
    if model_name in names:
        return
    by_lower = {n.lower(): n for n in names}  # "vit-b-32" is closest to "ViT-B-32"
    close = [by_lower[n] for n in difflib.get_close_matches(str(model_name).lower(), by_lower, n=3, cutoff=0.0)]
    raise UnknownModelError(f"unknown model {model_name!r}; closest registered names: {', '.join(close)}; "
                            "`cloob info` lists them all")


def _truncatable(clip: nn.Module) -> bool:
    """True for open_clip's CLIP text tower: causal mask, pooling at the end-of-text token, no CLS token."""
    return (
        hasattr(clip, "token_embedding")
        and getattr(clip, "attn_mask", None) is not None
        and getattr(clip, "text_pool_type", None) in ("argmax", "eos")
        and getattr(clip, "cls_emb", None) is None
    )


def visual_image_size(clip: nn.Module) -> int:
    """Input side in pixels of an open_clip model (ResNets store an int, ViTs a pair)."""
    size = clip.visual.image_size
    return int(size if isinstance(size, int) else size[0])


class ContrastiveModel(nn.Module):
    """An open_clip model with CLIP's/CLOOB's temperatures.

    Attributes:
        clip: the open_clip model (its state dict is open_clip's).
        hopfield: a :class:`HopfieldMemory` or None (methods without retrieval).

    The sigmoid methods' logit bias b is open_clip's own ``clip.logit_bias`` parameter (a SigLIP checkpoint's
    ``logit_bias`` key); the other methods have none.
    """

    def __init__(
        self,
        clip: nn.Module,
        model_name: str,
        inv_tau: float = 1 / 0.07,
        learn_inv_tau: bool = True,
        hopfield_beta: float | None = None,
        learn_hopfield_beta: bool = False,
        truncate_text: bool = True,
        channels_last: bool = True,
        logit_bias: float | None = None,
        learn_logit_bias: bool = True,
    ):
        super().__init__()
        if not 0 < inv_tau <= MAX_INV_TAU:
            raise ValueError(f"inv_tau must be in (0, {MAX_INV_TAU}], got {inv_tau}")
        self.clip = clip
        self.model_name = model_name
        with torch.no_grad():
            clip.logit_scale.fill_(math.log(inv_tau))
        clip.logit_scale.requires_grad_(learn_inv_tau)
        self.hopfield = HopfieldMemory(hopfield_beta, learnable=learn_hopfield_beta) if hopfield_beta else None
        if logit_bias is not None:
            clip.logit_bias = nn.Parameter(torch.tensor(float(logit_bias)), requires_grad=learn_logit_bias)
        elif getattr(clip, "logit_bias", None) is not None:  # a SigLIP architecture trained with a softmax loss
            clip.logit_bias = None
        self.truncate_text = truncate_text and _truncatable(clip)
        # oneDNN's convolutions are markedly faster in NHWC on CPU (1.45x for the small ResNet's tower,
        # 1.3-1.9x for a training step of EfficientNet-Lite0 at 64 px)
        self.channels_last = channels_last and isinstance(clip.visual, (ModifiedResNet, TimmModel))
        if self.channels_last:
            clip.visual.to(memory_format=torch.channels_last)
        # submodules of locked towers (cloob.locking): kept in eval mode by train()
        self.locked_modules: list[nn.Module] = []

    def train(self, mode: bool = True) -> "ContrastiveModel":
        """``nn.Module.train``, except that locked parts of the towers stay in eval mode.

        A locked tower is a fixed function: its BatchNorm layers keep their running
        statistics (not the batch's, and they are not updated) and its dropout is off.
        """
        super().train(mode)
        for module in self.locked_modules:
            module.eval()
        return self

    @property
    def inv_tau(self) -> torch.Tensor:
        """0-dim tensor exp(logit_scale), clamped at 100 (gradient flows below the clamp)."""
        return self.clip.logit_scale.exp().clamp(max=MAX_INV_TAU)

    @property
    def hopfield_beta(self) -> torch.Tensor | None:
        """0-dim tensor β, or None when the model has no Hopfield memory."""
        return None if self.hopfield is None else self.hopfield.beta

    @property
    def logit_bias(self) -> torch.Tensor | None:
        """0-dim tensor b of the sigmoid loss, or None for the softmax methods."""
        return getattr(self.clip, "logit_bias", None)

    @property
    def image_size(self) -> int:
        """Side of the square input image in pixels."""
        return visual_image_size(self.clip)

    @property
    def context_length(self) -> int:
        return int(self.clip.context_length)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, embed_dim) features (unit rows if normalize)."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.clip.encode_image(images, normalize=normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, context_length) token ids -> (B, embed_dim) features (unit rows if normalize).

        With ``truncate_text`` (default) the padding after the last end-of-text token
        of the batch is cut before the transformer: CLIP's text attention is causal
        and pools at the end-of-text token, so the features are the same as open_clip's
        ``encode_text`` while short captions cost a fraction of the full context.
        """
        clip = self.clip
        if not self.truncate_text:
            return clip.encode_text(tokens, normalize=normalize)
        eos = getattr(clip, "text_eos_id", None)
        ends = tokens.argmax(dim=-1) if clip.text_pool_type == "argmax" else (tokens == eos).int().argmax(dim=-1)
        length = int(ends.max()) + 1
        tokens = tokens[:, :length]
        cast_dtype = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(tokens).to(cast_dtype) + clip.positional_embedding[:length].to(cast_dtype)
        x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
        x = clip.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), ends]
        proj = clip.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return F.normalize(x, dim=-1) if normalize else x

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        """Returns (image_features, text_features), both (B, embed_dim) unit rows."""
        return self.encode_image(images), self.encode_text(tokens)


def create_model(
    model_name: str,
    pretrained: str | None = None,
    inv_tau: float = 1 / 0.07,
    learn_inv_tau: bool = True,
    hopfield_beta: float | None = None,
    learn_hopfield_beta: bool = False,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    logit_bias: float | None = None,
    learn_logit_bias: bool = True,
    channels_last: bool = True,
    **model_kwargs,
) -> tuple[ContrastiveModel, Callable, Callable]:
    """Build a model through open_clip.

    Args:
        model_name: any name of :func:`list_models` (e.g. "cloob-rn-tiny", "RN50", "ViT-B-32").
        pretrained: None (random init) or a local checkpoint file in open_clip's
            format (state dict, .pt/.bin/.safetensors), loaded safely (see
            :mod:`cloob.weights`). Names of hub weights are refused: nothing is downloaded.
        inv_tau, learn_inv_tau: initial 1/tau and whether it is learned.
        hopfield_beta, learn_hopfield_beta: β of the Hopfield memory (None = no memory).
        logit_bias, learn_logit_bias: initial b of the sigmoid loss and whether it is learned (None = no bias).
        channels_last: NHWC memory format for ResNet/timm image towers.
            A ``pretrained`` file's ``logit_bias`` is loaded when the model has one and ignored otherwise.

    Tower models (:data:`TOWER_MODELS`, e.g. "cloob-minilm-efficientnet-lite0") start their
    pretrained towers from installed weight packages (:mod:`cloob.towers`); a missing package
    raises :class:`~cloob.towers.MissingWeights` naming it.
    Returns:
        (model, train_transform, eval_transform).
    Raises:
        UnknownModelError: ``model_name`` is not registered (the message names the closest ones).
    """
    check_model_name(model_name)
    if pretrained is not None and not Path(pretrained).is_file():
        raise FileNotFoundError(
            f"pretrained checkpoint {pretrained!r} is not a local file (cloob never downloads weights)"
        )
    arch = open_clip.get_model_config(model_name)
    if is_tower_config(arch):  # pretrained towers from installed packages (cloob.towers)
        image_size = model_kwargs.pop("force_image_size", None)
        if model_kwargs or precision != "fp32":
            raise ValueError(f"tower model {model_name!r} is built in fp32 and takes no open_clip options "
                             f"(got precision {precision!r}, {sorted(model_kwargs)}); train with bf16 autocast instead")
        clip = build_tower_clip(arch, model_name, image_size=image_size).to(device)
        cfg = clip.visual.preprocess_cfg
        train_tf, eval_tf = (open_clip.image_transform(cfg["size"], is_train=train, mean=cfg["mean"], std=cfg["std"])
                             for train in (True, False))
    else:
        with _quiet_random_init():
            clip, train_tf, eval_tf = open_clip.create_model_and_transforms(
                model_name, pretrained=None, device=device, precision=precision, **model_kwargs
            )
    model = ContrastiveModel(clip, model_name, inv_tau, learn_inv_tau, hopfield_beta, learn_hopfield_beta,
                             logit_bias=logit_bias, learn_logit_bias=learn_logit_bias, channels_last=channels_last)
    if pretrained is not None:
        state = load_state_dict_file(pretrained)
        # the temperature and the bias belong to the run's objective, not to the towers: they keep the values
        # given here (a CLIP start of a SigLIP run, or the reverse); the tower weights must match exactly
        state["logit_scale"] = clip.logit_scale.detach().clone()
        state.pop("logit_bias", None)
        if model.logit_bias is not None:
            state["logit_bias"] = model.logit_bias.detach().clone()
        clip.load_state_dict(state)
    return model.to(device), train_tf, eval_tf


@contextlib.contextmanager
def _quiet_random_init():
    """Drop open_clip's "No pretrained weights loaded" warning: cloob always asks open_clip for a
    random init and loads any weights itself, so the warning only adds noise (before a data error, too).

    open_clip logs it with ``logging.warning``, which would also configure the root logger
    (``basicConfig``) when it has no handler; a temporary stderr handler avoids that side effect
    while any other warning still prints.
    """
    root = logging.getLogger()
    keep = lambda record: not record.getMessage().startswith("No pretrained weights loaded")  # noqa: E731
    handler = None if root.handlers else logging.StreamHandler()
    root.addFilter(keep)
    if handler is not None:
        root.addHandler(handler)
    try:
        yield
    finally:
        root.removeFilter(keep)
        if handler is not None:
            root.removeHandler(handler)


def get_tokenizer(model_name: str):
    """open_clip's tokenizer for ``model_name``: list[str] -> (B, context_length) long.

    A tower model with a Hugging Face text tower reads its tokenizer from the installed weight package.
    """
    arch = open_clip.get_model_config(model_name)
    if is_tower_config(arch):
        return tower_tokenizer(arch, model_name)
    return open_clip.get_tokenizer(model_name)


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Parameter counts of the image tower, the text tower and in total."""
    clip = module.clip if isinstance(module, ContrastiveModel) else module
    total = sum(p.numel() for p in module.parameters())
    image = sum(p.numel() for p in clip.visual.parameters())
    return {"image": image, "text": total - image, "total": total}
