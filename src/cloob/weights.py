"""Loading weights safely: safetensors, or torch files with ``weights_only=True``.

A pickle that needs arbitrary code to load is refused with a clear error: a
checkpoint from an untrusted source must never run code on this machine.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be (safely) loaded."""


def safe_torch_load(path: str | Path):
    """``torch.load(path, weights_only=True)``, with a clear error for untrusted pickles."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"refusing to load {path}: it is a pickle that needs arbitrary code to load ({first}). "
            "cloob loads only safetensors or weights-only torch files; re-save the weights as a plain "
            "state dict or as safetensors."
        ) from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a weights-only torch file.

    Accepts open_clip's conventions: ``{"state_dict": ...}`` wrappers and the
    ``module.`` prefix of DistributedDataParallel checkpoints.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    if path.suffix == ".safetensors":
        return load_file(path)
    state = safe_torch_load(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
