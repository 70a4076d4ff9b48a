"""The CLOOB paper's embedding diagnostics (method.md §3) as pure functions.

Every function takes numpy arrays or torch tensors (CPU or GPU) and returns
Python floats / ints or numpy arrays. Pairwise quantities are computed in row
chunks: a chunk of ``c`` anchors against all ``n`` rows costs ``c·n`` floats,
never ``n²``. By default ``c`` is chosen so one chunk block is ≤ 128 MiB in
float64 (50,000 embeddings: 335 rows per chunk), computed in place where possible;
``tests/test_analysis_memory.py`` (slow) measures the peak for 24,000 × 512, where one dense
float32 pairwise matrix alone would take 2.1 GiB.

Shapes: ``x``, ``y``: (n, d); row i of ``x`` and row i of ``y`` are a matched
pair (image i and its caption). Functions on the sphere l2-normalise rows
first (``normalize=True``), so raw features can be passed too.
"""
from __future__ import annotations

import math

import numpy as np
import torch

# the pair helpers and the saturation terms live one layer down: training logs them too
from cloob.embedding_stats import CHUNK_BYTES, as_tensor, chunk_rows, saturation_terms  # noqa: F401
from cloob.embedding_stats import as_matrix as _matrix, check_pairs as _check_pairs, cross_rows as _cross_rows
from cloob.embedding_stats import unit_rows as _unit


# ---------------------------------------------------------------- eigenvalues

def eigenvalue_spectrum(embeddings, chunk: int | None = None) -> np.ndarray:
    """Eigenvalues of the covariance matrix of ``embeddings`` (n, d), sorted descending.

    The covariance (unbiased, centred) is accumulated in float64 over row chunks
    (d×d memory); tiny negative round-off eigenvalues are clipped to 0.
    """
    x = _matrix(embeddings, "embeddings")
    n, d = x.shape
    if n < 2:
        raise ValueError("need at least 2 embeddings for a covariance")
    step = chunk_rows(d, chunk) if chunk is not None else 8192
    total = torch.zeros(d, dtype=torch.float64, device=x.device)
    gram = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    for s in range(0, n, step):
        xc = x[s : s + step].to(torch.float64)
        total += xc.sum(0)
        gram += xc.T @ xc
    mean = total / n
    cov = (gram - n * torch.outer(mean, mean)) / (n - 1)
    ev = np.linalg.eigvalsh(cov.cpu().numpy())[::-1]
    return np.clip(ev, 0.0, None).copy()


def effective_eigenvalues(embeddings, fraction: float = 0.99, chunk: int | None = None) -> int:
    """Number of largest covariance eigenvalues whose sum reaches ``fraction`` of the total.

    ``embeddings`` may also be a 1-D spectrum (already sorted or not). An
    isotropic Gaussian in d dimensions gives about ``ceil(fraction·d)``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    a = as_tensor(embeddings)
    ev = np.sort(a.cpu().numpy().astype(np.float64))[::-1] if a.ndim == 1 else eigenvalue_spectrum(a, chunk)
    total = ev.sum()
    if total <= 0:
        return 0
    cum = np.cumsum(ev)
    # relative tolerance so that e.g. 7/10 reaches 0.7 despite 0.7*10 = 7.000000000000001
    return int(np.searchsorted(cum, fraction * total * (1 - 1e-12)) + 1)


def relative_change(before, after):
    """(after − before) / before, e.g. of the effective eigenvalue count between two checkpoints.

    Scalars give a float, arrays an array. ``before == 0`` raises.
    """
    b = np.asarray(before, dtype=np.float64)
    a = np.asarray(after, dtype=np.float64)
    if np.any(b == 0):
        raise ValueError("relative change is undefined for before == 0")
    r = (a - b) / b
    return float(r) if r.ndim == 0 else r


# ---------------------------------------------------------------- uniformity

def ajne_statistic(embeddings, chunk: int | None = None, normalize: bool = True) -> float:
    """Prentice's extension of Ajne's uniformity statistic to the hypersphere.

        A = n/4 − (1/(nπ)) Σ_{i<j} arccos(x_iᵀx_j)

    About 1/4 for uniformly distributed points; large (up to n/4) for points
    that concentrate in a region (low uniformity). Antipodally symmetric
    distributions (e.g. uniform on a great circle) also score about 1/4: Ajne's
    test does not see them. O(n²·d) time, O(chunk·n) memory (upper triangle only).
    """
    x = _unit(_matrix(embeddings, "embeddings"), normalize)
    n = x.shape[0]
    step = chunk_rows(n, chunk)
    total = 0.0
    for s in range(0, n, step):
        e = min(n, s + step)
        # rows i in [s, e), columns j >= s
        ang = (x[s:e] @ x[s:].T).to(torch.float64).clamp_(-1.0, 1.0).arccos_()
        rows = torch.arange(s, e, device=x.device)[:, None]
        cols = torch.arange(s, n, device=x.device)[None, :]
        total += float(ang.masked_fill_(cols <= rows, 0.0).sum())
    return n / 4 - total / (n * math.pi)


def alignment(x, y, alpha: float = 2.0, normalize: bool = True) -> float:
    """Wang & Isola alignment: mean over matched pairs of ‖x_i − y_i‖^alpha (0 when x == y)."""
    x = _unit(_matrix(x, "x"), normalize)
    y = _unit(_matrix(y, "y"), normalize)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return float((x - y).to(torch.float64).norm(dim=1).pow(alpha).mean())


def uniformity(x, t: float = 2.0, chunk: int | None = None, normalize: bool = True) -> float:
    """Wang & Isola uniformity: log of the mean over all pairs i < j of exp(−t‖x_i − x_j‖²).

    −4t for two antipodal points, 0 for identical points; lower is more uniform.
    Chunked log-sum-exp over the upper triangle.
    """
    x = _unit(_matrix(x, "x"), normalize)
    n = x.shape[0]
    if n < 2:
        raise ValueError("uniformity needs at least 2 points")
    sq = (x.to(torch.float64) ** 2).sum(1)
    step = chunk_rows(n, chunk)
    parts = []
    for s in range(0, n - 1, step):
        e = min(n - 1, s + step)
        # rows i in [s, e), columns j >= s+1; in place: −t·‖x_i − x_j‖² = −t·(|x_i|² + |x_j|² − 2 x_iᵀx_j)
        d2 = (x[s:e] @ x[s + 1 :].T).to(torch.float64).mul_(-2).add_(sq[s:e, None]).add_(sq[None, s + 1 :])
        d2.clamp_(min=0.0).mul_(-t)
        rows = torch.arange(s, e, device=x.device)[:, None]
        cols = torch.arange(s + 1, n, device=x.device)[None, :]
        parts.append(torch.logsumexp(d2.masked_fill_(cols <= rows, -math.inf).flatten(), 0))
    pairs = n * (n - 1) / 2
    return float(torch.logsumexp(torch.stack(parts), 0)) - math.log(pairs)


# ---------------------------------------------------------------- similarities

def similarity_distributions(x, y, k: int = 10, chunk: int | None = None,
                             normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of each anchor x_i to its match y_i and to its k most similar non-matches.

    Returns:
        matched (n,): x_iᵀy_i.
        top_k_unmatched (n, k'): the k' = min(k, n−1) largest x_iᵀy_j, j ≠ i, descending.
    """
    x, y = _check_pairs(x, y, normalize)
    n = x.shape[0]
    k = min(k, n - 1)
    matched = (x.to(torch.float64) * y.to(torch.float64)).sum(1)
    tops = []
    for s, e, sim in _cross_rows(x, y, chunk_rows(n, chunk)):
        idx = torch.arange(e - s, device=sim.device)
        sim[idx, idx + s] = -math.inf
        tops.append(sim.topk(k, dim=1).values)
    return matched.cpu().numpy(), torch.cat(tops).cpu().numpy()
