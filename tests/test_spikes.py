"""The verdict's check for draws p rules out (``freeflow.datafree.verdict.spike_reason``): quiet on
exact draws of posteriors with Gaussian, heavy (Cauchy) and funnel-shaped log-density tails
(several seeds, 20 000 draws each: the threshold's false-alarm rate there is ~e⁻²⁰ a draw), and
fires on a q that sends a fraction 10⁻³ of its draws far out (log p̃ −10⁴ below the bulk),
which importance weights and rank-based checks cannot see."""
from __future__ import annotations

import math

import pytest
import torch

from freeflow.datafree.verdict import SPIKE_DRAWS, spike_reason
from freeflow.reliability import Reliability


def _gaussian_log_p(x):
    return -0.5 * x.pow(2).sum(1)


def _cauchy_log_p(x):
    return -torch.log1p(x.pow(2)).sum(1)


def _funnel_log_p(x):   # Neal's funnel, v = x[:, 0]
    v, rest = x[:, 0], x[:, 1:]
    return -v.pow(2) / 18 - rest.shape[1] * v / 2 - 0.5 * (rest.pow(2) * torch.exp(-v)[:, None]).sum(1)


def _exact(name: str, n: int, d: int, g: torch.Generator):
    if name == "gaussian":
        return torch.randn(n, d, generator=g, dtype=torch.float64), _gaussian_log_p
    if name == "cauchy":
        return torch.distributions.Cauchy(0.0, 1.0).sample((n, d)).double(), _cauchy_log_p
    v = 3 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return torch.cat([v, torch.exp(v / 2) * torch.randn(n, d - 1, generator=g, dtype=torch.float64)], 1), _funnel_log_p


@pytest.mark.parametrize("name,d", [("gaussian", 2), ("gaussian", 500), ("cauchy", 5), ("cauchy", 100), ("funnel", 10)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quiet_on_exact_draws(name, d, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)   # (Cauchy's sampler uses the global generator)
    x, log_p = _exact(name, SPIKE_DRAWS, d, g)
    assert spike_reason(log_p(x)) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fires_on_rare_far_draws(seed):
    """20 of 20 000 draws of a 4-D Gaussian q ≈ p moved 150 sd out along one coordinate: the
    raw mean of exp(x₀) is then astronomically wrong while every quantile is right."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(SPIKE_DRAWS, 4, generator=g, dtype=torch.float64)
    x[:20, 0] = 150.0
    reason = spike_reason(_gaussian_log_p(x))
    assert reason is not None and reason.startswith("20 of 20000 draws")
    assert spike_reason(_gaussian_log_p(x[20:])) is None


def test_non_finite_values_are_not_counted_and_tiny_inputs_pass():
    lp = torch.tensor([-1.0, -2.0, -math.inf, float("nan"), -1.5])
    assert spike_reason(lp) is None
    assert spike_reason(torch.tensor([-1e9])) is None
    assert spike_reason(torch.cat([torch.zeros(9), torch.tensor([-1e9])])) is not None


def test_a_reason_makes_the_verdict_untrusted():
    from freeflow.datafree.verdict import _add_spikes

    rep = Reliability(True, [])
    lp = torch.cat([torch.zeros(999), torch.tensor([-1e6])])
    out = _add_spikes(rep, lp)
    assert out.trusted is False and "1 of 1000 draws" in out.reasons[-1]
