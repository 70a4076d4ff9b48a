"""The streaming autograd kernels behind :mod:`cloob.losses`: the softmax losses (InfoNCE, InfoLOOB, one or
both directions of one logit matrix) and the sigmoid loss, over row blocks of at most
:data:`cloob.blocks.BLOCK_ELEMENTS` elements with a recomputing backward, so the N×N logits are never held at
once for large N. Inputs: (N, d) anchors and samples (row i matched with row i) and 0-dim tensors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cloob.blocks import apply_full_precision, block_rows, full_precision
from cloob.hopfield import softmax_


class _LogsumexpLoss(torch.autograd.Function):
    """Rows:    L_r = (1/N) Σ_i [ logsumexp_{j∈D(i)} ℓ_ij − ℓ_ii ],  ℓ = t·A Sᵀ,
    columns: L_c = (1/N) Σ_j [ logsumexp_{i∈D(j)} ℓ_ij − ℓ_jj ]  (only with ``both``).

    D(i) = all j (InfoNCE) or all j ≠ i (InfoLOOB). L_c is the loss in the other
    direction (anchors S, samples A) read off the same logits, so the two
    directions of CLIP cost one Gram matrix instead of two. With P_r, P_c the
    row and column softmaxes over D and G = (P_r [+ P_c] − kI)/N = dL/dℓ
    (k = number of directions):
      dL/da = t·G s,  dL/ds = t·Gᵀ a,  dL/dt = Σ_i a_iᵀ (G s)_i.
    Forward and backward stream over row blocks and the backward recomputes a
    block's logits from the saved per-row (and per-column) logsumexp. When the
    whole matrix is one block, G is kept from the forward pass instead: one
    matmul less, and it is the common case (N ≤ 4,096).
    """

    @staticmethod
    def forward(ctx, anchors, samples, inv_tau, leave_one_out: bool, both: bool):
        n = anchors.shape[0]
        rows = block_rows(n, n)
        lse = anchors.new_empty(n)
        col_lse = anchors.new_full((n,), float("-inf")) if both else None
        positive = anchors.new_empty(n)
        samples_t = samples.T
        kept = anchors.new_empty(0)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            diag = (torch.arange(stop - start, device=anchors.device), torch.arange(start, stop, device=anchors.device))
            logits = (anchors[start:stop] * inv_tau) @ samples_t
            positive[start:stop] = logits[diag]
            if leave_one_out:
                logits[diag] = float("-inf")
            if rows >= n:  # one block: keep G·N + kI = P_r (+ P_c); a masked positive is exp(−inf) = 0
                if both:
                    p_c = logits.clone()
                    col_lse = softmax_(p_c, dim=0)
                lse[:] = softmax_(logits)
                kept = logits.add_(p_c) if both else logits
                break
            lse[start:stop] = torch.logsumexp(logits, dim=1)
            if both:
                # running logsumexp down the columns, one row block at a time
                torch.logaddexp(col_lse, torch.logsumexp(logits, dim=0), out=col_lse)
        loss = (lse - positive).mean()
        if both:
            loss = loss + (col_lse - positive).mean()
        ctx.save_for_backward(anchors, samples, inv_tau, lse, col_lse if both else lse.new_empty(0), kept)
        ctx.leave_one_out, ctx.both, ctx.single = leave_one_out, both, rows >= n
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        anchors, samples, inv_tau, lse, col_lse, kept = ctx.saved_tensors
        n = anchors.shape[0]
        rows = n if ctx.single else block_rows(n, n)
        k = 2.0 if ctx.both else 1.0
        scale = grad_out / n
        need_a, need_s, need_t = ctx.needs_input_grad[:3]
        g_s = torch.empty_like(anchors)  # (G s) rows, before the factors t/N
        g_a = torch.zeros_like(samples) if need_s else None  # Gᵀ a, before the factors t/N
        samples_t = samples.T
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            block = anchors[start:stop]
            if ctx.single:
                p = kept
            else:
                logits = (block * inv_tau) @ samples_t
                if ctx.leave_one_out:
                    diag = (torch.arange(stop - start, device=anchors.device),
                            torch.arange(start, stop, device=anchors.device))
                    logits[diag] = float("-inf")
                p = (logits - lse[start:stop, None]).exp_()
                if ctx.both:
                    p.add_(logits.sub_(col_lse[None, :]).exp_())
            # the −kI part of G is a row copy, not an N-wide op
            g_s[start:stop] = torch.addmm(samples[start:stop], p, samples, beta=-k)
            if g_a is not None:
                g_a.addmm_(p.T, block)
                g_a[start:stop] -= k * block
        grad_t = (anchors * g_s).sum() * scale if need_t else None
        grad_a = g_s * (scale * inv_tau) if need_a else None
        grad_s = g_a * (scale * inv_tau) if need_s else None
        return grad_a, grad_s, grad_t, None, None


class _SigmoidLoss(torch.autograd.Function):
    """SigLIP's loss L = (1/N) Σ_ij −log σ(z_ij ℓ_ij),  ℓ = t·A Sᵀ + b,  z = +1 on the diagonal, −1 elsewhere.

    With softplus(u) = −log σ(−u) and softplus(−u) = softplus(u) − u:
      L = (1/N) [ Σ_ij softplus(ℓ_ij) − Σ_i ℓ_ii ],   G = dL/dℓ = (σ(ℓ) − I)/N,
      dL/da = t·G s,  dL/ds = t·Gᵀ a,  dL/dt = Σ_i a_iᵀ (G s)_i,  dL/db = Σ_ij G_ij.
    Forward and backward stream over row blocks; the backward recomputes a block's logits, or, when the
    whole matrix is one block, reuses the logits kept from the forward pass.
    """

    @staticmethod
    def forward(ctx, anchors, samples, scale, bias):
        n = anchors.shape[0]
        rows = block_rows(n, n)
        samples_t = samples.T
        total = anchors.new_zeros(())
        kept = anchors.new_empty(0)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            logits = (anchors[start:stop] * scale) @ samples_t + bias
            total = total - F.logsigmoid(-logits).sum()
            if rows >= n:
                kept = logits
        positive = (anchors * samples).sum() * scale + n * bias
        ctx.save_for_backward(anchors, samples, scale, bias, kept)
        ctx.single = rows >= n
        return (total - positive) / n

    @staticmethod
    def backward(ctx, grad_out):
        anchors, samples, scale, bias, kept = ctx.saved_tensors
        n = anchors.shape[0]
        rows = n if ctx.single else block_rows(n, n)
        need_a, need_s, need_t, need_b = ctx.needs_input_grad[:4]
        g_s = torch.empty_like(anchors)  # (N·G s) rows
        g_a = torch.zeros_like(samples) if need_s else None  # N·Gᵀ a
        sig_sum = anchors.new_zeros(())
        samples_t = samples.T
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            block = anchors[start:stop]
            logits = kept if ctx.single else (block * scale) @ samples_t + bias
            p = torch.sigmoid(logits)
            sig_sum = sig_sum + p.sum()
            # the −I part of N·G is a row copy, not an N-wide op
            g_s[start:stop] = torch.addmm(samples[start:stop], p, samples, beta=-1)
            if g_a is not None:
                g_a.addmm_(p.T, block)
                g_a[start:stop] -= block
        factor = grad_out / n
        grad_t = (anchors * g_s).sum() * factor if need_t else None
        grad_b = (sig_sum - n) * factor if need_b else None
        grad_a = g_s * (factor * scale) if need_a else None
        grad_s = g_a * (factor * scale) if need_s else None
        return grad_a, grad_s, grad_t, grad_b


def as_scalar(value, like: torch.Tensor) -> torch.Tensor:
    """A float or a one-element tensor as a 0-dim tensor (a given tensor keeps its graph; a float gets
    ``like``'s dtype and device)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"inv_tau must be a scalar, got shape {tuple(value.shape)}")
        return value.reshape(())
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


def sigmoid_loss(anchors, samples, scale, bias) -> torch.Tensor:
    anchors, samples = full_precision(anchors, samples)  # first, so that a float scale or bias is made in fp32
    return apply_full_precision(_SigmoidLoss, anchors, samples, as_scalar(scale, anchors), as_scalar(bias, anchors))


def logsumexp_loss(anchors, samples, inv_tau, leave_one_out: bool, both: bool = False) -> torch.Tensor:
    anchors, samples = full_precision(anchors, samples)  # first, so that a float inv_tau is made in fp32
    return apply_full_precision(_LogsumexpLoss, anchors, samples, as_scalar(inv_tau, anchors), leave_one_out, both)
