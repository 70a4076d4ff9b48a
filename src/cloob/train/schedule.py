"""Schedules of a run: the learning rate (linear warm-up, then cosine, cosine with restarts or constant),
and the optional ramps of inv_tau and the Hopfield β and the CLIP warm start (:class:`Schedules`)."""
from __future__ import annotations

import math
from dataclasses import dataclass


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


def ramp(step: int, total_steps: int, start: float, end: float, fraction: float) -> float:
    """A scale moved from ``start`` to ``end`` over the first ``fraction`` of the run, then held at ``end``.

    Geometric (linear in log space), because inv_tau and β act multiplicatively on the
    logits: value = start·(end/start)^(step/ramp_steps) for step < ramp_steps =
    round(fraction·total_steps), and ``end`` from then on (and always when ramp_steps is 0).
    """
    span = int(round(fraction * total_steps))
    if step >= span:
        return float(end)
    return float(start) * (float(end) / float(start)) ** (step / span)


@dataclass(frozen=True)
class Schedules:
    """The per-step values of one run: learning rate, scheduled inv_tau and β, and the objective in use.

    Built from a resolved config and the run's length; every value is a pure function of
    the optimiser step, so a resumed run continues each schedule where it stopped.
    """

    total_steps: int
    lr: float
    warmup_steps: int
    schedule: str = "cosine"
    restart_steps: int | None = None
    min_lr: float = 0.0
    inv_tau: float | None = None  # target (None: not scheduled)
    inv_tau_start: float | None = None
    inv_tau_ramp: float = 0.0
    beta: float | None = None
    beta_start: float | None = None
    beta_ramp: float = 0.0
    method: str = "clip"
    clip_steps: int = 0  # steps trained with CLIP's loss before the method's own

    @classmethod
    def from_config(cls, cfg, total_steps: int) -> "Schedules":
        warmup = cfg.warmup_steps if cfg.warmup_fraction is None else int(round(cfg.warmup_fraction * total_steps))
        return cls(
            total_steps=total_steps, lr=cfg.lr, warmup_steps=warmup, schedule=cfg.schedule,
            restart_steps=cfg.restart_steps, min_lr=cfg.min_lr,
            inv_tau=cfg.inv_tau if cfg.inv_tau_start is not None else None,
            inv_tau_start=cfg.inv_tau_start, inv_tau_ramp=cfg.inv_tau_ramp,
            beta=cfg.hopfield_beta if cfg.hopfield_beta_start is not None else None,
            beta_start=cfg.hopfield_beta_start, beta_ramp=cfg.hopfield_beta_ramp,
            method=cfg.method, clip_steps=int(round(cfg.clip_warm_start * total_steps)),
        )

    def lr_at(self, step: int) -> float:
        return lr_at(step, self.lr, self.total_steps, self.warmup_steps, self.schedule, self.restart_steps,
                     self.min_lr)

    def inv_tau_at(self, step: int) -> float | None:
        """The scheduled inv_tau at ``step``, or None when inv_tau is not scheduled (fixed or learned)."""
        if self.inv_tau_start is None:
            return None
        return ramp(step, self.total_steps, self.inv_tau_start, self.inv_tau, self.inv_tau_ramp)

    def beta_at(self, step: int) -> float | None:
        """The scheduled Hopfield β at ``step``, or None when β is not scheduled."""
        if self.beta_start is None:
            return None
        return ramp(step, self.total_steps, self.beta_start, self.beta, self.beta_ramp)

    def method_at(self, step: int) -> str:
        """The objective trained at ``step``: the warm start's (``clip``, or ``siglip`` for siglip-hopfield),
        then the run's method."""
        from cloob.methods import warm_start_method

        return warm_start_method(self.method) if step < self.clip_steps else self.method

    def describe(self) -> str:
        """One line naming the schedules that differ from a plain warm-up + decay (empty when none)."""
        parts = [f"warm-up {self.warmup_steps} steps"]
        if self.inv_tau_start is not None:
            parts.append(f"inv_tau {self.inv_tau_start:g} -> {self.inv_tau:g} over "
                         f"{int(round(self.inv_tau_ramp * self.total_steps))} steps")
        if self.beta_start is not None:
            parts.append(f"beta {self.beta_start:g} -> {self.beta:g} over "
                         f"{int(round(self.beta_ramp * self.total_steps))} steps")
        if self.clip_steps:
            from cloob.methods import warm_start_method

            parts.append(f"{warm_start_method(self.method)} loss for the first {self.clip_steps} steps, "
                         f"then {self.method}")
        return " · ".join(parts)
