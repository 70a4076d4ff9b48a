"""Statistics of a batch of paired embeddings, shared by training (logged every few steps) and analysis.

Pure functions: tensors or arrays in, numbers out. Two groups:

- the pair helpers and the saturation terms of method.md §3 (``saturation_terms``),
  chunked over rows so that 50,000 pairs fit in memory (:mod:`cloob.analysis.diagnostics`
  builds the paper's other diagnostics on the same helpers);
- the collapse diagnostics of the Hopfield methods (``collapse_diagnostics``): the
  effective number of patterns each retrieval averages, the mean off-diagonal cosine
  of the raw and the retrieved embeddings, and how far the loss sits above the value it
  takes when every embedding is the same (``collapsed_loss``).

Shapes: ``x``, ``y``: (n, d); row i of ``x`` and row i of ``y`` are a matched pair.
"""
from __future__ import annotations

import math

import numpy as np
import torch

CHUNK_BYTES = 128 * 2**20


def as_tensor(a, dtype=None) -> torch.Tensor:
    """numpy array / tensor / nested list -> torch tensor (no copy when possible)."""
    t = a.detach() if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.to(torch.float64)
    return t


def as_matrix(a, name: str) -> torch.Tensor:
    t = as_tensor(a)
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n, d) matrix, got shape {tuple(t.shape)}")
    return t


def unit_rows(t: torch.Tensor, normalize: bool) -> torch.Tensor:
    return torch.nn.functional.normalize(t, dim=1) if normalize else t


def chunk_rows(n: int, chunk: int | None = None) -> int:
    """Rows per chunk: ``chunk`` if given, else as many as fit ``CHUNK_BYTES`` of float64 against ``n`` columns."""
    if chunk is not None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        return int(chunk)
    return max(1, min(n, CHUNK_BYTES // (8 * max(n, 1))))


def cross_rows(x: torch.Tensor, y: torch.Tensor, step: int):
    """Yield (s, e, x[s:e] @ y.T with the matched entries (i, i) at [i - s, i])."""
    n = x.shape[0]
    for s in range(0, n, step):
        e = min(n, s + step)
        yield s, e, (x[s:e] @ y.T).to(torch.float64)


def check_pairs(x, y, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = unit_rows(as_matrix(x, "x"), normalize)
    y = unit_rows(as_matrix(y, "y"), normalize)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2:
        raise ValueError("need at least 2 pairs")
    return x, y.to(x.dtype)


def saturation_terms(x, y, inv_tau: float, chunk: int | None = None, normalize: bool = True) -> dict:
    """The alignment score a and uniformity penalty b of InfoNCE and InfoLOOB (anchors x).

        log a_i = inv_tau·x_iᵀy_i        log b_i = log Σ_{j≠i} exp(inv_tau·x_iᵀy_j)

    Returns a dict:
        log_a, log_b (n,) numpy arrays, per sample;
        mean_log_a, mean_log_b: their means (what training logs as ``log_a``/``log_b``);
        infonce_term: mean a/(a+b) = mean sigmoid(log a − log b)  (saturates at 1);
        infoloob_term: mean a/b = exp(logsumexp(log a − log b) − log n)  (does not saturate).
    """
    x, y = check_pairs(x, y, normalize)
    n = x.shape[0]
    inv_tau = float(inv_tau)
    log_a = inv_tau * (x.to(torch.float64) * y.to(torch.float64)).sum(1)
    log_b = []
    for s, e, sim in cross_rows(x, y, chunk_rows(n, chunk)):
        idx = torch.arange(e - s, device=sim.device)
        logits = sim.mul_(inv_tau)
        logits[idx, idx + s] = -math.inf
        log_b.append(torch.logsumexp(logits, dim=1))
    log_b = torch.cat(log_b)
    diff = log_a - log_b
    return {
        "log_a": log_a.cpu().numpy(),
        "log_b": log_b.cpu().numpy(),
        "mean_log_a": float(log_a.mean()),
        "mean_log_b": float(log_b.mean()),
        "infonce_term": float(torch.sigmoid(diff).mean()),
        "infoloob_term": float(torch.exp(torch.logsumexp(diff, 0) - math.log(n))),
    }


# ------------------------------------------------------------------ collapse

# the retrievals of CLOOB (method.md §1): name -> (state, stored) as indices into (x, y)
RETRIEVALS = {"U_x": (0, 0), "U_y": (1, 0), "V_x": (0, 1), "V_y": (1, 1)}


def _retrieval(state: torch.Tensor, stored: torch.Tensor, beta: float) -> tuple[float, torch.Tensor]:
    """(effective number of patterns, retrieved (n, d)) of softmax(β ξ Xᵀ) X, in float64."""
    stored = stored.double()
    logp = torch.log_softmax(float(beta) * state.double() @ stored.T, dim=1)
    p = logp.exp()
    entropy = -(p * logp).sum(dim=1)
    return float(entropy.exp().mean()), p @ stored


def effective_patterns(state: torch.Tensor, stored: torch.Tensor, beta: float) -> float:
    """How many stored patterns one Hopfield retrieval averages: exp(entropy of its softmax), mean over states.

    p_i = softmax(β ξ_i Xᵀ);  n_eff = (1/n) Σ_i exp(−Σ_j p_ij log p_ij).
    1 when every state retrieves a single pattern; m (all stored patterns) when the
    softmax is uniform, i.e. when every retrieval returns the same mean pattern.

    Args:
        state: ξ, (n, d).
        stored: X, (m, d).
        beta: inverse temperature.
    Returns:
        float in [1, m].
    """
    return _retrieval(state, stored, beta)[0]


def mean_offdiag_cosine(a: torch.Tensor) -> float:
    """Mean cosine similarity over all ordered pairs i ≠ j of the rows of ``a`` (n, d), n ≥ 2.

    Uses |Σ_i u_i|² = Σ_i |u_i|² + Σ_{i≠j} u_iᵀu_j on the unit rows u: O(n·d), no n×n matrix.
    1 when every row points the same way; about 0 for rows spread over the sphere.
    """
    u = torch.nn.functional.normalize(a.double(), dim=1)
    n = u.shape[0]
    if n < 2:
        raise ValueError("need at least 2 rows")
    total = u.sum(dim=0)
    return float((total @ total - (u * u).sum()) / (n * (n - 1)))


def collapsed_loss(objective: str, n: int, inv_tau: float, logit_bias: float | None = None) -> float:
    """The value of the two-sided loss when all N embeddings (raw or retrieved) are the same vector.

    InfoNCE (the mean of its two directions, as CLIP): ln N.
    InfoLOOB (the sum of its two directions times tau, as CLOOB): 2·ln(N−1)/inv_tau.
    Sigmoid (SigLIP, every logit t + b): softplus(−(t+b)) + (N−1)·softplus(t+b).
    A run whose loss sits at this value has stopped telling its pairs apart.
    """
    if objective == "infonce":
        return math.log(n)
    if objective == "infoloob":
        return 2.0 * math.log(n - 1) / float(inv_tau)
    if objective == "sigmoid":
        if logit_bias is None:
            raise ValueError("the sigmoid objective's collapsed value needs its logit bias")
        z = float(inv_tau) + float(logit_bias)
        softplus = lambda u: max(u, 0.0) + math.log1p(math.exp(-abs(u)))  # noqa: E731 - stable for any u
        return softplus(-z) + (n - 1) * softplus(z)
    raise ValueError(f"unknown objective {objective!r}")


def loss_gap_nats(objective: str, loss: float, n: int, inv_tau: float, logit_bias: float | None = None) -> float:
    """``loss − collapsed_loss`` converted to nats per direction, a scale shared by every method.

    InfoNCE's loss is already the mean over its two directions in nats; InfoLOOB's is
    tau-scaled and summed over two directions, so it is multiplied by inv_tau/2. The sigmoid
    loss is in nats per anchor (its N binary decisions summed) and is taken as it is. 0 at
    collapse (and at chance); negative when matched pairs win, by as many nats per anchor.
    """
    gap = float(loss) - collapsed_loss(objective, n, inv_tau, logit_bias)
    return gap * float(inv_tau) / 2.0 if objective == "infoloob" else gap


@torch.no_grad()
def collapse_diagnostics(x: torch.Tensor, y: torch.Tensor, beta: float | None = None) -> dict[str, float]:
    """What training logs to see a collapse while it happens (unit rows x, y of one batch, (N, d)).

    Always: ``cos/x``, ``cos/y``, the mean off-diagonal cosine of the raw embeddings.
    With a Hopfield β also, for each retrieval r ∈ {U_x, U_y, V_x, V_y}:
    ``eff_patterns/r`` (:func:`effective_patterns`) and ``cos/r``, the mean off-diagonal
    cosine of its l2-normalised result.
    """
    out = {"cos/x": mean_offdiag_cosine(x), "cos/y": mean_offdiag_cosine(y)}
    if beta is None:
        return out
    xy = (x, y)
    for name, (s, m) in RETRIEVALS.items():
        out[f"eff_patterns/{name}"], retrieved = _retrieval(xy[s], xy[m], beta)
        out[f"cos/{name}"] = mean_offdiag_cosine(retrieved)
    return out
