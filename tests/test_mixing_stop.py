"""The final MCMC check ends once its chains have forgotten their starts (freeflow.mcmc.mixing_stop):
early on a fast-mixing target, at full length along a slow funnel direction, and with the
power of the full-length check on a q that is wrong. The larger calibration of the rule:
benchmarks/mcmc_check_calibration.py --final (docs/refine.md)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import mcmc_targets as mt
from freeflow.mcmc import (CLEAR_ALARM, GREY_ZONE, MIXED_CORRELATION, final_options, mcmc_shift, mixing_stop, run_chains,
                           start_correlations)


def test_start_correlations_in_location_and_spread():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert np.allclose(start_correlations(a, a), 1.0)
    fresh = start_correlations(a, rng.normal(size=(4000, 3)))
    assert fresh.max() < 0.06                                       # independent: ~1/√4000 each
    # a column whose sign is forgotten but whose size is remembered (a funnel's x_i given a slow v)
    # is not mixed: the z² correlation says so
    signs = rng.choice([-1.0, 1.0], size=(4000, 3))
    assert start_correlations(a, signs * a).min() > 0.5


def test_run_chains_stops_where_told():
    case = mt.correlated_gaussian(3)
    res = run_chains(case.log_density, case.sample(64, 0), 20, warmup=10, stop=lambda t, state: t == 7)
    assert res.steps_run == 7
    assert run_chains(case.log_density, case.sample(64, 0), 5, warmup=3).steps_run == 8


@pytest.mark.parametrize("seed", [0, 1])
def test_final_check_ends_early_on_a_gaussian_and_keeps_its_power(seed):
    """10-D correlated Gaussian, 2000 chains, up to 200 steps: exact draws end within the first
    three looks (50-100 steps; a look whose statistic is in the grey zone goes on) quiet; one
    coordinate 25 % too narrow fires with a statistic within 25 % of the full-length run's (the
    same draws and kernel seed)."""
    case = mt.correlated_gaussian(10)
    opts = final_options(case.dim)
    assert opts["until_mixed"] == MIXED_CORRELATION
    r = mcmc_shift(case.log_density, case.sample(2000, 10 + seed), n=2000, steps=200, seed=seed, **opts)
    assert not r.fired and r.steps <= 100, r
    x = case.sample(2000, 20 + seed)
    m = x[:, 3].mean()
    x[:, 3] = m + 0.75 * (x[:, 3] - m)
    short = mcmc_shift(case.log_density, x, n=2000, steps=200, seed=seed, **opts)
    full = mcmc_shift(case.log_density, x, n=2000, steps=200, seed=seed, **{**opts, "until_mixed": None})
    assert short.fired and full.fired and full.steps == 200 and short.steps < 200
    assert short.statistic > 0.75 * full.statistic, (short.statistic, full.statistic)


def test_final_check_runs_long_along_a_funnel():
    """Neal's funnel (10-D), exact draws: v mixes slowly, so the run goes past the first look;
    a q without the neck (v < −2 removed) still fires."""
    case = mt.funnel()
    opts = final_options(case.dim)
    r = mcmc_shift(case.log_density, case.sample(2000, 3), n=2000, steps=200, seed=0, **opts)
    assert r.steps > 50 and not r.fired, r
    x = case.sample(8000, 4)
    r = mcmc_shift(case.log_density, x[x[:, 0] > -2][:2000], n=2000, steps=200, seed=0, **opts)
    assert r.fired and r.coordinate in (0, -1), r


def test_mixing_stop_looks_only_at_its_steps():
    g = torch.Generator().manual_seed(0)
    x, lp = torch.randn(4000, 2, generator=g), torch.randn(4000, generator=g)
    stop = mixing_stop(lambda z, lp: torch.cat([z, lp[:, None]], 1).numpy(), (x, lp), 0.1)
    state = type("S", (), {"position": torch.randn(4000, 2, generator=g), "logdensity": torch.randn(4000, generator=g)})
    assert not stop(25, state) and not stop(60, state) and stop.history == []
    assert stop(50, state) and stop.history[0][0] == 50


def test_mixing_stop_goes_on_in_the_grey_zone():
    """Mixed chains do not stop while the check's statistic is at or above GREY_ZONE of its
    threshold (an alarm the full-length run would raise must not be cut short); below, they stop;
    a clear alarm (CLEAR_ALARM thresholds, on a test whose move reaches its floor) ends any run."""
    g = torch.Generator().manual_seed(1)
    x, lp = torch.randn(4000, 2, generator=g), torch.randn(4000, generator=g)
    cols = lambda z, lp: torch.cat([z, lp[:, None]], 1).numpy()   # noqa: E731
    mixed = type("S", (), {"position": torch.randn(4000, 2, generator=g), "logdensity": torch.randn(4000, generator=g)})
    for rel, firing, stops in ((GREY_ZONE, 0.0, False), (GREY_ZONE + 0.5, 1.2, False), (GREY_ZONE - 0.01, 0.0, True),
                               (0.1, 0.0, True), (CLEAR_ALARM, CLEAR_ALARM, True)):
        stop = mixing_stop(cols, (x, lp), 0.1, statistic=lambda b, a, r=(rel, firing): r)
        assert stop(50, mixed) is stops and stop.history[0][2] == rel
    stuck = type("S", (), {"position": x + 0.01, "logdensity": lp})   # unmixed: only a clear alarm ends it
    assert not mixing_stop(cols, (x, lp), 0.1, statistic=lambda b, a: (0.0, 0.0))(50, stuck)
    assert mixing_stop(cols, (x, lp), 0.1, statistic=lambda b, a: (2.0, CLEAR_ALARM))(50, stuck)


def test_grey_zone_statistic_is_the_checks_own(monkeypatch):
    """The statistic the stop sees is the check's largest |t| over its threshold: where a run of
    exact draws ends early (4-D Gaussian, 2 seeds), the last look's value is the reported one."""
    import freeflow.mcmc.check as chk

    real, seen = chk._relative_statistic, []
    monkeypatch.setattr(chk, "_relative_statistic", lambda *a: seen.append(real(*a)) or seen[-1])
    case = mt.correlated_gaussian(4)
    for seed in range(2):
        seen.clear()
        r = mcmc_shift(case.log_density, case.sample(1000, 5 + seed), n=1000, steps=200, seed=seed,
                       **final_options(case.dim))
        assert not r.fired and r.steps < 200 and seen[-1][0] < GREY_ZONE, (r, seen)
        assert abs(seen[-1][0] - r.statistic / r.threshold) < 1e-9, (seen[-1], r.statistic / r.threshold)


def test_until_mixed_is_checked():
    case = mt.correlated_gaussian(3)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="until_mixed"):
            mcmc_shift(case.log_density, case.sample(64, 0), n=64, steps=4, until_mixed=bad)


def test_few_chains_can_stop_too():
    """256 chains: correlations of ~1/16 are noise, so the threshold is at least 3.5/√n; exact
    Gaussian draws end within the first three looks (≤ 100 steps), 2 seeds."""
    case = mt.correlated_gaussian(10)
    for seed in range(2):
        r = mcmc_shift(case.log_density, case.sample(256, 30 + seed), n=256, steps=200, seed=seed,
                       **final_options(case.dim))
        assert r.steps <= 100 and not r.fired, r
