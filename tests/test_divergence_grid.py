"""The divergence grid (freeflow.compare.divergences) and divergence="auto" (issue 11)."""
import importlib
import json
import math

import numpy as np
import pytest
import torch

import freeflow as ff
from freeflow.datafree.schedule import CoverageSchedule, missing_mass
from targets import get_target

cd = importlib.import_module("freeflow.compare.divergences")
TINY = dict(steps=12, batch_size=64, checkpoints=2, eval_samples=300, progress=False)


# ------------------------------------------------------------------- metrics on exact samples
@pytest.mark.parametrize("name", ["unequal_widths", "imbalanced2", "manywell32"])
def test_mode_metrics_on_exact_samples(name, seed):
    """Exact samples: masses within 4 binomial sds of the weights, U ≈ 0 (< 1e-3; U only grows
    once a mode lacks more than τ = 0.1 of its weight), TV within sampling noise."""
    t = get_target(name)
    n = 20_000
    x = t.sample(n, torch.Generator().manual_seed(seed))
    q, p = cd.region_masses(t, x)
    sd = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(q - p) <= 4 * sd + 1e-12)
    m = cd.mode_metrics(q, p)
    assert m["under_coverage"] < 1e-3
    assert m["mass_tv"] < 4 * sd.max() * q.shape[1]
    assert 0.9 < m["min_mass_ratio"] < 1.1


def test_mode_metrics_see_a_missing_mode():
    """All mass in mode 0 of 0.8/0.2: TV = 0.2, U = 0.2·s_τ(1) = 0.2·(1 − τ/2), EMC = 0."""
    m = cd.mode_metrics(np.array([[1.0, 0.0]]), np.array([[0.8, 0.2]]))
    assert m["mass_tv"] == pytest.approx(0.2)
    assert m["under_coverage"] == pytest.approx(0.2 * (1 - 0.05))
    assert m["emc"] == pytest.approx(0.0)
    assert m["min_mass_ratio"] == 0.0


# ------------------------------------------------------------------------------ the grid
def test_grid_resumes_after_a_kill(tmp_path, monkeypatch):
    """Kill the grid after 2 of 4 cells; rerun with resume: the 2 are reused, the table equals
    an uninterrupted run's."""
    kw = dict(divergences=["kl_qp", "kl_pq"], targets=["imbalanced2:separation=4"],
              generators=["default"], seeds=[0, 1], **TINY)
    full = cd.compare_divergences(out=tmp_path / "full", **kw)
    real = cd.run_cell
    calls = {"n": 0}

    def dying(*a, **k):
        if calls["n"] == 2:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(cd, "run_cell", dying)
    with pytest.raises(KeyboardInterrupt):
        cd.compare_divergences(out=tmp_path / "killed", **kw)
    monkeypatch.setattr(cd, "run_cell", real)
    assert len(list((tmp_path / "killed" / "cells").glob("*.json"))) == 2
    with pytest.raises(ValueError, match="resume"):  # nothing is overwritten without resume
        cd.compare_divergences(out=tmp_path / "killed", **kw)
    again = cd.compare_divergences(out=tmp_path / "killed", resume=True, **kw)
    assert (again.reused, again.computed) == (2, 2)

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]

    assert strip(again.rows) == strip(full.rows)
    table = json.loads((tmp_path / "killed" / "table.json").read_text())
    assert len(table["rows"]) == 4 * TINY["checkpoints"]
    header = (tmp_path / "killed" / "table.csv").read_text().splitlines()[0].split(",")
    for col in ("target", "divergence", "seed", "step", "mass_tv", "emc", "under_coverage",
                "energy_distance", "energy_floor", "log_z_error"):
        assert col in header


def test_a_cell_whose_training_stops_records_the_reason():
    """ring8's log-density turns NaN for good after its 8th call of training (the probe, one per
    step and the evaluation at step 4: between steps 4 and 8; the Gaussian stage's scale check
    before training, which keeps ring8 at unit scale, makes its own calls first): the fit stops
    there without an exception (the failing step is retried, then given up); the cell keeps its
    checkpoint at step 4 and ends with a row naming the step and the failure."""
    from freeflow.datafree.gaussian_stage import badly_scaled
    t = get_target("ring8")
    calls, real = {"n": 0}, t.log_prob

    def counting(x):
        calls["n"] += 1
        return real(x)
    assert badly_scaled(counting, 2) == ""
    before_training, calls["n"] = calls["n"], 0

    def flaky(x):
        calls["n"] += 1
        return real(x) * math.nan if calls["n"] > 8 + before_training else real(x)

    t.log_prob = flaky
    cell = {"target": "ring8", "generator": "transport", "divergence": "kl_qp", "seed": 0, "steps": 12,
            "batch_size": 64, "checkpoints": 3, "eval_samples": 300}
    with torch.no_grad():
        ref = get_target("ring8").sample(300, torch.Generator().manual_seed(0))
    out = cd.run_cell(cell, t, ref, 0.1, [4, 8, 12])
    rows = out["rows"]
    assert [r.get("step") for r in rows[:-1]] == [4] and "error" not in rows[0]
    assert rows[-1]["error"].startswith("TrainingStopped: training stopped at step ")
    assert "log_density returned NaN" in rows[-1]["error"] and rows[-1]["step"] < 8


def test_grid_rows_along_training(tmp_path):
    """Every cell is evaluated at its checkpoints; transport = the flow generator (log Ẑ error
    available, finite)."""
    st = cd.compare_divergences(["auto", "lv:gaussian"], ["ring8"], generators=["transport"], seeds=[3],
                                out=tmp_path, **TINY)
    assert [r["step"] for r in st.rows] == [6, 12, 6, 12]
    assert all(math.isfinite(r["log_z_error"]) and 0 <= r["mass_tv"] <= 1 for r in st.rows)
    assert all(r["energy_floor"] > 0 for r in st.rows)
    figs = importlib.import_module("freeflow.compare.divergence_figures")
    paths = figs.write_figures(st)
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)


@pytest.mark.parametrize("kwargs, match", [
    (dict(divergences=["kl_pqq"]), r"did you mean 'kl_pq'.*valid:"),
    (dict(divergences=["lv:nope"]), r"lv:on_policy"),
    (dict(targets=["ring9"]), r"did you mean 'ring8'"),
    (dict(targets=["imbalanced2:separation=x"]), r"separation"),
    (dict(generators=["mlp"]), r"valid: default, transport"),
    (dict(seeds=[]), r"seeds: the list is empty"),
    (dict(divergences=[]), r"divergences: the list is empty"),
    (dict(steps=0), r"steps"),
])
def test_grid_bad_input_before_training(tmp_path, monkeypatch, kwargs, match):
    monkeypatch.setattr(cd, "run_cell", lambda *a, **k: pytest.fail("trained before checking input"))
    base = dict(divergences=["kl_qp"], targets=["ring8"], seeds=[0], out=tmp_path, progress=False)
    with pytest.raises(ValueError, match=match):
        cd.compare_divergences(**{**base, **kwargs})


def test_grid_unwritable_out(tmp_path, monkeypatch):
    monkeypatch.setattr(cd, "run_cell", lambda *a, **k: pytest.fail("trained before checking out"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="out: cannot write"):
        cd.compare_divergences(["kl_qp"], ["ring8"], seeds=[0], out=blocker / "sub", progress=False)


def test_cli_compare_divergences_errors(tmp_path, capsys):
    from freeflow.cli.main import main

    assert main(["compare-divergences", "--out", str(tmp_path), "--divergences", "kl_qpp", "--quick"]) == 2
    assert "valid:" in capsys.readouterr().err


# ----------------------------------------------------------------------- divergence="auto"
def test_missing_mass_estimates_total_variation():
    """Û = mean (r − 1)₊ over x ~ q is ∫(p − q)₊: q = N(0,1), p = N(1,1): 2Φ(1/2) − 1."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400_000, generator=g, dtype=torch.float64)
    log_r = -0.5 * (x - 1) ** 2 + 0.5 * x ** 2
    tv = math.erf(0.5 / math.sqrt(2))
    assert missing_mass(log_r) == pytest.approx(tv, abs=0.005)


def test_schedule_switches_once_at_beta_one_after_patience():
    s = CoverageSchedule(threshold=0.05, patience=3, smoothing=1.0)
    covered = torch.zeros(100)
    missing = torch.cat([torch.full((80,), math.log(0.5)), torch.full((20,), math.log(3.0))])
    assert s.update(missing, 1.0, 0).name == "kl_pq"          # Û = 0.4
    for k in range(1, 4):
        assert s.update(covered, 0.5, k).name == "kl_pq"       # still annealing
    for k in range(4, 6):
        assert s.update(covered, 1.0, k).name == "kl_pq"
    assert s.update(covered, 1.0, 6).name == "kl_qp"
    assert s.switched_at == 6
    assert s.update(missing, 1.0, 7).name == "kl_qp"           # one-way
    t = CoverageSchedule()
    t.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert t.current.name == "kl_qp" and t.switched_at == 6


def test_auto_sampler_resumes_with_its_schedule(tmp_path):
    """divergence="auto" through save/load: the schedule state travels in the checkpoint."""
    t = get_target("imbalanced2", separation=4.0)
    a = ff.OneStepSampler(t, divergence="auto", seed=0, batch_size=64)
    a.fit(40, progress=False, check=False)
    b = ff.OneStepSampler(t, divergence="auto", seed=0, batch_size=64)
    saved = {}

    class SaveAt20(ff.train.Callback):
        def on_step_end(self, trainer, state, info):
            if state.step == 20:
                b.save(tmp_path / "ck.pt")
                saved.update(b.drift.schedule.state_dict())

    b.fit(40, progress=False, check=False, callbacks=[SaveAt20()])
    c = ff.OneStepSampler.load(tmp_path / "ck.pt", t)
    assert c.steps_done == 20 and c.drift.schedule.state_dict() == saved
    c.fit(40, progress=False, check=False)
    for pa, pc in zip(a.generator.parameters(), c.generator.parameters()):
        assert torch.equal(pa, pc)
    assert a.drift.schedule.state_dict() == c.drift.schedule.state_dict()
    assert "missing_mass" in a.history[-1] and a.history[-1]["divergence"] == "kl_pq"
