"""Models written as users write them, through ``from_pymc`` / ``from_numpyro``: features of the
modelling languages that change the graph freeflow batches (automatic imputation of missing
observations, ...). Each: the posterior builds, its log-density equals the package's own at
random points, and constrain/unconstrain round-trip."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import freeflow as ff


def _pymc_point(model, post, z_row: np.ndarray) -> dict:
    values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    return {v.name: z_row[post.slices[rv.name]].reshape(post.raw_shapes[rv.name])
            for rv, v in zip(model.free_RVs, values)}


def test_pymc_missing_observations_are_imputed_parameters():
    """An observed array with NaNs: PyMC makes the missing entries a free RV (``y_unobserved``)
    whose distribution depends on the other free RVs, and ``y`` a deterministic joining them
    with the data. freeflow samples the imputed entries as parameters, gives PyMC's log-density
    (1e-10), and ``y`` holds the data where observed and the imputed draws where missing."""
    pm = pytest.importorskip("pymc")
    rng = np.random.default_rng(0)
    y = rng.normal(1.0, 2.0, 12)
    missing = [2, 5, 9]
    y[missing] = np.nan
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        s = pm.HalfNormal("s", 3.0)
        pm.Normal("y", mu, s, observed=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = ff.from_pymc(model)
    assert post.names == ("mu", "s", "y_unobserved") and post.shapes["y_unobserved"] == (3,)
    z = torch.randn(6, post.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lp = post.log_density(z)
    own = model.compile_logp(jacobian=True)
    for i in range(z.shape[0]):
        assert float(lp[i]) == pytest.approx(float(own(_pymc_point(model, post, z[i].numpy()))), abs=1e-10)
    cons = post.constrain(z)
    torch.testing.assert_close(post.unconstrain(cons), z, rtol=1e-9, atol=1e-9)
    observed = np.setdiff1d(np.arange(y.size), missing)
    np.testing.assert_allclose(cons["y"][:, observed].numpy(), np.broadcast_to(y[observed], (6, observed.size)))
    np.testing.assert_allclose(cons["y"][:, missing].numpy(), cons["y_unobserved"].numpy())


def test_numpyro_improper_uniform_ordered_cutpoints():
    """Ordered-logistic regression with its cutpoints written as NumPyro's examples write them,
    ``dist.ImproperUniform(ordered_vector)`` plus a ``numpyro.factor`` prior: the site cannot be
    sampled, so the structure trace initialises it as NumPyro's MCMC does; the log-density
    equals NumPyro's own potential (1e-8) and every constrained draw is ordered."""
    pytest.importorskip("numpyro")
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints
    from numpyro.infer.util import potential_energy

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2))
    y = (((X @ np.array([1.0, -0.5]))[:, None] + rng.logistic(size=(40, 1))) > np.array([-1.0, 0.0, 1.5])).sum(1)

    def model(X, y=None):
        beta = numpyro.sample("beta", dist.Normal(0.0, 2.0).expand([2]).to_event(1))
        c = numpyro.sample("c", dist.ImproperUniform(constraints.ordered_vector, (), event_shape=(3,)))
        numpyro.factor("c_prior", dist.Normal(0.0, 5.0).log_prob(c).sum())
        with numpyro.plate("N", X.shape[0]):
            numpyro.sample("y", dist.OrderedLogistic(X @ beta, c), obs=y)

    post = ff.from_numpyro(model, X, y=y.astype(np.int32))
    assert post.names == ("beta", "c") and post.dim == 5
    z = torch.randn(5, post.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    lp = post.log_density(z)
    for i in range(z.shape[0]):   # (from_numpyro runs JAX in float64)
        params = {k: np.asarray(z[i, post.slices[k]].numpy()).reshape(post.raw_shapes[k]) for k in post.names}
        u = potential_energy(model, (X,), {"y": y.astype(np.int32)}, params)
        assert float(lp[i]) == pytest.approx(-float(u), rel=1e-8, abs=1e-8)
    c = post.constrain(z)["c"]
    assert bool((c[:, 1:] > c[:, :-1]).all())
    torch.testing.assert_close(post.unconstrain(post.constrain(z)), z, rtol=1e-8, atol=1e-8)


def test_numpyro_vague_gamma_precision_whose_prior_draw_underflows():
    """A centred random effect with the BUGS prior tau ~ Gamma(0.001, 0.001) on its precision: the
    prior draw of tau underflows to 0, its scale is infinite and the Binomial site rejects its
    logits. from_numpyro reads the structure from an init_to_uniform run instead; the log-density
    equals NumPyro's potential (1e-8) at random points."""
    pytest.importorskip("numpyro")
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro import handlers
    from numpyro.infer.util import potential_energy

    r, n = np.array([3.0, 8.0, 5.0, 0.0]), np.array([10.0, 12.0, 9.0, 4.0])

    def model(r, n):
        a = numpyro.sample("a", dist.Normal(0.0, 1000.0))
        tau = numpyro.sample("tau", dist.Gamma(0.001, 0.001))
        b = numpyro.sample("b", dist.Normal(0.0, 1.0 / jnp.sqrt(tau)).expand([4]).to_event(1))
        numpyro.sample("r", dist.Binomial(n, logits=a + b), obs=r)

    with pytest.raises(ValueError):  # the plain prior draw fails (the case handled here)
        handlers.trace(handlers.seed(model, rng_seed=0)).get_trace(r, n)
    post = ff.from_numpyro(model, r, n)
    assert post.names == ("a", "tau", "b") and post.dim == 6
    z = torch.randn(4, post.dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    lp = post.log_density(z)
    for i in range(z.shape[0]):
        params = {k: np.asarray(z[i, post.slices[k]].numpy()).reshape(post.raw_shapes[k]) for k in post.names}
        assert float(lp[i]) == pytest.approx(-float(potential_energy(model, (r, n), {}, params)), rel=1e-8, abs=1e-8)


def test_pymc_gaussian_random_walk_with_an_unknown_scale():
    """``pm.GaussianRandomWalk`` with its innovation scale a free RV (the RV of the walk depends on
    another free RV, as imputed observations do): PyMC's log-density (1e-10), batched, and the
    transforms round-trip."""
    pm = pytest.importorskip("pymc")
    rng = np.random.default_rng(2)
    y = np.cumsum(rng.normal(0.0, 0.3, 15)) + rng.normal(0.0, 0.5, 15)
    with pm.Model() as model:
        sig = pm.HalfNormal("sig", 1.0)
        pm.GaussianRandomWalk("rw", sigma=sig, init_dist=pm.Normal.dist(0.0, 1.0), steps=14)
        pm.Normal("y", model["rw"], 0.5, observed=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = ff.from_pymc(model)
    assert post.vectorised and post.shapes == {"sig": (), "rw": (15,)}
    z = torch.randn(4, post.dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    lp = post.log_density(z)
    own = model.compile_logp(jacobian=True)
    for i in range(z.shape[0]):
        assert float(lp[i]) == pytest.approx(float(own(_pymc_point(model, post, z[i].numpy()))), abs=1e-10)
    torch.testing.assert_close(post.unconstrain(post.constrain(z)), z, rtol=1e-9, atol=1e-9)


def test_numpyro_truncated_likelihood_that_overflows_to_plus_inf():
    """NumPyro's ``TruncatedNormal`` likelihood is +inf where its normaliser underflows (mean far
    outside the bounds, small scale). Such points are outside the support (−inf, zero gradient),
    as NUTS rejects them: the sampler builds (its cost probe meets them) and trains; elsewhere
    the log-density is NumPyro's."""
    pytest.importorskip("numpyro")
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer.util import potential_energy

    rng = np.random.default_rng(1)
    y = rng.normal(2.0, 1.5, 200)
    y = y[(y > 0.0) & (y < 3.5)]

    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        s = numpyro.sample("s", dist.HalfNormal(3.0))
        with numpyro.plate("N", len(y)):
            numpyro.sample("y", dist.TruncatedNormal(mu, s, low=0.0, high=3.5), obs=y)

    post = ff.from_numpyro(model, y=y)
    z = torch.tensor([[-3.0, -2.5], [-2.0, -3.0], [0.0, 0.0], [2.5, 0.5]], dtype=torch.float64)  # (mu, log s)
    zg = z.clone().requires_grad_(True)
    lp = post.log_density(zg)
    (g,) = torch.autograd.grad(lp[2:].sum(), zg)
    assert lp[0] == -math.inf and lp[1] == -math.inf
    for i in (2, 3):
        u = potential_energy(model, (), {"y": y}, {"mu": np.float64(z[i, 0]), "s": np.float64(z[i, 1])})
        assert float(lp[i]) == pytest.approx(-float(u), rel=1e-10)
    assert torch.isfinite(g).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = ff.OneStepSampler(post, seed=0)
        s.fit(steps=50, progress=False)
    draws = s.sample(500)
    assert all(bool(torch.isfinite(v).all()) for v in draws.values())
    assert s.last_reliability is not None


def test_numpyro_factor_is_part_of_the_density_not_data():
    """A ``numpyro.factor`` term (a soft constraint) counts in log p̃ but is not an observation:
    not in ``observed_data``, and the pointwise log-likelihood (LOO's input) is the likelihood's
    alone."""
    pytest.importorskip("numpyro")
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer.util import potential_energy
    from scipy.stats import norm

    y = np.random.default_rng(0).normal(1.0, 1.0, 20)

    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        numpyro.factor("soft", -0.5 * (mu - 1.0) ** 2)
        with numpyro.plate("N", 20):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    post = ff.from_numpyro(model, y=y)
    assert list(post.observed_data) == ["y"]
    z = torch.tensor([[0.3], [1.7]], dtype=torch.float64)
    lp = post.log_density(z)
    for i in range(2):
        u = potential_energy(model, (), {"y": y}, {"mu": np.float64(z[i, 0])})
        assert float(lp[i]) == pytest.approx(-float(u), rel=1e-10)
    ll = post.pointwise_log_likelihood(z)
    assert list(ll) == ["y"]
    np.testing.assert_allclose(ll["y"].numpy(), norm.logpdf(y[None, :], loc=z.numpy()), rtol=1e-10)
