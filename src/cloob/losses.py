"""Contrastive objectives of CLIP and CLOOB (method.md §1), and SigLIP's sigmoid loss beside them.

Notation: a batch of N matched pairs; row i of ``anchors`` is matched with row i
of ``samples``; ``inv_tau`` is the inverse temperature (open_clip's
``logit_scale``), a float or a 0-dim tensor (then it receives a gradient).

The softmax losses go through :func:`cloob.loss_kernels.logsumexp_loss`, which never materialises the
N×N logit matrix for large N: it walks over row blocks, keeps one logsumexp
per row (and per column when both directions share the matrix), and
recomputes each block in the backward pass. Memory is O(block·N) instead of
O(N²), so N = 65,536 fits on a laptop. The sigmoid loss streams the same way
(:func:`cloob.loss_kernels.sigmoid_loss`).

When a ``torch.distributed`` process group is active, the two-sided losses
(:func:`clip_loss`, :func:`cloob_loss`, :func:`contrastive_loss`) first
all-gather the features, so every process computes the loss over the global
batch (and CLOOB's Hopfield memory is the global batch).
"""
from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F

from cloob.distributed import gather_features, share_gradient
from cloob.hopfield import mutual_retrieve, retrieve
from cloob.loss_kernels import logsumexp_loss, sigmoid_loss
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
    return logsumexp_loss(anchors, samples, inv_tau, leave_one_out=False)


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
    return logsumexp_loss(anchors, samples, inv_tau, leave_one_out=True)


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
            return sigmoid_loss(image_features, text_features, inv_tau, logit_bias)
        U_x, U_y, V_x, V_y = hopfield_pairs(image_features, text_features, hopfield_beta)
        return 0.5 * (sigmoid_loss(U_x, U_y, inv_tau, logit_bias) + sigmoid_loss(V_y, V_x, inv_tau, logit_bias))
    if hopfield_beta is None:
        # (x, y) and (y, x) are the rows and the columns of one logit matrix
        both = logsumexp_loss(image_features, text_features, inv_tau, objective == "infoloob", both=True)
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

