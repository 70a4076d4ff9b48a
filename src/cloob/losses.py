"""Contrastive objectives of CLIP and CLOOB (method.md §1), and SigLIP's sigmoid loss beside them.

Notation: a batch of N matched pairs; row i of ``anchors`` is matched with row i
of ``samples``; ``inv_tau`` is the inverse temperature (open_clip's
``logit_scale``), a float or a 0-dim tensor (then it receives a gradient).

The softmax losses go through :class:`_LogsumexpLoss`, which never materialises the
N×N logit matrix for large N: it walks over row blocks, keeps one logsumexp
per row (and per column when both directions share the matrix), and
recomputes each block in the backward pass. Memory is O(block·N) instead of
O(N²), so N = 65,536 fits on a laptop. The sigmoid loss streams the same way
(:class:`_SigmoidLoss`).

When a ``torch.distributed`` process group is active, the two-sided losses
(:func:`clip_loss`, :func:`cloob_loss`, :func:`contrastive_loss`) first
all-gather the features, so every process computes the loss over the global
batch (and CLOOB's Hopfield memory is the global batch).
"""
from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F

from cloob.blocks import block_rows
from cloob.distributed import gather_features, share_gradient
from cloob.hopfield import mutual_retrieve, retrieve, softmax_
from cloob.methods import METHODS, OBJECTIVES

Scalar = Union[float, torch.Tensor]

def _check_pairs(anchors: torch.Tensor, samples: torch.Tensor, min_n: int) -> None:
    if anchors.dim() != 2 or samples.dim() != 2:
        raise ValueError(
            f"expected 2-D (N, d) features, got anchors {tuple(anchors.shape)} and samples {tuple(samples.shape)}"
        )
    if anchors.shape != samples.shape:
        raise ValueError(
            f"anchors {tuple(anchors.shape)} and samples {tuple(samples.shape)} must have the same (N, d): "
            "row i of each is one matched pair"
        )
    n = anchors.shape[0]
    if n < min_n:
        if min_n == 2:
            raise ValueError(
                f"InfoLOOB needs N >= 2 (got N={n}): it leaves the positive out of the denominator, "
                "so every anchor needs at least one negative"
            )
        raise ValueError(f"need at least {min_n} pairs, got N={n}")


def _as_tensor(inv_tau: Scalar, like: torch.Tensor) -> torch.Tensor:
    if isinstance(inv_tau, torch.Tensor):
        if inv_tau.numel() != 1:
            raise ValueError(f"inv_tau must be a scalar, got shape {tuple(inv_tau.shape)}")
        return inv_tau.reshape(())
    return torch.tensor(float(inv_tau), dtype=like.dtype, device=like.device)


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


def siglip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: Scalar,
                logit_bias: Scalar, gather: bool = True) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al. 2023): every pair (i, j) is a binary decision.

    L = −(1/N) Σ_i Σ_j log σ( z_ij · (t·x_iᵀy_j + b) ),  z_ij = 1 if i = j else −1.

    The arguments mean what they mean in open_clip's ``SigLipLoss.forward``: ``logit_scale`` t is already
    exponentiated (SigLIP learns t' with t = exp(t'), initialised t = 10) and ``logit_bias`` b is added to
    every logit (initialised −10, so the N² − N negatives do not swamp the N positives at the start).
    Equal to ``open_clip.loss.SigLipLoss()(x, y, t, b)`` in one process. In a process group the features
    are all-gathered first and the loss is over the global batch (the mean over processes of open_clip's
    per-process losses); gradients follow :func:`contrastive_loss`'s convention.

    Args:
        image_features: x, (N_local, d) unit rows.
        text_features: y, (N_local, d) unit rows.
        logit_scale: t, float or 0-dim tensor.
        logit_bias: b, float or 0-dim tensor.
        gather: all-gather over the active process group first (no-op in a single process).
    Returns:
        0-dim tensor.
    """
    return contrastive_loss(image_features, text_features, logit_scale, "sigmoid", None, gather, logit_bias)


def _sigmoid_loss(anchors, samples, scale: Scalar, bias: Scalar) -> torch.Tensor:
    return _SigmoidLoss.apply(anchors, samples, _as_tensor(scale, anchors), _as_tensor(bias, anchors))


def _logsumexp_loss(anchors, samples, inv_tau: Scalar, leave_one_out: bool, both: bool = False) -> torch.Tensor:
    return _LogsumexpLoss.apply(anchors, samples, _as_tensor(inv_tau, anchors), leave_one_out, both)


def info_nce(anchors: torch.Tensor, samples: torch.Tensor, inv_tau: Scalar) -> torch.Tensor:
    """InfoNCE in one direction: cross-entropy of each anchor against all samples.

    L = −(1/N) Σ_i log( exp(t·a_iᵀs_i) / Σ_j exp(t·a_iᵀs_j) ),  t = inv_tau.

    Args:
        anchors: (N, d); row i is matched with ``samples[i]``.
        samples: (N, d).
        inv_tau: float or 0-dim tensor.
    Returns:
        0-dim tensor, the mean over the N anchors.
    """
    _check_pairs(anchors, samples, min_n=1)
    return _logsumexp_loss(anchors, samples, inv_tau, leave_one_out=False)


def info_loob(anchors: torch.Tensor, samples: torch.Tensor, inv_tau: Scalar) -> torch.Tensor:
    """InfoLOOB ("leave one out bound") in one direction.

    L = −(1/N) Σ_i [ t·a_iᵀs_i − log Σ_{j≠i} exp(t·a_iᵀs_j) ],  t = inv_tau.

    The positive is excluded from the denominator by masking it to −inf before
    a logsumexp (exact; no large-negative constant), so it is finite for any
    inv_tau and for near-identical embeddings.

    Args:
        anchors: (N, d), N >= 2; row i is matched with ``samples[i]``.
        samples: (N, d).
        inv_tau: float or 0-dim tensor.
    Returns:
        0-dim tensor, the mean over the N anchors.
    Raises:
        ValueError: N < 2 (an anchor would have no negative).
    """
    _check_pairs(anchors, samples, min_n=2)
    return _logsumexp_loss(anchors, samples, inv_tau, leave_one_out=True)


def hopfield_pairs(image_features: torch.Tensor, text_features: torch.Tensor, beta: Scalar):
    """CLOOB's four normalised Hopfield retrievals with the batch as memory.

    U = x (images) and V = y (texts) are stored; each retrieval is
    l2-normalised afterwards.

    Args:
        image_features: x, (N, d) unit rows.
        text_features: y, (N, d) unit rows.
        beta: inverse temperature of the retrieval, float or 0-dim tensor.
    Returns:
        (U_x, U_y, V_x, V_y), each (N, d) unit rows.
    """
    x, y = image_features, text_features
    U_x = F.normalize(retrieve(x, x, beta), dim=-1)
    U_y, V_x = mutual_retrieve(y, x, beta)  # one Gram matrix y·xᵀ for both
    V_y = F.normalize(retrieve(y, y, beta), dim=-1)
    return U_x, F.normalize(U_y, dim=-1), F.normalize(V_x, dim=-1), V_y


def contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    inv_tau: Scalar,
    objective: str = "infonce",
    hopfield_beta: Scalar | None = None,
    gather: bool = True,
    logit_bias: Scalar | None = None,
) -> torch.Tensor:
    """The ablation cells: {InfoNCE, InfoLOOB, sigmoid} × {no Hopfield, Hopfield}.

    The two directions are (x, y) and (y, x) without Hopfield, and
    (U_x, U_y) and (V_y, V_x) with it (see :func:`hopfield_pairs`).
    InfoNCE averages the two directions (CLIP's ½·CE + ½·CE); InfoLOOB sums
    them and multiplies by tau = 1/inv_tau, as CLOOB does, which keeps the
    gradient scale independent of inv_tau. The sigmoid loss (:func:`siglip_loss`)
    is symmetric in its two arguments, so it has one term without Hopfield, and
    with it the mean of its terms on (U_x, U_y) and (V_y, V_x), as InfoNCE does.

    ``contrastive_loss(x, y, t)`` is :func:`clip_loss` and
    ``contrastive_loss(x, y, t, "infoloob", beta)`` is :func:`cloob_loss`.

    Args:
        image_features: (N_local, d) unit rows.
        text_features: (N_local, d) unit rows.
        inv_tau: float or 0-dim tensor.
        objective: "infonce", "infoloob" or "sigmoid".
        hopfield_beta: None (no retrieval) or β, float or 0-dim tensor.
        gather: all-gather the features over the active process group first
            (no-op in a single process). Gradients are then such that their
            *sum* over processes equals the single-process gradient with the
            global batch (see :func:`cloob.distributed.share_gradient`).
        logit_bias: the sigmoid objective's b (required there, refused elsewhere).
    Returns:
        0-dim tensor: the loss over the global batch.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if (objective == "sigmoid") != (logit_bias is not None):
        raise ValueError("the sigmoid objective needs a logit_bias; the softmax objectives take none")
    if gather:
        image_features = gather_features(image_features)
        text_features = gather_features(text_features)
        inv_tau = share_gradient(inv_tau)
        hopfield_beta = share_gradient(hopfield_beta)
        logit_bias = share_gradient(logit_bias)
    _check_pairs(image_features, text_features, min_n=2 if objective == "infoloob" else 1)
    if objective == "sigmoid":
        if hopfield_beta is None:
            return _sigmoid_loss(image_features, text_features, inv_tau, logit_bias)
        U_x, U_y, V_x, V_y = hopfield_pairs(image_features, text_features, hopfield_beta)
        return 0.5 * (_sigmoid_loss(U_x, U_y, inv_tau, logit_bias) + _sigmoid_loss(V_y, V_x, inv_tau, logit_bias))
    if hopfield_beta is None:
        # (x, y) and (y, x) are the rows and the columns of one logit matrix
        both = _logsumexp_loss(image_features, text_features, inv_tau, objective == "infoloob", both=True)
        return 0.5 * both if objective == "infonce" else both / inv_tau
    U_x, U_y, V_x, V_y = hopfield_pairs(image_features, text_features, hopfield_beta)
    pairs = ((U_x, U_y), (V_y, V_x))
    if objective == "infonce":
        return 0.5 * (info_nce(*pairs[0], inv_tau) + info_nce(*pairs[1], inv_tau))
    return (info_loob(*pairs[0], inv_tau) + info_loob(*pairs[1], inv_tau)) / inv_tau


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, inv_tau: Scalar) -> torch.Tensor:
    """CLIP's symmetric InfoNCE, ½·CE(logits) + ½·CE(logitsᵀ), logits = inv_tau·x yᵀ.

    Equal to ``open_clip.ClipLoss()(x, y, logit_scale=inv_tau)`` in one process.

    Args:
        image_features: x, (N, d) unit rows.
        text_features: y, (N, d) unit rows.
        inv_tau: float or 0-dim tensor.
    Returns:
        0-dim tensor.
    """
    return contrastive_loss(image_features, text_features, inv_tau, "infonce", None)


def cloob_loss(image_features: torch.Tensor, text_features: torch.Tensor, inv_tau: Scalar, beta: Scalar) -> torch.Tensor:
    """CLOOB: tau·[InfoLOOB(U_x, U_y) + InfoLOOB(V_y, V_x)] with normalised Hopfield retrievals.

    Args:
        image_features: x, (N, d) unit rows, N >= 2 (global batch).
        text_features: y, (N, d) unit rows.
        inv_tau: 1/tau, float or 0-dim tensor (the paper fixes it at 30).
        beta: Hopfield inverse temperature (the paper uses 8 on CC; 14.3 was
            the reference code's default).
    Returns:
        0-dim tensor.
    """
    return contrastive_loss(image_features, text_features, inv_tau, "infoloob", beta)


def method_loss(method: str, image_features, text_features, inv_tau: Scalar, beta: Scalar | None,
                logit_bias: Scalar | None = None) -> torch.Tensor:
    """Loss of one named method of the ablation grid (see :data:`METHODS`); ``logit_bias`` for the sigmoid ones."""
    try:
        objective, hopfield = METHODS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}") from None
    if hopfield and beta is None:
        raise ValueError(f"method {method!r} needs a Hopfield beta")
    if objective == "sigmoid" and logit_bias is None:
        raise ValueError(f"method {method!r} needs a logit bias")
    return contrastive_loss(image_features, text_features, inv_tau, objective, beta if hopfield else None,
                            logit_bias=logit_bias if objective == "sigmoid" else None)


__all__ = [
    "info_nce",
    "info_loob",
    "hopfield_pairs",
    "contrastive_loss",
    "clip_loss",
    "cloob_loss",
    "siglip_loss",
    "method_loss",
    "METHODS",
    "OBJECTIVES",
]

