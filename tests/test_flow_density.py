"""Auxiliary normalizing flow q_φ (freeflow.density.flow) and the flow generator."""
import math

import pytest
import torch

from freeflow.density.flow import FlowDensity, FlowFitError
from freeflow.generators.flow import FlowGenerator




def _target(seed, d):
    """A correlated Gaussian far from the origin with a large scale: standardisation must work."""
    g = torch.Generator().manual_seed(100 + seed)
    A = torch.randn(d, d, generator=g) * 0.5 + torch.eye(d) * 1.5
    mu = torch.randn(d, generator=g) * 20
    return torch.distributions.MultivariateNormal(mu, scale_tril=torch.linalg.cholesky(5.0 * A @ A.T))


@pytest.mark.parametrize("seed,d,kind,steps", [(0, 3, "realnvp", 150), (1, 3, "realnvp", 150), (2, 2, "spline", 80)])
def test_flow_fits_gaussian_log_prob_and_score(seed, d, kind, steps):
    """Held-out |log q̂ − log p| averages < 0.3 nats with bias < 0.2; score cosine > 0.9."""
    torch.manual_seed(seed)
    p = _target(seed, d)
    f = FlowDensity(d, kind=kind, layers=2, hidden=32, fit_steps=1, lr=1e-2, seed=seed)
    for _ in range(steps):
        f.fit(p.sample((512,)))
    x = p.sample((2000,))
    lq, sq = f.log_prob_and_score(x)
    xr = x.clone().requires_grad_(True)
    lp = p.log_prob(xr)
    (sp,) = torch.autograd.grad(lp.sum(), xr)
    err = lq - lp.detach()
    assert err.abs().mean() < 0.3, err.abs().mean()
    assert abs(err.mean()) < 0.2, err.mean()
    cos = torch.nn.functional.cosine_similarity(sq, sp, dim=1)
    assert cos.mean() > 0.9, cos.mean()
    torch.testing.assert_close(f.log_prob(x), lq)


def test_nan_fit_restores_and_raises(monkeypatch):
    f = FlowDensity(2, kind="realnvp", layers=1, hidden=8, fit_steps=2, seed=0, max_failures=2)
    x = torch.randn(64, 2)
    f.fit(x)
    good = {k: v.clone() for k, v in f.flow.state_dict().items()}
    monkeypatch.setattr(f.flow, "log_prob", lambda u: torch.full((u.shape[0],), float("nan")))
    f.fit(x)  # first failure: restored, lr halved, no raise
    for k, v in f.flow.state_dict().items():
        torch.testing.assert_close(v, good[k])
    assert f.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    with pytest.raises(FlowFitError, match="step"):
        f.fit(x)
    for k, v in f.flow.state_dict().items():
        torch.testing.assert_close(v, good[k])


def test_bad_input():
    f = FlowDensity(2, kind="realnvp", layers=1, hidden=8)
    with pytest.raises(ValueError, match="samples"):
        f.fit(torch.randn(10, 3))
    with pytest.raises(ValueError, match="NaN"):
        f.fit(torch.full((10, 2), float("nan")))
    with pytest.raises(ValueError, match="kind"):
        FlowDensity(2, kind="maf")
    with pytest.raises(ValueError, match="dim"):
        FlowDensity(1)


def test_state_dict_resumes_exactly():
    xs = [torch.randn(128, 3) * 2 + 1 for _ in range(6)]
    a = FlowDensity(3, kind="spline", layers=1, hidden=16, fit_steps=2, seed=0)
    for x in xs[:3]:
        a.fit(x)
    b = FlowDensity(3, kind="spline", layers=1, hidden=16, fit_steps=2, seed=5)
    b.load_state_dict(a.state_dict())
    for x in xs[3:]:
        a.fit(x)
        b.fit(x)
    for (k, va), vb in zip(a.flow.state_dict().items(), b.flow.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)


@pytest.mark.parametrize("kind", ["spline", "realnvp"])
def test_flow_generator_exact_log_prob(kind):
    """log q from the forward pass equals the inverse-pass density and the Jacobian formula."""
    torch.manual_seed(0)
    g = FlowGenerator(3, kind=kind, layers=2, hidden=16, init_loc=2.0, init_scale=3.0).double()
    with torch.no_grad():
        for prm in g.parameters():
            prm.add_(0.1 * torch.randn_like(prm))
    x, lq = g.sample_with_log_prob(8)
    torch.testing.assert_close(g.log_prob(x).detach(), lq)
    z = torch.randn(4, 3, dtype=torch.float64)
    _, lq2 = g.forward_and_log_prob(z)
    J = torch.stack([torch.autograd.functional.jacobian(lambda zz: g(zz[None])[0], zi) for zi in z])
    expect = -0.5 * z.pow(2).sum(1) - 1.5 * math.log(2 * math.pi) - torch.linalg.slogdet(J)[1]
    torch.testing.assert_close(lq2.detach(), expect)
