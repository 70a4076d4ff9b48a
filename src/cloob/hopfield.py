"""Modern Hopfield retrieval (one update step), as used by CLOOB (method.md §1)."""
from __future__ import annotations

import math
from typing import Union

import torch
from torch import nn

from cloob.blocks import apply_full_precision, block_rows, full_precision

Scalar = Union[float, torch.Tensor]


def softmax_(s: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """In place: (n, m) scores -> their softmax along ``dim``; returns the logsumexps along ``dim``.

    Same result as ``torch.logsumexp`` then ``exp(s − lse)``, without the N×N
    temporaries those allocate (a fresh 64 MiB tensor costs more than the exp).
    """
    peak = s.amax(dim=dim, keepdim=True)
    s.sub_(peak).exp_()
    total = s.sum(dim=dim, keepdim=True)
    s.div_(total)
    return (peak + total.log()).squeeze(dim)


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
        rows = block_rows(n, m)
        out = torch.empty_like(state)
        lse = state.new_empty(n)
        kept = None
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            p = (state[start:stop] * beta) @ stored.T
            lse[start:stop] = softmax_(p)
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
    state, stored = full_precision(state, stored)  # first, so that a float beta is made in fp32
    if not isinstance(beta, torch.Tensor):
        beta = torch.tensor(float(beta), dtype=state.dtype, device=state.device)
    return apply_full_precision(_Retrieve, state, stored, beta.reshape(()))


class _MutualRetrieve(torch.autograd.Function):
    """(retrieve(A, B), retrieve(B, A)) from one score matrix S = β A Bᵀ.

    retrieve(A, B) = softmax_rows(S) B and retrieve(B, A) = softmax_cols(S)ᵀ A:
    CLOOB's U_y and V_x share their scores up to a transpose, so one Gram
    matrix serves both. Over row blocks of A the column softmax is accumulated
    online (running column max, rescaled sums). With P_r, P_c the row and
    column softmaxes and dA', dB' the incoming gradients of the two outputs:
      dS = P_r ⊙ (dA' Bᵀ − rowsum(dA' ⊙ out_A)) + P_c ⊙ (A dB'ᵀ − colsum(dB' ⊙ out_B)),
      dA = β dS B + P_c dB',  dB = β dSᵀ A + P_rᵀ dA',  dβ = Σ_i A_i · (dS B)_i,
    six matmuls in the backward instead of eight (and three instead of four forward).
    """

    @staticmethod
    def forward(ctx, a, b, beta):
        n, m = a.shape[0], b.shape[0]
        rows = block_rows(n, m)
        out_a = torch.empty_like(a)
        lse_a = a.new_empty(n)
        col_max = a.new_full((m,), float("-inf"))
        col_sum = a.new_zeros(m)
        acc_b = a.new_zeros(m, a.shape[1])
        kept = (a.new_empty(0), a.new_empty(0))
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            blk = a[start:stop]
            s = (blk * beta) @ b.T
            new_max = torch.maximum(col_max, s.amax(dim=0))
            rescale = (col_max - new_max).exp_()  # 0 on the first block (exp(−inf))
            e = (s - new_max[None, :]).exp_()
            acc_b.mul_(rescale[:, None]).addmm_(e.T, blk)
            col_sum.mul_(rescale).add_(e.sum(dim=0))
            col_max = new_max
            lse_a[start:stop] = softmax_(s)  # s is now P_r
            out_a[start:stop] = s @ b
            if rows >= n:
                kept = (s, e.div_(col_sum[None, :]))
        out_b = acc_b.div_(col_sum[:, None])
        lse_b = col_max + col_sum.log()
        ctx.save_for_backward(a, b, beta, lse_a, lse_b, out_a, out_b, *kept)
        ctx.rows, ctx.single = rows, rows >= n
        return out_a, out_b

    @staticmethod
    def backward(ctx, grad_a_out, grad_b_out):
        a, b, beta, lse_a, lse_b, out_a, out_b, p_r_kept, p_c_kept = ctx.saved_tensors
        n, rows = a.shape[0], ctx.rows
        need_a, need_b, need_beta = ctx.needs_input_grad
        grad_a_out, grad_b_out = grad_a_out.contiguous(), grad_b_out.contiguous()
        delta_a = (grad_a_out * out_a).sum(dim=1)
        delta_b = (grad_b_out * out_b).sum(dim=1)
        grad_a = torch.empty_like(a)
        grad_b = torch.zeros_like(b) if need_b else None
        grad_beta = a.new_zeros(()) if need_beta else None
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            blk, g = a[start:stop], grad_a_out[start:stop]
            if ctx.single:
                p_r, p_c = p_r_kept, p_c_kept
            else:
                s = (blk * beta) @ b.T
                p_r = (s - lse_a[start:stop, None]).exp_()
                p_c = s.sub_(lse_b[None, :]).exp_()
            ds = (g @ b.T).sub_(delta_a[start:stop, None]).mul_(p_r)
            ds.add_((blk @ grad_b_out.T).sub_(delta_b[None, :]).mul_(p_c))
            ds_b = ds @ b
            if need_beta:
                grad_beta += (blk * ds_b).sum()
            grad_a[start:stop] = torch.addmm(ds_b, p_c, grad_b_out, beta=float(beta)) if need_a else 0
            if grad_b is not None:
                grad_b.addmm_(ds.T, blk, alpha=float(beta))
                grad_b.addmm_(p_r.T, g)
        return (grad_a if need_a else None), grad_b, grad_beta


def mutual_retrieve(a: torch.Tensor, b: torch.Tensor, beta: Scalar) -> tuple[torch.Tensor, torch.Tensor]:
    """``(retrieve(a, b, beta), retrieve(b, a, beta))`` sharing one score matrix.

    CLOOB's U_y = retrieve(y, x) and V_x = retrieve(x, y) are the row and the
    column softmax of the same β·y xᵀ; computing them together saves a quarter
    of their matrix products. Row-blocked with a recomputing backward, like
    :func:`retrieve`.

    Args:
        a: (n, d) patterns.
        b: (m, d) patterns.
        beta: inverse temperature, float or 0-dim tensor (receives a gradient).
    Returns:
        ((n, d) a retrieving from b, (m, d) b retrieving from a), not normalised.
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (n, d) and (m, d) with the same d, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError("the Hopfield memory is empty (0 patterns)")
    a, b = full_precision(a, b)  # first, so that a float beta is made in fp32
    if not isinstance(beta, torch.Tensor):
        beta = torch.tensor(float(beta), dtype=a.dtype, device=a.device)
    return apply_full_precision(_MutualRetrieve, a, b, beta.reshape(()))


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
