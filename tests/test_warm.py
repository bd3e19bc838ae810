"""Warm start on new data (freeflow.bayes.warm): the old generator is checked on the new
posterior first and trained only while the check fails; layouts must match."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import freeflow as ff

D = torch.distributions


def _normal_mean(y: np.ndarray) -> ff.Posterior:
    """y_i ~ N(mu, 1), mu ~ N(0, 10²); and c ~ N(0, 1) (independent): mu | y is N(m, v)."""
    yt = torch.tensor(y)

    def log_lik(v):
        return D.Normal(v["mu"][:, None], 1.0).log_prob(yt.to(v["mu"]))

    return ff.Posterior(lambda v: D.Normal(0.0, 10.0).log_prob(v["mu"]) + D.Normal(0.0, 1.0).log_prob(v["c"])
                        + log_lik(v).sum(-1), {"mu": (), "c": ()}, log_likelihood=log_lik, observed_data={"y": y})


def _exact(y: np.ndarray) -> tuple[float, float]:
    v = 1 / (1 / 100 + len(y))
    return v * y.sum(), v**0.5


@pytest.fixture(scope="module")
def previous():
    y = np.random.default_rng(0).normal(2.0, 1.0, 30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ff.ReliabilityWarning)
        _, sampler = ff.sample(_normal_mean(y), draws=100, seed=0, steps=200, batch_size=256, progress=False,
                               return_sampler=True)
    return y, sampler


def test_same_data_costs_only_the_check(previous):
    y, prev = previous
    if prev.last_reliability.trusted is not True:
        pytest.skip("the short previous fit is not trusted on this machine's run")
    idata, s = ff.sample(_normal_mean(y), draws=500, seed=1, init=prev, return_sampler=True)
    assert s.steps_done == prev.steps_done  # trusted at once: no training
    assert idata.attrs["reliability"] == str(prev.last_reliability.verdict)
    torch.testing.assert_close(s.sample_unconstrained(50, seed=3), prev.sample_unconstrained(50, seed=3))


def test_moved_data_is_trained_until_trusted(previous):
    """New data whose posterior mean moved by ~3 posterior sds: the warm start trains (in
    rounds of 50 here) until trusted; its importance-weighted mean of mu is within 4 se of the
    exact posterior mean, and the raw mean within 0.1 posterior sd."""
    y, prev = previous
    y_new = y + 0.55
    idata, s = ff.sample(_normal_mean(y_new), draws=1000, seed=2, init=prev, return_sampler=True,
                         round_steps=50, max_steps=600)
    m, sd = _exact(y_new)
    assert s.steps_done > prev.steps_done and s.last_reliability.trusted is True
    est, se = s.expectation(lambda d: d["mu"], 20000, seed=5)
    assert abs(float(est) - m) < 4 * float(se) + 1e-3 * sd
    assert abs(float(idata.posterior["mu"].mean()) - m) < 0.1 * sd


def test_warm_start_bad_input(previous):
    _, prev = previous
    other = ff.Posterior(lambda v: D.Normal(0.0, 1.0).log_prob(v["a"]).sum(-1), {"a": (2,)})
    with pytest.raises(ValueError, match="init: the previous sampler's parameters"):
        ff.sample(other, init=prev)
    untrained = ff.OneStepSampler(other, seed=0)
    with pytest.raises(ValueError, match="init: the previous sampler has not been trained"):
        ff.sample(other, init=untrained)
    with pytest.raises(TypeError, match="init must be a fitted OneStepSampler"):
        ff.sample(other, init="sampler.pt")
    with pytest.raises(TypeError, match="previous sampler's settings"):
        ff.sample(_normal_mean(np.zeros(3)), init=prev, generator="flow")


def test_with_data_numpyro():
    """ff.bayes.with_data re-calls the NumPyro model on new arguments (tiny fit: the plumbing)."""
    numpyro = pytest.importorskip("numpyro")
    import numpyro.distributions as dist

    def model(x, y=None):
        b = numpyro.sample("b", dist.Normal(0.0, 1.0))
        with numpyro.plate("N", x.shape[0]):
            numpyro.sample("y", dist.Normal(b * x, 1.0), obs=y)

    x = np.linspace(-1, 1, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ff.ReliabilityWarning)
        _, prev = ff.sample(model, model_args=(x,), model_kwargs={"y": 2 * x}, draws=10, steps=20, batch_size=64,
                            progress=False, check=False, return_sampler=True)
        new = ff.bayes.with_data(prev, x[:4], y=-x[:4], round_steps=10, max_steps=10)
    np.testing.assert_array_equal(new.posterior.observed_data["y"], -x[:4])
    np.testing.assert_array_equal(new.posterior.constant_data["x"], x[:4])
    assert new.steps_done in (prev.steps_done, prev.steps_done + 10) and new.last_reliability is not None
