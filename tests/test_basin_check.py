"""The verdict's basin check (freeflow.datafree.verdict.basin_reason): q's importance estimate of
log Z held against the Gaussian stage's best ELBO, a lower bound on log Z."""
import math

import pytest
import torch

import freeflow as ff
from freeflow.datafree.verdict import BASIN_NATS, basin_reason, reliability


def _two_basins(w1):
    """p = w1 N(−4, 1) + (1 − w1) N(4, 1) in 1-D, normalised (log Z = 0)."""
    def log_p(x):
        a = torch.distributions.Normal(-4.0, 1.0).log_prob(x) + math.log(w1)
        b = torch.distributions.Normal(4.0, 1.0).log_prob(x) + math.log(1 - w1)
        return torch.logaddexp(a, b)
    return log_p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fires_when_q_holds_one_basin_of_less_mass(seed):
    """q = N(−4, 1), exact on the first basin. The bound: the ELBO of N(4, 1) (256 draws, as the
    stage measures it), ≈ log(1 − w1). With w1 = 0.01 the gap is log 99 = 4.6 nats > BASIN_NATS:
    it fires and states the mass bound; with w1 = 0.4 (gap 0.4) and w1 = 0.9 (q holds the
    larger basin) it stays quiet."""
    g = torch.Generator().manual_seed(seed)
    for w1, fires in ((0.01, True), (0.4, False), (0.9, False)):
        log_p = _two_basins(w1)
        other = 4.0 + torch.randn(256, generator=g, dtype=torch.float64)
        bound = float((log_p(other) - torch.distributions.Normal(4.0, 1.0).log_prob(other)).mean())
        assert bound <= 1e-9 + 0.2                                # ≤ log Z = 0 up to MC noise
        xq = -4.0 + torch.randn(4000, generator=g, dtype=torch.float64)
        log_w = log_p(xq) - torch.distributions.Normal(-4.0, 1.0).log_prob(xq)
        reason = basin_reason(log_w, bound)
        assert (reason is not None) == fires, (w1, bound, reason)
        if fires:
            assert "q misses part of p" in reason and "nats" in reason
    assert basin_reason(torch.zeros(10), None) is None
    assert basin_reason(torch.zeros(10), -math.inf) is None


def _gaussian(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = a @ a.T / d + 0.3 * torch.eye(d, dtype=torch.float64)
    prec = torch.linalg.inv(cov)
    log_z = 0.5 * d * math.log(2 * math.pi) + 0.5 * float(torch.logdet(cov))

    def log_density(x):
        return -0.5 * ((x.double() @ prec) * x.double()).sum(-1)
    return log_density, log_z


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quiet_on_a_fitted_sampler_and_wired_into_the_verdict(seed):
    """A 6-D correlated Gaussian (log Z closed form): the stage's bound lies below log Z (up to
    0.05 of MC noise), the verdict after 200 steps has no basin reason; the same sampler told of
    a bound 5 nats above log Z (a basin it never saw) is not trusted, for that reason."""
    log_density, log_z = _gaussian(6, seed)
    s = ff.OneStepSampler(log_density, dim=6, seed=seed, batch_size=256)
    s.fit(200, progress=False)
    bound = s.gaussian_fit["elbo_bound"]
    assert log_z - 2.0 < bound <= log_z + 0.05
    rep = reliability(s, 2000, seed=7, cheap_first=True)
    assert not any("Gaussian stage found" in r for r in rep.reasons), rep.reasons
    s.gaussian_fit["elbo_bound"] = log_z + BASIN_NATS + 3.0
    rep = reliability(s, 2000, seed=7, cheap_first=True)
    assert rep.trusted is False and any("Gaussian stage found" in r for r in rep.reasons)
