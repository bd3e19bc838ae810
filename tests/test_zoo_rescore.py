"""benchmarks/posteriors_zoo.py --rescore: a row that stores q's moments is judged again against
the reference as it is now (a reference rebuilt with longer chains after the fits ran)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numpyro")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import posteriors_zoo as pz  # noqa: E402


def _reference(mean, sd):
    return {"unconstrained": {"names": ["a", "b"], "mean": mean, "sd": sd, "kurtosis": [3.0, 3.0]}}


def test_rescore_judges_stored_moments_against_the_rebuilt_reference(tmp_path, monkeypatch):
    q = np.random.default_rng(0).normal([0.0, 1.0], [1.0, 2.0], size=(pz.N_DRAWS, 2))
    old = _reference([0.5, 1.0], [1.0, 2.0])          # a's mean 0.5 sd off: wrong
    row = {"model": "m", "seed": 0, "trusted": True, **pz.compare(q, old, pz.N_DRAWS)}
    assert not row["right"] and row["mean_err_at"] == "a" and abs(row["mean_err_max"] - 0.5) < 0.03
    (tmp_path / "m.json").write_text(json.dumps(_reference([0.0, 1.0], [1.0, 2.0])))   # rebuilt: q is right
    monkeypatch.setattr(pz, "REF_DIR", tmp_path)
    out = tmp_path / "rows.json"
    out.write_text(json.dumps({"rows": [row]}))
    pz.rescore(str(out))
    new = json.loads(out.read_text())["rows"][0]
    assert new["right"] and new["status"] == "right" and new["mean_err_max"] < 0.03 and new["sd_err_max"] < 0.03
    (tmp_path / "m.json").write_text(json.dumps(_reference([0.0, 1.0], [1.0, 2.6])))   # q's sd of b 23 % too narrow
    pz.rescore(str(out))
    new = json.loads(out.read_text())["rows"][0]
    assert not new["right"] and new["status"] == "SILENTLY WRONG" and new["sd_err_at"] == "b"
