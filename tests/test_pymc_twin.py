"""Non-centred twins of PyMC models (freeflow.bayes.pymc_twin): which RVs are decentred, the map
back to the model's coordinates and its Jacobian, and a funnel that trains in the twin."""
import numpy as np
import pytest
import torch

import freeflow as ff
from twin_checks import jacobian_logdet

pm = pytest.importorskip("pymc")

SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])


def eight_schools():
    with pm.Model(coords={"school": list("abcdefgh")}) as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        tau = pm.HalfCauchy("tau", 5.0)
        theta = pm.Normal("theta", mu, tau, dims="school")
        pm.Normal("y", theta, SIGMA, observed=Y, dims="school")
    return model


def funnel(dim=5):
    with pm.Model() as model:
        v = pm.Normal("v", 0.0, 3.0)
        pm.Normal("x", 0.0, pm.math.exp(v / 2.0), shape=dim - 1)
    return model


@pytest.mark.parametrize("make,sites", [(eight_schools, ("theta",)), (funnel, ("x",))])
def test_twin_maps_back_with_the_right_jacobian(make, sites):
    post = ff.from_pymc(make())
    (rep,) = post.reparametrizations()
    twin = rep.posterior
    assert rep.sites == sites and twin.dim == post.dim
    assert f"{sites[0]}_decentered" in twin.names and sites[0] in twin.derived_names
    w = torch.randn(3, post.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z = rep.to_model(w)
    a, b = twin.constrain(w), post.constrain(z)
    for k in post.names:   # the same constrained values through both models
        assert torch.allclose(a[k].double(), b[k].double(), atol=1e-9), k
    ld = rep.log_det(w)    # log|det ∂z/∂w| from the two log-densities = the finite-difference Jacobian's
    for i in range(3):
        assert abs(float(ld[i]) - jacobian_logdet(rep, w[i])) < 1e-5


def test_eight_schools_twin_is_mu_plus_tau_times_the_standard_normal():
    post = ff.from_pymc(eight_schools())
    (rep,) = post.reparametrizations()
    w = torch.randn(4, post.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    c = rep.posterior.constrain(w)
    expected = c["mu"][:, None] + c["tau"][:, None] * w[:, rep.posterior.slices["theta_decentered"]]
    torch.testing.assert_close(c["theta"].double(), expected, rtol=1e-12, atol=1e-12)
    # log|det| of the map: 8 log tau (the twin keeps log tau and mu as they are)
    torch.testing.assert_close(rep.log_det(w), 8 * torch.log(c["tau"].double()), rtol=1e-9, atol=1e-9)
    assert rep.posterior.dims["theta_decentered"] == ["school"]


def test_constant_priors_and_transformed_rvs_are_left_as_written():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pm.Model() as regression:
        beta = pm.Normal("beta", 0.0, 10.0, shape=3)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Normal("y", X @ beta, sigma, observed=X @ np.ones(3))
    assert ff.from_pymc(regression).reparametrizations() == ()
    assert ff.from_pymc(eight_schools(), noncentre=False).reparametrizations() == ()
    with pytest.raises(TypeError, match="noncentre"):
        ff.from_pymc(eight_schools(), noncentre="yes")


def test_funnel_trains_in_the_twin_and_reports_the_model_coordinates():
    """Neal's funnel written centred in PyMC: its twin is N(0, diag(9, 1, ...)), the Gaussian
    stage is exact there, so the sampler trains in it. Draws in the model's coordinates:
    v ~ N(0, 3²) (mean within 0.1, sd within 5 % at 20 000 draws: MC sd 0.02 and 0.5 %)."""
    post = ff.from_pymc(funnel())
    s = ff.OneStepSampler(post, seed=0)
    s.fit(300, progress=False, check=False)
    assert s.gaussian_fit["coordinates"] == "non-centred: x"
    z = s.sample_unconstrained(20_000, seed=5).double()
    v = z[:, post.slices["v"]][:, 0]
    assert abs(float(v.mean())) < 0.1 and abs(float(v.std()) / 3.0 - 1) < 0.05
    r = z[:, post.slices["x"]] / torch.exp(v / 2)[:, None]
    assert abs(float(r.std()) - 1) < 0.05
