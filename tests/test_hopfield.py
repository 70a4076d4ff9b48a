import math

import pytest
import torch
import torch.nn.functional as F

from cloob import blocks
from cloob.hopfield import HopfieldMemory, mutual_retrieve, retrieve
from naive import naive_retrieve


@pytest.mark.parametrize("n,m,d,beta", [(3, 5, 4, 1.0), (6, 2, 3, 14.3), (4, 4, 8, 30.0)])
def test_retrieve_matches_the_loop_formula(n, m, d, beta):
    g = torch.Generator().manual_seed(n * m)
    state = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    stored = F.normalize(torch.randn(m, d, generator=g, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(retrieve(state, stored, beta), naive_retrieve(state, stored, beta))


def test_retrieve_gradcheck_including_beta():
    g = torch.Generator().manual_seed(0)
    state = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    stored = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(retrieve, (state, stored, beta))


def test_large_beta_retrieves_the_nearest_stored_pattern():
    stored = torch.eye(4)
    state = torch.tensor([[0.9, 0.1, 0.0, 0.0], [0.0, 0.2, 0.1, 0.8]])
    out = retrieve(state, stored, 1000.0)
    torch.testing.assert_close(out, stored[[0, 3]])


def test_memory_module_fixed_and_learnable_beta():
    fixed = HopfieldMemory(8.0)
    assert not fixed.log_beta.requires_grad
    assert math.isclose(fixed.beta.item(), 8.0, rel_tol=1e-6)
    learn = HopfieldMemory(14.3, learnable=True)
    x = torch.randn(3, 4)
    learn(x, x).sum().backward()
    assert learn.log_beta.grad is not None
    with pytest.raises(ValueError, match="> 0"):
        HopfieldMemory(0.0)


def test_retrieve_rejects_mismatched_dims():
    with pytest.raises(ValueError, match="same d"):
        retrieve(torch.randn(2, 3), torch.randn(2, 4), 1.0)


@pytest.mark.parametrize("block_elements", [1 << 24, 7 * 3])  # one block (P kept) / blocks of 3 rows (recomputed)
def test_blockwise_retrieval_values_and_gradients_match_the_loop_formula(monkeypatch, block_elements):

    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", block_elements)
    g = torch.Generator().manual_seed(5)
    state = torch.randn(8, 4, generator=g, dtype=torch.float64, requires_grad=True)
    stored = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(retrieve(state, stored, beta), naive_retrieve(state, stored, beta))
    assert torch.autograd.gradcheck(retrieve, (state, stored, beta))
    weights = torch.randn(8, 4, generator=g, dtype=torch.float64)
    grads = []
    for f in (retrieve, naive_retrieve):
        for t in (state, stored, beta):
            t.grad = None
        (f(state, stored, beta) * weights).sum().backward()
        grads.append([state.grad.clone(), stored.grad.clone(), beta.grad.clone()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("block_elements", [1 << 24, 9 * 4])  # one block (merged backward) / blocks of 4 rows
def test_self_retrieval_gradients_match_the_loop_formula(monkeypatch, block_elements):
    """retrieve(x, x, beta): the batch as its own memory (U_x, V_y), where x enters both slots."""

    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", block_elements)
    g = torch.Generator().manual_seed(6)
    x0 = torch.randn(9, 4, generator=g, dtype=torch.float64)
    weights = torch.randn(9, 4, generator=g, dtype=torch.float64)
    grads = []
    for f in (retrieve, naive_retrieve):
        x = x0.clone().requires_grad_()
        beta = torch.tensor(2.3, dtype=torch.float64, requires_grad=True)
        (f(x, x, beta) * weights).sum().backward()
        grads.append((x.grad, beta.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    x = x0.clone().requires_grad_()
    beta = torch.tensor(2.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, b: retrieve(x, x, b), (x, beta))


@pytest.mark.parametrize("block_elements", [1 << 24, 6 * 3, 6])  # one block / blocks of 3 rows / of 1 row
def test_mutual_retrieval_matches_two_loop_retrievals(monkeypatch, block_elements):
    """mutual_retrieve(a, b) = (retrieve(a, b), retrieve(b, a)): values and all gradients, n ≠ m."""

    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", block_elements)
    g = torch.Generator().manual_seed(7)
    a0 = torch.randn(8, 5, generator=g, dtype=torch.float64)
    b0 = torch.randn(6, 5, generator=g, dtype=torch.float64)
    wa, wb = torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    results = []
    for f in (mutual_retrieve, lambda a, b, beta: (naive_retrieve(a, b, beta), naive_retrieve(b, a, beta))):
        a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        beta = torch.tensor(1.9, dtype=torch.float64, requires_grad=True)
        out_a, out_b = f(a, b, beta)
        ((out_a * wa).sum() + (out_b * wb).sum()).backward()
        results.append((out_a.detach(), out_b.detach(), a.grad, b.grad, beta.grad))
    for ours, ref in zip(*results):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    beta = torch.tensor(1.9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mutual_retrieve, (a, b, beta))
    # only one output used: the other's gradient arrives as zeros
    mutual_retrieve(a, b, beta)[1].sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_mutual_retrieval_rejects_mismatched_dims():
    with pytest.raises(ValueError, match="same d"):
        mutual_retrieve(torch.randn(2, 3), torch.randn(2, 4), 1.0)
