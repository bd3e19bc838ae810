"""Statistical and exact checks of the benchmark targets (targets/).

Tolerances are stated next to each check; Monte Carlo checks use several seeds and bounds of
about 6 standard errors (or the KS critical value at level ~1e-4), so a correct target fails
with negligible probability and a wrong one (wrong normaliser, wrong sampler) fails clearly.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import quad

from targets import Target, available_targets, get_target, register_target
from targets.mixtures import GaussianMixture

SEEDS = (0, 1, 2)
ALL = available_targets()
EXACT = [n for n in ALL if get_target(n).has_exact_sampler]


def _test_points(t: Target, n: int = 64) -> torch.Tensor:
    """Points where log_prob must be finite: exact samples, else a cloud around the MAP."""
    g = torch.Generator().manual_seed(0)
    if t.has_exact_sampler:
        return t.sample(n, g).double()
    centre = torch.as_tensor(getattr(t, "map_estimate", np.zeros(t.dim)))
    return centre + 0.5 * torch.randn(n, t.dim, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------------- generic registry walk
def test_registry_lists_the_required_targets():
    assert set(ALL) >= {"ring8", "gmm40", "imbalanced2", "funnel10", "banana", "manywell32",
                        "logreg_breast_cancer"}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_shape_dtype_finite_differentiable(name, dtype):
    t = get_target(name)
    assert isinstance(t, Target) and t.name == name
    x = _test_points(t).to(dtype).requires_grad_(True)
    lp = t.log_prob(x)
    assert lp.shape == (x.shape[0],) and lp.dtype == dtype
    assert torch.isfinite(lp).all()
    (grad,) = torch.autograd.grad(lp.sum(), x)
    assert grad.shape == x.shape and torch.isfinite(grad).all()
    # extra leading batch dimensions are kept
    assert t.log_prob(x.detach()[:12].reshape(3, 4, t.dim)).shape == (3, 4)
    # float32 and float64 agree (relative 1e-4 of the magnitude)
    lp64 = t.log_prob(x.detach().double())
    assert torch.allclose(lp.detach().double(), lp64, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", ALL)
def test_config_round_trip_and_metadata(name):
    t = get_target(name)
    cfg = t.config()
    assert cfg["name"] == name
    assert json.loads(json.dumps(cfg)) == cfg
    t2 = get_target(**cfg)
    assert t2.config() == cfg
    x = _test_points(t, 16)
    assert torch.equal(t.log_prob(x), t2.log_prob(x))
    assert t.log_Z is None or math.isfinite(t.log_Z)
    pr = t.plot_range
    ranges = [pr] * t.dim if isinstance(pr, tuple) else pr
    assert len(ranges) == t.dim and all(lo < hi for lo, hi in ranges)
    if t.mode_centers is not None:
        assert t.mode_centers.shape[1] == t.dim
        assert t.mode_weights.shape == (t.mode_centers.shape[0],)
        assert abs(float(t.mode_weights.sum()) - 1) < 1e-9
        labels = t.assign_modes(x)
        assert labels.shape == (16,) and labels.dtype == torch.long
    else:
        with pytest.raises(ValueError, match="mode"):
            t.assign_modes(x)


@pytest.mark.parametrize("name", ALL)
def test_sampler_contract(name):
    t = get_target(name)
    if not t.has_exact_sampler:
        with pytest.raises(NotImplementedError, match="exact sampler"):
            t.sample(10)
        return
    state = torch.get_rng_state()
    a = t.sample(200, torch.Generator().manual_seed(3))
    b = t.sample(200, torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state), "sampling with a generator touched the global RNG"
    assert a.shape == (200, t.dim) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert t.sample(0).shape == (0, t.dim)
    with pytest.raises(ValueError, match="n"):
        t.sample(-1)


@pytest.mark.parametrize("name", ALL)
def test_log_prob_jax_matches_torch(name):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    t = get_target(name)
    x = _test_points(t, 32)
    lp_jax = np.asarray(jax.jit(jax.vmap(t.log_prob_jax))(jnp.asarray(x.float().numpy())))
    lp = t.log_prob(x.float()).numpy()
    np.testing.assert_allclose(lp_jax, lp, rtol=2e-5, atol=2e-3)
    g = np.asarray(jax.grad(t.log_prob_jax)(jnp.asarray(x[0].float().numpy())))
    xg = x[:1].clone().requires_grad_(True)
    (gt,) = torch.autograd.grad(t.log_prob(xg).sum(), xg)
    np.testing.assert_allclose(g, gt[0].numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", EXACT)
def test_stein_identity_links_sampler_and_log_prob(name):
    """Integration by parts: E_p[∇log p] = 0 and E_p[x_i ∂_i log p] = −1 for every coordinate.

    Holds for any normalisation, so it checks that the sampler draws from exp(log_prob).
    Tolerance: 6 standard errors + 1e-3, per coordinate, three seeds.
    """
    t = get_target(name)
    for seed in SEEDS:
        x = t.sample(20_000, torch.Generator().manual_seed(seed)).double().requires_grad_(True)
        (score,) = torch.autograd.grad(t.log_prob(x).sum(), x)
        x = x.detach()
        for stat, expected in ((score, 0.0), (x * score, -1.0)):
            mean, se = stat.mean(0), stat.std(0) / math.sqrt(stat.shape[0])
            assert ((mean - expected).abs() <= 6 * se + 1e-3).all(), (name, seed, mean, se)


# ---------------------------------------------------------------------------- errors
def test_unknown_target_lists_available():
    with pytest.raises(ValueError, match="ring8"):
        get_target("no_such_target")


@pytest.mark.parametrize("name, kwargs, arg", [
    ("ring8", {"std": -1.0}, "std"),
    ("ring8", {"num_modes": 0}, "num_modes"),
    ("ring8", {"radius": float("nan")}, "radius"),
    ("gmm40", {"num_modes": 2.5}, "num_modes"),
    ("gmm40", {"loc_scaling": 0}, "loc_scaling"),
    ("imbalanced2", {"weight": 1.5}, "weight"),
    ("imbalanced2", {"separation": -2}, "separation"),
    ("funnel10", {"dim": 1}, "dim"),
    ("funnel10", {"scale": 0.0}, "scale"),
    ("banana", {"scale": 0}, "scale"),
    ("banana", {"b": "x"}, "b"),
    ("manywell32", {"dim": 31}, "dim"),
    ("logreg_breast_cancer", {"prior_scale": -1}, "prior_scale"),
])
def test_bad_kwargs_name_the_argument(name, kwargs, arg):
    with pytest.raises((ValueError, TypeError), match=arg):
        get_target(name, **kwargs)


def test_unknown_kwarg_is_named():
    with pytest.raises(TypeError, match="radios"):
        get_target("ring8", radios=3.0)


def test_log_prob_rejects_bad_input():
    t = get_target("ring8")
    with pytest.raises(ValueError, match="shape"):
        t.log_prob(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="floating"):
        t.log_prob(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="x must be"):
        t.log_prob(np.zeros((4, 2)))


def test_register_target_decorator():
    @register_target("_test_point_mixture")
    class _Tiny(GaussianMixture):
        name = "_test_point_mixture"

        def __init__(self):
            super().__init__(torch.zeros(1, 1, dtype=torch.float64), torch.ones(1, dtype=torch.float64),
                             torch.ones(1, dtype=torch.float64))

    try:
        assert "_test_point_mixture" in available_targets()
        assert float(get_target("_test_point_mixture").log_prob(torch.zeros(1, 1))) == pytest.approx(
            -0.5 * math.log(2 * math.pi))
        with pytest.raises(ValueError, match="already registered"):
            register_target("_test_point_mixture")(lambda: None)
    finally:
        from targets.registry import _REGISTRY
        _REGISTRY.pop("_test_point_mixture")


# -------------------------------------------------------------------------- normalisers
def _density(t: Target, pts: torch.Tensor, chunk: int = 65_536) -> torch.Tensor:
    """exp(log_prob) on a grid of points (..., dim), evaluated in chunks to bound memory."""
    flat = pts.reshape(-1, t.dim)
    out = torch.cat([t.log_prob(flat[i : i + chunk]).exp() for i in range(0, flat.shape[0], chunk)])
    return out.reshape(pts.shape[:-1])


def _grid_integral_2d(t: Target, lo1, hi1, n1, x2_of, n2, lo2=-1.0, hi2=1.0) -> float:
    """∫∫ exp(log_prob) by the trapezoid rule; x2 = x2_of(x1, s) with s ∈ [lo2, hi2] a unit-
    Jacobian shift per row (x2_of(x1, s) = c(x1) + s)."""
    x1 = torch.linspace(lo1, hi1, n1, dtype=torch.float64)
    s = torch.linspace(lo2, hi2, n2, dtype=torch.float64)
    X1, S = torch.meshgrid(x1, s, indexing="ij")
    pts = torch.stack([X1, x2_of(X1, S)], dim=-1)
    dens = _density(t, pts)
    return float(torch.trapezoid(torch.trapezoid(dens, s, dim=1), x1))


@pytest.mark.parametrize("name, half, n", [("ring8", 8.0, 641), ("gmm40", 60.0, 801),
                                          ("imbalanced2", 12.0, 601)])
def test_mixture_normaliser_by_grid(name, half, n):
    t = get_target(name)
    z = _grid_integral_2d(t, -half, half, n, lambda a, s: s, n, -half, half)
    assert math.log(z) == pytest.approx(t.log_Z, abs=1e-4)


@pytest.mark.parametrize("b", [0.1, 0.03, -0.05])
def test_banana_normaliser_by_grid(b):
    t = get_target("banana", b=b)
    # x1 over ±7 sd; x2 over ±9 around the ridge -b(x1² - scale²), unit Jacobian
    z = _grid_integral_2d(t, -70.0, 70.0, 1401, lambda a, s: -b * (a**2 - 100.0) + s, 361, -9.0, 9.0)
    assert math.log(z) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("dim", [2, 3])
def test_funnel_normaliser_by_grid(dim):
    t = get_target("funnel10", dim=dim)
    x0 = torch.linspace(-24.0, 24.0, 241, dtype=torch.float64)
    s = torch.linspace(-9.0, 9.0, 73, dtype=torch.float64)      # x_i = e^{x0/2} s_i
    grids = torch.meshgrid(x0, *([s] * (dim - 1)), indexing="ij")
    scale = torch.exp(0.5 * grids[0])
    pts = torch.stack([grids[0]] + [scale * g for g in grids[1:]], dim=-1)
    dens = _density(t, pts) * scale ** (dim - 1)            # Jacobian of the rescaling
    for _ in range(dim - 1):
        dens = torch.trapezoid(dens, s, dim=-1)
    assert math.log(float(torch.trapezoid(dens, x0))) == pytest.approx(0.0, abs=1e-5)


def test_manywell_log_Z():
    t = get_target("manywell32")
    assert t.log_Z == pytest.approx(164.6957, abs=1e-3)      # MATH.md §4
    z1 = quad(lambda u: math.exp(-u**4 + 6 * u**2 + 0.5 * u), -10, 10, epsabs=0, epsrel=1e-12, points=[-1.7, 1.75])[0]
    assert t.log_Z == pytest.approx(16 * (math.log(z1) + 0.5 * math.log(2 * math.pi)), abs=1e-8)
    # the implemented log_prob of one pair integrates to log_Z / 16 (2-D grid)
    pair = get_target("manywell32", dim=2)
    z = _grid_integral_2d(pair, -4.0, 4.0, 1601, lambda a, s: s, 801, -10.0, 10.0)
    assert math.log(z) == pytest.approx(t.log_Z / 16, abs=1e-6)


# ------------------------------------------------------------------- closed-form moments
def _check_moments(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, k: float = 6.0):
    """Sample mean within k SE of ``mean``; sample variance within k SE (SE from 4th moments)."""
    x = x.double()
    n = x.shape[0]
    se_mean = (var / n).sqrt()
    assert ((x.mean(0) - mean).abs() <= k * se_mean).all(), (x.mean(0), mean)
    c = x - mean
    se_var = ((c**4).mean(0) - var**2).clamp_min(0).div(n).sqrt()
    assert ((c.pow(2).mean(0) - var).abs() <= k * se_var + 1e-9).all(), (c.pow(2).mean(0), var)


@pytest.mark.parametrize("name", ["ring8", "gmm40", "imbalanced2"])
def test_mixture_sample_moments(name):
    t = get_target(name)
    w, mu, sd = t.weights, t.means.double(), t.stds
    mean = (w[:, None] * mu).sum(0)
    var = (w[:, None] * (sd[:, None] ** 2 + mu**2)).sum(0) - mean**2
    for seed in SEEDS:
        _check_moments(t.sample(50_000, torch.Generator().manual_seed(seed)), mean, var)


def test_mixture_sample_mode_masses():
    """Nearest-centre masses of exact samples: |p̂_k − w_k| ≤ 6 binomial SE (separated modes)."""
    for name, kw in [("ring8", {}), ("imbalanced2", {}), ("imbalanced2", {"weight": 0.95, "dim": 5})]:
        t = get_target(name, **kw)
        n = 40_000
        for seed in SEEDS:
            labels = t.assign_modes(t.sample(n, torch.Generator().manual_seed(seed)))
            p_hat = torch.bincount(labels, minlength=len(t.mode_weights)).double() / n
            se = (t.mode_weights * (1 - t.mode_weights) / n).sqrt()
            assert ((p_hat - t.mode_weights).abs() <= 6 * se).all(), (name, p_hat)


def test_banana_sample_moments():
    for b in (0.1, 0.03):
        t = get_target("banana", b=b)
        var = torch.tensor([100.0, 1 + 2 * b**2 * 1e4], dtype=torch.float64)
        for seed in SEEDS:
            _check_moments(t.sample(50_000, torch.Generator().manual_seed(seed)), torch.zeros(2), var)


def test_funnel_sample_distribution():
    """x_0 ~ N(0, 9) and x_i e^{-x_0/2} ~ N(0, 1): KS at level 1e-4 (D < 2.0/sqrt(n))."""
    t = get_target("funnel10")
    n = 20_000
    for seed in SEEDS:
        x = t.sample(n, torch.Generator().manual_seed(seed)).double()
        assert stats.kstest(x[:, 0].numpy() / 3.0, "norm").statistic < 2.0 / math.sqrt(n)
        z = (x[:, 1:] * torch.exp(-0.5 * x[:, :1])).reshape(-1).numpy()
        assert stats.kstest(z, "norm").statistic < 2.0 / math.sqrt(z.size)


def _marginal_cdfs(t: Target, lo: float, hi: float, n: int):
    """CDFs of both coordinates of a 2-D target, integrated from log_prob on one grid."""
    g = torch.linspace(lo, hi, n, dtype=torch.float64)
    G1, G2 = torch.meshgrid(g, g, indexing="ij")
    dens = _density(t, torch.stack([G1, G2], -1))
    cdfs = []
    for axis in (0, 1):
        marg = torch.trapezoid(dens, g, dim=1 - axis).numpy()
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (marg[1:] + marg[:-1]) * np.diff(g.numpy()))])
        cdfs.append(cdf / cdf[-1])
    return g.numpy(), cdfs


@pytest.mark.parametrize("name, half, n", [("ring8", 6.0, 801), ("imbalanced2", 9.0, 601),
                                          ("gmm40", 50.0, 1001)])
def test_2d_samples_match_log_prob_marginals(name, half, n):
    """KS statistic of exact samples against marginal CDFs integrated from log_prob: < 2/sqrt(n)
    (level ~1e-3 per comparison; grid error < 1e-4)."""
    t = get_target(name)
    n_samples = 20_000
    grid, cdfs = _marginal_cdfs(t, -half, half, n)
    for seed in SEEDS:
        x = t.sample(n_samples, torch.Generator().manual_seed(seed)).double().numpy()
        for a, cdf in enumerate(cdfs):
            d = stats.kstest(x[:, a], lambda v: np.interp(v, grid, cdf)).statistic
            assert d < 2.0 / math.sqrt(n_samples), (name, a, seed, d)


# ------------------------------------------------------------------------------- gmm40
def test_gmm40_means_follow_recipe_and_leave_global_rng_alone():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        expected = (torch.rand(40, 2) - 0.5) * 80
    torch.manual_seed(123)
    before = torch.get_rng_state()
    t = get_target("gmm40")
    assert torch.equal(torch.get_rng_state(), before)
    assert t.means.dtype == torch.float32 and torch.equal(t.means, expected)
    assert float(t.stds[0]) == pytest.approx(math.log1p(math.e), abs=1e-12)   # softplus(1)
    assert float(t.stds[0]) == pytest.approx(1.3133, abs=1e-4)


# ---------------------------------------------------------------------------- manywell
def test_manywell_positive_fraction():
    """P(x_1 > 0) = 0.8443 per pair.  n = 20k: pooled over 16 pairs SE = 6.4e-4, tolerance
    4e-3; per pair SE = 2.6e-3, tolerance 0.016."""
    t = get_target("manywell32")
    assert t.p_positive == pytest.approx(0.8443, abs=1e-4)
    for seed in SEEDS:
        x = t.sample(20_000, torch.Generator().manual_seed(seed))
        frac = t.positive_fraction(x)
        assert frac.shape == (16,)
        assert abs(float(frac.mean()) - 0.8443) < 4e-3
        assert float((frac - 0.8443).abs().max()) < 0.016
        diag = t.diagnostics(x)
        assert diag["positive_fraction_mean"] == pytest.approx(float(frac.mean()))


def test_manywell_marginals_exact():
    """x_1 against the CDF of exp(-t⁴ + 6t² + 0.5t) (quad), x_2 against N(0, 1): KS < 2/sqrt(n)."""
    t = get_target("manywell32")
    grid = np.linspace(-3.5, 3.5, 3501)
    dens = np.exp(-grid**4 + 6 * grid**2 + 0.5 * grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    for seed in SEEDS:
        x = t.sample(10_000, torch.Generator().manual_seed(seed)).double().numpy()
        x1, x2 = x[:, 0::2].ravel(), x[:, 1::2].ravel()
        assert stats.kstest(x1, lambda v: np.interp(v, grid, cdf)).statistic < 2.0 / math.sqrt(x1.size)
        assert stats.kstest(x2, "norm").statistic < 2.0 / math.sqrt(x2.size)


# ------------------------------------------------------------------------------ logreg
def _numpy_logreg(w: np.ndarray) -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    X = np.hstack([np.ones((X.shape[0], 1)), X])
    eta = w @ X.T
    loglik = (y * eta - np.logaddexp(0.0, eta)).sum(-1)
    return loglik + stats.norm.logpdf(w).sum(-1)


def test_logreg_matches_numpy():
    t = get_target("logreg_breast_cancer")
    assert t.dim == 31 and t.num_data == 569 and t.log_Z is None
    rng = np.random.default_rng(0)
    w = np.concatenate([rng.normal(size=(8, 31)), 30 * rng.normal(size=(2, 31))])  # incl. huge |η|
    np.testing.assert_allclose(t.log_prob(torch.from_numpy(w)).numpy(), _numpy_logreg(w), rtol=1e-12, atol=1e-9)
    lp32 = t.log_prob(torch.from_numpy(w[:8]).float()).double().numpy()
    np.testing.assert_allclose(lp32, _numpy_logreg(w[:8]), rtol=1e-4)


def test_logreg_gradient_finite_differences():
    t = get_target("logreg_breast_cancer")
    gen = torch.Generator().manual_seed(1)
    for w in [torch.from_numpy(t.map_estimate), torch.randn(31, generator=gen, dtype=torch.float64)]:
        w = w.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(t.log_prob(w[None]).sum(), w)
        h = 1e-6
        eye = torch.eye(31, dtype=torch.float64)
        with torch.no_grad():
            fd = (t.log_prob(w + h * eye) - t.log_prob(w - h * eye)) / (2 * h)
        np.testing.assert_allclose(g.numpy(), fd.numpy(), rtol=1e-6, atol=1e-5)
    # the Newton MAP is a stationary point
    wm = torch.from_numpy(t.map_estimate).requires_grad_(True)
    (g,) = torch.autograd.grad(t.log_prob(wm[None]).sum(), wm)
    assert float(g.abs().max()) < 1e-8


def test_logreg_wine_matches_numpy():
    from sklearn.datasets import load_wine

    t = get_target("logreg_wine")
    X, y = load_wine(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    X = np.hstack([np.ones((X.shape[0], 1)), X])
    y = (y == 0).astype(float)
    assert t.dim == 14 and t.num_data == 178 and y.sum() == 59
    w = np.random.default_rng(1).normal(size=(6, 14))
    eta = w @ X.T
    ref = (y * eta - np.logaddexp(0.0, eta)).sum(-1) + stats.norm.logpdf(w).sum(-1)
    np.testing.assert_allclose(t.log_prob(torch.from_numpy(w)).numpy(), ref, rtol=1e-12, atol=1e-9)
