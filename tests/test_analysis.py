"""Diagnostics against analytic cases and against naive (unchunked, loop) formulas."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from cloob.analysis import (ajne_statistic, alignment, effective_eigenvalues, eigenvalue_spectrum, relative_change,
                            saturation_terms, similarity_distributions, uniformity, welch_p, welch_table)


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def sphere(n, d, seed=0):
    return unit(np.random.default_rng(seed).standard_normal((n, d)))


# ---------------------------------------------------------------- eigenvalues

def test_effective_eigenvalues_of_isotropic_gaussian_is_near_fraction_times_d():
    d = 256
    x = np.random.default_rng(0).standard_normal((20000, d)).astype(np.float32)
    k = effective_eigenvalues(x, 0.99)
    assert abs(k - 0.99 * d) <= 3, k
    # sample eigenvalues spread (Marchenko–Pastur, ±2·sqrt(d/n) ≈ ±23 %), so half the mass needs fewer than d/2
    assert 0.4 * d < effective_eigenvalues(x, 0.5) <= d / 2


def test_effective_eigenvalues_hand_case_diagonal_covariance():
    # points ±s_k e_k: covariance is diagonal with variances proportional to s_k² = 4, 3, 2, 1
    s = np.sqrt([4.0, 3.0, 2.0, 1.0])
    rows = [sign * s[k] * np.eye(4)[k] for k in range(4) for sign in (1, -1)]
    x = np.array(rows)
    ev = eigenvalue_spectrum(x)
    np.testing.assert_allclose(ev / ev.sum(), [0.4, 0.3, 0.2, 0.1], atol=1e-12)
    assert effective_eigenvalues(x, 0.4) == 1
    assert effective_eigenvalues(x, 0.5) == 2
    assert effective_eigenvalues(x, 0.7) == 2  # exactly reached (no float off-by-one)
    assert effective_eigenvalues(x, 0.71) == 3
    assert effective_eigenvalues(x, 0.99) == 4
    assert effective_eigenvalues(ev, 0.7) == 2  # a spectrum works too


def test_eigenvalue_spectrum_chunked_matches_numpy_covariance():
    x = np.random.default_rng(1).standard_normal((101, 7)) @ np.random.default_rng(2).standard_normal((7, 7))
    ref = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    np.testing.assert_allclose(eigenvalue_spectrum(x, chunk=3), ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(eigenvalue_spectrum(torch.tensor(x)), ref, rtol=1e-9, atol=1e-9)


def test_low_rank_embeddings_have_few_effective_eigenvalues():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 3)) @ rng.standard_normal((3, 64))
    assert effective_eigenvalues(x) <= 3


def test_relative_change():
    assert relative_change(100, 80) == pytest.approx(-0.2)
    assert relative_change(50, 75) == pytest.approx(0.5)
    np.testing.assert_allclose(relative_change([10, 20], [15, 10]), [0.5, -0.5])
    with pytest.raises(ValueError):
        relative_change(0, 1)


# ---------------------------------------------------------------- Ajne / Prentice

def ajne_naive(x):
    n = len(x)
    s = sum(math.acos(max(-1.0, min(1.0, float(x[i] @ x[j])))) for i in range(n) for j in range(i + 1, n))
    return n / 4 - s / (n * math.pi)


def test_ajne_hand_cases():
    e = np.eye(3)
    assert ajne_statistic(np.repeat(e[:1], 8, 0)) == pytest.approx(8 / 4)  # identical points: n/4
    assert ajne_statistic(np.stack([e[0], -e[0]])) == pytest.approx(2 / 4 - math.pi / (2 * math.pi))  # = 0
    assert ajne_statistic(np.stack([e[0], e[1]])) == pytest.approx(0.5 - (math.pi / 2) / (2 * math.pi))


def test_ajne_chunked_matches_naive_loop():
    x = sphere(37, 5, seed=3)
    ref = ajne_naive(x)
    for chunk in (1, 4, 10, 37, None):
        assert ajne_statistic(x, chunk=chunk) == pytest.approx(ref, rel=1e-9, abs=1e-9)
    assert ajne_statistic(torch.tensor(x, dtype=torch.float32), chunk=5) == pytest.approx(ref, abs=1e-4)


def test_ajne_orders_uniform_below_half_circle_below_cluster():
    rng = np.random.default_rng(0)
    n = 400
    uniform = sphere(n, 3, seed=1)
    theta = rng.uniform(0, np.pi, n)  # an arc of half the equator: concentrated in one hemisphere
    arc = np.stack([np.cos(theta), np.sin(theta), np.zeros(n)], 1)
    phi = rng.uniform(0, 2 * np.pi, n)  # the full equator: antipodally symmetric, Ajne sees it as uniform
    equator = np.stack([np.cos(phi), np.sin(phi), np.zeros(n)], 1)
    cluster = unit(np.array([0, 0, 5.0]) + rng.standard_normal((n, 3)))
    a_uni, a_eq, a_arc, a_clu = (ajne_statistic(v) for v in (uniform, equator, arc, cluster))
    assert a_uni < 1.5 and a_eq < 1.5  # expectation 1/4 under uniformity
    assert a_arc == pytest.approx(n / 4 - (n - 1) / 6, rel=0.05)  # E arccos = π/3 on a half circle
    assert a_uni < a_arc < a_clu <= n / 4


# ---------------------------------------------------------------- Wang & Isola

def test_alignment_identical_is_zero_and_antipodal_is_four():
    x = sphere(20, 8)
    assert alignment(x, x) == pytest.approx(0.0, abs=1e-12)
    assert alignment(x, -x) == pytest.approx(4.0)
    assert alignment(x, 3 * x) == pytest.approx(0.0, abs=1e-12)  # rows are normalised first
    y = sphere(20, 8, seed=5)
    assert alignment(x, y) == pytest.approx(np.mean(np.sum((x - y) ** 2, 1)))


def uniformity_naive(x, t=2.0):
    d2 = torch.pdist(torch.tensor(x), p=2).pow(2)
    return float(d2.mul(-t).exp().mean().log())


def test_uniformity_hand_cases_and_chunked_matches_pdist():
    e = np.eye(2)
    assert uniformity(np.stack([e[0], -e[0]])) == pytest.approx(-8.0)  # log exp(-2·4)
    assert uniformity(np.stack([e[0], e[0], e[0]])) == pytest.approx(0.0)
    assert uniformity(np.stack([e[0], -e[0]]), t=1) == pytest.approx(-4.0)
    x = sphere(53, 6, seed=2)
    ref = uniformity_naive(x)
    for chunk in (1, 7, 52, None):
        assert uniformity(x, chunk=chunk) == pytest.approx(ref, rel=1e-9)
    # uniform points are more uniform (lower) than a cluster
    cluster = unit(np.array([4.0, 0, 0, 0, 0, 0]) + np.random.default_rng(0).standard_normal((53, 6)))
    assert uniformity(x) < uniformity(cluster)


# ---------------------------------------------------------------- similarities and saturation

def test_similarity_distributions_against_full_matrix():
    x, y = sphere(30, 5, 0), sphere(30, 5, 1)
    sim = x @ y.T
    matched, top = similarity_distributions(x, y, k=10, chunk=4)
    np.testing.assert_allclose(matched, np.diag(sim), atol=1e-12)
    masked = sim.copy()
    np.fill_diagonal(masked, -np.inf)
    np.testing.assert_allclose(top, -np.sort(-masked, 1)[:, :10], atol=1e-12)
    assert top.shape == (30, 10)
    m2, t2 = similarity_distributions(x, y, k=50)  # k capped at n-1
    assert t2.shape == (30, 29)


def test_similarity_distributions_perfect_pairs_have_matched_one():
    x = np.eye(6)
    matched, top = similarity_distributions(x, x, k=3)
    np.testing.assert_allclose(matched, 1.0)
    np.testing.assert_allclose(top, 0.0)


def test_saturation_terms_against_loop_and_hand_case():
    x, y = sphere(12, 4, 0), sphere(12, 4, 1)
    inv_tau = 7.5
    out = saturation_terms(x, y, inv_tau, chunk=5)
    log_a = inv_tau * np.sum(x * y, 1)
    log_b = np.array([np.log(sum(np.exp(inv_tau * x[i] @ y[j]) for j in range(12) if j != i)) for i in range(12)])
    np.testing.assert_allclose(out["log_a"], log_a, rtol=1e-10)
    np.testing.assert_allclose(out["log_b"], log_b, rtol=1e-10)
    a, b = np.exp(log_a), np.exp(log_b)
    assert out["infonce_term"] == pytest.approx(np.mean(a / (a + b)))
    assert out["infoloob_term"] == pytest.approx(np.mean(a / b))
    assert out["mean_log_a"] == pytest.approx(log_a.mean())
    # orthonormal pairs x = y = I_n: a = e^τ, b = (n-1)·e^0
    n = 5
    out = saturation_terms(np.eye(n), np.eye(n), 3.0)
    assert out["infoloob_term"] == pytest.approx(math.exp(3.0) / (n - 1))
    assert out["infonce_term"] == pytest.approx(math.exp(3.0) / (math.exp(3.0) + n - 1))


def test_saturation_infoloob_term_is_finite_at_high_inv_tau():
    x = np.eye(4)
    out = saturation_terms(x, x, 100.0)
    assert out["infonce_term"] == pytest.approx(1.0)
    assert math.isfinite(out["infoloob_term"]) and out["infoloob_term"] == pytest.approx(math.exp(100) / 3)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        alignment(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError):
        ajne_statistic(np.ones(5))


# ---------------------------------------------------------------- Welch table

def test_welch_table_marks_best_only_when_significant_against_all():
    rows = welch_table({"clip": [40.0, 41.0, 39.5], "cloob": [45.0, 46.0, 44.8]})
    by = {r["method"]: r for r in rows}
    assert by["cloob"]["best"] and by["cloob"]["significant"] and not by["clip"]["significant"]
    assert by["clip"]["p_vs_best"] == pytest.approx(
        stats.ttest_ind([45.0, 46.0, 44.8], [40.0, 41.0, 39.5], equal_var=False).pvalue)
    assert by["clip"]["mean"] == pytest.approx(40.1666666)
    assert by["clip"]["std"] == pytest.approx(np.std([40.0, 41.0, 39.5], ddof=1))
    rows = welch_table({"clip": [40.0, 45.0], "cloob": [41.0, 44.0], "infoloob": [30.0]})
    assert not any(r["significant"] for r in rows)  # overlapping; n=1 not testable
    assert math.isnan(welch_p([1.0], [2.0, 3.0]))
    rows = welch_table({"clip": [0.5, 0.6], "cloob": [0.1, 0.12]}, higher_is_better=False)
    assert [r["best"] for r in rows] == [False, True]
    rows = welch_table({"clip": [], "cloob": [1.0]})
    assert rows[0]["n"] == 0 and rows[1]["best"] and not rows[1]["significant"]


def test_runs_of_one_method_get_distinct_shades_of_its_colour():
    from cloob.analysis.plots import method_colour, run_shade

    assert run_shade("cloob", 0, 1) == method_colour("cloob")
    shades = [run_shade("cloob", i, 3) for i in range(3)]
    assert len(set(shades)) == 3
    r, g, b = (int(shades[1][k:k + 2], 16) for k in (1, 3, 5))
    assert r > g and r > b  # still red: the middle shade is the method's own colour
    assert shades[1] == method_colour("cloob")
