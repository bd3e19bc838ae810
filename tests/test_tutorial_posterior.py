"""docs/tutorial-posterior.md runs end to end: every Python block, in order, in one namespace,
with short fits (benchmarks/tutorial_posterior.py --quick); then the objects it made are
checked (freeflow and NUTS in one arviz layout, side_by_side, save/load)."""
from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import freeflow as ff

pytest.importorskip("numpyro")
pytest.importorskip("blackjax")
pytest.importorskip("pymc")
pytest.importorskip("sklearn")
az = pytest.importorskip("arviz")
pd = pytest.importorskip("pandas")

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "tutorial-posterior.md"


def _runner():
    spec = importlib.util.spec_from_file_location("tutorial_posterior", ROOT / "benchmarks" / "tutorial_posterior.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("tutorial_posterior", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory):
    out = tmp_path_factory.mktemp("tutorial")
    records, namespace = _runner().main(["--quick", "--out", str(out / "t.json"), "--figures", str(out / "figs")])
    return records, namespace, out


def test_every_block_ran_and_made_its_figures(tutorial):
    records, _, out = tutorial
    runner = _runner()
    text = DOC.read_text()
    assert len(records) == len(runner.code_blocks(text)) >= 10
    named = re.findall(r"#\s*figure:\s*(\S+)", text)
    assert named and sorted(sum((r["figures"] for r in records), [])) == sorted(named)
    for name in named:
        png = out / "figs" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert f"figures/{name}" in text  # the doc shows it
    outputs = "\n".join(r["stdout"] for r in records)
    for marker in ("freeflow verdict:", "log_likelihood", "posterior_predictive", "elpd_loo", "P(tau < 1)",
                   "more steps;", "x[0]", "Number of divergences"):
        assert marker in outputs


def test_doc_outputs_are_filled_in():
    """Every block that prints is followed by its output (written by --update-doc)."""
    text = DOC.read_text()
    assert "(filled in by the script)" not in text
    for match in _runner().code_blocks(text):
        if "print" in match.group(1):
            assert match.group(2) is not None, match.group(1)[:80]


def test_same_layout_and_side_by_side(tutorial):
    _, ns, _ = tutorial
    a, b = ns["idata"], ns["idata_nuts"]
    assert {"mu", "tau", "eta", "theta"} <= set(a.posterior.data_vars) == set(b.posterior.data_vars)
    for v in ("mu", "tau", "eta", "theta"):
        assert a.posterior[v].dims == b.posterior[v].dims
    assert a.posterior.sizes["chain"] == 4 and a.posterior.sizes["draw"] == 1000
    assert {"log_likelihood", "posterior_predictive"} <= set(a.groups()) and "log_likelihood" in b.groups()
    table = ff.bayes.side_by_side(a, b)
    assert list(table.columns) == ["freeflow mean", "freeflow sd", "NUTS mean", "NUTS sd", "mean diff", "sd diff"]
    assert table.index[0] == "mu" and table.index[1] == "tau" and table.index[2].startswith("eta[")
    mu_a, mu_b = a.posterior["mu"].values.ravel(), b.posterior["mu"].values.ravel()
    row = table.loc["mu"]
    assert math.isclose(row["mean diff"], (mu_a.mean() - mu_b.mean()) / mu_b.std(ddof=1), rel_tol=1e-9)
    assert math.isclose(row["sd diff"], (mu_a.std(ddof=1) - mu_b.std(ddof=1)) / mu_b.std(ddof=1), rel_tol=1e-9)
    same = ff.bayes.side_by_side(a, a)
    assert np.allclose(same[["mean diff", "sd diff"]].to_numpy(), 0.0)
    with pytest.raises(ValueError, match="not in the"):
        ff.bayes.side_by_side(a, b, var_names=["nope"])
    (dim,) = [d for d in b.posterior["eta"].dims if d not in ("chain", "draw")]
    with pytest.raises(ValueError, match="dims"):
        ff.bayes.side_by_side(a, b.isel(**{dim: slice(0, 4)}), var_names=["eta"])
    # the PyMC model's dims reach both InferenceData (the NUTS draws came from the NumPyro twin)
    assert ns["idata_lr"].posterior["w"].dims == ns["idata_lr_nuts"].posterior["w"].dims == ("chain", "draw", "coef")


def test_save_load_round_trip(tutorial, tmp_path):
    _, ns, _ = tutorial
    sampler = ns["sampler"]
    path = sampler.save(tmp_path / "eight_schools.pt")
    loaded = ff.OneStepSampler.load(path, sampler.posterior)
    assert torch.equal(sampler.sample_unconstrained(50, seed=3), loaded.sample_unconstrained(50, seed=3))
    draws = loaded.sample(100)
    assert set(draws) == {"mu", "tau", "eta", "theta"} and tuple(draws["theta"].shape) == (100, 8)
    assert (draws["tau"] > 0).all()
