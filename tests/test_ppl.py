"""from_numpyro / from_pymc: the log-density, gradient and transforms are the package's own;
names, shapes, data and InferenceData as documented; discrete latents refused."""
from __future__ import annotations

import warnings

import math

import numpy as np
import pytest
import torch

import freeflow as ff

D = torch.distributions
SIGMA = np.array([15.0, 10.0, 16.0])
Y = np.array([28.0, 8.0, -3.0])
ALPHA = np.array([2.0, 3.0, 1.5])


def _torch_posterior() -> ff.Posterior:
    """The same model as ``numpyro_model``/``pymc_model`` written for ff.Posterior."""
    sig, y, alpha = (torch.tensor(a) for a in (SIGMA, Y, ALPHA))

    def log_joint(v):
        theta = v["mu"][:, None] + v["tau"][:, None] * v["eta"]
        return (D.Normal(0.0, 5.0).log_prob(v["mu"]) + D.HalfNormal(5.0).log_prob(v["tau"])
                + D.Normal(0.0, 1.0).log_prob(v["eta"]).sum(-1) + D.Dirichlet(alpha.to(v["p"])).log_prob(v["p"])
                + D.Normal(theta, sig.to(theta)).log_prob(y.to(theta)).sum(-1))

    return ff.Posterior(log_joint, {"mu": (), "tau": "positive", "eta": (3,), "p": ("simplex", 3)})


def _points(post, n=6, seed=0):
    return torch.randn(n, post.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _value_and_grad(post, z):
    z = z.clone().requires_grad_(True)
    lp = post.log_density(z)
    (g,) = torch.autograd.grad(lp.sum(), z)
    return lp.detach(), g


# ------------------------------------------------------------------------------ NumPyro -------
@pytest.fixture(scope="module")
def numpyro_post():
    pytest.importorskip("numpyro")
    import numpyro
    import numpyro.distributions as dist

    def numpyro_model(sigma, y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfNormal(5.0))
        p = numpyro.sample("p", dist.Dirichlet(np.asarray(ALPHA)))
        with numpyro.plate("J", len(sigma)):
            eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
            theta = numpyro.deterministic("theta", mu + tau * eta)
            numpyro.sample("y", dist.Normal(theta, sigma), obs=y)
        return p

    return numpyro_model, ff.from_numpyro(numpyro_model, SIGMA, y=Y)


def test_numpyro_layout_and_data(numpyro_post):
    _, post = numpyro_post
    assert isinstance(post, ff.Posterior)
    assert post.names == ("mu", "tau", "p", "eta")  # the model's sites, in trace order
    assert post.shapes == {"mu": (), "tau": (), "p": (3,), "eta": (3,)}
    assert post.raw_shapes["p"] == (2,) and post.dim == 1 + 1 + 2 + 3
    assert post.derived_names == ("theta",)
    np.testing.assert_array_equal(post.observed_data["y"], Y)
    np.testing.assert_array_equal(post.constant_data["sigma"], SIGMA)


def test_numpyro_log_density_and_gradient_are_numpyros(numpyro_post):
    """Values equal −potential_energy (NumPyro's own, float64) to 1e-10; gradients to jax.grad."""
    import jax
    import numpyro.infer.util as nu

    model, post = numpyro_post
    z = _points(post)
    lp, g = _value_and_grad(post, z)
    for i in range(z.shape[0]):
        zi = z[i].numpy()
        params = {k: zi[post.slices[k]].reshape(post.raw_shapes[k]) for k in post.names}
        pe, pe_grad = jax.value_and_grad(lambda p: nu.potential_energy(model, (SIGMA,), {"y": Y}, p))(params)
        assert float(lp[i]) == pytest.approx(-float(pe), abs=1e-10)
        flat = np.concatenate([np.ravel(pe_grad[k]) for k in post.names])
        np.testing.assert_allclose(g[i].numpy(), -flat, rtol=1e-10, atol=1e-10)
    # constrained values: NumPyro's transforms (constrain_fn), the inverse recovers z
    cons = post.constrain(z)
    ref = nu.constrain_fn(model, (SIGMA,), {"y": Y},
                          {k: z[0].numpy()[post.slices[k]].reshape(post.raw_shapes[k]) for k in post.names})
    for k in post.names:
        np.testing.assert_allclose(cons[k][0].numpy(), np.asarray(ref[k]), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(post.unconstrain(cons), z, rtol=1e-9, atol=1e-9)
    theta = post.derived(z)["theta"]
    torch.testing.assert_close(theta, cons["mu"][:, None] + cons["tau"][:, None] * cons["eta"])


def test_numpyro_matches_the_same_model_in_torch(numpyro_post):
    """Same model, same (stick-breaking, exp) coordinates: equal up to a constant, same gradient."""
    _, post = numpyro_post
    tp = _torch_posterior()
    # the torch Posterior orders parameters as written; map z between the two layouts
    z = _points(post, seed=1)
    zt = torch.cat([z[:, post.slices[k]] for k in tp.names], 1)
    lp, g = _value_and_grad(post, z)
    lpt, gt = _value_and_grad(tp, zt)
    diff = lp - lpt
    assert float(diff.max() - diff.min()) < 1e-9
    torch.testing.assert_close(torch.cat([g[:, post.slices[k]] for k in tp.names], 1), gt, rtol=1e-9, atol=1e-9)


def test_numpyro_discrete_latent_is_refused():
    pytest.importorskip("numpyro")
    import numpyro
    import numpyro.distributions as dist

    def mixture(y):
        z = numpyro.sample("z", dist.Bernoulli(0.3))
        numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(3.0 * z, 1.0), obs=y)

    with pytest.raises(ValueError, match=r"discrete latent site\(s\) \['z'\].*must be enumerated or marginalised"):
        ff.from_numpyro(mixture, 1.0)


@pytest.fixture(scope="module")
def numpyro_sampler(numpyro_post):
    """A short fit through the bridge (accuracy is not asserted on it)."""
    _, post = numpyro_post
    s = ff.OneStepSampler(post, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ff.ReliabilityWarning)
        s.fit(60, progress=False, check=False)
    return s


def test_numpyro_sampler_inference_data_and_jax_log_density(numpyro_post, numpyro_sampler):
    """A short fit through the bridge, InferenceData with the model's names; and the
    JAX-native log-density that freeflow.compare.reference.nuts(posterior) runs blackjax on (no torch
    bridge) equals the bridged one (the NUTS layout itself: tests/test_posterior.py)."""
    pytest.importorskip("arviz")
    import jax
    import jax.numpy as jnp

    _, post = numpyro_post
    s = numpyro_sampler
    idata = s.to_inference_data(200)
    assert set(idata.posterior.data_vars) == {"mu", "tau", "p", "eta", "theta"}
    assert idata.posterior["p"].dims == ("chain", "draw", "p_dim_0")
    assert "log_weight" in idata.sample_stats and "y" in idata.observed_data
    np.testing.assert_allclose(idata.posterior["p"].values.sum(-1), 1.0, rtol=1e-5)
    z = _points(post, n=3, seed=5)
    lp, g = _value_and_grad(post, z)
    for i in range(3):
        v, gj = jax.value_and_grad(post.log_prob_jax)(jnp.asarray(z[i].numpy()))
        assert float(v) == pytest.approx(float(lp[i]), abs=1e-10)
        np.testing.assert_allclose(np.asarray(gj), g[i].numpy(), rtol=1e-10, atol=1e-10)


def _standardised_residuals(idata) -> np.ndarray:
    """(y_rep − theta) / sigma over all draws and schools: N(0, 1) draws if y_rep ~ p(y | θ)."""
    y_rep = idata.posterior_predictive["y"].values
    theta = idata.posterior["theta"].values
    return ((y_rep - theta) / SIGMA).ravel()


def test_numpyro_log_likelihood_deterministics_and_seed(numpyro_post, numpyro_sampler):
    """The log_likelihood group equals numpyro.infer.log_likelihood on the exported constrained
    draws (1e-10) and the closed form N(y_i; theta_i, sigma_i); theta (a deterministic site)
    equals mu + tau * eta in the InferenceData and in sample(); draws counted per chain; the
    same seed gives the same InferenceData."""
    from numpyro.infer import log_likelihood
    from scipy.stats import norm

    model, post = numpyro_post
    s = numpyro_sampler
    idata = s.to_inference_data(draws=50, chains=3, seed=1)
    ll = idata.log_likelihood["y"]
    assert ll.dims == ("chain", "draw", "y_dim_0") and ll.shape == (3, 50, 3)
    assert idata.posterior.sizes["chain"] == 3 and idata.posterior.sizes["draw"] == 50
    samples = {k: idata.posterior[k].values for k in post.names}
    ref = log_likelihood(model, samples, SIGMA, y=Y, batch_ndims=2)["y"]
    np.testing.assert_allclose(ll.values, np.asarray(ref), rtol=1e-10, atol=1e-10)
    theta = idata.posterior["theta"].values
    np.testing.assert_allclose(ll.values, norm.logpdf(Y, theta, SIGMA), rtol=1e-9, atol=1e-9)
    p = idata.posterior
    np.testing.assert_allclose(theta, p["mu"].values[..., None] + p["tau"].values[..., None] * p["eta"].values,
                               rtol=1e-10, atol=1e-10)
    draws = s.sample(20, seed=2)
    assert set(draws) == {"mu", "tau", "p", "eta", "theta"}
    torch.testing.assert_close(draws["theta"], draws["mu"][:, None] + draws["tau"][:, None] * draws["eta"])
    again = s.to_inference_data(50, 3, seed=1)
    for group in ("posterior", "log_likelihood", "sample_stats"):
        for v in idata[group].data_vars:
            np.testing.assert_array_equal(idata[group][v].values, again[group][v].values)
    other = s.to_inference_data(50, 3, seed=2)
    assert not np.array_equal(other.posterior["mu"].values, idata.posterior["mu"].values)
    assert "log_likelihood" not in s.to_inference_data(10, 2, seed=1, log_likelihood=False).groups()


def test_numpyro_posterior_predictive(numpyro_sampler):
    """numpyro.infer.Predictive on the constrained draws: y_rep − theta is N(0, sigma²) per school
    (2 × 300 draws × 3 schools: mean within 0.15, sd within 0.1 of 1: over 4 se), not the
    observed y; ff.predictive gives the same group for the same seed; reproducible."""
    s = numpyro_sampler
    idata = s.to_inference_data(300, 2, seed=3, posterior_predictive=True)
    pp = idata.posterior_predictive["y"]
    assert pp.dims == ("chain", "draw", "y_dim_0") and pp.shape == (2, 300, 3)
    r = _standardised_residuals(idata)
    assert abs(r.mean()) < 0.15 and abs(r.std() - 1.0) < 0.1
    assert not np.allclose(pp.values, Y)
    alone = ff.predictive(s, 300, 2, seed=3)
    assert set(alone.groups()) == {"posterior_predictive", "observed_data"}
    np.testing.assert_array_equal(alone.posterior_predictive["y"].values, pp.values)
    other = ff.predictive(s, 300, 2, seed=4).posterior_predictive["y"].values
    assert not np.array_equal(other, pp.values)


# --------------------------------------------------------------------------------- PyMC ------
@pytest.fixture(scope="module")
def pymc_post():
    pm = pytest.importorskip("pymc")
    with pm.Model(coords={"school": ["a", "b", "c"]}) as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        tau = pm.HalfNormal("tau", 5.0)
        eta = pm.Normal("eta", 0.0, 1.0, dims="school")
        pm.Dirichlet("p", a=ALPHA)
        sigma = pm.Data("sigma", SIGMA, dims="school")
        theta = pm.Deterministic("theta", mu + tau * eta, dims="school")
        pm.Normal("y", theta, sigma, observed=Y, dims="school")
    return model, ff.from_pymc(model)


def test_pymc_layout_and_data(pymc_post):
    _, post = pymc_post
    assert post.names == ("mu", "tau", "eta", "p")
    assert post.shapes == {"mu": (), "tau": (), "eta": (3,), "p": (3,)}
    assert post.dim == 1 + 1 + 3 + 2 and post.derived_names == ("theta",)
    assert post.dims["eta"] == ["school"] and post.coords["school"] == ["a", "b", "c"]
    np.testing.assert_array_equal(post.observed_data["y"], Y)
    np.testing.assert_array_equal(post.constant_data["sigma"], SIGMA)


def test_pymc_log_density_and_gradient_are_pymcs(pymc_post):
    """Values equal model.compile_logp() (jacobian=True) and gradients compile_dlogp(), 1e-10."""
    model, post = pymc_post
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    z = _points(post, seed=2)
    lp, g = _value_and_grad(post, z)
    for i in range(z.shape[0]):
        zi = z[i].numpy()
        point = {v.name: zi[post.slices[rv.name]].reshape(post.raw_shapes[rv.name])
                 for rv, v in zip(model.free_RVs, values)}
        assert float(lp[i]) == pytest.approx(float(logp(point)), abs=1e-10)
        np.testing.assert_allclose(g[i].numpy(), dlogp(point), rtol=1e-10, atol=1e-10)
    cons = post.constrain(z)
    assert bool((cons["tau"] > 0).all()) and np.allclose(cons["p"].sum(-1).numpy(), 1.0)
    torch.testing.assert_close(post.unconstrain(cons), z, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(post.derived(z)["theta"], cons["mu"][:, None] + cons["tau"][:, None] * cons["eta"])


def test_pymc_unbatchable_model_falls_back_to_pymcs_rows_with_a_notice(pymc_post, monkeypatch, caplog):
    """A model whose batched graph fails or differs from PyMC's one-point functions is evaluated
    row by row with them (a one-line warning), never with the wrong values."""
    from freeflow.bayes.ppl_pymc import PyMCPosterior

    model, vec = pymc_post
    assert vec.vectorised is True and vec.backend in ("jax", "pytensor")
    monkeypatch.setattr(PyMCPosterior, "_vectorised_mismatch",
                        lambda self, d: "the batched log-density or gradient differs from PyMC's at a probe point")
    with caplog.at_level("WARNING", logger="freeflow"):
        rows = ff.from_pymc(model, backend="pytensor")
    assert rows.vectorised is False and rows.backend == "rows"
    notice = [r.getMessage() for r in caplog.records if "row by row" in r.getMessage()]
    assert len(notice) == 1 and "differs from PyMC's" in notice[0] and "\n" not in notice[0]
    z = _points(rows, seed=4)
    lp_rows, g_rows = _value_and_grad(rows, z)
    lp_vec, g_vec = _value_and_grad(vec, z)
    torch.testing.assert_close(lp_rows, lp_vec, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_rows, g_vec, rtol=1e-9, atol=1e-10)


def test_pymc_matches_the_same_model_in_torch(pymc_post):
    """PyMC's simplex transform is not torch's stick-breaking, so compare the constrained
    densities: log p̃_pymc(z) − log|J_pymc(z)| = log_joint(constrained) + const."""
    _, post = pymc_post
    tp = _torch_posterior()
    z = _points(post, seed=3)
    cons = post.constrain(z)
    zt = tp.unconstrain(cons)
    lpt = tp.log_density(zt) - tp._constrain_with_jacobian(zt)[1]
    # PyMC's own log-Jacobian: the difference of its logp with and without the Jacobian terms
    model, _ = pymc_post
    no_jac, with_jac = model.compile_logp(jacobian=False), model.compile_logp()
    values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    jac = []
    for i in range(z.shape[0]):
        zi = z[i].numpy()
        point = {v.name: zi[post.slices[rv.name]].reshape(post.raw_shapes[rv.name])
                 for rv, v in zip(model.free_RVs, values)}
        jac.append(float(with_jac(point)) - float(no_jac(point)))
    diff = post.log_density(z).detach() - torch.tensor(jac, dtype=torch.float64) - lpt.detach()
    assert float(diff.max() - diff.min()) < 1e-8


def test_pymc_inference_data_uses_model_dims(pymc_post):
    _, post = pymc_post
    z = _points(post, n=40, seed=4).reshape(2, 20, post.dim)
    idata = ff.bayes.draws_inference_data(post, z)
    assert idata.posterior["eta"].dims == ("chain", "draw", "school")
    assert idata.posterior["theta"].dims == ("chain", "draw", "school")
    assert list(idata.posterior["school"].values) == ["a", "b", "c"]
    assert {"observed_data", "constant_data"} <= set(idata.groups())


def test_pymc_discrete_free_variable_is_refused():
    pm = pytest.importorskip("pymc")
    with pm.Model() as model:
        k = pm.Poisson("k", 3.0)
        pm.Normal("y", k, 1.0, observed=2.0)
    with pytest.raises(ValueError, match=r"discrete free variable\(s\) \['k'\].*must be enumerated or marginalised"):
        ff.from_pymc(model)


def test_pymc_parameter_check_failure_is_outside_the_support():
    """A PyMC model whose parameter check fails at some points (here a scale written as an
    unconstrained Normal, negative for s < 0): freeflow's compiled log-density gives −inf there,
    as PyMC's own samplers see it (PyMC's compile rewrites check_parameters), instead of raising
    ParameterValueError mid-fit; at valid points it equals PyMC's own logp."""
    pm = pytest.importorskip("pymc")
    with pm.Model() as model:
        s = pm.Normal("s", 1.0, 1.0)
        pm.Normal("y", 0.0, s, observed=np.array([0.3, -0.2]))
    post = ff.from_pymc(model)
    z = torch.tensor([[0.7], [-0.5], [1.3]], dtype=torch.float64)
    lp = post.log_density(z)
    assert lp[1] == -math.inf
    own = model.compile_logp(jacobian=True)
    for i in (0, 2):
        assert float(lp[i]) == pytest.approx(float(own({"s": float(z[i, 0])})), abs=1e-10)


def test_pymc_log_likelihood_deterministics_and_predictive(pymc_post):
    """The log_likelihood group equals pm.compute_log_likelihood on the same InferenceData (1e-10)
    with the model's dims; theta = mu + tau * eta; posterior_predictive through
    pm.sample_posterior_predictive: y_rep − theta is N(0, sigma²) (mean within 0.15, sd within
    0.1: over 4 se for 600 draws × 3 schools), reproducible for a seed."""
    pm = pytest.importorskip("pymc")
    model, post = pymc_post
    z = _points(post, n=600, seed=6).reshape(2, 300, post.dim)
    idata = ff.bayes.draws_inference_data(post, z, posterior_predictive=True, seed=7)
    ll = idata.log_likelihood["y"]
    assert ll.dims == ("chain", "draw", "school") and ll.shape == (2, 300, 3)
    ref = pm.compute_log_likelihood(idata, model=model, extend_inferencedata=False, progressbar=False)
    np.testing.assert_allclose(ll.values, ref["y"].transpose(*ll.dims).values, rtol=1e-10, atol=1e-10)
    p = idata.posterior
    np.testing.assert_allclose(p["theta"].values,
                               p["mu"].values[..., None] + p["tau"].values[..., None] * p["eta"].values, rtol=1e-10)
    pp = idata.posterior_predictive["y"]
    assert pp.dims == ("chain", "draw", "school") and pp.shape == (2, 300, 3)
    r = _standardised_residuals(idata)
    assert abs(r.mean()) < 0.15 and abs(r.std() - 1.0) < 0.1
    again = ff.bayes.draws_inference_data(post, z[:, :20], posterior_predictive=True, seed=7)
    twice = ff.bayes.draws_inference_data(post, z[:, :20], posterior_predictive=True, seed=7)
    np.testing.assert_array_equal(again.posterior_predictive["y"].values, twice.posterior_predictive["y"].values)


def test_final_check_tests_a_posteriors_deterministic_sites():
    """The final verdict's MCMC check also tests the model's deterministic sites (a latent path
    built from standardised innovations: right coordinates, wrong path), one named column each."""
    pytest.importorskip("numpyro")
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    from freeflow.datafree.verdict import derived_features

    def model():
        s = numpyro.sample("s", dist.HalfNormal(1.0))
        e = numpyro.sample("e", dist.Normal(0.0, 1.0).expand([3]))
        numpyro.deterministic("path", jnp.cumsum(s * e))
        numpyro.deterministic("total", jnp.sum(e))

    post = ff.from_numpyro(model)
    sampler = ff.OneStepSampler(post, seed=0)
    kw = derived_features(sampler)
    assert kw["feature_names"] == ["path[0]", "path[1]", "path[2]", "total"]
    z = torch.randn(5, post.dim, dtype=torch.float64)
    f = kw["features"](z)
    vals = post.derived(z)
    assert f.shape == (5, 4) and torch.allclose(f[:, 3].double(), vals["total"].double())
    assert derived_features(ff.OneStepSampler(lambda x: -0.5 * (x ** 2).sum(1), dim=2, seed=0)) == {}
