"""Learning-rate schedules: linear warm-up, then cosine (optionally with restarts) or constant."""
from __future__ import annotations

import math


def lr_at(
    step: int,
    base_lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    restart_steps: int | None = None,
    min_lr: float = 0.0,
) -> float:
    """Learning rate for optimiser step ``step`` (0-based).

    Warm-up: base_lr·(step+1)/warmup_steps for step < warmup_steps.
    After it, with e = steps since the warm-up:
      cosine:           min_lr + ½(base_lr−min_lr)(1+cos(π·e/(total−warmup)))
      cosine-restarts:  the same over cycles of ``restart_steps`` (SGDR, equal cycles)
      constant:         base_lr
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    e = step - warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
    elif schedule == "cosine-restarts":
        if not restart_steps:
            raise ValueError("cosine-restarts needs restart_steps")
        span = restart_steps
        e = e % restart_steps
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    e = min(e, span)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * e / span))
