"""Collapse diagnostics against direct formulas (explicit loops over i, j) and against the losses themselves."""
import math

import pytest
import torch
import torch.nn.functional as F

from cloob.embedding_stats import (collapse_diagnostics, collapsed_loss, effective_patterns, loss_gap_nats,
                                   mean_offdiag_cosine)
from cloob.losses import clip_loss, cloob_loss, contrastive_loss
from naive import naive_dot, naive_hopfield, naive_norm, naive_retrieve


def unit(n, d, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(d, generator=g, dtype=torch.float64)
    return F.normalize(base + spread * torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def naive_effective_patterns(state, stored, beta):
    total = 0.0
    for i in range(state.shape[0]):
        w = [math.exp(beta * float(naive_dot(state[i], stored[j]))) for j in range(stored.shape[0])]
        z = sum(w)
        entropy = -sum(wj / z * math.log(wj / z) for wj in w)
        total += math.exp(entropy)
    return total / state.shape[0]


def naive_offdiag_cosine(a):
    n = a.shape[0]
    u = [naive_norm(a[i]) for i in range(n)]
    return sum(float(naive_dot(u[i], u[j])) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))


@pytest.mark.parametrize("beta", [0.5, 8.0, 30.0])
def test_effective_patterns_is_exp_entropy_of_each_retrieval_softmax(beta):
    state, stored = unit(7, 5, seed=1), unit(9, 5, seed=2)
    assert effective_patterns(state, stored, beta) == pytest.approx(naive_effective_patterns(state, stored, beta),
                                                                    rel=1e-10)


def test_effective_patterns_counts_all_patterns_at_collapse_and_one_when_separated():
    same = torch.ones(6, 4, dtype=torch.float64) / 2
    assert effective_patterns(same, same, 14.3) == pytest.approx(6.0)
    eye = torch.eye(5, dtype=torch.float64)
    assert effective_patterns(eye, eye, 200.0) == pytest.approx(1.0, abs=1e-6)


def test_mean_offdiag_cosine_matches_the_pair_loop_and_its_extremes():
    a = unit(8, 6, seed=3) * torch.rand(8, 1, dtype=torch.float64)  # not unit: cosine normalises
    assert mean_offdiag_cosine(a) == pytest.approx(naive_offdiag_cosine(a), rel=1e-10)
    assert mean_offdiag_cosine(torch.ones(5, 3)) == pytest.approx(1.0)
    assert mean_offdiag_cosine(torch.eye(4)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        mean_offdiag_cosine(torch.ones(1, 3))


@pytest.mark.parametrize("n, inv_tau", [(4, 30.0), (16, 10.0), (256, 30.0)])
def test_collapsed_loss_is_the_value_of_each_loss_on_identical_embeddings(n, inv_tau):
    same = F.normalize(torch.ones(n, 8, dtype=torch.float64), dim=1)
    assert float(clip_loss(same, same, inv_tau)) == pytest.approx(collapsed_loss("infonce", n, inv_tau))
    assert float(cloob_loss(same, same, inv_tau, 14.3)) == pytest.approx(collapsed_loss("infoloob", n, inv_tau))
    hop = contrastive_loss(same, same, inv_tau, "infonce", 14.3)
    assert float(hop) == pytest.approx(math.log(n))
    # the figure: 2·ln(255)/30 = 0.369 at N = 256
    if n == 256:
        assert collapsed_loss("infoloob", n, inv_tau) == pytest.approx(0.3694, abs=1e-4)


def test_loss_gap_in_nats_per_direction_puts_both_objectives_on_one_scale():
    # a loss 1 nat per direction below collapse: InfoNCE directly; InfoLOOB is tau-scaled and summed
    n, t = 64, 30.0
    assert loss_gap_nats("infonce", math.log(n) - 1.0, n, t) == pytest.approx(-1.0)
    infoloob = collapsed_loss("infoloob", n, t) - 2.0 / t
    assert loss_gap_nats("infoloob", infoloob, n, t) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="unknown objective"):
        collapsed_loss("siglip", n, t)


def test_collapse_diagnostics_match_the_four_naive_retrievals():
    x, y, beta = unit(6, 5, seed=4, spread=0.6), unit(6, 5, seed=5, spread=0.6), 9.0
    d = collapse_diagnostics(x, y, beta)
    U_x, U_y, V_x, V_y = naive_hopfield(x, y, beta)
    expected = {"U_x": (x, x, U_x), "U_y": (y, x, U_y), "V_x": (x, y, V_x), "V_y": (y, y, V_y)}
    for name, (state, stored, retrieved) in expected.items():
        assert d[f"eff_patterns/{name}"] == pytest.approx(naive_effective_patterns(state, stored, beta), rel=1e-9)
        assert d[f"cos/{name}"] == pytest.approx(naive_offdiag_cosine(retrieved), rel=1e-9)
        # the retrieval itself is the one of method.md §1
        torch.testing.assert_close(F.normalize(naive_retrieve(state, stored, beta), dim=1), retrieved)
    assert d["cos/x"] == pytest.approx(naive_offdiag_cosine(x)) and d["cos/y"] == pytest.approx(naive_offdiag_cosine(y))
    assert set(collapse_diagnostics(x, y)) == {"cos/x", "cos/y"}  # no Hopfield: raw cosines only
