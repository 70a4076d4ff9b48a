import itertools
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F

from cloob import blocks
from cloob.losses import (
    METHODS,
    clip_loss,
    cloob_loss,
    contrastive_loss,
    info_loob,
    info_nce,
    method_loss,
)
from naive import naive_cell, naive_clip, naive_cloob, naive_info_loob, naive_info_nce


def unit(n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)


CASES = [(2, 3, 1.0, 0.5), (5, 4, 14.3, 8.0), (7, 6, 30.0, 14.3), (4, 8, 100.0, 1.0)]


@pytest.mark.parametrize("n,d,inv_tau,beta", CASES)
def test_info_nce_and_info_loob_match_the_loop_formula(n, d, inv_tau, beta):
    a, s = unit(n, d, 1), unit(n, d, 2)
    torch.testing.assert_close(info_nce(a, s, inv_tau), naive_info_nce(a, s, inv_tau), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(info_loob(a, s, inv_tau), naive_info_loob(a, s, inv_tau), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n,d,inv_tau,beta", CASES)
def test_clip_and_cloob_match_the_loop_formula(n, d, inv_tau, beta):
    x, y = unit(n, d, 3), unit(n, d, 4)
    torch.testing.assert_close(clip_loss(x, y, inv_tau), naive_clip(x, y, inv_tau), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(cloob_loss(x, y, inv_tau, beta), naive_cloob(x, y, inv_tau, beta), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("objective,beta", list(itertools.product(["infonce", "infoloob"], [None, 5.0])))
def test_every_ablation_cell_matches_the_loop_formula(objective, beta):
    x, y = unit(6, 5, 5), unit(6, 5, 6)
    torch.testing.assert_close(
        contrastive_loss(x, y, 20.0, objective, beta), naive_cell(x, y, 20.0, objective, beta), rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize("n,d,inv_tau,beta", CASES[:3])
def test_gradients_match_the_loop_formula(n, d, inv_tau, beta):
    """Gradients w.r.t. features, inv_tau and beta against autograd through the naive loops."""
    x0, y0 = unit(n, d, 7), unit(n, d, 8)
    for fn, ref in [
        (lambda x, y, t, b: clip_loss(x, y, t), lambda x, y, t, b: naive_clip(x, y, t)),
        (cloob_loss, naive_cloob),
    ]:
        grads = []
        for f in (fn, ref):
            x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
            t = torch.tensor(inv_tau, dtype=torch.float64, requires_grad=True)
            b = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
            f(x, y, t, b).backward()
            grads.append([x.grad, y.grad, t.grad, b.grad if f in (cloob_loss, naive_cloob) else torch.zeros(())])
        for g, r in zip(*grads):
            torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("fn", ["info_nce", "info_loob", "clip", "infoloob", "cloob"])
def test_gradcheck_float64(fn):
    x = unit(5, 4, 9).requires_grad_()
    y = unit(5, 4, 10).requires_grad_()
    t = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    f = {
        "info_nce": lambda x, y, t, b: info_nce(x, y, t),
        "info_loob": lambda x, y, t, b: info_loob(x, y, t),
        "clip": lambda x, y, t, b: clip_loss(x, y, t),
        "infoloob": lambda x, y, t, b: contrastive_loss(x, y, t, "infoloob"),
        "cloob": cloob_loss,
    }[fn]
    assert torch.autograd.gradcheck(f, (x, y, t, b))


@pytest.mark.parametrize("block_rows", [5, 1])
def test_blockwise_path_matches_the_loop_formula(monkeypatch, block_rows):
    """Row blocks smaller than N (used for large N; one row: a block whose masked column is all −inf)
    give the loop formula's value and gradients, for one direction and for both directions of one matrix."""

    x0, y0 = unit(37, 6, 11), unit(37, 6, 12)
    cases = [
        (lambda x, y, t: info_loob(x, y, t) + info_nce(y, x, t),
         lambda x, y, t: naive_info_loob(x, y, t) + naive_info_nce(y, x, t)),
        (lambda x, y, t: clip_loss(x, y, t), lambda x, y, t: naive_clip(x, y, t)),
        (lambda x, y, t: contrastive_loss(x, y, t, "infoloob"), lambda x, y, t: naive_cell(x, y, t, "infoloob", None)),
    ]
    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", 37 * block_rows)
    for ours, ref in cases:
        results = []
        for f in (ours, ref):
            x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
            t = torch.tensor(12.0, dtype=torch.float64, requires_grad=True)
            loss = f(x, y, t)
            loss.backward()
            results.append((loss.detach(), x.grad, y.grad, t.grad))
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n,inv_tau", [(1, 14.3), (8, 14.3), (64, 30.0), (256, 100.0)])
def test_clip_loss_equals_open_clip(n, inv_tau):
    # float64: 1e-6 absolute. float32: 1e-6 relative (a loss of ~48 at inv_tau=100
    # has a float32 spacing of ~4e-6, so no two summation orders agree to 1e-6 absolute).
    for dtype, rtol, atol in ((torch.float64, 0, 1e-6), (torch.float32, 1e-6, 1e-6)):
        x, y = unit(n, 32, 13, dtype), unit(n, 32, 14, dtype)
        scale = torch.tensor(inv_tau, dtype=dtype)
        ours = clip_loss(x, y, scale)
        theirs = open_clip.ClipLoss()(x, y, logit_scale=scale)
        torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol)


def test_info_loob_is_finite_and_exact_for_near_identical_embeddings_at_inv_tau_100():
    base = unit(1, 16, 15)
    a = F.normalize(base + 1e-4 * unit(6, 16, 16), dim=-1)
    s = F.normalize(base + 1e-4 * unit(6, 16, 17), dim=-1)
    for dtype in (torch.float32, torch.float64):
        loss = info_loob(a.to(dtype), s.to(dtype), 100.0)
        assert torch.isfinite(loss)
        torch.testing.assert_close(loss.double(), naive_info_loob(a, s, 100.0), rtol=1e-4, atol=1e-4)
    # all rows identical: every logit is 100; the loss is exactly log(N-1)
    same = base.expand(6, 16).float()
    torch.testing.assert_close(info_loob(same, same, 100.0), torch.log(torch.tensor(5.0)), rtol=1e-6, atol=1e-5)


@pytest.mark.slow
def test_info_loob_at_n_65536_and_inv_tau_100_is_finite_and_exact():
    # Two directions u, v with u.v = 0.6, half of the batch each, a_i = s_i. For every anchor:
    # positive logit t, negatives N/2-1 logits t and N/2 logits 0.6 t, so
    # L = log((N/2-1) e^t + (N/2) e^{0.6 t}) - t, evaluated in float64 without overflow.
    n, t = 65536, 100.0
    u, v = torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([0.6, 0.8, 0.0, 0.0])
    a = torch.cat([u.expand(n // 2, 4), v.expand(n // 2, 4)]).contiguous().requires_grad_()
    loss = info_loob(a, a.detach(), t)
    expected = math.log((n / 2 - 1) + (n / 2) * math.exp(0.6 * t - t))
    assert abs(loss.item() - expected) < 1e-5
    loss.backward()
    assert torch.isfinite(a.grad).all()


def test_info_loob_at_n_2_is_the_difference_of_the_two_similarities():
    a2, s2 = unit(2, 4, 20), unit(2, 4, 21)
    expected = 100.0 * ((a2[0] @ s2[1] - a2[0] @ s2[0]) + (a2[1] @ s2[0] - a2[1] @ s2[1])) / 2
    torch.testing.assert_close(info_loob(a2, s2, 100.0), expected)


def test_info_loob_with_one_pair_is_a_clear_error():
    x = unit(1, 4, 22)
    with pytest.raises(ValueError, match="N >= 2"):
        info_loob(x, x, 10.0)
    with pytest.raises(ValueError, match="N >= 2"):
        cloob_loss(x, x, 10.0, 8.0)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="same"):
        info_nce(unit(3, 4, 1), unit(4, 4, 2), 1.0)
    with pytest.raises(ValueError, match="objective"):
        contrastive_loss(unit(3, 4, 1), unit(3, 4, 2), 1.0, objective="nce")
    with pytest.raises(ValueError, match="unknown method"):
        method_loss("sigmoid-loob", unit(3, 4, 1), unit(3, 4, 2), 1.0, None)


def test_named_corners_and_methods():
    x, y = unit(6, 5, 23), unit(6, 5, 24)
    torch.testing.assert_close(clip_loss(x, y, 9.0), contrastive_loss(x, y, 9.0))
    torch.testing.assert_close(cloob_loss(x, y, 9.0, 4.0), contrastive_loss(x, y, 9.0, "infoloob", 4.0))
    assert set(METHODS) == {"clip", "cloob", "infoloob", "infonce-hopfield", "siglip", "siglip-hopfield"}
    torch.testing.assert_close(method_loss("infonce-hopfield", x, y, 9.0, 4.0), naive_cell(x, y, 9.0, "infonce", 4.0))
    torch.testing.assert_close(method_loss("infoloob", x, y, 9.0, 4.0), naive_cell(x, y, 9.0, "infoloob", None))


@pytest.mark.parametrize("n,block_elements", [(1024, 1 << 24), (1024, 1024 * 100)])
def test_memory_efficient_cloob_equals_the_dense_form(monkeypatch, n, block_elements):
    """float32, d = 512: blockwise (one block, or row blocks with recomputation) vs full N×N matrices."""
    from dense import dense_clip_loss, dense_cloob_loss

    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", block_elements)  # the losses and the retrieval
    x0, y0 = unit(n, 512, 30, torch.float32), unit(n, 512, 31, torch.float32)
    y0 = F.normalize(x0 + 0.8 * y0, dim=-1)  # correlated pairs, as after some training
    for ours, ref in ((lambda x, y: cloob_loss(x, y, 30.0, 14.3), lambda x, y: dense_cloob_loss(x, y, 30.0, 14.3)),
                      (lambda x, y: clip_loss(x, y, 30.0), lambda x, y: dense_clip_loss(x, y, 30.0))):
        results = []
        for f in (ours, ref):
            x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
            loss = f(x, y)
            loss.backward()
            results.append((loss.detach(), x.grad, y.grad))
        (l1, gx1, gy1), (l2, gx2, gy2) = results
        torch.testing.assert_close(l1, l2, rtol=0, atol=1e-5)
        torch.testing.assert_close(gx1, gx2, rtol=0, atol=1e-5)
        torch.testing.assert_close(gy1, gy2, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["clip", "cloob", "siglip", "infonce-hopfield"])
def test_half_precision_features_under_autocast_give_the_fp32_loss_and_gradients(name):
    """A user's loss call inside ``torch.autocast`` with bf16 features: the streaming kernels run in fp32
    (the loss equals the one on the upcast features) and the gradient reaches the bf16 features."""
    from cloob.losses import clip_loss, cloob_loss, contrastive_loss, siglip_loss

    loss_of = {"clip": lambda x, y: clip_loss(x, y, 10.0),
               "cloob": lambda x, y: cloob_loss(x, y, 10.0, 14.3),
               "siglip": lambda x, y: siglip_loss(x, y, torch.tensor(10.0), torch.tensor(-10.0)),
               "infonce-hopfield": lambda x, y: contrastive_loss(x, y, 10.0, "infonce", 14.3)}[name]
    g = torch.Generator().manual_seed(0)
    x32 = torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=-1)
    y32 = torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=-1)
    x = x32.bfloat16().requires_grad_()
    y = y32.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_of(x, y)
    loss.backward()
    xr = x.detach().float().requires_grad_()
    yr = y.detach().float().requires_grad_()
    ref = loss_of(xr, yr)  # the same bf16 values, upcast by hand, no autocast
    ref.backward()
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert x.grad.dtype == torch.bfloat16
    # within bf16 rounding: a feature used several times (the Hopfield cells) has each use's gradient rounded to
    # bf16 before autograd sums them
    for got, want in ((x.grad, xr.grad), (y.grad, yr.grad)):
        torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-3)
