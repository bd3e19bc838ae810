"""The field's standard sampler targets against independent implementations and closed forms.

Many Well (32/128/512), Neal's funnel (10-D), the 25-mode grid, the Finnish-pines LGCP (1600-D)
and the scikit-learn logistic regressions. Each log-density is compared at random points with
a second implementation written here from the published definition (torch.distributions,
numpy loops); normalisers with quadrature or Monte Carlo with stated tolerances (Monte Carlo:
6 standard errors, three seeds).
"""
from __future__ import annotations

import importlib.resources
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import quad
from scipy.spatial.distance import cdist

import targets.lgcp as lgcp
from targets import get_target

SEEDS = (0, 1, 2)


# --------------------------------------------------------------------------- registry view
@pytest.mark.parametrize("name, log_z, reference, exact", [
    ("manywell32", 16 * 10.2934796, None, True),
    ("manywell128", 64 * 10.2934796, None, True),
    ("manywell512", 256 * 10.2934796, None, True),
    ("funnel10", 0.0, None, True),
    ("grid25", 0.0, None, True),
    ("lgcp_pines", None, 501.806, False),
    ("logreg_breast_cancer", None, None, False),
    ("logreg_wine", None, None, False),
    ("logreg_digits", None, None, False),
])
def test_standard_targets_registered_with_known_normalisers(name, log_z, reference, exact):
    t = get_target(name)
    assert t.name == name and t.has_exact_sampler is exact
    if log_z is None:
        assert t.log_Z is None
    else:
        assert t.log_Z == pytest.approx(log_z, abs=1e-6 * max(1.0, abs(log_z)) + 1e-9)
    assert getattr(t, "log_z_reference", None) == reference


# ------------------------------------------------------------------------------ Many Well
@pytest.mark.parametrize("name, dim", [("manywell32", 32), ("manywell128", 128), ("manywell512", 512)])
def test_manywell_log_z_by_quadrature_and_closed_form(name, dim):
    t = get_target(name)
    assert t.dim == dim
    # one pair by 1-D quadrature: ∫ exp(-x⁴ + 6x² + x/2) dx · ∫ exp(-y²/2) dy
    z1 = sum(quad(lambda u: math.exp(-u**4 + 6 * u**2 + 0.5 * u), lo, hi, epsabs=0, epsrel=1e-12)[0]
             for lo, hi in ((-np.inf, -1.7), (-1.7, 0.0), (0.0, 1.75), (1.75, np.inf)))
    z2 = quad(lambda u: math.exp(-0.5 * u * u), -np.inf, np.inf, epsabs=0, epsrel=1e-12)[0]
    assert t.log_Z == pytest.approx(dim / 2 * math.log(z1 * z2), rel=1e-11)
    # the published closed form (d/2)(ln 11784.50927 + ½ ln 2π): the constant has 10 digits
    closed = dim / 2 * (math.log(11784.50927) + 0.5 * math.log(2 * math.pi))
    assert t.log_Z == pytest.approx(closed, abs=1e-9 * dim)


@pytest.mark.parametrize("name", ["manywell32", "manywell128", "manywell512"])
def test_manywell_log_prob_matches_a_loop_over_pairs(name):
    t = get_target(name)
    x = 2.0 * torch.randn(16, t.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    xn = x.numpy()
    ref = np.zeros(16)
    for k in range(t.dim // 2):
        a, b = xn[:, 2 * k], xn[:, 2 * k + 1]
        ref += -a**4 + 6 * a**2 + 0.5 * a - 0.5 * b**2
    np.testing.assert_allclose(t.log_prob(x).numpy(), ref, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(t.log_prob(x.float()).double().numpy(), ref, rtol=1e-5, atol=1e-2)


def test_manywell512_sampler_pair_masses():
    """Pooled over 256 independent pairs: P(x₁ > 0) = Z₁⁺/Z₁ (quadrature) and Var x₂ = 1."""
    t = get_target("manywell512")
    z_pos = quad(lambda u: math.exp(-u**4 + 6 * u**2 + 0.5 * u), 0, np.inf, epsabs=0, epsrel=1e-12)[0]
    z_neg = quad(lambda u: math.exp(-u**4 + 6 * u**2 + 0.5 * u), -np.inf, 0, epsabs=0, epsrel=1e-12)[0]
    p = z_pos / (z_pos + z_neg)
    for seed in SEEDS:
        x = t.sample(2000, torch.Generator().manual_seed(seed)).double()
        m = x[:, 0::2].numel()
        assert abs(float((x[:, 0::2] > 0).double().mean()) - p) < 6 * math.sqrt(p * (1 - p) / m)
        assert abs(float(x[:, 1::2].pow(2).mean()) - 1.0) < 6 * math.sqrt(2.0 / m)


# --------------------------------------------------------------------------------- funnel
def _funnel_reference(x: torch.Tensor, scale: float = 3.0) -> torch.Tensor:
    v, zero = x[:, 0], torch.zeros((), dtype=torch.float64)
    rest = torch.distributions.Normal(zero, torch.exp(0.5 * v)[:, None]).log_prob(x[:, 1:]).sum(1)
    return torch.distributions.Normal(zero, torch.tensor(scale, dtype=torch.float64)).log_prob(v) + rest


def test_funnel10_matches_torch_distributions():
    t = get_target("funnel10")
    g = torch.Generator().manual_seed(0)
    v = 16 * torch.rand(64, 1, generator=g, dtype=torch.float64) - 8
    x = torch.cat([v, 3 * torch.randn(64, 9, generator=g, dtype=torch.float64)], 1)
    torch.testing.assert_close(t.log_prob(x), _funnel_reference(x), rtol=1e-12, atol=1e-9)


def test_funnel10_normalised_by_monte_carlo():
    """Ẑ = mean p̃/q under q: v ~ N(0, (1.05·3)²), x_i | v ~ N(0, 1.05² e^v) (torch.distributions).

    p̃/q ≤ 1.05¹⁰ is bounded, Var(p̃/q) ≈ 0.6: with n = 200 000, 6 se ≈ 0.010 in log Z."""
    t = get_target("funnel10")
    c = 1.05
    for seed in SEEDS:
        g = torch.Generator().manual_seed(seed)
        n = 200_000
        v = c * 3.0 * torch.randn(n, 1, generator=g, dtype=torch.float64)
        x = torch.cat([v, c * torch.exp(0.5 * v) * torch.randn(n, 9, generator=g, dtype=torch.float64)], 1)
        log_q = (torch.distributions.Normal(0.0, c * 3.0).log_prob(v[:, 0])
                 + torch.distributions.Normal(0.0, c * torch.exp(0.5 * v)).log_prob(x[:, 1:]).sum(1))
        w = torch.exp(t.log_prob(x) - log_q)
        z, se = float(w.mean()), float(w.std() / math.sqrt(n))
        assert abs(z - 1.0) < 6 * se, (seed, z, se)
        assert se < 0.003


# ------------------------------------------------------------------------------- 25-grid
def test_grid25_is_the_published_mixture():
    t = get_target("grid25")
    ticks = [-10.0, -5.0, 0.0, 5.0, 10.0]
    assert sorted(map(tuple, t.means.tolist())) == sorted((a, b) for a in ticks for b in ticks)
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(25, dtype=torch.float64)),
        torch.distributions.MultivariateNormal(t.means.double(), covariance_matrix=0.3 * torch.eye(2, dtype=torch.float64)))
    x = 30 * torch.rand(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 15
    x = torch.cat([x, t.means.double() + 0.4])
    torch.testing.assert_close(t.log_prob(x), ref.log_prob(x), rtol=1e-12, atol=1e-9)


def test_grid25_normalised_by_quadrature():
    t = get_target("grid25")
    u = torch.linspace(-14.0, 14.0, 561, dtype=torch.float64)      # step 0.05 = std / 11
    X, Y = torch.meshgrid(u, u, indexing="ij")
    dens = t.log_prob(torch.stack([X, Y], -1).reshape(-1, 2)).exp().reshape(X.shape)
    assert math.log(float(torch.trapezoid(torch.trapezoid(dens, u, dim=1), u))) == pytest.approx(0.0, abs=1e-8)


def test_grid25_sampler_mode_counts():
    """Chi-square test of the 25 mode counts (equal weights) at level 1e-4, three seeds."""
    t = get_target("grid25")
    crit = stats.chi2.ppf(1 - 1e-4, df=24)
    for seed in SEEDS:
        x = t.sample(50_000, torch.Generator().manual_seed(seed))
        counts = torch.bincount(t.assign_modes(x), minlength=25).double()
        assert float(((counts - 2000.0) ** 2 / 2000.0).sum()) < crit
        resid = (x.double() - t.means[t.assign_modes(x)]).pow(2).mean(0)
        assert torch.allclose(resid, torch.full((2,), 0.3, dtype=torch.float64), atol=6 * 0.3 * math.sqrt(2 / 50_000))


# ---------------------------------------------------------------------------------- LGCP
def test_pines_data_is_packaged_and_bins_to_126():
    assert importlib.resources.files("targets").joinpath("data/pines.csv").is_file()
    pts = lgcp.pines_points()
    assert pts.shape == (126, 2) and (pts >= 0).all() and (pts <= 1).all()
    counts = lgcp.bin_counts(pts, 40)
    assert counts.shape == (1600,) and counts.sum() == 126
    hist, _, _ = np.histogram2d(pts[:, 0], pts[:, 1], bins=40, range=[[0, 1], [0, 1]])
    np.testing.assert_array_equal(counts, hist.reshape(-1))
    # the upper-edge rule: a point at x = 1 goes to the last bin
    assert lgcp.bin_counts(np.array([[1.0, 0.0]]), 40)[39 * 40] == 1


def test_missing_pines_data_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(lgcp.importlib.resources, "files", lambda package: tmp_path)
    with pytest.raises(FileNotFoundError, match="pines.*package-data"):
        lgcp.pines_points.__wrapped__()


def _lgcp_reference(t, x: np.ndarray) -> np.ndarray:
    """log N(f; μ₀1, K) by torch.distributions with K built here, + Σ_i [f_i n_i − e^{f_i}/1600] by a loop."""
    pts = lgcp.pines_points()
    ij = np.array([(r, c) for r in range(40) for c in range(40)], dtype=np.float64)
    K = 1.91 * np.exp(-cdist(ij, ij) / (40 / 33))
    mu0 = math.log(126) - 1.91 / 2
    mvn = torch.distributions.MultivariateNormal(torch.full((1600,), mu0, dtype=torch.float64),
                                                 covariance_matrix=torch.tensor(K))
    counts = np.zeros(1600)
    for px, py in pts:
        counts[min(int(px * 40), 39) * 40 + min(int(py * 40), 39)] += 1
    out = mvn.log_prob(torch.tensor(x)).numpy()
    for b in range(x.shape[0]):
        for i in range(1600):
            out[b] += x[b, i] * counts[i] - math.exp(x[b, i]) / 1600
    return out


def test_lgcp_matches_an_independent_implementation():
    t = get_target("lgcp_pines")
    assert t.dim == 1600
    g = torch.Generator().manual_seed(0)
    near_map = torch.tensor(t.map_estimate) + 0.5 * torch.randn(6, 1600, generator=g, dtype=torch.float64)
    from_prior = t.mu0 + torch.randn(2, 1600, generator=g, dtype=torch.float64) @ t.chol.T
    x = torch.cat([near_map, from_prior])
    ref = _lgcp_reference(t, x.numpy())
    np.testing.assert_allclose(t.log_prob(x).numpy(), ref, rtol=1e-10, atol=1e-7)
    # float32 input: same value to float32 precision, float32 output
    lp32 = t.log_prob(x.float())
    assert lp32.dtype == torch.float32
    np.testing.assert_allclose(lp32.double().numpy(), ref, rtol=2e-6, atol=1e-2)


def test_lgcp_gradient_and_map():
    """∇ log p̃ = −K⁻¹(f − μ₀) + n − a e^f (numpy solve); it vanishes at the MAP."""
    t = get_target("lgcp_pines")
    K = t.chol.numpy() @ t.chol.numpy().T
    n = lgcp.bin_counts(lgcp.pines_points(), 40)
    f = torch.tensor(t.map_estimate) + 0.3 * torch.randn(1600, generator=torch.Generator().manual_seed(1),
                                                          dtype=torch.float64)
    for point in (f, torch.tensor(t.map_estimate)):
        x = point[None].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(t.log_prob(x).sum(), x)
        ref = -np.linalg.solve(K, point.numpy() - t.mu0) + n - np.exp(point.numpy()) / 1600
        np.testing.assert_allclose(grad[0].numpy(), ref, rtol=1e-8, atol=1e-8)
    assert np.abs(ref).max() < 1e-8                      # the last point is the MAP


def test_lgcp_laplace_log_z_matches_the_data_note():
    """The data note's independent Laplace value 511.2 (and the reference 501.806 below it)."""
    t = get_target("lgcp_pines")
    assert t.log_z_laplace == pytest.approx(511.2, abs=0.05)
    assert t.log_z_reference < t.log_z_laplace
    with pytest.raises(NotImplementedError, match="exact sampler"):
        t.sample(1)


# ------------------------------------------------------------------------ logistic regressions
@pytest.mark.parametrize("name, dim, rows", [("logreg_breast_cancer", 31, 569), ("logreg_wine", 14, 178),
                                             ("logreg_digits", 59, 361)])
def test_logreg_matches_numpy_and_map_is_stationary(name, dim, rows):
    t = get_target(name)
    X, y = t.design()
    assert t.dim == dim and X.shape == (rows, dim) and np.allclose(X[:, 0], 1.0)
    np.testing.assert_allclose(X[:, 1:].mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(X[:, 1:].std(0), 1.0, atol=1e-10)
    w = torch.tensor(t.map_estimate) + torch.randn(8, dim, generator=torch.Generator().manual_seed(0),
                                                   dtype=torch.float64)
    eta = w.numpy() @ X.T
    ref = (y * eta - np.logaddexp(0.0, eta)).sum(1) + stats.norm.logpdf(w.numpy()).sum(1)
    np.testing.assert_allclose(t.log_prob(w).numpy(), ref, rtol=1e-12, atol=1e-9)
    x = torch.tensor(t.map_estimate)[None].requires_grad_(True)
    (grad,) = torch.autograd.grad(t.log_prob(x).sum(), x)
    assert grad.abs().max() < 1e-8
