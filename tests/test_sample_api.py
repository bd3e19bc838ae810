"""ff.sample (model in, InferenceData out), ff.print_summary, and the constrained-space
expectation / importance_weights of a Posterior-backed sampler."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

import freeflow as ff

az = pytest.importorskip("arviz")
D = torch.distributions
GAMMA = D.Gamma(3.0, 2.0)   # mean 1.5, E[x²] = var + mean² = 0.75 + 2.25 = 3.0


@pytest.fixture(scope="module")
def gamma_fit():
    """x ~ Gamma(3, 2) through "positive", 150 steps, with a deterministic site."""
    post = ff.Posterior(lambda v: GAMMA.log_prob(v["x"]), {"x": "positive"},
                        deterministics=lambda v: {"x2": v["x"] ** 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ff.ReliabilityWarning)
        idata, sampler = ff.sample(post, draws=250, chains=4, seed=0, steps=150, progress=False,
                                   return_sampler=True)
    return post, idata, sampler


def test_sample_returns_inference_data_with_verdict(gamma_fit):
    _, idata, sampler = gamma_fit
    assert idata.posterior["x"].shape == (4, 250) and idata.posterior["x2"].shape == (4, 250)
    np.testing.assert_allclose(idata.posterior["x2"].values, idata.posterior["x"].values ** 2, rtol=1e-6)
    assert idata.attrs["inference_library"] == "freeflow" and idata.attrs["steps"] == 150
    assert idata.attrs["reliability"] == str(sampler.last_reliability.verdict)
    assert idata.posterior.attrs["trusted"] in (0, 1, -1) and "log_weight" in idata.sample_stats
    # ff.sample's draws are sampler.to_inference_data(draws, chains, seed=seed)'s
    again = sampler.to_inference_data(250, 4, seed=0)
    np.testing.assert_array_equal(again.posterior["x"].values, idata.posterior["x"].values)


def test_constrained_expectation_and_importance_weights(gamma_fit):
    """E[x] = 1.5 and E[x²] = 3 of Gamma(3, 2) from 20000 importance-weighted draws: within 4 se
    and 3% (the estimate is self-normalised importance sampling: unbiased as n grows whatever
    the short fit's q)."""
    post, _, s = gamma_fit
    for f, exact in ((lambda d: d["x"], 1.5), (lambda d: d["x2"], 3.0)):
        est, se = s.expectation(f, 20000, seed=4)
        assert abs(float(est) - exact) < 4 * float(se) + 1e-12 or abs(float(est) - exact) < 0.03 * exact
        assert abs(float(est) - exact) < 0.03 * exact
    draws, lw = s.importance_weights(100, seed=5)
    assert set(draws) == {"x", "x2"} and lw.shape == (100,)
    z, lw2 = s.importance_weights(100, seed=5, constrained=False)
    assert z.shape == (100, post.dim)
    torch.testing.assert_close(post.constrain(z)["x"], draws["x"])
    torch.testing.assert_close(lw, lw2)
    plain = ff.OneStepSampler(lambda x: -0.5 * (x**2).sum(-1), dim=2, seed=0, generator="flow")
    x, _ = plain.importance_weights(10, seed=1)          # plain samplers: the tensor API
    assert isinstance(x, torch.Tensor) and x.shape == (10, 2)
    est, _ = plain.expectation(lambda x: x[:, 0], 10, seed=1)
    assert est.shape == ()
    with pytest.raises(ValueError, match="constrained=True"):
        plain.importance_weights(10, constrained=True)


def test_print_summary(gamma_fit):
    _, idata, sampler = gamma_fit
    buf = io.StringIO()
    text = ff.print_summary(idata, file=buf)
    assert buf.getvalue() == text
    header = text.splitlines()[0].split()
    assert header == ["mean", "sd", "median", "5.0%", "95.0%", "n_eff", "r_hat"]
    row = dict(zip(header, text.splitlines()[1].split()[1:]))
    assert float(row["mean"]) == pytest.approx(float(idata.posterior["x"].mean()), abs=0.006)
    assert "freeflow verdict: " in text and "Pareto k̂" in text
    from_sampler = ff.print_summary(sampler, file=io.StringIO(), prob=0.8, var_names=["x"])
    assert "10.0%" in from_sampler and "x2" not in from_sampler
    with pytest.raises(TypeError, match="idata_or_sampler"):
        ff.print_summary(42)


def test_sample_plain_log_density_and_bad_input():
    idata = ff.sample(lambda x: -0.5 * (x**2).sum(-1), dim=2, draws=20, chains=2, seed=1, steps=10,
                      progress=False, check=False)
    assert idata.posterior["x"].shape == (2, 20, 2) and idata.attrs["steps"] == 10
    cases = [({"draws": 0}, ValueError, "draws"), ({"draws": 1.5}, TypeError, "draws"),
             ({"chains": 0}, ValueError, "chains"), ({"chains": "4"}, TypeError, "chains"),
             ({"seed": -1}, ValueError, "seed")]
    for kw, exc, name in cases:   # refused before anything is built or fitted
        with pytest.raises(exc, match=name):
            ff.sample(lambda x: -(x**2).sum(-1), dim=1, **kw)
    with pytest.raises(TypeError, match="model_args"):
        ff.sample(lambda x: -(x**2).sum(-1), dim=1, model_args=(1,))
    with pytest.raises(TypeError, match="model must be"):
        ff.sample(42)
    with pytest.raises(ValueError, match="log_likelihood"):
        ff.sample(lambda x: -(x**2).sum(-1), dim=1, steps=2, progress=False, check=False, log_likelihood=True)


def test_sample_numpyro_and_pymc_models():
    """The two PPL routes through ff.sample (tiny fits: the groups, not the accuracy)."""
    numpyro = pytest.importorskip("numpyro")
    pm = pytest.importorskip("pymc")
    import numpyro.distributions as dist

    y = np.array([0.3, -1.2, 0.8, 2.1])

    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.deterministic("mu2", 2 * mu)
        with numpyro.plate("N", 4):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    opts = dict(draws=30, chains=2, seed=0, steps=5, batch_size=64, progress=False, check=False)
    a = ff.sample(model, model_kwargs={"y": y}, **opts)
    assert {"posterior", "log_likelihood", "observed_data"} <= set(a.groups())
    np.testing.assert_allclose(a.posterior["mu2"].values, 2 * a.posterior["mu"].values)
    assert a.log_likelihood["y"].shape == (2, 30, 4)
    with pm.Model() as pm_model:
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.Deterministic("mu2", 2 * mu)
        pm.Normal("y", mu, 1.0, observed=y)
    b = ff.sample(pm_model, **opts)
    np.testing.assert_allclose(b.posterior["mu2"].values, 2 * b.posterior["mu"].values)
    assert b.log_likelihood["y"].shape == (2, 30, 4) and b.attrs["steps"] == 5
