"""The routes of a PyMC model's log-density (``ff.from_pymc(model, backend=...)``): each equals
PyMC's own one-point ``compile_logp`` / ``compile_dlogp`` (float64, several random points),
points outside the support get PyMC's −inf, and a route that cannot be used is never used."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import freeflow as ff
from freeflow.bayes.jax_batch import MAX_ROWS, MIN_ROWS, chunks

pm = pytest.importorskip("pymc")

BACKENDS = ("jax", "pytensor", "rows")


def _value_and_grad(post, z):
    z = z.clone().requires_grad_(True)
    lp = post.log_density(z)
    (g,) = torch.autograd.grad(lp.sum(), z)
    return lp.detach().numpy(), g.numpy()


def _pymc_own(model, post, z):
    """PyMC's one-point log p̃ (jacobian=True) and gradient at each row of z."""
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    points = [{model.rvs_to_values[rv].name: row[post.slices[rv.name]].reshape(post.raw_shapes[rv.name])
               for rv in model.free_RVs} for row in z.numpy()]
    return np.array([float(logp(p)) for p in points]), np.stack([dlogp(p) for p in points])


@pytest.fixture(scope="module")
def logistic():
    """A logistic regression with a positive scale and a simplex: 2 + 1 + 3 + 2 = 8 coordinates."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X @ np.array([1.0, -0.5, 0.2]) + rng.normal(size=40) > 0).astype(int)
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 2.0, shape=2)
        s = pm.HalfNormal("s", 1.0)
        w = pm.Normal("w", 0.0, s, shape=3)
        p = pm.Dirichlet("p", a=np.ones(3))
        pm.Bernoulli("y", logit_p=a[0] + X @ w + a[1] * p[0], observed=y)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_is_pymcs_log_density_and_gradient(logistic, backend):
    post = ff.from_pymc(logistic, backend=backend)
    assert post.backend == backend
    for seed in (0, 1, 2):
        z = torch.randn(7, post.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        lp, g = _value_and_grad(post, z)
        rlp, rg = _pymc_own(logistic, post, z)
        np.testing.assert_allclose(lp, rlp, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(g, rg, rtol=1e-9, atol=1e-10)


def test_auto_takes_jax_when_it_is_installed(logistic):
    pytest.importorskip("jax")
    assert ff.from_pymc(logistic).backend == "jax"


def test_jax_gives_pymcs_minus_inf_outside_the_support_row_by_row():
    """A scale written as an unconstrained parameter: PyMC's parameter check makes log p̃ −inf
    where it is negative. In one batch, those rows are −inf and the others PyMC's values."""
    with pm.Model() as model:
        pm.Normal("sd", 1.0, 1.0)
        pm.Normal("y", 0.0, model["sd"], observed=np.array([0.3, -0.2, 1.1]))
    post = ff.from_pymc(model, backend="jax")
    z = torch.tensor([[0.5], [-0.4], [1.3], [-2.0], [0.9]], dtype=torch.float64)
    with torch.no_grad():
        lp = post.log_density(z).numpy()
    rlp, _ = _pymc_own(model, post, z)
    neg = z[:, 0].numpy() < 0
    raw, _ = post._jax_call(z.numpy(), False)             # JAX itself: PyMC's check as a −inf switch
    assert np.all(np.isneginf(raw[neg])) and np.all(np.isfinite(raw[~neg]))
    assert np.all(np.isneginf(lp[neg])) and np.all(np.isneginf(rlp[neg]))
    np.testing.assert_allclose(lp[~neg], rlp[~neg], rtol=1e-12)
    lpg, g = _value_and_grad(post, z)
    assert np.all(np.isfinite(g[~neg])) and np.allclose(lpg[~neg], rlp[~neg])


def test_unknown_backend_names_the_valid_ones(logistic):
    with pytest.raises(ValueError, match=r"backend='numba' is not one of 'auto', 'jax', 'pytensor', 'rows'"):
        ff.from_pymc(logistic, backend="numba")


def test_jax_route_that_differs_from_pymc_is_not_used(logistic, monkeypatch, caplog):
    """A JAX graph whose values differ from PyMC's at the probe points: PyTensor's batch
    instead, with one warning line when JAX was asked for."""
    pytest.importorskip("jax")
    from freeflow.bayes.ppl_pymc import PyMCPosterior

    real = PyMCPosterior._jax_call
    monkeypatch.setattr(PyMCPosterior, "_jax_call", lambda self, x, grad: (lambda v, g: (v + 1.0, g))(*real(self, x, grad)))
    with caplog.at_level("WARNING", logger="freeflow"):
        post = ff.from_pymc(logistic, backend="jax")
    notice = [r.getMessage() for r in caplog.records if "JAX backend cannot be used" in r.getMessage()]
    assert post.backend == "pytensor" and len(notice) == 1 and "\n" not in notice[0]
    z = torch.randn(5, post.dim, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    np.testing.assert_allclose(_value_and_grad(post, z)[0], _pymc_own(logistic, post, z)[0], rtol=1e-10)


def test_jax_batches_are_powers_of_two_with_little_padding():
    for n in (1, 7, 8, 9, 1100, 2048, 4000, 5000):
        x = np.arange(n * 3, dtype=np.float64).reshape(n, 3)
        parts = list(chunks(x))
        sizes = [p.shape[0] for _, p in parts]
        assert all(s & (s - 1) == 0 and MIN_ROWS <= s <= MAX_ROWS for s in sizes), (n, sizes)
        assert sum(sizes) - n < MIN_ROWS, (n, sizes)                      # padding: under MIN_ROWS rows
        np.testing.assert_array_equal(np.concatenate([p[:m] for m, p in parts]), x)   # every row once, in order
