"""The training loop: resume, then steps, logging, evaluation and checkpoints until the planned step.

The parts live beside it: building the run (:mod:`cloob.train.run`), one
optimiser step and the per-step schedules (:mod:`cloob.train.step`), the
position and checkpoints (:mod:`cloob.train.state`), logs and the collapse
warning (:mod:`cloob.train.logs`), evaluation (:mod:`cloob.train.evaluate`)
and signals (:mod:`cloob.train.signals`).
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import closing
from itertools import islice
from typing import Iterator

import torch
import torch.distributed as dist

from cloob.errors import CloobError
from cloob.data import DataError, make_loader
from cloob.distributed import get_rank, get_world_size, is_distributed
from cloob import checkpoint as ckpt
from cloob.train.config import TrainConfig
from cloob.train.evaluate import evaluate
from cloob.train.logs import CollapseWatch, close_logs, log_record, open_logs, train_record, write_run_info
from cloob.train.run import setup
from cloob.train.signals import StopFlag
from cloob.train.state import Position, restore, resolve_resume, save, step_seed
from cloob.train.step import apply_schedules, train_step


class TrainingDiverged(CloobError, RuntimeError):
    """Too many consecutive non-finite steps (``cloob train`` exits 3)."""

    exit_code = 3


def _count_skip(run, pos: Position, out: dict, log) -> None:
    """Track non-finite steps; raise :class:`TrainingDiverged` after ``max_skips`` in a row."""
    if not out["skipped"]:
        pos.consecutive_skips = 0
        return
    pos.skipped_steps += 1
    pos.consecutive_skips += 1
    if get_rank() == 0:
        log(f"step {pos.step}: non-finite loss or gradient (loss={out['loss']}), step skipped "
            f"({pos.consecutive_skips} in a row, {pos.skipped_steps} in total)")
    if pos.consecutive_skips >= run.cfg.max_skips:
        last = ckpt.latest_checkpoint(run.run_dir / "checkpoints")
        raise TrainingDiverged(
            f"{pos.consecutive_skips} consecutive non-finite steps (max_skips={run.cfg.max_skips}) "
            f"at step {pos.step}; stopping. Last good checkpoint: {last or 'none'} "
            "(not overwritten). Lower lr, enable grad_clip or check the data."
        )


def _evaluate_and_keep_best(run, pos: Position, epoch: float, pbar, zeroshot: bool = True) -> tuple[dict, bool]:
    """Evaluate, log, and save a checkpoint when the validation loss improved. Returns (metrics, saved)."""
    metrics = evaluate(run, zeroshot=zeroshot)
    if not metrics:
        return metrics, False
    if get_rank() == 0:
        log_record(run, {"kind": "eval", "step": pos.step, "epoch": epoch, **metrics})
        if pbar is not None:
            pbar.write(f"step {pos.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if metrics.get("val_loss", math.inf) < pos.best_val_loss:
        pos.best_val_loss = metrics["val_loss"]
        pos.best_checkpoint = ckpt.checkpoint_name(pos.step)
        save(run, pos, metrics)
        return metrics, True
    return metrics, False


def _resume(run, log) -> Position:
    """The position to start from: a checkpoint's (``resume``) or step 0; says which on rank 0."""
    resume_from = resolve_resume(run, log)
    if resume_from is None:
        if run.cfg.resume == "auto" and get_rank() == 0:
            log("resume auto: no checkpoint yet, starting from scratch")
        return Position()
    pos = restore(run, resume_from)
    if get_rank() == 0:
        log(f"resumed from {resume_from} (step {pos.step}, epoch {pos.epoch}, batch {pos.batch_in_epoch})")
    return pos


def _progress_bar(run, pos: Position):
    """A tqdm bar on stderr (rank 0 with ``progress``), else None."""
    if get_rank() != 0 or not run.cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=run.total_steps, initial=pos.step, unit="step", dynamic_ncols=True, desc=f"{run.cfg.method}",
                file=sys.stderr)


def _writer(pbar, log):
    """Where a line goes: through the bar (so it does not break it) when there is one, else ``log``."""
    return pbar.write if pbar is not None else log


def micro_batches(run, pos: Position, pbar=None, log=print) -> Iterator[tuple[list, float]]:
    """Each optimiser step's ``accum_steps`` micro-batches, with the time the step started, until the planned step.

    One loader per epoch, started at ``pos.batch_in_epoch`` (exact resume); a new
    one once the caller has rolled ``pos`` over (:meth:`Position.next_epoch`).
    Before a step's batches are drawn the global torch RNG is re-seeded from
    (seed, rank, step): the step's random numbers then depend on nothing before
    it, which makes a resumed run bitwise equal to an uninterrupted one.

    A loader that runs out before the epoch's last step (a pass shorter than
    ``steps_per_epoch``, or batches of bad samples only) is announced and the
    next epoch starts.

    Raises:
        DataError: a whole pass gave no step (it would otherwise loop for ever).
    """
    cfg, rank = run.cfg, get_rank()
    while pos.step < run.total_steps:
        epoch = pos.epoch
        if hasattr(run.dataset, "set_epoch"):  # SeededSamples: augmentations seeded by (seed, epoch, sample)
            run.dataset.set_epoch(epoch)
        loader = make_loader(run.dataset, cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch, rank=rank,
                             world_size=get_world_size(), num_workers=cfg.workers, drop_last=True,
                             start_batch=pos.batch_in_epoch, report=run.report, pin_memory=run.pin_memory)
        with closing(iter(loader)) as batches:  # closed at once when the caller stops (it logs its pass)
            while pos.epoch == epoch and pos.step < run.total_steps:
                torch.manual_seed(step_seed(cfg.seed, rank, pos.step))
                t0 = time.perf_counter()
                micro = list(islice(batches, cfg.accum_steps))
                if len(micro) == cfg.accum_steps:
                    yield micro, t0
                    continue
                steps_this_epoch = pos.batch_in_epoch // cfg.accum_steps
                if steps_this_epoch == 0:
                    raise DataError(f"{cfg.train_data}: a whole pass gave no step of {cfg.accum_steps}×"
                                    f"{cfg.batch_size} samples per process; lower batch_size")
                if rank == 0:
                    _writer(pbar, log)(f"epoch {epoch}: the data ran out after {steps_this_epoch} of "
                                       f"{run.steps_per_epoch} steps_per_epoch; the next epoch starts now")
                pos.next_epoch()


def _log_step(run, pos: Position, out: dict, now: dict, micro: list, t0: float, *, watch: CollapseWatch, pbar,
              log, t_start: float) -> None:
    """A step's output: the collapse warning, its ``train`` record every ``log_every`` steps, the progress bar.

    Call it after ``pos`` has counted the step and before an epoch rollover (the
    record's fractional epoch comes from ``pos``); ``t0`` is when the step started.
    """
    pairs_per_s = sum(len(b[0]) for b in micro) * get_world_size() / (time.perf_counter() - t0)
    if get_rank() == 0:
        n = len(out["features"][0])
        bias = run.model.logit_bias
        warning = watch.update(pos.step, out["loss"], n, float(run.model.inv_tau.detach()), now["method"],
                               None if bias is None else float(bias.detach()))
        if warning:
            _writer(pbar, log)(warning)
        if pos.step % run.cfg.log_every == 0 or pos.step == 1 or pos.step == run.total_steps:
            epoch = pos.epoch + pos.batch_in_epoch // run.cfg.accum_steps / run.steps_per_epoch
            log_record(run, train_record(run, out, pos.step, epoch, now["lr"], now["method"], pairs_per_s,
                                         pos.skipped_steps, t_start))
    if pbar is not None:
        pbar.update(1)
        pbar.set_postfix(loss=f"{out['loss']:.4f}", pairs_s=f"{pairs_per_s:.0f}", refresh=False)


def _stopped(run, pos: Position, stop: StopFlag, log) -> None:
    """The line that says a signal stopped the run, and how to resume it."""
    if get_rank() == 0:
        log(f"\n{stop.name} received: stopped after step {pos.step} and saved a checkpoint in "
            f"{run.run_dir / 'checkpoints'}.\nResume with: cloob train --config "
            f"{run.run_dir / 'config.yaml'} --resume auto")


def train(cfg: TrainConfig, log=print) -> dict:
    """Run (or resume) a training run; returns a summary dict.

    Raises:
        TrainingDiverged: ``max_skips`` consecutive non-finite steps (the last
            good checkpoint stays intact).
    """
    run = setup(cfg, log)
    pos = _resume(run, log)
    write_run_info(run)
    open_logs(run, pos.step)
    summary = {"run_dir": str(run.run_dir), "interrupted": False}
    pbar = _progress_bar(run, pos)
    eval_every = cfg.eval_every or run.steps_per_epoch
    save_every = cfg.save_every or run.steps_per_epoch
    watch = CollapseWatch(cfg.collapse_warn_steps, cfg.method)
    last_metrics: dict = {}
    t_start = time.time() - pos.seconds  # a resumed run's clock goes on from its checkpoint
    run.ddp.train()
    try:
        with StopFlag() as stop:
            for micro, t0 in micro_batches(run, pos, pbar, log):
                now = apply_schedules(run, pos.step)
                out = train_step(run, micro, now["method"])
                pos.advance(cfg.accum_steps)
                pos.seconds = time.time() - t_start
                _count_skip(run, pos, out, log)
                _log_step(run, pos, out, now, micro, t0, watch=watch, pbar=pbar, log=log, t_start=t_start)
                steps_this_epoch = pos.batch_in_epoch // cfg.accum_steps
                epoch_done = steps_this_epoch >= run.steps_per_epoch
                done = pos.step >= run.total_steps
                if epoch_done:
                    pos.next_epoch()  # micro_batches then starts the next epoch's loader
                saved = False
                # zero-shot every zeroshot_every epochs and at the end (open_clip's --zeroshot-frequency)
                zs_due = done or (epoch_done and cfg.zeroshot_every > 0 and pos.epoch % cfg.zeroshot_every == 0)
                if pos.step % eval_every == 0 or done or zs_due:
                    epoch = pos.epoch + (0 if epoch_done else steps_this_epoch / run.steps_per_epoch)
                    metrics, saved = _evaluate_and_keep_best(run, pos, epoch, pbar,
                                                             zeroshot=zs_due or cfg.zeroshot_every == 0)
                    last_metrics = metrics or last_metrics
                interrupted = stop.agreed(run.device)
                # periodic saves only after good steps: a checkpoint never lands inside a non-finite streak
                if not saved and ((pos.step % save_every == 0 and not out["skipped"]) or done or interrupted):
                    save(run, pos, last_metrics)
                if interrupted:
                    summary.update(interrupted=True, signal=stop.signum)
                    _stopped(run, pos, stop, log)
                    break
    finally:
        if pbar is not None:
            pbar.close()
        close_logs(run)
    if get_rank() == 0 and run.report.n_bad:
        log(run.report.format())
    if is_distributed():
        dist.barrier()  # rank 0 may still be writing the final checkpoint
    summary.update(step=pos.step, epoch=pos.epoch, skipped_steps=pos.skipped_steps, metrics=last_metrics,
                   bad_samples=run.report.n_bad, seconds=round(time.time() - t_start, 2))
    return summary
