"""Where a run stands (:class:`Position`), the RNG states, and saving/restoring both with the weights.

A killed and resumed run continues exactly (bitwise on CPU fp32): the checkpoint
holds the weights, the optimiser, every RNG state and the data position, and the
global torch RNG is re-seeded from (seed, rank, step) before each step.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cloob.distributed import get_rank
from cloob import checkpoint as ckpt
from cloob.seeding import mix_seed


@dataclass
class Position:
    """Where training stands: optimiser steps done and the data position."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of this epoch already consumed
    skipped_steps: int = 0  # total steps skipped for non-finite loss/gradients
    consecutive_skips: int = 0
    best_val_loss: float = math.inf
    best_checkpoint: str = ""
    # wall seconds of training up to this position, summed over resumes: a resumed run's clock and its
    # cell's wall time go on from the checkpoint instead of restarting at 0
    seconds: float = 0.0

    def advance(self, micro_batches: int) -> None:
        """Count one optimiser step that consumed ``micro_batches`` batches of this epoch."""
        self.step += 1
        self.batch_in_epoch += micro_batches

    def next_epoch(self) -> None:
        """Roll over to the start of the next epoch (a new loader pass begins at its first batch)."""
        self.epoch += 1
        self.batch_in_epoch = 0


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": [list(random.getstate()[1]), random.getstate()[0]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    internal, version = state["python"]
    random.setstate((version, tuple(internal), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_seed(seed: int, rank: int, step: int) -> int:
    """The global RNG's seed before optimiser step ``step`` on process ``rank`` (dropout, augmentation)."""
    return mix_seed(seed, rank, step)


def save(run, pos: Position, metrics: dict | None = None) -> Path | None:
    """Write a checkpoint of ``run`` at ``pos`` (rank 0 only); returns its directory."""
    if get_rank() != 0:
        return None
    model = run.model
    extras = {}
    if model.hopfield is not None:
        extras["log_beta"] = model.hopfield.log_beta.detach().cpu()
    train_state = {
        "optimizer": run.optimizer.state_dict(),
        "rng": rng_state(),
        "position": {k: v for k, v in vars(pos).items()},
        "extras": extras,
        # fp16's loss scale and its growth tracker: without them a resumed run would restart at 2**16 and
        # overflow again, so resume would not be exact
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
    }
    meta = {
        "model": run.cfg.model,
        "method": run.cfg.method,
        "step": pos.step,
        "epoch": pos.epoch,
        "train_seconds": round(pos.seconds, 3),
        "inv_tau": float(model.inv_tau.detach()),
        "hopfield_beta": None if model.hopfield is None else float(model.hopfield_beta.detach()),
        "config": run.cfg.to_dict(),
        "metrics": metrics or {},
    }
    protect = (pos.best_checkpoint,) if pos.best_checkpoint else ()
    import open_clip

    return ckpt.save_checkpoint(run.run_dir / "checkpoints", pos.step, model.clip.state_dict(), train_state, meta,
                                keep_last=run.cfg.keep_last, protect=protect,
                                model_config=open_clip.get_model_config(run.cfg.model))


def restore(run, path: Path) -> Position:
    """Load weights, β, optimiser, fp16 scaler and RNG states of the checkpoint ``path`` into ``run``; returns its
    position."""
    state = ckpt.load_train_state(path)
    run.model.clip.load_state_dict(ckpt.load_model_state(path))
    if run.model.hopfield is not None and "log_beta" in state.get("extras", {}):
        with torch.no_grad():
            run.model.hopfield.log_beta.copy_(state["extras"]["log_beta"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return Position(**state["position"])


def resolve_resume(run, log=print) -> Path | None:
    """The checkpoint to resume from: None (no ``resume``, or ``auto`` before the first checkpoint),
    the newest one that passes its manifest (``auto``; each newer damaged one is reported through
    ``log`` with the reason), or the named one (verified).

    Raises:
        CheckpointError: the named checkpoint is damaged, or ``auto`` finds only damaged ones.
    """
    spec = run.cfg.resume
    if not spec:
        return None
    if spec != "auto":
        return ckpt.resolve_checkpoint(spec, warn=log if get_rank() == 0 else lambda _: None)
    ckpt_dir = run.run_dir / "checkpoints"
    intact, skipped = ckpt.latest_intact_checkpoint(ckpt_dir)
    if get_rank() == 0:
        for damaged, why in skipped:
            log(f"resume auto: skipping damaged checkpoint {damaged.name}: {why}")
    if intact is None and skipped:
        raise ckpt.CheckpointError(f"resume auto: every checkpoint in {ckpt_dir} is damaged; "
                                   "move them away to start afresh")
    return intact
