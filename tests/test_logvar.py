"""Log-variance flow (freeflow.velocities.logvar): closed-form identities and the derivation."""
import math

import pytest
import torch

from freeflow.velocities.logvar import (
    GaussianReference,
    MixtureReference,
    OnPolicyReference,
    ReplayReference,
    lv_surrogate_velocity,
    lv_velocity,
    make_reference,
    reference_weights,
)




def _gauss(x, m, s):
    """log N(x; m, s² I) and its score, float64."""
    d = x.shape[1]
    lp = -0.5 * ((x - m) / s).pow(2).sum(1) - d * math.log(s) - 0.5 * d * math.log(2 * math.pi)
    return lp, -(x - m) / s**2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_policy_is_twice_kl_qp(seed):
    """ρ = sg(q): V_LV = 2β exactly, and the surrogate agrees (MATH.md §2)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(300, 3, generator=g, dtype=torch.float64)
    log_p, score_p = _gauss(x, torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), 0.7)
    log_p = log_p + 123.4  # arbitrary normaliser: must not matter
    log_q, score_q = _gauss(x, 0.0, 1.0)
    log_rho, score_rho = OnPolicyReference()(x, log_q, score_q)
    beta = score_p - score_q
    v = lv_velocity(score_p, score_q, log_p, log_q, log_rho, score_rho)
    torch.testing.assert_close(v, 2 * beta, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lv_surrogate_velocity(score_p, score_q, log_q, log_rho), 2 * beta)


def test_normaliser_invariance():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 2, generator=g, dtype=torch.float64)
    log_p, score_p = _gauss(x, 1.0, 0.5)
    log_q, score_q = _gauss(x, 0.0, 1.0)
    log_rho, score_rho = GaussianReference(2.0)(x, log_q, score_q)
    v1 = lv_velocity(score_p, score_q, log_p, log_q, log_rho, score_rho)
    v2 = lv_velocity(score_p, score_q, log_p + 57.0, log_q, log_rho, score_rho)
    torch.testing.assert_close(v1, v2)


def _lv_divergence(m, s, rho_m, rho_s, p_m, p_s, y):
    """Var_ρ[log q − log p] with fixed draws y ~ ρ (common random numbers)."""
    lq, _ = _gauss(y, m, s)
    lp, _ = _gauss(y, p_m, p_s)
    return (lq - lp).var(unbiased=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_derived_velocity_is_the_wgf_of_log_variance(seed):
    """For q = N(m, s² I) and a fixed off-policy Gaussian ρ:
    d/dm D_LV = −E_q[V_LV]  and  d/ds D_LV = −E_q[V_LV · (x − m)/s]
    (the first variation paired with the shift and scale transports).  Tolerance 3% relative
    from Monte-Carlo error with 400k draws."""
    g = torch.Generator().manual_seed(seed)
    d = 2
    m, s = torch.tensor([0.3, -0.2], dtype=torch.float64), 1.0
    p_m, p_s = torch.tensor([1.0, 0.5], dtype=torch.float64), 0.8
    rho_m, rho_s = torch.tensor([0.4, 0.1], dtype=torch.float64), 1.2  # ρ²/q integrable
    n = 400_000
    x = m + s * torch.randn(n, d, generator=g, dtype=torch.float64)
    log_q, score_q = _gauss(x, m, s)
    log_p, score_p = _gauss(x, p_m, p_s)
    log_rho, score_rho = _gauss(x, rho_m, rho_s)
    v = lv_velocity(score_p, score_q, log_p, log_q, log_rho, score_rho, clip=1e9)
    y = rho_m + rho_s * torch.randn(n, d, generator=g, dtype=torch.float64)
    eps = 1e-4
    grad_m = torch.stack([
        (_lv_divergence(m + eps * e, s, rho_m, rho_s, p_m, p_s, y)
         - _lv_divergence(m - eps * e, s, rho_m, rho_s, p_m, p_s, y)) / (2 * eps)
        for e in torch.eye(d, dtype=torch.float64)
    ])
    grad_s = (_lv_divergence(m, s + eps, rho_m, rho_s, p_m, p_s, y)
              - _lv_divergence(m, s - eps, rho_m, rho_s, p_m, p_s, y)) / (2 * eps)
    torch.testing.assert_close(-v.mean(0), grad_m, rtol=0.03, atol=0.02 * grad_m.abs().max().item())
    pred_s = -(v * (x - m) / s).sum(1).mean()
    # the scale pairing weights by |x - m|², a heavier-tailed integrand: 6% (seen: <= 3.4%)
    assert abs(pred_s - grad_s) < 0.06 * abs(grad_s), (pred_s, grad_s)


def test_reference_weights_mean_one_and_clipped():
    log_q = torch.zeros(100)
    log_rho = torch.zeros(100)
    log_rho[0] = 10.0
    r = reference_weights(log_rho, log_q, clip=5.0)
    assert abs(r.mean().item() - 1) < 1e-6
    assert r.max().item() <= 5.0 / (r.mean().item() * 1) + 1e-6 or r.argmax() == 0
    with pytest.raises(ValueError, match="clip"):
        reference_weights(log_rho, log_q, clip=0.5)


def test_mixture_reference_density_and_score():
    """Mixture log ρ and score against autograd through the explicit mixture density."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 2, generator=g, dtype=torch.float64) * 2
    ref = MixtureReference(alpha=0.3, inflate=2.0)
    log_q, score_q = _gauss(x, 0.5, 0.7)
    log_rho, score_rho = ref(x, log_q, score_q)
    mu, L = x.mean(0), torch.linalg.cholesky(torch.cov(x.T) * 4 * (1 + 1e-4 * 0))
    xr = x.clone().requires_grad_(True)
    gauss = torch.distributions.MultivariateNormal(mu, scale_tril=L)
    lq, _ = _gauss(xr, 0.5, 0.7)
    lr = torch.logaddexp(math.log(0.3) + lq, math.log(0.7) + gauss.log_prob(xr))
    (gr,) = torch.autograd.grad(lr.sum(), xr)
    torch.testing.assert_close(log_rho, lr.detach(), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(score_rho, gr, rtol=1e-3, atol=1e-3)


def test_replay_reference_buffer_and_state():
    ref = make_reference("replay", capacity=100, per_step=40)
    x = torch.randn(64, 2)
    log_q, score_q = _gauss(x.double(), 0.0, 1.0)
    lr, sr = ref(x.double(), log_q, score_q)  # empty buffer: on-policy
    assert torch.equal(lr, log_q)
    for _ in range(4):
        ref.update(torch.randn(64, 2))
    assert ref.buffer.shape == (100, 2)
    lr, sr = ref(x, log_q.float(), score_q.float())
    assert torch.isfinite(lr).all() and torch.isfinite(sr).all()
    ref2 = ReplayReference(capacity=100, per_step=40)
    ref2.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ref2(x, log_q.float(), score_q.float())[0], lr)


def test_bad_reference_name():
    with pytest.raises(ValueError, match="reference"):
        make_reference("nope")


def test_sampler_lv_runs_and_resumes(tmp_path):
    """divergence="lv" through OneStepSampler: trains, saves and resumes bit-identically."""
    from freeflow.datafree.sampler import OneStepSampler


    def log_p(x):
        return -0.5 * ((x - 1) / 0.5).pow(2).sum(1)

    kw = dict(divergence="lv", lv_reference="replay", lv_options={"capacity": 256}, seed=0,
              batch_size=64, reference_size=64, hidden=32)
    a = OneStepSampler(log_p, 2, **kw)
    a.fit(20, progress=False)
    a.save(tmp_path / "ck.pt")
    b = OneStepSampler.load(tmp_path / "ck.pt", log_p)
    a.fit(30, progress=False)
    b.fit(30, progress=False)
    torch.testing.assert_close(a.sample(16, seed=1), b.sample(16, seed=1))
    with pytest.raises(ValueError, match="lv_mode"):
        OneStepSampler(log_p, 2, divergence="lv", lv_mode="nope")
