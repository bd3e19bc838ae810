"""The SVGD baseline (freeflow.compare.baselines.SVGDBaseline): moments of a Gaussian, input checks,
the fixed particle set behind sample(n), and the comparison report."""
from __future__ import annotations

import math

import pytest
import torch

from freeflow.compare.baselines import SVGDBaseline, fit_svgd
from freeflow.compare import compare


class CorrGauss:
    """2-D correlated Gaussian with closed-form mean and covariance (a Target-like object)."""

    name = "corr_gauss_test"
    dim = 2
    has_exact_sampler = True
    mode_centers = None
    mode_weights = None
    plot_range = [(-4.0, 6.0), (-5.5, 4.5)]  # centred near the mean: init N(loc, (range/6)²)

    def __init__(self) -> None:
        self.mu = torch.tensor([1.0, -0.5], dtype=torch.float64)
        self.cov = torch.tensor([[1.0, 0.6], [0.6, 1.5]], dtype=torch.float64)
        self.L = torch.linalg.cholesky(self.cov)

    def sample(self, n, generator=None):
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return (self.mu + z @ self.L.T).float()

    def log_prob(self, x):
        z = torch.linalg.solve_triangular(self.L, (x.double() - self.mu).T, upper=False).T
        return -0.5 * (z**2).sum(-1)

    def config(self):
        return {"name": self.name, "dim": self.dim}


@pytest.mark.parametrize("seed", [0, 1])
def test_svgd_matches_gaussian_moments(seed):
    """200 particles, 300 Adam steps (lr 0.05) from N(0, I), on a log-density callable.

    Tolerances: particle mean within 0.15 of μ and every covariance entry within 0.25 of Σ
    (Σ has entries 1, 0.6, 1.5).  Measured: mean error ~1e-3, covariance error ~0.07 (SVGD's
    finite-particle variance shrinkage; the sampling noise of a covariance entry from 200
    i.i.d. draws would be ~0.1-0.15).
    """
    t = CorrGauss()
    s = SVGDBaseline(t.log_prob, 2, n_particles=200, loc=0.0, scale=1.0, seed=seed)
    hist = s.fit(60.0, max_steps=300, lr=0.05)
    assert len(hist) == 300 and s.steps_done == 300 and 0 < s.train_seconds < 60
    assert s.name == "SVGD" and s.kind == "svgd" and s.settings["lr"] == 0.05
    assert s.settings["n_particles"] == 200 and s.settings["bandwidth"] == "median"
    x = s.particles.double()
    assert torch.isfinite(x).all() and s.particles.dtype == torch.float32
    assert (x.mean(0) - t.mu).abs().max() < 0.15, x.mean(0)
    assert (torch.cov(x.T) - t.cov).abs().max() < 0.25, torch.cov(x.T)
    assert all(math.isfinite(h["h"]) and h["h"] > 0 for h in hist)
    assert s.final_phi_rms < 0.05  # near a fixed point of the particle system


def test_fit_svgd_with_a_target_and_float64():
    """fit_svgd routes keywords; a Target gives dim and the initial loc/scale (plot_range)."""
    t = CorrGauss()
    s = fit_svgd(t, time_budget_s=30.0, max_steps=5, n_particles=20, dtype=torch.float64, seed=3)
    assert s.dim == 2 and s.steps_done == 5 and s.particles.dtype == torch.float64
    # Budget-only training stops on time.
    s2 = fit_svgd(t, time_budget_s=0.2, n_particles=20)
    assert s2.steps_done >= 1 and s2.train_seconds < 5


def test_bad_inputs_name_the_argument():
    t = CorrGauss()
    for bad, error in ((1, ValueError), (0, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="n_particles"):
            SVGDBaseline(t, n_particles=bad)
    with pytest.raises(ValueError, match="dim"):
        SVGDBaseline(t.log_prob, 0)
    with pytest.raises(ValueError, match="bandwidth"):
        SVGDBaseline(t, bandwidth=0.0)
    with pytest.raises(ValueError, match="scale"):
        SVGDBaseline(t, scale=-1.0)
    with pytest.raises(TypeError, match="callable"):
        SVGDBaseline("nope", 2)
    s = SVGDBaseline(t, n_particles=10)
    for budget in (0, -1.0):
        with pytest.raises(ValueError, match="time_budget_s"):
            s.fit(budget)
        with pytest.raises(ValueError, match="time_budget_s"):
            fit_svgd(t, time_budget_s=budget, n_particles=10)
    for lr in (0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="lr"):
            s.fit(1.0, lr=lr)
    with pytest.raises(ValueError, match="max_steps"):
        s.fit(max_steps=0)
    with pytest.raises(ValueError, match="time_budget_s or max_steps"):
        s.fit()
    assert s.steps_done == 0


def test_non_finite_direction_raises_naming_the_step():
    def lp(x):  # finite for the probe and the first two evaluations, then a NaN gradient
        calls["n"] += 1
        out = -0.5 * (x**2).sum(-1)
        return out * float("nan") if calls["n"] > 3 else out

    calls = {"n": 0}
    s = SVGDBaseline(lp, 2, n_particles=10)
    with pytest.raises(FloatingPointError, match="step 2"):
        s.fit(30.0, max_steps=10)
    assert s.steps_done == 2 and torch.isfinite(s.particles).all()


def test_sample_is_a_fixed_permutation_of_the_particles():
    t = CorrGauss()
    s = SVGDBaseline(t, n_particles=50, seed=0)
    s.fit(30.0, max_steps=3)
    a, b = s.sample(50), s.sample(20)
    assert a.shape == (50, 2) and torch.equal(a[:20], b)  # same particles each call
    # A permutation of the particle set, not the stored order.
    assert torch.equal(a[a[:, 0].argsort()], s.particles[s.particles[:, 0].argsort()])
    assert not torch.equal(a, s.particles)
    with pytest.raises(ValueError, match=r"n = 51 exceeds the 50"):
        s.sample(51)
    with pytest.raises(ValueError, match="n must"):
        s.sample(0)


def test_svgd_through_compare():
    """compare([svgd], exact samples, n=particle count): finite metrics, the SVGD note, costs."""
    t = CorrGauss()
    svgd = fit_svgd(t, time_budget_s=30.0, max_steps=200, n_particles=300, seed=0)
    exact = t.sample(1000, torch.Generator().manual_seed(7))
    rep = compare([svgd], exact, n=300, target=t, names=["SVGD"])
    m = rep["SVGD"]
    assert m.kind == "svgd" and m.costs["ess"] == 300.0
    assert m.costs["train_s"] == pytest.approx(svgd.train_seconds)
    assert any("interacting set" in note for note in m.notes), m.notes
    assert not any("independent samples" in note for note in m.notes)
    assert m.metrics["mean_err_max"] < 0.2 and m.metrics["std_err_max"] < 0.2, rep.table()
    assert "SVGD" in rep.table()
    with pytest.raises(ValueError, match="exceeds"):
        compare([svgd], exact, n=400, target=t)
