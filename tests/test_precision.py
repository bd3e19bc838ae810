"""Single precision for the PyMC route's JAX log-density (freeflow.bayes.precision): used only
where measured accurate at the Gaussian stage's draws, rows float32 cannot evaluate go back to
float64, float64 batches are untouched, and a loaded sampler keeps the decision."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import freeflow as ff
from freeflow.bayes.precision import MAX_FALLBACK, VALUE_TOL, agrees
from freeflow.datafree.space import single_precision

pm = pytest.importorskip("pymc")
pytest.importorskip("jax")


def _logistic(scale: float = 1.0, hierarchical: bool = True):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)) * np.array([1.0, 1.0, 1.0, scale])
    y = (X @ np.array([1.0, -0.5, 0.2, 0.3 / scale]) + rng.normal(size=60) > 0).astype(int)
    with pm.Model() as model:
        s = pm.HalfNormal("s", 1.0) if hierarchical else 1.0
        w = pm.Normal("w", 0.0, s, shape=4)
        pm.Bernoulli("y", logit_p=X @ w, observed=y)
    return model


def _value_and_grad(post, z):
    z = z.clone().requires_grad_(True)
    lp = post.log_density(z)
    (g,) = torch.autograd.grad(lp.sum(), z)
    return lp.detach().double().numpy(), g.double().numpy()


def _float32_rows_match(post):
    """float32 batches (3 seeds) give float64's log p̃ and gradient within float32's accuracy."""
    for seed in (1, 2, 3):
        z32 = torch.randn(32, post.dim, generator=torch.Generator().manual_seed(seed))
        lp32, g32 = _value_and_grad(post, z32)
        lp64, g64 = _value_and_grad(post, z32.double())
        np.testing.assert_allclose(lp32, lp64, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4)


def test_agrees_accepts_offsets_and_rare_failures_and_rejects_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4))
    scale = np.eye(4)

    def fn(z, grad):
        z = np.asarray(z, np.float64)
        return -0.5 * (z ** 2).sum(1), -z

    def shifted(z, grad):                       # a constant offset: harmless
        v, g = fn(z, grad)
        return v + 5.0, g
    assert agrees(fn, shifted, x, scale)[0]

    def noisy(z, grad):                         # errors that vary from draw to draw: refused
        v, g = fn(z, grad)
        return v + 10 * VALUE_TOL * np.random.default_rng(1).normal(size=len(v)), g
    ok, why = agrees(fn, noisy, x, scale)
    assert not ok and why.startswith("float64")

    def failing(frac):
        def f(z, grad):
            v, g = fn(z, grad)
            g = g.copy()
            g[: int(frac * len(v))] = np.nan
            return v, g
        return f
    assert agrees(fn, failing(MAX_FALLBACK / 2), x, scale)[0]
    assert not agrees(fn, failing(2 * MAX_FALLBACK), x, scale)[0]

    def raising(z, grad):
        raise TypeError("no float32 here")
    assert agrees(fn, raising, x, scale) == (False, "float64 (float32 failed: TypeError)")


def test_pymc_float32_rows_match_float64_and_float64_rows_are_unchanged():
    post = ff.from_pymc(_logistic(), backend="jax")
    with pytest.raises(ValueError, match="give x and scale"):
        post.use_single_precision()
    z64 = torch.randn(64, post.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    before = _value_and_grad(post, z64)
    why = post.use_single_precision(z64 * 0.5, torch.eye(post.dim, dtype=torch.float64))
    assert why.startswith("float32"), why
    after = _value_and_grad(post, z64)          # float64 batches: the very same values
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    _float32_rows_match(post)


def test_rows_float32_cannot_evaluate_go_back_to_float64():
    """A logit above 88 overflows exp in the untaken branch of PyMC's softplus in float32 (its
    gradient becomes NaN there); such rows get float64's value and gradient."""
    post = ff.from_pymc(_logistic(scale=10.0), backend="jax")
    post.use_single_precision(decided=True)
    z = torch.zeros(16, post.dim)
    z[:, -1] = torch.linspace(-12, 12, 16)      # w[3] up to ±12 × feature sd 10: logits beyond ±88
    lp32, g32 = _value_and_grad(post, z)
    lp64, g64 = _value_and_grad(post, z.double())
    from freeflow.bayes.jax_batch import call_chunked_single
    raw = call_chunked_single(*post._jax, z.numpy(), True)[1]
    assert not np.isfinite(raw).all()            # (float32 alone fails on some rows here)
    assert np.isfinite(lp32).all() and np.isfinite(g32).all()
    np.testing.assert_allclose(lp32, lp64, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-3)


def test_sampler_decides_after_its_gaussian_stage_and_keeps_it_in_checkpoints(tmp_path):
    post = ff.from_pymc(_logistic(hierarchical=False), backend="jax")   # (no twin: one stage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = ff.OneStepSampler(post, seed=0)
        s.fit(steps=20, progress=False, check=False)
    assert s.gaussian_fit["precision"].startswith("float32"), s.gaussian_fit
    assert post._fn32 is not None
    path = tmp_path / "ck.pt"
    s.save(path)
    fresh = ff.from_pymc(_logistic(hierarchical=False), backend="jax")
    loaded = ff.OneStepSampler.load(path, fresh)
    assert fresh._fn32 is not None and loaded.gaussian_fit["precision"] == s.gaussian_fit["precision"]
    x = s.sample_unconstrained(64, seed=3)
    np.testing.assert_allclose(loaded.sample_unconstrained(64, seed=3).numpy(), x.numpy())
    # a float64 sampler has nothing to decide (its batches are float64)
    post64 = ff.from_pymc(_logistic(hierarchical=False), backend="jax")
    s64 = ff.OneStepSampler(post64, seed=0, dtype=torch.float64)
    stage = SimpleNamespace(loc=torch.zeros(post64.dim, dtype=torch.float64),
                            chol=torch.eye(post64.dim, dtype=torch.float64))
    assert single_precision(s64, stage) is None and getattr(post64, "_fn32", None) is None
    assert single_precision(ff.OneStepSampler(post64, seed=0), stage).startswith("float32")


def test_other_routes_have_no_single_precision():
    pt_post = ff.from_pymc(_logistic(), backend="pytensor")
    assert pt_post.use_single_precision(torch.zeros(4, pt_post.dim, dtype=torch.float64),
                                        torch.eye(pt_post.dim, dtype=torch.float64)) is None


def _numpyro_eight_schools():
    import numpyro
    import numpyro.distributions as dist
    y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])

    def model(sigma, y=None):
        mu = numpyro.sample("mu", dist.Normal(0, 5))
        tau = numpyro.sample("tau", dist.HalfCauchy(5))
        with numpyro.plate("J", len(sigma)):
            theta = numpyro.sample("theta", dist.Normal(mu, tau))
            numpyro.sample("y", dist.Normal(theta, sigma), obs=y)
    return model, sigma, y


def test_numpyro_float32_rows_match_float64_and_float64_rows_are_unchanged():
    """NumPyro's float32 log-density is built apart (64-bit arguments cast): the probe accepts it
    on a model whose arguments are float64 arrays, and the float64 functions are untouched."""
    pytest.importorskip("numpyro")
    model, sigma, y = _numpyro_eight_schools()
    post = ff.from_numpyro(model, sigma, y=y, noncentre=False)
    z64 = torch.randn(64, post.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    before = _value_and_grad(post, z64)
    why = post.use_single_precision(z64 * 0.5, torch.eye(post.dim, dtype=torch.float64))
    assert why.startswith("float32"), why
    after = _value_and_grad(post, z64)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    _float32_rows_match(post)
    for seed in (1, 2, 3):                          # (really evaluated in float32)
        z32 = torch.randn(32, post.dim, generator=torch.Generator().manual_seed(seed))
        assert not np.array_equal(_value_and_grad(post, z32)[0], _value_and_grad(post, z32.double())[0])


def test_numpyro_model_that_cannot_build_in_float32_stays_float64():
    """A model whose float32 trace fails (here: it insists on float64 arguments) keeps float64,
    with the reason, and its values do not change."""
    pytest.importorskip("numpyro")
    import numpyro
    import numpyro.distributions as dist

    def model(x):
        if np.asarray(x).dtype != np.float64:
            raise TypeError("this model wants float64 data")
        w = numpyro.sample("w", dist.Normal(0, 1).expand([2]))
        numpyro.sample("obs", dist.Normal(x @ w, 1.0), obs=np.ones(3))

    post = ff.from_numpyro(model, np.ones((3, 2)))
    z = torch.randn(16, post.dim, dtype=torch.float64)
    before = _value_and_grad(post, z)
    why = post.use_single_precision(z, torch.eye(post.dim, dtype=torch.float64))
    assert why == "float64 (float32 failed: TypeError)", why
    assert post._fn32 is None
    np.testing.assert_array_equal(_value_and_grad(post, z)[0], before[0])
