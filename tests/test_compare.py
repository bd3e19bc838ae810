"""The comparison report (freeflow.compare): metrics at the noise floor for exact draws,
flags for shifted draws and missing modes, costs, saving."""
from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("freeflow.metrics")

from freeflow.compare import Report, compare  # noqa: E402
from freeflow.compare.reference.nuts import Reference  # noqa: E402


class Gauss:
    """Correlated Gaussian test target with an exact sampler (protocol of targets.Target)."""

    name = "gauss_test"
    has_exact_sampler = True
    mode_centers = None
    mode_weights = None

    def __init__(self, dim: int = 3) -> None:
        self.dim = dim
        a = torch.linspace(0.5, 1.5, dim, dtype=torch.float64)
        self.L = torch.diag(a) + 0.3 * torch.tril(torch.ones(dim, dim, dtype=torch.float64), -1)
        self.mu = torch.arange(dim, dtype=torch.float64)

    def sample(self, n, generator=None):
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.mu + z @ self.L.T).float()

    def log_prob(self, x):
        z = torch.linalg.solve_triangular(self.L, (x.double() - self.mu).T, upper=False).T
        return -0.5 * (z**2).sum(-1)

    def config(self):
        return {"name": self.name, "dim": self.dim}


class FourModes(Gauss):
    """Equal mixture of 4 Gaussians (std 0.3) at the corners of a square of side 6."""

    name = "four_modes_test"

    def __init__(self) -> None:
        self.dim = 2
        self.mode_centers = torch.tensor([[-3.0, -3.0], [-3.0, 3.0], [3.0, -3.0], [3.0, 3.0]])
        self.mode_weights = torch.full((4,), 0.25)

    def sample(self, n, generator=None):
        k = torch.randint(0, 4, (n,), generator=generator)
        return self.mode_centers[k] + 0.3 * torch.randn(n, 2, generator=generator)

    def assign_modes(self, x):
        return torch.cdist(torch.as_tensor(x).float(), self.mode_centers).argmin(1)

    def log_prob(self, x):
        d = torch.cdist(x.double(), self.mode_centers.double())
        return torch.logsumexp(-0.5 * (d / 0.3) ** 2, dim=1)


class ToySampler:
    """An independent sampler with a training time and exact log q (q = target)."""

    name = "toy"
    train_seconds = 12.5

    def __init__(self, target, shift=0.0):
        self.t, self.shift = target, shift

    def sample(self, n):
        return self.t.sample(n) + self.shift

    def sample_and_log_prob(self, n):
        x = self.t.sample(n)
        return x, self.t.log_prob(x)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_independent_exact_draws_sit_at_the_floor_and_shift_is_flagged(seed):
    t = Gauss(3)
    g = torch.Generator().manual_seed(100 + seed)
    exact = t.sample(1500, g)
    shifted = t.sample(1500, g) + torch.tensor([0.0, 0.4, 0.0])  # 0.4 in coordinate 1 (std ~1.1)
    rep = compare({"exact": exact, "shifted": shifted}, t, n=1500, seed=seed)
    ex, sh = rep["exact"], rep["shifted"]
    assert ex.flags == [], rep.table()
    # At the floor: within the flag factor 3 of the largest floor value, for every metric.
    for k in ("energy_distance", "mmd", "mean_err_max", "std_err_max"):
        assert ex.metrics[k] <= 3 * rep.floors[k]["max"]
    # Shift of ~0.35 reference std: the mean error sees it (floor ~0.05) and so does energy.
    assert sh.metrics["mean_err"][1] == pytest.approx(0.4 / float(exact[:, 1].std()), abs=0.1)
    flagged = " ".join(sh.flags)
    assert "mean_err_max" in flagged and "energy_distance" in flagged, rep.table()


def test_missing_mode_is_flagged_with_mode_masses():
    t = FourModes()
    g = torch.Generator().manual_seed(0)
    x = t.sample(2000, g)
    three = x[t.assign_modes(x) != 0]
    three = torch.cat([three, three[: 2000 - three.shape[0]]])  # refill to n from modes 1..3
    rep = compare({"exact": x, "three modes": three}, t, n=2000)
    assert rep["exact"].flags == [] and rep["exact"].metrics["modes_covered"] == 4
    m = rep["three modes"]
    assert m.metrics["modes_covered"] == 3 and m.metrics["mode_masses"][0] == 0
    assert m.metrics["mode_tv"] == pytest.approx(0.25, abs=0.03)
    assert any("mode_tv" in f for f in m.flags)
    assert rep.floors["mode_tv"]["max"] < 0.05  # multinomial noise of 2000 draws from 4 modes


def _fake_nuts(draws, reasons=()):
    return Reference(
        draws=draws,
        diagnostics={"divergences": 3, "rhat_max": 1.002, "ess_bulk_min": 900.0, "ess_tail_min": 800.0},
        timings={"warmup_s": 2.0, "sampling_s": 4.0, "total_s": 6.0},
        settings={}, reasons=list(reasons), name="NUTS[test]")


def test_nuts_reference_floor_from_chain_splits_and_costs():
    t = Gauss(2)
    g = torch.Generator().manual_seed(3)
    draws = t.sample(4000, g).double().numpy().reshape(4, 1000, 2)
    ref = _fake_nuts(draws, reasons=["R-hat 1.02 > 1.01"])
    sampler = ToySampler(t)
    rep = compare([sampler, ref], ref, n=1000, names=["toy", "nuts"], target=t)
    assert rep.reference["kind"] == "nuts" and not rep.reference["reliable"]
    assert "split" in rep.reference["floor_method"]
    toy, nuts = rep["toy"], rep["nuts"]
    assert toy.costs["train_s"] == 12.5 and toy.costs["ess"] == 1000
    assert toy.costs["s_per_1e4"] > 0 and toy.costs["is_ess_frac"] == pytest.approx(1.0)
    assert nuts.costs["ess"] == 800.0 and nuts.costs["ess_per_s"] == pytest.approx(200.0)
    assert nuts.costs["s_per_1e4"] == pytest.approx(4.0 / 4000 * 1e4)
    assert any("unreliable NUTS run" in f for f in nuts.flags)
    assert "UNRELIABLE" in rep.table()
    assert "energy_distance" not in nuts.metrics and any("is the reference" in x for x in nuts.notes)
    # Exact-i.i.d. toy samples vs this (i.i.d.) fake NUTS reference: at the rescaled floor.
    for k in ("energy_distance", "mmd", "mean_err_max"):
        assert toy.metrics[k] <= 3 * rep.floors[k]["max"], (k, rep.table())


def test_table_save_and_json(tmp_path):
    t = FourModes()
    ref = _fake_nuts(t.sample(2000, torch.Generator().manual_seed(1)).double().numpy().reshape(2, 1000, 2))
    rep = compare({"toy": ToySampler(t), "nuts": ref}, t, n=1000)
    assert isinstance(rep, Report) and rep.reference["kind"] == "exact"
    text = rep.table()
    assert "mode TV" in text and "toy" in text and "noise floors" in text
    out = rep.save(tmp_path / "run")
    files = {p.name for p in out.iterdir()}
    assert {"report.md", "report.json", "pairs_toy.png", "pairs_nuts.png", "modes.png",
            "trace_nuts.png"} <= files
    assert not [f for f in files if f.endswith(".tmp")]
    data = json.loads((out / "report.json").read_text())
    assert data["methods"][0]["name"] == "toy" and math.isfinite(data["methods"][0]["metrics"]["energy_distance"])
    assert "mode_tv" in data["floors"]
    assert (out / "pairs_toy.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_inputs():
    t = Gauss(2)
    x = t.sample(100)
    with pytest.raises(ValueError, match="names"):
        compare([x, x], t, n=50, names=["a"])
    with pytest.raises(ValueError, match="distinct"):
        compare([x, x], t, n=50, names=["a", "a"])
    with pytest.raises(ValueError, match="n must"):
        compare(x, t, n=0)
    with pytest.raises(ValueError, match="fewer than n"):
        compare(x, t, n=500)
    with pytest.raises(TypeError, match="reference"):
        compare(x, "not a reference", n=50)
    nosampler = Gauss(2)
    nosampler.has_exact_sampler = False
    with pytest.raises(ValueError, match="no exact sampler"):
        compare(x, nosampler, n=50)
    with pytest.raises(TypeError, match="sample"):
        compare(object(), t, n=50)


@pytest.fixture
def one_thread():
    """Tiny networks run faster on one thread (no OpenMP hand-offs); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_vi_baseline_learns_a_gaussian_and_reports_is_ess(one_thread):
    pytest.importorskip("normflows")
    from freeflow.compare.baselines import VIBaseline

    t = Gauss(2)
    vi = VIBaseline(t.log_prob, 2, layers=4, hidden=32, flow="realnvp", loc=0.0, scale=1.0, seed=0)
    vi.fit(max_steps=300, lr=3e-3)
    assert vi.steps_done == 300 and vi.train_seconds > 0
    rep = compare(vi, t, n=1000, names="VI")
    m = rep["VI"]
    # A Gaussian is inside the flow family: the fit is close (stated loosely: 0.2 std) and
    # the importance-sampling ESS fraction is high.
    assert m.metrics["mean_err_max"] < 0.2 and m.metrics["std_err_max"] < 0.2, rep.table()
    assert m.costs["is_ess_frac"] > 0.5 and m.costs["train_s"] == vi.train_seconds
    with pytest.raises(ValueError, match="flow"):
        VIBaseline(t.log_prob, 2, flow="nope")
    with pytest.raises(ValueError, match="dim"):
        VIBaseline(t.log_prob, 1)


def test_cli_compare_end_to_end(tmp_path, one_thread):
    targets = pytest.importorskip("targets")
    if not hasattr(targets, "get_target") or "ring8" not in targets.available_targets():
        pytest.skip("needs the targets registry")
    import argparse

    from freeflow.cli.compare import add_compare_subcommand

    parser = argparse.ArgumentParser(prog="freeflow")
    add_compare_subcommand(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "ring8"
    args = parser.parse_args(["compare", "--target", "ring8", "--out", str(out), "--steps", "20",
                              "--n", "300", "--no-nuts", "--vi-seconds", "1", "--vi-flow", "realnvp",
                              "--no-progress", "--no-figures", "--set", "batch_size=256"])
    assert args.func(args) == 0
    data = json.loads((out / "report.json").read_text())
    assert [m["name"] for m in data["methods"]] == ["freeflow", "normflows VI"]
    assert data["reference"]["kind"] == "exact" and (out / "report.md").exists()
    assert data["methods"][0]["costs"]["train_s"] > 0
    with pytest.raises(SystemExit, match="--target"):
        bad = parser.parse_args(["compare", "--target", "nope", "--out", str(out)])
        bad.func(bad)
