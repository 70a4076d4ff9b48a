"""SigLIP's sigmoid loss and the sigmoid × Hopfield cell against open_clip and the loop formula."""
import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import SigLipLoss

from cloob import blocks
from cloob.losses import contrastive_loss, method_loss, siglip_loss
from naive import naive_sigmoid, naive_siglip_hopfield


def unit(n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)


def _grads(fn, x0, y0, scale, bias):
    x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
    t = torch.tensor(scale, dtype=x0.dtype, requires_grad=True)
    b = torch.tensor(bias, dtype=x0.dtype, requires_grad=True)
    loss = fn(x, y, t, b)
    loss.backward()
    return [loss.detach(), x.grad, y.grad, t.grad, b.grad]


@pytest.mark.parametrize("n,scale,bias", [(1, 10.0, -10.0), (8, 10.0, -10.0), (64, 30.0, -5.0), (256, 100.0, 2.0)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_siglip_equals_open_clip_siglip_loss(n, scale, bias, dtype):
    """Value and gradients (features, scale, bias) against open_clip's SigLipLoss: 1e-6 in float64, and for the
    float32 loss value relative to it (a loss of ~2,000 at n=256 has a float32 spacing of ~1e-4). A float32 feature gradient is a sum
    of n terms of up to scale/n each, whose rounding depends on the order BLAS sums them in (it changes with
    the threads it gets, e.g. on a loaded machine): at n=256, scale=100 that is ~1e-6, so 1e-5 for those."""
    x0, y0 = unit(n, 32, 1, dtype), unit(n, 32, 2, dtype)
    ours = _grads(siglip_loss, x0, y0, scale, bias)
    theirs = _grads(lambda x, y, t, b: SigLipLoss()(x, y, t, b), x0, y0, scale, bias)
    f32 = dtype == torch.float32
    for i, (a, b) in enumerate(zip(ours, theirs)):
        tol = 1e-5 if f32 and i in (1, 2) else 1e-6  # 1, 2: the feature gradients
        torch.testing.assert_close(a, b, rtol=tol if f32 else 0, atol=tol)


@pytest.mark.parametrize("n,d,scale,bias,beta", [(2, 3, 1.0, 0.0, 0.5), (5, 4, 10.0, -10.0, 8.0),
                                                 (7, 6, 30.0, -3.0, 14.3)])
def test_siglip_and_siglip_hopfield_match_the_loop_formula(n, d, scale, bias, beta):
    """Values and gradients (features, t, b, β) against autograd through the naive loops."""
    x0, y0 = unit(n, d, 3), unit(n, d, 4)
    for method, ref in [("siglip", lambda x, y, t, b, h: naive_sigmoid(x, y, t, b)),
                        ("siglip-hopfield", naive_siglip_hopfield)]:
        grads = []
        for f in (lambda x, y, t, b, h: method_loss(method, x, y, t, h, logit_bias=b), ref):
            x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
            t, b, h = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (scale, bias, beta))
            loss = f(x, y, t, b, h)
            loss.backward()
            grads.append([loss.detach(), x.grad, y.grad, t.grad, b.grad,
                          h.grad if h.grad is not None else torch.zeros((), dtype=torch.float64)])
        for a, r in zip(*grads):
            torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("hopfield", [False, True])
def test_siglip_gradcheck_float64(hopfield):
    x, y = unit(5, 4, 5).requires_grad_(), unit(5, 4, 6).requires_grad_()
    t = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    h = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    method = "siglip-hopfield" if hopfield else "siglip"
    assert torch.autograd.gradcheck(lambda x, y, t, b, h: method_loss(method, x, y, t, h, logit_bias=b),
                                     (x, y, t, b, h))


@pytest.mark.parametrize("block_rows", [5, 1])
def test_memory_efficient_siglip_equals_the_dense_form(monkeypatch, block_rows):
    """Row blocks smaller than N (the large-batch path, which recomputes logits in the backward pass) give the
    same value and gradients as open_clip's dense N×N form."""
    x0, y0 = unit(37, 6, 7), unit(37, 6, 8)
    dense = _grads(lambda x, y, t, b: SigLipLoss()(x, y, t, b), x0, y0, 12.0, -4.0)
    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", 37 * block_rows)
    streamed = _grads(siglip_loss, x0, y0, 12.0, -4.0)
    for a, b in zip(streamed, dense):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_sigmoid_objective_and_bias_go_together():
    x, y = unit(4, 3, 9), unit(4, 3, 10)
    with pytest.raises(ValueError, match="logit_bias"):
        contrastive_loss(x, y, 10.0, "sigmoid")
    with pytest.raises(ValueError, match="logit_bias"):
        contrastive_loss(x, y, 10.0, "infonce", logit_bias=-10.0)
    with pytest.raises(ValueError, match="logit bias"):
        method_loss("siglip", x, y, 10.0, None)


def test_siglip_at_its_initialisation_is_near_the_all_negative_value():
    """At t = 10, b = −10 every logit lies in [−20, 0]: the N² − N negatives cost ~log(1 + e^b) each, the N
    positives ~log(1 + e^−b), so the loss starts near 10 + (N − 1)·e^−10 whatever the features."""
    n = 64
    x, y = unit(n, 16, 11), unit(n, 16, 12)
    loss = float(siglip_loss(x, y, 10.0, -10.0))
    assert 0 < loss < 20 and abs(loss - 10.0) < 10.0
