"""One optimiser step: features, the method's loss over the global batch, backward, clipping, update.

Gradient semantics: every process computes the loss over the global batch
(features all-gathered), and the parameter gradients are *summed* over
processes and micro-batches, so K processes × batch B train exactly like one
process with batch K·B (see :mod:`cloob.distributed`). DistributedDataParallel
averages, hence the loss is multiplied by the world size before backward.
"""
from __future__ import annotations

import contextlib
import math

import torch

from cloob.distributed import get_world_size, scale_gradient
from cloob.losses import METHODS, method_loss
from cloob.methods import uses_bias
from cloob.train.precision import autocast, input_dtype


def _features(run, images, tokens):
    """The towers' (N, d) features in fp32, whatever the precision (the losses' logsumexp and softmax run in fp32)."""
    blocking = not run.pin_memory  # a pinned batch is copied asynchronously
    images = images.to(run.device, dtype=input_dtype(run.cfg.precision), non_blocking=not blocking)
    with autocast(run.device, run.cfg.precision):
        x, y = (run.forward or run.ddp)(images, tokens.to(run.device, non_blocking=not blocking))
    return x.float(), y.float()


def _loss(run, method: str, x, y, parts: int):
    """Global loss of ``method``; shared scalars' gradients scaled by 1/parts (summed over micro-batches)."""
    inv_tau = scale_gradient(run.model.inv_tau, 1.0 / parts)
    model_beta = run.model.hopfield_beta
    beta = scale_gradient(model_beta, 1.0 / parts) if model_beta is not None and METHODS[method][1] else None
    model_bias = run.model.logit_bias
    bias = scale_gradient(model_bias, 1.0 / parts) if model_bias is not None and uses_bias(method) else None
    loss = (run.loss_fn or method_loss)(method, x, y, inv_tau, beta, logit_bias=bias)
    for unused, param in ((beta, model_beta), (bias, model_bias)):
        if unused is None and param is not None and param.requires_grad:
            # A warm start leaves a learned beta (or bias) out of the loss; DistributedDataParallel expects
            # a gradient for every trainable parameter, so it gets an exact zero (in one process too, so
            # both keep the same optimiser state; AdamW leaves a parameter with zero gradient in place).
            loss = loss + 0.0 * param
    return loss


def train_step(run, micro_batches: list, method: str | None = None) -> dict:
    """One optimiser step over ``accum_steps`` micro-batches (open_clip-style feature cache).

    With one micro-batch this is forward, loss, backward. With several, all
    features are first computed without gradient; then each micro-batch is
    re-encoded with gradient and the loss over the whole accumulated batch is
    back-propagated through it, so the gradient equals that of one big batch.

    Args:
        run: the :class:`~cloob.train.run.Run`.
        micro_batches: list of (images (B, 3, H, W), tokens (B, L)).
        method: the objective of this step (default: the run's; ``clip`` during a CLIP warm start).
    Returns:
        dict with the loss, the gradient norm, the gathered features (x, y) of the
        step (detached, (N, d) each) and whether the step was skipped (non-finite).
    """
    cfg, model, optimizer = run.cfg, run.model, run.optimizer
    method = method or cfg.method
    world = get_world_size()
    optimizer.zero_grad(set_to_none=True)
    n_micro = len(micro_batches)
    scaler = run.scaler
    scale = scaler.scale if scaler is not None else (lambda t: t)  # fp16: back-propagate the scaled loss
    if n_micro == 1:
        x, y = _features(run, *micro_batches[0])
        loss = _loss(run, method, x, y, 1)
        finite = bool(torch.isfinite(loss))
        if finite:
            scale(loss * world).backward()
        feats = (x.detach(), y.detach())
    else:
        with torch.no_grad():
            cached = [_features(run, *mb) for mb in micro_batches]
        xs, ys = [c[0] for c in cached], [c[1] for c in cached]
        loss = _loss(run, method, torch.cat(xs), torch.cat(ys), 1).detach()
        finite = bool(torch.isfinite(loss))
        if finite:
            for m, mb in enumerate(micro_batches):
                sync = contextlib.nullcontext() if (m == n_micro - 1 or run.ddp is model) else run.ddp.no_sync()
                with sync:
                    x, y = _features(run, *mb)
                    xm = torch.cat(xs[:m] + [x] + xs[m + 1 :])
                    ym = torch.cat(ys[:m] + [y] + ys[m + 1 :])
                    scale(_loss(run, method, xm, ym, n_micro) * world).backward()
        feats = (torch.cat(xs), torch.cat(ys))
    grad_norm = float("nan")
    overflow = False
    if finite:
        if scaler is not None:
            scaler.unscale_(optimizer)  # clip and report the true gradient
        params = [p for p in model.parameters() if p.grad is not None]
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        # fp16: an inf/nan gradient is the scaler's overflow, which it handles (skip the update, halve the
        # scale); it is not the data's or the model's failure, so it is not a skipped step
        overflow = scaler is not None and not math.isfinite(grad_norm)
        finite = math.isfinite(grad_norm) or overflow
    if finite:
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        with torch.no_grad():  # open_clip's convention: keep ln(inv_tau) in [0, ln 100]
            model.clip.logit_scale.clamp_(0, math.log(100))
    else:
        optimizer.zero_grad(set_to_none=True)
    return {"loss": float(loss.detach()), "grad_norm": grad_norm, "skipped": not finite, "features": feats,
            "overflow": overflow}


@torch.no_grad()
def apply_schedules(run, step: int) -> dict:
    """Set the learning rate and any scheduled inv_tau / β for optimiser step ``step``; returns the values."""
    s = run.schedules
    lr = s.lr_at(step)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    inv_tau, beta = s.inv_tau_at(step), s.beta_at(step)
    if inv_tau is not None:
        run.model.clip.logit_scale.fill_(math.log(inv_tau))
    if beta is not None:
        run.model.hopfield.log_beta.fill_(math.log(beta))
    return {"lr": lr, "method": s.method_at(step)}
