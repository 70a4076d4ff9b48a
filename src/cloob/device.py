"""The one place that picks a device when the user names none."""
from __future__ import annotations

import torch


def default_device(requested: str | None = None) -> str:
    """``requested`` when given (and not ``"auto"``), else ``"cuda"`` when a CUDA device is visible, else ``"cpu"``."""
    if requested and requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"
