"""Image transforms: open_clip's train/eval preprocessing plus method.md §4 augmentations.

``image_transform(model_or_size, train=..., resize="bicubic"|"bilinear", augment=...)``
builds on ``open_clip.image_transform`` with the model's preprocess config
(size, mean, std from open_clip's constants), so training and evaluation match
the model. ``resize`` picks the interpolation used to bring (often low-resolution)
inputs to the model's size (bicubic was better in the CLOOB paper's transfer study).
``augment=True`` inserts, on the resized PIL image before ``ToTensor``:
horizontal flip p=0.5, RandomPerspective(0.5, p=0.5), rotation ≤ 20°,
GaussianBlur(3, σ ~ U(0.1, 2)).
"""
from __future__ import annotations

import open_clip
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torchvision import transforms as T


def augmentations() -> list:
    """method.md §4: flip, perspective, rotation, blur (PIL in, PIL out)."""
    return [
        T.RandomHorizontalFlip(p=0.5),
        T.RandomPerspective(distortion_scale=0.5, p=0.5),
        T.RandomRotation(20, interpolation=T.InterpolationMode.BILINEAR),
        T.GaussianBlur(kernel_size=3, sigma=(0.1, 2.0)),
    ]


def preprocess_cfg(model_or_size) -> dict:
    """{size, mean, std} of an open_clip model (or ContrastiveModel), or of an int / (h, w) size."""
    if isinstance(model_or_size, (int, tuple, list)):
        return {"size": model_or_size, "mean": OPENAI_DATASET_MEAN, "std": OPENAI_DATASET_STD}
    clip = getattr(model_or_size, "clip", model_or_size)
    visual = clip.visual
    cfg = dict(getattr(visual, "preprocess_cfg", {}) or {})
    size = cfg.get("size", getattr(visual, "image_size", None))
    if size is None:
        raise ValueError(f"cannot tell the input size of {type(model_or_size).__name__}")
    return {"size": size, "mean": cfg.get("mean", OPENAI_DATASET_MEAN), "std": cfg.get("std", OPENAI_DATASET_STD)}


def image_transform(model_or_image_size, *, train: bool, resize: str = "bicubic", augment: bool = False):
    """PIL RGB image -> (3, H, W) float normalised tensor.

    Args:
        model_or_image_size: a model (its preprocess config is used) or an int / (h, w).
        train: open_clip's training transform (RandomResizedCrop scale 0.9–1) or eval (resize + center crop).
        resize: "bicubic" or "bilinear" interpolation.
        augment: add the method.md §4 augmentations.
    """
    if resize not in ("bicubic", "bilinear"):
        raise ValueError(f"resize must be 'bicubic' or 'bilinear', got {resize!r}")
    cfg = preprocess_cfg(model_or_image_size)
    size = tuple(cfg["size"]) if isinstance(cfg["size"], (tuple, list)) else cfg["size"]
    tf = open_clip.image_transform(size, is_train=train, mean=cfg["mean"], std=cfg["std"], interpolation=resize)
    if augment:
        steps = list(tf.transforms)
        at = next(i for i, t in enumerate(steps) if isinstance(t, T.ToTensor))
        tf = T.Compose(steps[:at] + augmentations() + steps[at:])
    return tf
