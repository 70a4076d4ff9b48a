"""Checkpoints: safetensors weights + a trusted-types training state + a JSON sidecar.

Layout of one checkpoint (a directory, renamed into place only when complete):

    <run>/checkpoints/step-00001200/
        model.safetensors   the open_clip state dict (open_clip.load_checkpoint reads it)
        state.pt            optimiser, RNG states, data position, counters, cloob extras
                            (log_beta); loaded with torch.load(weights_only=True)
        model_config.json   the open_clip architecture, so no registration is needed to load it
        meta.json           model name, method, step, epoch, config, metrics, and ``files``: the
                            size and sha256 of every other file (written last)

A checkpoint is written to ``.tmp-step-…`` with every file fsync'ed, then
renamed; a process killed mid-write leaves only a temp directory that
:func:`latest_checkpoint` ignores (and the next save removes). A checkpoint
damaged later (a truncated file, a full disk, a bad copy) fails its manifest:
:func:`resolve_checkpoint` and ``--resume auto`` skip it, saying why, for the
newest intact one. A checkpoint written before manifests existed is trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from cloob.weights import CheckpointError, load_state_dict_file, safe_torch_load, save_safetensors

PREFIX = "step-"
TMP_PREFIX = ".tmp-"
MANIFEST = "files"  # meta.json key: {file name: {"bytes": size, "sha256": hex digest}}
log = logging.getLogger("cloob.checkpoint")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: str | Path) -> dict:
    """``{"bytes": size, "sha256": hex}`` of a file, read in 1 MiB chunks."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return {"bytes": n, "sha256": h.hexdigest()}


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the checkpoint directory ``path`` cannot be used, or None when every file matches meta.json's manifest.

    Sizes are compared first (cheap); then the sha256 of each file. A meta.json without a
    manifest (an older checkpoint) is trusted.
    """
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
    except FileNotFoundError:
        return "no meta.json"
    except (OSError, ValueError) as e:
        return f"meta.json is unreadable ({type(e).__name__}: {e})"
    files = meta.get(MANIFEST) if isinstance(meta, dict) else None
    if not isinstance(files, dict):
        return None if isinstance(meta, dict) else "meta.json is not a JSON object"
    for name, want in files.items():
        if Path(name).name != name or name in (".", "..") or not isinstance(want, dict):
            return f"the manifest entry {name!r} is not a file of the checkpoint with its size and digest"
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        size = f.stat().st_size
        if size != want.get("bytes"):
            return f"{name} has {size} bytes where meta.json records {want.get('bytes')}"
    for name, want in files.items():
        if file_digest(path / name)["sha256"] != want.get("sha256"):
            return f"{name} does not match the sha256 recorded in meta.json"
    return None


def verify_checkpoint(path: str | Path) -> None:
    """Raise :class:`CheckpointError` (one line) when a file of the checkpoint fails its manifest."""
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path} is damaged: {problem}")


def latest_intact_checkpoint(ckpt_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """``(newest checkpoint that passes its manifest or None, [(newer damaged checkpoint, why)])``."""
    skipped = []
    for path in reversed(list_checkpoints(ckpt_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Complete checkpoints under ``ckpt_dir``, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "meta.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1] if found else None


def save_checkpoint(
    ckpt_dir: str | Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    train_state: dict,
    meta: dict,
    keep_last: int = 3,
    protect: tuple[str, ...] = (),
    model_config: dict | None = None,
) -> Path:
    """Write one checkpoint atomically and prune old ones.

    Args:
        ckpt_dir: the run's checkpoint directory.
        step: optimiser steps done.
        model_state: open_clip state dict (tensors).
        train_state: plain containers of tensors/numbers/strings (weights_only-loadable).
        meta: JSON-serialisable sidecar.
        keep_last: how many of the newest checkpoints to keep (>= 1).
        protect: names of checkpoints never pruned (e.g. the best one).
        model_config: the open_clip architecture dict, stored as model_config.json
            so the checkpoint can be rebuilt without the original JSON file.
    Returns:
        The final checkpoint directory.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / checkpoint_name(step)
    tmp = ckpt_dir / f"{TMP_PREFIX}{final.name}"
    for stale in ckpt_dir.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    # safetensors refuses shared storage; open_clip's state dicts have none, but make contiguous copies to be safe
    save_safetensors({k: v.detach().contiguous().cpu() for k, v in model_state.items()}, tmp / "model.safetensors")
    torch.save(train_state, tmp / "state.pt")
    if model_config is not None:
        (tmp / "model_config.json").write_text(json.dumps(model_config, indent=2))
    for f in tmp.iterdir():
        _fsync_file(f)
    # the manifest goes into meta.json, written last: a meta.json vouches for every file beside it
    manifest = {f.name: file_digest(f) for f in sorted(tmp.iterdir())}
    (tmp / "meta.json").write_text(json.dumps({**meta, MANIFEST: manifest}, indent=2, default=str))
    _fsync_file(tmp / "meta.json")
    _fsync_dir(tmp)
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(ckpt_dir)
    keep = max(1, keep_last)
    complete = list_checkpoints(ckpt_dir)
    for old in complete[:-keep]:
        if old.name not in protect:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_train_state(path: str | Path) -> dict:
    """Load ``state.pt`` with ``weights_only=True``; a pickle needing arbitrary code is refused."""
    return safe_torch_load(Path(path) / "state.pt")


def load_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    """open_clip state dict from a checkpoint directory, a .safetensors file or a weights-only .pt file."""
    path = Path(path)
    return load_state_dict_file(path / "model.safetensors" if path.is_dir() else path)


def read_meta(path: str | Path) -> dict:
    meta = Path(path) / "meta.json"
    if not meta.is_file():
        raise CheckpointError(f"{path} is not a cloob checkpoint directory (no meta.json)")
    return json.loads(meta.read_text())


def resolve_checkpoint(path: str | Path, warn=log.warning) -> Path:
    """A checkpoint directory from a checkpoint dir, a run dir or a checkpoints dir, checked against its manifest.

    A run or checkpoints dir gives its newest intact checkpoint; each newer damaged one is
    passed to ``warn`` with the reason it was skipped. A named checkpoint dir that is
    damaged, or a run without an intact one, raises :class:`CheckpointError` (one line).
    """
    path = Path(path)
    if (path / "meta.json").is_file():
        verify_checkpoint(path)
        return path
    for cand in (path / "checkpoints", path):
        if not list_checkpoints(cand):
            continue
        intact, skipped = latest_intact_checkpoint(cand)
        for damaged, why in skipped:
            warn(f"skipping damaged checkpoint {damaged}: {why}")
        if intact is None:
            raise CheckpointError(f"no intact checkpoint under {cand}: "
                                  + "; ".join(f"{p.name}: {why}" for p, why in skipped))
        return intact
    raise CheckpointError(f"no complete cloob checkpoint at or under {path}")
