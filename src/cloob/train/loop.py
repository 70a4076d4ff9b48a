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

import torch
import torch.distributed as dist

from cloob.errors import CloobError
from cloob.data import DataError, make_loader
from cloob.distributed import get_rank, get_world_size, is_distributed
from cloob import checkpoint as ckpt
from cloob.train.config import TrainConfig
from cloob.train.evaluate import evaluate
from cloob.train.logs import CollapseWatch, close_logs, log_record, open_logs, train_record, write_run_info
from cloob.train.run import SeededSamples, setup
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


def train(cfg: TrainConfig, log=print) -> dict:
    """Run (or resume) a training run; returns a summary dict.

    Raises:
        TrainingDiverged: ``max_skips`` consecutive non-finite steps (the last
            good checkpoint stays intact).
    """
    run = setup(cfg, log)
    rank, world = get_rank(), get_world_size()
    pos = Position()
    resume_from = resolve_resume(run, log)
    if resume_from is not None:
        pos = restore(run, resume_from)
        if rank == 0:
            log(f"resumed from {resume_from} (step {pos.step}, epoch {pos.epoch}, batch {pos.batch_in_epoch})")
    elif cfg.resume == "auto" and rank == 0:
        log("resume auto: no checkpoint yet, starting from scratch")
    write_run_info(run)
    open_logs(run, pos.step)
    summary = {"run_dir": str(run.run_dir), "interrupted": False}
    pbar = None
    if rank == 0 and cfg.progress:
        from tqdm import tqdm

        pbar = tqdm(total=run.total_steps, initial=pos.step, unit="step", dynamic_ncols=True,
                    desc=f"{cfg.method}", file=sys.stderr)
    eval_every = cfg.eval_every or run.steps_per_epoch
    save_every = cfg.save_every or run.steps_per_epoch
    watch = CollapseWatch(cfg.collapse_warn_steps, cfg.method)
    last_metrics: dict = {}
    t_start = time.time()
    run.ddp.train()
    try:
        with StopFlag() as stop:
            while pos.step < run.total_steps and not summary["interrupted"]:
                if isinstance(run.dataset, SeededSamples):
                    run.dataset.epoch = pos.epoch
                loader = make_loader(run.dataset, cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=pos.epoch,
                                     rank=rank, world_size=world, num_workers=cfg.workers, drop_last=True,
                                     start_batch=pos.batch_in_epoch, report=run.report)
                micro = []
                steps_this_epoch = pos.batch_in_epoch // cfg.accum_steps
                torch.manual_seed(step_seed(cfg.seed, rank, pos.step))
                t0 = time.perf_counter()
                for batch in loader:
                    micro.append(batch)
                    if len(micro) < cfg.accum_steps:
                        continue
                    now = apply_schedules(run, pos.step)
                    out = train_step(run, micro, now["method"])
                    pairs = sum(len(b[0]) for b in micro) * world
                    micro = []
                    pos.step += 1
                    pos.batch_in_epoch += cfg.accum_steps
                    steps_this_epoch += 1
                    _count_skip(run, pos, out, log)
                    dt = time.perf_counter() - t0
                    if rank == 0:
                        n = len(out["features"][0])
                        warning = watch.update(pos.step, out["loss"], n, float(run.model.inv_tau.detach()), now["method"])
                        if warning:
                            (pbar.write if pbar is not None else log)(warning)
                        if pos.step % cfg.log_every == 0 or pos.step == 1 or pos.step == run.total_steps:
                            log_record(run, train_record(
                                run, out, pos.step, pos.epoch + steps_this_epoch / run.steps_per_epoch, now["lr"],
                                now["method"], pairs / dt, pos.skipped_steps, t_start))
                    if pbar is not None:
                        pbar.update(1)
                        pbar.set_postfix(loss=f"{out['loss']:.4f}", pairs_s=f"{pairs / dt:.0f}", refresh=False)
                    epoch_done = steps_this_epoch >= run.steps_per_epoch
                    done = pos.step >= run.total_steps
                    if epoch_done:
                        pos.epoch += 1
                        pos.batch_in_epoch = 0
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
                        summary["interrupted"] = True
                        summary["signal"] = stop.signum
                        if rank == 0:
                            log(f"\n{stop.name} received: stopped after step {pos.step} and saved a checkpoint in "
                                f"{run.run_dir / 'checkpoints'}.\nResume with: cloob train --config "
                                f"{run.run_dir / 'config.yaml'} --resume auto")
                        break
                    if done or epoch_done:
                        break
                    torch.manual_seed(step_seed(cfg.seed, rank, pos.step))
                    t0 = time.perf_counter()
                else:
                    # the loader ran out before the epoch's last step: a pass shorter than steps_per_epoch, or batches
                    # of bad samples only; say so, and stop rather than loop for ever on a pass without a single step
                    if steps_this_epoch == 0:
                        raise DataError(f"{cfg.train_data}: a whole pass gave no step of {cfg.accum_steps}×"
                                        f"{cfg.batch_size} samples per process; lower batch_size")
                    if rank == 0:
                        (pbar.write if pbar is not None else log)(
                            f"epoch {pos.epoch}: the data ran out after {steps_this_epoch} of {run.steps_per_epoch} "
                            "steps_per_epoch; the next epoch starts now")
                    pos.epoch += 1
                    pos.batch_in_epoch = 0
    finally:
        if pbar is not None:
            pbar.close()
        close_logs(run)
    if rank == 0 and run.report.n_bad:
        log(run.report.format())
    if is_distributed():
        dist.barrier()  # rank 0 may still be writing the final checkpoint
    summary.update(step=pos.step, epoch=pos.epoch, skipped_steps=pos.skipped_steps, metrics=last_metrics,
                   bad_samples=run.report.n_bad, seconds=round(time.time() - t_start, 2))
    return summary
