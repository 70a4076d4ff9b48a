"""Loading weights safely: safetensors, or torch files with ``weights_only=True``.

A pickle that needs arbitrary code to load is refused with a clear error: a
checkpoint from an untrusted source must never run code on this machine.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be (safely) loaded."""


def safe_torch_load(path: str | Path):
    """``torch.load(path, weights_only=True)``, with a clear error for untrusted pickles."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError) as e:  # a truncated or damaged archive
        raise CheckpointError(f"cannot read {path}: {_first_line(e)}") from None
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
        try:
            return load_file(path)
        except Exception as e:  # noqa: BLE001 - safetensors' own error type for a damaged file
            raise CheckpointError(f"cannot read {path}: {_first_line(e)}") from None
    state = safe_torch_load(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """``safetensors.torch.save_file``, then the mode any new file gets (0644 under umask 022).

    safetensors creates its file with mode 0600, unlike every other file of a checkpoint.
    """
    save_file(tensors, path)
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    """The process's umask: from /proc (Linux), else by setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
