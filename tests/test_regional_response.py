"""The one-step regional response (freeflow.velocities.regional, docs/theory.md §8)."""
import math

import pytest
import torch

from freeflow.velocities.regional import (GaussianMixture1D, example, measured_response, mobility_elasticity,
                                          quadrature_response, responsibilities)

POWER = {"kl_qp": 0.0, "kl_pq": 1.0, "hellinger": 0.5, "pearson": 2.0, "neyman": -1.0, "alpha:1.5": 1.5}


def _normal_pdf(x, mu, var):
    return math.exp(-0.5 * (x - mu) ** 2 / var) / math.sqrt(2 * math.pi * var)


@pytest.mark.parametrize("name", list(POWER))
@pytest.mark.parametrize("m", [0.5, 1.0])
def test_quadrature_against_closed_form_for_gaussians(name, m):
    """q = N(m, 1), p = N(0, 1), region a = Φ((x − b)/s): β = −m, q·w = Z_a N((1 − a)m, 1) with
    Z_a = exp(−a(1 − a)m²/2), so flux = −m Z_a N(b; (1 − a)m, 1 + s²) and
    E_q|V|² = m² exp(−a(1 − 2a)m²). Tolerance 1e-6 relative (grid of 40 001 points)."""
    a, b, s = POWER[name], 0.3, 0.7
    p, q = GaussianMixture1D([0.0], [1.0], [1.0]), GaussianMixture1D([m], [1.0], [1.0])
    normal = torch.distributions.Normal(torch.tensor(b, dtype=torch.float64), torch.tensor(s, dtype=torch.float64))

    def region(x):
        return normal.cdf(x)[:, None], normal.log_prob(x).exp()[:, None]

    w1 = {"kl_qp": 1, "kl_pq": 1, "hellinger": 0.5, "pearson": 2, "neyman": 2, "alpha:1.5": 1}[name]  # w(1)
    out = quadrature_response(p, q, name, region=0, regions=region, weights=[0.5])
    z_a = math.exp(-a * (1 - a) * m * m / 2)
    assert out["flux"][0] == pytest.approx(-m * w1 * z_a * _normal_pdf(b, (1 - a) * m, 1 + s * s), rel=1e-6)
    assert out["rms"] ** 2 == pytest.approx(m * m * w1 * w1 * math.exp(-a * (1 - 2 * a) * m * m), rel=1e-6)


@pytest.mark.parametrize("name", ["kl_qp", "kl_pq", "pearson", "js", "lv"])
def test_measured_step_matches_quadrature(name, seed):
    """One explicit step of the library's drift on batches x ~ q (η = 1e-3) moves mass into the
    under-covered mode as the quadrature says: within 3 Monte-Carlo standard errors; the
    Fisher–Rao reaction response too."""
    p, q, rho = example()
    quad = quadrature_response(p, q, name, rho=rho)
    meas = measured_response(p, q, name, rho=rho, n=2048, batches=25, seed=seed)
    assert abs(meas["dq_dt"][1] - quad["dq_dt"][1]) < 3 * meas["dq_dt_se"][1]
    assert abs(meas["dU_dt"] - quad["dU_dt"]) < 3 * meas["dU_dt_se"]
    if name != "lv":
        assert abs(meas["reaction_dq_dt"][1] - quad["reaction_dq_dt"][1]) < 3 * meas["reaction_dq_dt_se"][1]


def test_orderings_the_theory_predicts():
    """Along a → larger weight elasticity (neyman −1, kl_qp 0, hellinger ½, kl_pq 1, alpha 1.5,
    pearson 2): the share of the step's effort spent in the under-covered region and the
    Fisher–Rao mass created there increase; the transport across the boundary per unit cost
    decreases (docs/theory.md §8)."""
    p, q, rho = example()
    order = ["neyman", "kl_qp", "hellinger", "kl_pq", "alpha:1.5", "pearson"]
    res = [quadrature_response(p, q, d) for d in order]
    share = [r["energy_share"] for r in res]
    react = [r["reaction_dq_dt"][1] for r in res]
    transport = [r["dq_dt"][1] for r in res]
    assert share == sorted(share) and react == sorted(react)
    assert transport == sorted(transport, reverse=True)
    assert all(t > 0 for t in transport)  # every divergence moves mass into the under-covered mode
    assert all(r["dU_dt"] < 0 for r in res)


def test_mobility_elasticity_closed_forms():
    lr = torch.linspace(-3, 3, 13, dtype=torch.float64)
    for name, a in POWER.items():
        torch.testing.assert_close(mobility_elasticity(name, lr), torch.full_like(lr, 1 - a))
    r = lr.exp()
    torch.testing.assert_close(mobility_elasticity("js", lr), 1 - 1 / (1 + r))
    torch.testing.assert_close(mobility_elasticity("jeffreys", lr), 1 - r / (1 + r))


def test_responsibility_derivative_by_autograd():
    p = GaussianMixture1D([-1.0, 0.5, 2.0], [0.4, 1.0, 0.7], [0.2, 0.5, 0.3])
    x = torch.linspace(-3, 4, 50, dtype=torch.float64).requires_grad_(True)
    a, da = responsibilities(p, x)
    for k in range(3):
        (g,) = torch.autograd.grad(a[:, k].sum(), x, retain_graph=True)
        torch.testing.assert_close(g, da[:, k].detach())
    torch.testing.assert_close(a.sum(1).detach(), torch.ones(50, dtype=torch.float64))
