"""The model behind an embedding: a cloob run/checkpoint, or an open_clip weights file with its architecture.

:func:`load_encoder` returns an :class:`Encoder` (model in eval mode, tokenizer, eval image
transform) and an identity of the weights, which ``cloob embed`` records so that ``cloob
search``/``serve`` can refuse to encode queries with other weights than the collection's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cloob.errors import CloobError


class EncoderError(CloobError, ValueError):
    """A checkpoint that cannot serve as the encoder (one-line message)."""


@dataclass
class Encoder:
    """model: :class:`~cloob.models.ContrastiveModel` (eval mode); tokenizer: list[str] -> (B, L) long;
    transform: PIL RGB image -> (3, H, W) float; info: ``{"checkpoint", "format", "model", "sha256", "step"}``."""

    model: torch.nn.Module
    tokenizer: Callable
    transform: Callable
    info: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) transformed images -> (B, d) float32 unit rows."""
        return self.model.encode_image(images.to(self.device), normalize=True).float().cpu().numpy()

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """list of N strings -> (N, d) float32 unit rows."""
        out = [self.model.encode_text(self.tokenizer(texts[i : i + batch_size]).to(self.device), normalize=True)
               .float().cpu().numpy() for i in range(0, len(texts), batch_size)]
        if not out:
            raise ValueError("no texts to encode")
        return np.concatenate(out)

    def encode_pil(self, images: list) -> np.ndarray:
        """list of PIL RGB images -> (N, d) float32 unit rows."""
        return self.encode_images(torch.stack([self.transform(im) for im in images]))


def _file_sha256(path: Path) -> str:
    from cloob.checkpoint import file_digest

    return file_digest(path)["sha256"]


def load_encoder(checkpoint: str | Path, model_name: str | None = None, *, device: str | None = None,
                 resize: str = "bicubic", warn: Callable[[str], None] = print) -> Encoder:
    """Load the model to embed with.

    Args:
        checkpoint: any model source of :mod:`cloob.model_source`: a cloob run or checkpoint directory
            (its newest intact checkpoint, verified against its manifest), or a weights file (a state
            dict or open_clip checkpoint, for which ``model_name`` names the architecture; an OpenAI
            CLIP file or a CLOOB reference checkpoint).
        model_name: the open_clip architecture of a weights file; for a cloob checkpoint it
            must be None or equal the checkpoint's own.
        device: "cpu", "cuda" (default: cuda when available).
        resize: interpolation of the eval transform ("bicubic" or "bilinear").
    """
    from cloob.checkpoint import CheckpointError
    from cloob.data import image_transform
    from cloob.model_source import load_model
    from cloob.device import default_device
    from cloob.models import get_tokenizer

    device = default_device(device)
    path = Path(checkpoint)
    try:
        model, meta = load_model(path, model_name, device=device, warn=warn)
    except CheckpointError as e:
        raise EncoderError(str(e)) from None
    if meta["format"] == "cloob":
        ckpt = Path(meta["checkpoint"])
        recorded = (meta.get("files") or {}).get("model.safetensors") or {}
        # the manifest's digest was just verified by load_model; older checkpoints are hashed here
        sha = recorded.get("sha256") or _file_sha256(ckpt / "model.safetensors")
        info = {"checkpoint": str(ckpt.resolve()), "format": "cloob", "model": meta["model"], "sha256": sha,
                "step": meta.get("step"), "method": meta.get("method")}
    else:
        info = {"checkpoint": str(path.resolve()), "format": meta["format"], "model": meta["model"],
                "sha256": meta["sha256"], "step": None, "method": None}
    return Encoder(model, get_tokenizer(model.model_name), image_transform(model, train=False, resize=resize), info)


def recorded_encoder(manifest: dict, checkpoint: str | Path | None = None, *, device: str | None = None,
                     warn: Callable[[str], None] = print) -> Encoder:
    """The encoder an embedding directory was made with (its manifest's ``encoder``), or ``checkpoint``
    instead (e.g. after the run moved); either way its weights must match the recorded digest."""
    rec = manifest["encoder"]
    path = Path(checkpoint or rec["checkpoint"])
    model_name = rec["model"] if path.is_file() else None  # a weights file needs its architecture named
    try:
        enc = load_encoder(path, model_name, device=device, resize=manifest.get("resize", "bicubic"), warn=warn)
    except EncoderError as e:
        raise EncoderError(f"{e} (the embeddings were made with {rec['checkpoint']}; pass --checkpoint)") from None
    if enc.info["sha256"] != rec["sha256"]:
        raise EncoderError(f"the weights at {enc.info['checkpoint']} are not those the embeddings were made with "
                           f"({rec['checkpoint']}, sha256 {rec['sha256'][:12]}…); queries would be encoded by "
                           "another model")
    return enc


def describe(info: dict) -> str:
    """One line naming an encoder: model, checkpoint and step."""
    if info.get("format") == "cloob":
        what = ", ".join(x for x in (info.get("method"), f"step {info['step']}" if info.get("step") is not None
                                     else None) if x) or "cloob checkpoint"
    else:
        what = f"{info.get('format', 'open_clip').replace('_', ' ')} weights"
    return f"{info['model']} ({what}) from {info['checkpoint']}"
