"""The data-free drift: normaliser invariance, p = q gives no net drift, argument checks."""
import math

import pytest
import torch

from freeflow.density.kde import KDE
from freeflow.divergences import get_divergence
from freeflow.velocities import rms_normalize
from freeflow.velocities.fdiv import (effective_sample_fraction, fdiv_velocity, log_ratio_snis,
                                      regularize_log_ratio)

POWER = ["kl_qp", "kl_pq", "pearson", "neyman", "hellinger", "alpha:0.5"]


def _batch(seed, n=256, d=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("name", POWER)
def test_power_law_drift_is_invariant_to_log_z(seed, name):
    sp, sq, log_p, log_q = _batch(seed)
    div = get_divergence(name)
    v0 = fdiv_velocity(sp, sq, log_p - log_q, div)
    v1 = fdiv_velocity(sp, sq, log_p + 7.3 - log_q, div)  # an unknown normaliser shifts log p̃
    torch.testing.assert_close(v0, v1, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["js", "jeffreys"])
def test_non_power_law_drift_depends_on_log_z_unless_self_normalised(seed, name):
    sp, sq, log_p, log_q = _batch(seed)
    div = get_divergence(name)
    raw0 = fdiv_velocity(sp, sq, log_p - log_q, div)
    raw1 = fdiv_velocity(sp, sq, log_p + 7.3 - log_q, div)
    assert (raw0 - raw1).abs().max() > 1e-3  # the raw ratio is not Z-free for these weights
    snis0 = fdiv_velocity(sp, sq, log_ratio_snis(log_p, log_q), div)
    snis1 = fdiv_velocity(sp, sq, log_ratio_snis(log_p + 7.3, log_q), div)
    torch.testing.assert_close(snis0, snis1, rtol=1e-10, atol=1e-12)


def test_snis_ratio_has_mean_one():
    _, _, log_p, log_q = _batch(0)
    assert math.isclose(float(log_ratio_snis(log_p, log_q).exp().mean()), 1.0, rel_tol=1e-12)


def test_rms_normalisation_and_raw_values():
    sp, sq, log_p, log_q = _batch(3)
    v = fdiv_velocity(sp, sq, log_p - log_q, get_divergence("kl_pq"), normalize=False)
    torch.testing.assert_close(v, (log_p - log_q).exp()[:, None] * (sp - sq))
    vn = fdiv_velocity(sp, sq, log_p - log_q, get_divergence("kl_pq"))
    assert math.isclose(float(vn.pow(2).mean()), 1.0, rel_tol=1e-12)
    assert torch.equal(rms_normalize(torch.zeros(3, 2)), torch.zeros(3, 2))


def test_regularize_log_ratio():
    lr = torch.tensor([-5.0, 0.0, 2.0, 10.0])
    torch.testing.assert_close(regularize_log_ratio(lr, max_ratio=math.e ** 2), torch.tensor([-5.0, 0.0, 2.0, 2.0]))
    torch.testing.assert_close(regularize_log_ratio(lr, temper=0.5), lr * 0.5)
    with pytest.raises(ValueError, match="temper"):
        regularize_log_ratio(lr, temper=1.5)
    with pytest.raises(ValueError, match="max_ratio"):
        regularize_log_ratio(lr, max_ratio=0.0)


def test_effective_sample_fraction():
    assert math.isclose(float(effective_sample_fraction(torch.zeros(100))), 1.0, rel_tol=1e-6)
    assert float(effective_sample_fraction(torch.tensor([0.0, -1e4, -1e4, -1e4]))) == pytest.approx(0.25)


def _mixture(n, g):
    """An asymmetric 2-D mixture: 0.7 N((-1, 0), 0.5²) + 0.3 N((2, 1), 0.8²)."""
    k = (torch.rand(n, generator=g) < 0.3).long()
    mu = torch.tensor([[-1.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    sd = torch.tensor([0.5, 0.8], dtype=torch.float64)
    return mu[k] + sd[k, None] * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _mixture_log_prob_and_score(x):
    x = x.clone().requires_grad_(True)
    mu = torch.tensor([[-1.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    sd = torch.tensor([0.5, 0.8], dtype=torch.float64)
    lw = torch.log(torch.tensor([0.7, 0.3], dtype=torch.float64))
    comp = -((x[:, None] - mu) ** 2).sum(-1) / (2 * sd**2) - 2 * torch.log(sd) - math.log(2 * math.pi)
    lp = torch.logsumexp(lw + comp, 1)
    (s,) = torch.autograd.grad(lp.sum(), x)
    return lp.detach(), s


@pytest.mark.parametrize("name", ["kl_qp", "kl_pq", "js"])
def test_drift_averages_to_zero_when_q_equals_p(name):
    """x ~ p and q̂ a KDE of an independent batch from p: the mean drift is ~0 (|mean| < 0.06 RMS).

    Each seed's mean has a Monte-Carlo error of about RMS/sqrt(N) ≈ 0.02 RMS; a wrong sign of
    either score or a wrong weight or no drift toward p gives a mean of order 0.2–1 RMS.
    """
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        x, x_ref = _mixture(3000, g), _mixture(3000, g)
        kde = KDE("scott", factor=0.3).fit(x_ref)
        log_q, score_q = kde.log_prob_and_score(x)
        log_p, score_p = _mixture_log_prob_and_score(x)
        v = fdiv_velocity(score_p, score_q, log_ratio_snis(log_p, log_q), get_divergence(name))
        assert v.mean(0).abs().max() < 0.06, (seed, v.mean(0))
        if name == "kl_qp":  # a generator shifted by +1 in x₀ is pushed back along −x₀
            v_off = fdiv_velocity(*_shifted(x, kde, name))
            assert v_off.mean(0)[0] < -0.2


def _shifted(x, kde, name):
    xs = x + torch.tensor([1.0, 0.0], dtype=torch.float64)
    kde = KDE("scott", factor=0.3).fit(kde._ref + torch.tensor([1.0, 0.0], dtype=torch.float64))
    log_q, score_q = kde.log_prob_and_score(xs)
    log_p, score_p = _mixture_log_prob_and_score(xs)
    return score_p, score_q, log_ratio_snis(log_p, log_q), get_divergence(name)


def test_shape_errors():
    sp, sq, lp, lq = _batch(0)
    with pytest.raises(ValueError, match="score_p"):
        fdiv_velocity(sp, sq[:, :2], lp - lq, get_divergence("kl_pq"))
    with pytest.raises(ValueError, match="log_r"):
        fdiv_velocity(sp, sq, (lp - lq)[:10], get_divergence("kl_pq"))
