"""The Gaussian stage in low dimension: ``gaussian_stage="auto"`` runs it in d ≤ 3 only where p̃
is badly scaled at its mode (``gaussian_stage.badly_scaled``). A linear trend on raw years (the
shape of a public collection's 3-D temperature-trend posterior) has intercept and slope
correlated −0.99996 (the Laplace covariance's condition number 6.5·10¹⁰): unit-scale training
cannot follow it (8.6–34 posterior sds off before this rule, flagged), the stage's frame makes it
a unit Gaussian."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import freeflow as ff
from freeflow.datafree.gaussian_stage import badly_scaled

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from lowdim_scaling import PRIOR, YEARS, trend_data, trend_exact  # noqa: E402


def _trend(seed=1):
    """(log_density over (α, β, log σ), exact means, exact sds) of the benchmark's trend,
    written in torch."""
    y = trend_data(seed)
    mean, sd = trend_exact(y)
    yt, xt, ym = torch.as_tensor(y), torch.as_tensor(YEARS), float(y.mean())

    def log_density(th):
        th = th.double()
        a, b, ls_ = th[:, 0], th[:, 1], th[:, 2]
        resid = (yt - a[:, None] - b[:, None] * xt) / ls_.exp()[:, None]
        return (-0.5 * ((a - ym) / PRIOR["alpha_sd"]) ** 2 - 0.5 * (b / PRIOR["beta_sd"]) ** 2 - 0.5 * ls_.exp() ** 2
                + ls_ - 0.5 * (resid ** 2).sum(1) - yt.numel() * ls_)
    return log_density, mean, sd


def test_badly_scaled_fires_on_raw_years_and_not_at_unit_scale():
    log_density, _, _ = _trend()
    assert "condition number" in badly_scaled(log_density, 3)
    assert badly_scaled(lambda x: -0.5 * (x ** 2).sum(1), 2) == ""                   # N(0, I)
    assert badly_scaled(lambda x: -0.5 * ((x / 0.3) ** 2).sum(1), 2) == ""           # a mode of sd 0.3
    assert "outside" in badly_scaled(lambda x: -0.5 * ((x / 1e-3) ** 2).sum(1), 1)   # sd 10⁻³

    def ring(x):                                        # 8 modes of sd 0.3 on a circle of radius 4
        ang = torch.arange(8, dtype=x.dtype) * (2 * math.pi / 8)
        c = 4 * torch.stack([ang.cos(), ang.sin()], 1)
        return torch.logsumexp(-0.5 * ((x[:, None, :] - c) ** 2).sum(-1) / 0.09, 1)
    assert badly_scaled(ring, 2) == ""


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_fit_defaults_right_on_a_trend_over_raw_years(seed):
    """fit() with the defaults: every mean within 0.1 exact sd and every sd within 10 % on
    20 000 draws (Monte Carlo noise ~0.007 sd / 0.5 %), and the verdict trusts it."""
    log_density, mean, sd = _trend()
    s = ff.OneStepSampler(log_density, dim=3, seed=seed)
    s.fit(progress=False)
    assert s.gaussian_fit["used"] and "condition number" in s.gaussian_fit["note"]
    x = s.sample(20000, seed=100 + seed).double().numpy()
    assert (np.abs(x.mean(0) - mean) / sd).max() < 0.1
    assert np.abs(x.std(0) / sd - 1).max() < 0.1
    assert s.last_reliability is not None and s.last_reliability.trusted


def test_badly_scaled_is_quiet_where_it_cannot_measure():
    """A log-density that is −inf at the origin, or that raises on a single row, gives "" (the
    sampler then trains as before; training's own checks name the problem)."""
    def hole(x):                                        # −inf within 0.5 of the origin
        return torch.where(x.norm(dim=1) < 0.5, torch.full_like(x[:, 0], -math.inf), -0.5 * (x ** 2).sum(1))
    assert badly_scaled(hole, 2) == ""

    def batch_only(x):
        if x.shape[0] == 1:
            raise ValueError("one row")
        return -0.5 * (x ** 2).sum(1)
    assert badly_scaled(batch_only, 2) == ""
