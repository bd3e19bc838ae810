"""Checks of freeflow.metrics against closed forms, brute-force numpy and known shifts."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, pdist

from freeflow.metrics import (energy_distance, median_bandwidth, mmd, mode_masses, mode_report,
                              moment_errors, noise_floor, summarize)
from targets import get_target

SEEDS = (0, 1, 2)


def _gauss(n, d=2, shift=0.0):
    return lambda m, g: torch.randn(m, d, generator=g, dtype=torch.float64) + shift


# ------------------------------------------------------------------------- energy distance
@pytest.mark.parametrize("d", [1, 3])
def test_energy_distance_point_masses(d):
    """ED(δ_a, δ_b) = 2‖a − b‖ exactly."""
    a, b = torch.arange(d, dtype=torch.float64), -0.5 * torch.ones(d, dtype=torch.float64)
    x, y = a.repeat(7, 1), b.repeat(5, 1)
    assert energy_distance(x, y) == pytest.approx(2 * float((a - b).norm()), rel=1e-12)
    assert energy_distance(torch.full((4,), 1.5), np.full(3, -2.0)) == pytest.approx(7.0, rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [2, 12])          # both distance code paths (≤ 8 and > 8 dims)
def test_energy_distance_matches_brute_force(seed, d):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(301, d)), rng.normal(size=(157, d)) + 0.2
    ref = 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()
    # above 8 dims the ‖a‖² + ‖b‖² − 2a·b expansion leaves ~1e-8·‖x‖ errors on tiny distances
    tol = 1e-12 if d <= 8 else 1e-9
    for chunk in (29, 64, 4096):                  # exercises the symmetric block sums
        assert energy_distance(x, y, chunk_size=chunk) == pytest.approx(ref, rel=1e-9, abs=tol)
    assert energy_distance(torch.from_numpy(x).float(), y) == pytest.approx(ref, rel=1e-5)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=tol)
    assert energy_distance(x, y) == pytest.approx(energy_distance(y, x), rel=1e-12)


def test_energy_distance_separates_shift_from_noise():
    """Same distribution: within 4× the noise floor.  Shift 0.3 in N(0, I₂): > 10× the floor
    (population ED ≈ 0.05 vs floor ≈ 2e-3 at n = 1000)."""
    n = 1000
    floor = noise_floor(energy_distance, _gauss(n), n, seeds=(10, 11, 12))
    assert 0 < floor["median"] < 0.01
    for seed in SEEDS:
        g = torch.Generator().manual_seed(seed)
        x, y, z = _gauss(n)(n, g), _gauss(n)(n, g), _gauss(n, shift=0.3)(n, g)
        assert energy_distance(x, y) < 4 * floor["median"]
        assert energy_distance(x, z) > 10 * floor["median"]


def test_metric_input_errors():
    with pytest.raises(ValueError, match="x contains non-finite"):
        energy_distance(torch.tensor([[0.0, float("nan")]]), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="same dimension"):
        energy_distance(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="y must contain"):
        mmd(torch.zeros(3, 2), torch.zeros(0, 2), bandwidth=1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(torch.zeros(3, 2), torch.ones(3, 2), bandwidth=-1.0)


# ------------------------------------------------------------------------------------ MMD
@pytest.mark.parametrize("seed", SEEDS)
def test_mmd_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(250, 3)), rng.normal(size=(180, 3)) * 1.3
    h = 0.9
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * h * h))  # noqa: E731
    ref = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    assert mmd(x, y, bandwidth=h, chunk_size=33) == pytest.approx(ref, rel=1e-9)
    # median heuristic: median pairwise distance of the pooled sample (small: no subsampling)
    pooled = np.vstack([x, y])
    assert median_bandwidth(x, y) == pytest.approx(np.median(pdist(pooled)), rel=1e-12)
    hm = np.median(pdist(pooled))
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * hm * hm))  # noqa: E731
    assert mmd(x, y) == pytest.approx(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean(), rel=1e-9)


def test_mmd_separates_shift_from_noise():
    n = 800
    floor = noise_floor(mmd, _gauss(n), n, seeds=(10, 11, 12))
    for seed in SEEDS:
        g = torch.Generator().manual_seed(seed)
        x, y, z = _gauss(n)(n, g), _gauss(n)(n, g), _gauss(n, shift=0.3)(n, g)
        assert mmd(x, y) < 4 * floor["median"]
        assert mmd(x, z) > 8 * floor["median"]


def test_noise_floor_contract():
    calls = []

    def sample_fn(m, g):
        assert isinstance(g, torch.Generator)
        calls.append(m)
        return torch.randn(m, 2, generator=g, dtype=torch.float64)

    a = noise_floor(energy_distance, sample_fn, 200, seeds=(0, 1, 2, 3), n_other=300)
    b = noise_floor(energy_distance, sample_fn, 200, seeds=(0, 1, 2, 3), n_other=300)
    assert a == b and len(a["values"]) == 4 and calls[:2] == [200, 300]
    assert a["median"] == pytest.approx(float(np.median(a["values"])))
    assert len(set(a["values"])) == 4                      # seeds give independent draws
    with pytest.raises(ValueError, match="n must"):
        noise_floor(energy_distance, sample_fn, 0)


# ---------------------------------------------------------------------------------- modes
CENTERS = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])


def _synthetic(counts, jitter=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([CENTERS[k].repeat(c, 1) for k, c in enumerate(counts)])
    return x + jitter * (torch.rand(x.shape, generator=g) - 0.5)


def test_mode_report_exact_values():
    x = _synthetic([50, 30, 20])
    masses = mode_masses(x, CENTERS)
    assert torch.allclose(masses, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    entropy = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2))
    r = mode_report(x, CENTERS, [0.5, 0.3, 0.2])
    assert r["tv"] == pytest.approx(0.0, abs=1e-15) and r["modes_covered"] == 3 and r["num_modes"] == 3
    assert r["emc"] == pytest.approx(entropy / math.log(3), rel=1e-12)
    r = mode_report(x, CENTERS, torch.full((3,), 1 / 3, dtype=torch.float64))
    assert r["tv"] == pytest.approx(1 / 6, rel=1e-12)
    # a missing mode: 0 log 0 = 0, coverage counts masses ≥ 0.1 × weight
    x = _synthetic([70, 30, 0])
    r = mode_report(x, CENTERS, [0.5, 0.3, 0.2])
    assert r["modes_covered"] == 2 and r["tv"] == pytest.approx(0.2, rel=1e-12)
    assert r["emc"] == pytest.approx(-(0.7 * math.log(0.7) + 0.3 * math.log(0.3)) / math.log(3))
    x = _synthetic([97, 2, 1])       # mode 2 at 0.01 < 0.1 × 0.2; mode 1 at 0.02 < 0.1 × 0.3
    assert mode_report(x, CENTERS, [0.5, 0.3, 0.2])["modes_covered"] == 1
    assert mode_report(x, CENTERS, [0.5, 0.3, 0.2], min_mass_fraction=0.05)["modes_covered"] == 2
    json.dumps(r)


def test_mode_report_labels_and_edge_cases():
    x = _synthetic([40, 35, 25], seed=3)
    labels = torch.tensor([0] * 40 + [1] * 35 + [2] * 25)
    assert mode_report(x, CENTERS, [0.4, 0.35, 0.25], labels=labels) == mode_report(x, CENTERS, [0.4, 0.35, 0.25])
    assert mode_report(torch.zeros(5, 2), CENTERS[:1], [1.0])["emc"] == 1.0
    with pytest.raises(ValueError, match="weights"):
        mode_report(x, CENTERS, [0.5, 0.5])
    with pytest.raises(ValueError, match="labels"):
        mode_report(x, CENTERS, [0.4, 0.35, 0.25], labels=torch.full((100,), 3))


# -------------------------------------------------------------------------------- moments
def test_moment_errors_known_shift_and_scale():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(5000, 3, generator=g, dtype=torch.float64)
    ref = (r - r.mean(0)) / r.std(0, unbiased=False) * torch.tensor([1.0, 2.0, 0.5])
    x = ref * torch.tensor([1.0, 1.5, 1.0]) + torch.tensor([0.5, 0.0, -0.1])
    m = moment_errors(x, ref)
    np.testing.assert_allclose(m["mean_err"], [0.5, 0.0, 0.2], atol=1e-12)
    np.testing.assert_allclose(m["std_err"], [0.0, 0.5, 0.0], atol=1e-12)
    assert m["mean_err_max"] == pytest.approx(0.5) and m["mean_err_mean"] == pytest.approx(0.7 / 3)
    assert m["std_err_max"] == pytest.approx(0.5) and m["std_err_mean"] == pytest.approx(0.5 / 3)
    with pytest.raises(ValueError, match="zero standard deviation"):
        moment_errors(x, torch.zeros(10, 3))


# ------------------------------------------------------------------------------ summarize
def test_summarize_exact_vs_collapsed_ring():
    t = get_target("ring8")
    n, n_ref = 800, 800
    exact = t.sample(n, torch.Generator().manual_seed(99))
    s = summarize(exact, t, n_ref=n_ref)
    json.dumps(s)
    floor = noise_floor(energy_distance, t.sample, n, seeds=(0, 1, 2), n_other=n_ref)
    assert s["noise_floor"]["energy_distance"]["values"] == floor["values"]
    assert s["energy_distance"] < 5 * floor["median"]
    assert s["modes"]["modes_covered"] == 8 and s["modes"]["tv"] < 0.08
    assert s["mean_log_prob"] == pytest.approx(float(t.log_prob(exact.double()).mean()))
    # all mass in one mode: TV = 7/8, one mode covered, ED far above the floor
    collapsed = exact[t.assign_modes(exact) == 0][:100]
    c = summarize(collapsed, t, n_ref=n_ref)
    assert c["modes"]["modes_covered"] == 1 and c["modes"]["tv"] == pytest.approx(7 / 8)
    assert c["modes"]["emc"] == pytest.approx(0.0)
    assert c["energy_distance"] > 50 * floor["median"]
    assert c["moments"]["std_err_max"] > 0.5


def test_summarize_without_sampler_and_with_nonfinite():
    t = get_target("logreg_breast_cancer")
    x = torch.from_numpy(t.map_estimate).float() + 0.01 * torch.randn(50, t.dim)
    s = summarize(x, t)
    json.dumps(s)
    assert s["n"] == 50 and "energy_distance" not in s and "modes" not in s
    assert math.isfinite(s["mean_log_prob"])
    mw = get_target("manywell32")
    y = mw.sample(300, torch.Generator().manual_seed(0))
    y[:3, 5] = float("nan")
    with pytest.warns(UserWarning, match="non-finite"):
        s = summarize(y, mw, n_ref=300, floor_seeds=(0,))
    assert s["num_nonfinite"] == 3 and s["n"] == 300
    assert abs(s["target_diagnostics"]["positive_fraction_mean"] - 0.8443) < 0.03
    with pytest.raises(ValueError, match="shape"):
        summarize(torch.zeros(5, 3), t)
