"""Modern Hopfield retrieval (one update step), as used by CLOOB (method.md §1)."""
from __future__ import annotations

import math
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

Scalar = Union[float, torch.Tensor]


def retrieve(state: torch.Tensor, stored: torch.Tensor, beta: Scalar) -> torch.Tensor:
    """One Hopfield update: softmax(beta · state · storedᵀ, dim=-1) · stored.

    Computed as attention with queries = state, keys = values = stored, so the
    (n, m) association matrix is never kept for backward (PyTorch's fused
    attention recomputes it); beta scales the queries so that a tensor beta
    receives a gradient.

    Args:
        state: ξ, (n, d) state patterns (queries).
        stored: X, (m, d) stored patterns.
        beta: inverse temperature, float or 0-dim tensor.
    Returns:
        (n, d) retrieved patterns (not normalised).
    """
    if state.dim() != 2 or stored.dim() != 2 or state.shape[1] != stored.shape[1]:
        raise ValueError(
            f"expected state (n, d) and stored (m, d) with the same d, got {tuple(state.shape)} and {tuple(stored.shape)}"
        )
    if stored.shape[0] == 0:
        raise ValueError("the Hopfield memory is empty (stored has 0 rows)")
    q = state * beta
    out = F.scaled_dot_product_attention(q[None], stored[None], stored[None], scale=1.0)
    return out[0]


class HopfieldMemory(nn.Module):
    """Retrieval with an inverse temperature beta that is fixed or learned.

    A learnable beta is stored as ``log_beta`` so that it stays positive.
    ``forward(state, stored)`` returns :func:`retrieve` (n, d).
    """

    def __init__(self, beta: float = 14.3, learnable: bool = False):
        super().__init__()
        if not beta > 0:
            raise ValueError(f"Hopfield beta must be > 0, got {beta}")
        self.log_beta = nn.Parameter(torch.tensor(math.log(beta)), requires_grad=learnable)

    @property
    def beta(self) -> torch.Tensor:
        """0-dim tensor, exp(log_beta)."""
        return self.log_beta.exp()

    @property
    def learnable(self) -> bool:
        return self.log_beta.requires_grad

    def forward(self, state: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
        return retrieve(state, stored, self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta.item():.4g}, learnable={self.learnable}"
