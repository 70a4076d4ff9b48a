"""Modern Hopfield retrieval (one update step), as used by CLOOB (method.md §1)."""
from __future__ import annotations

import math
from typing import Union

import torch
from torch import nn

Scalar = Union[float, torch.Tensor]


# Elements of one block of associations (rows × stored); 2^24 floats = 64 MiB in float32.
_BLOCK_ELEMENTS = 1 << 24


class _Retrieve(torch.autograd.Function):
    """O = softmax(β Q Xᵀ) X over row blocks of Q, with a recomputing backward.

    With S = β Q Xᵀ, P = softmax_rows(S), O = P X and dO the incoming gradient:
      dP = dO Xᵀ,  dS = P ⊙ (dP − rowsum(dO ⊙ O)),
      dQ = β dS X,  dX = Pᵀ dO + β dSᵀ Q,  dβ = Σ_i Q_i · (dS X)_i.
    Only the per-row logsumexp and O are kept; when the whole problem is one
    block, P itself is kept instead of being recomputed.
    """

    @staticmethod
    def forward(ctx, state, stored, beta):
        n, m = state.shape[0], stored.shape[0]
        rows = max(1, min(n, _BLOCK_ELEMENTS // max(m, 1)))
        out = torch.empty_like(state)
        lse = state.new_empty(n)
        kept = None
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            s = (state[start:stop] * beta) @ stored.T
            lse[start:stop] = torch.logsumexp(s, dim=1)
            p = s.sub_(lse[start:stop, None]).exp_()
            out[start:stop] = p @ stored
            if rows >= n:
                kept = p
        ctx.save_for_backward(state, stored, beta, lse, out, kept if kept is not None else state.new_empty(0))
        ctx.rows, ctx.single = rows, kept is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        state, stored, beta, lse, out, kept = ctx.saved_tensors
        n, rows = state.shape[0], ctx.rows
        need_q, need_x, need_b = ctx.needs_input_grad
        grad_q = torch.empty_like(state) if (need_q or need_b) else None
        grad_x = torch.zeros_like(stored) if need_x else None
        grad_out = grad_out.contiguous()
        delta = (grad_out * out).sum(dim=1)  # rowsum(dP ⊙ P) = dO_i · O_i
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            q, g = state[start:stop], grad_out[start:stop]
            if ctx.single:
                p = kept
            else:
                p = ((q * beta) @ stored.T).sub_(lse[start:stop, None]).exp_()
            ds = (g @ stored.T).sub_(delta[start:stop, None]).mul_(p)  # dS
            if grad_q is not None:
                grad_q[start:stop] = ds @ stored  # (dS X), before the factor β
            if grad_x is not None:
                grad_x.addmm_(p.T, g)
                grad_x.addmm_(ds.T, q, alpha=float(beta))
        grad_beta = (state * grad_q).sum() if need_b else None
        if need_q:
            grad_q = grad_q * beta
        return (grad_q if need_q else None), grad_x, grad_beta


def retrieve(state: torch.Tensor, stored: torch.Tensor, beta: Scalar) -> torch.Tensor:
    """One Hopfield update: softmax(beta · state · storedᵀ, dim=-1) · stored.

    Computed over row blocks of ``state`` with a recomputing backward pass, so
    memory is O(block · m) rather than O(n · m) (the full association matrix
    is only kept when it is small); a tensor ``beta`` receives a gradient.

    Args:
        state: ξ, (n, d) state patterns (queries).
        stored: X, (m, d) stored patterns (keys = values).
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
    if not isinstance(beta, torch.Tensor):
        beta = torch.tensor(float(beta), dtype=state.dtype, device=state.device)
    return _Retrieve.apply(state, stored, beta.reshape(()))


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
