"""`freeflow sample` end to end on a tiny budget, resume, and bad arguments."""
import json

import numpy as np
import pytest

from freeflow.cli import main

TINY = ["--set", "hidden=16", "--set", "depth=1", "--set", "batch_size=64", "--set", "reference_size=64",
        "--samples", "400", "--no-progress"]


def test_sample_writes_everything(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sample", "--target", "banana", "--steps", "12", "--out", str(out), *TINY]) == 0
    for name in ("sampler.pt", "log.jsonl", "samples.npy", "samples.png", "history.png", "metrics.json"):
        assert (out / name).exists(), name
    assert np.load(out / "samples.npy").shape == (400, 2)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 12 and metrics["energy_distance"] >= 0 and "noise_floor" in metrics
    assert len((out / "log.jsonl").read_text().splitlines()) == 12
    # resume continues the same run to a longer schedule
    assert main(["sample", "--target", "banana", "--steps", "15", "--out", str(out), "--resume", *TINY]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 15


def test_time_limit_ends_training_early_and_says_so(tmp_path):
    out = tmp_path / "t"
    assert main(["sample", "--target", "banana", "--steps", "100000", "--time-limit", "2", "--out", str(out),
                 *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 1 <= metrics["steps"] < 100000 and "time_limit=2" in metrics["stopped_early"]


def test_pairwise_figure_above_two_dimensions(tmp_path):
    out = tmp_path / "f"
    assert main(["sample", "--target", "funnel10", "--steps", "3", "--out", str(out), *TINY]) == 0
    assert (out / "samples.png").stat().st_size > 10_000


@pytest.mark.parametrize("argv,match", [
    (["sample", "--target", "nope", "--out", "x"], "--target"),
    (["sample", "--target", "ring8", "--steps", "0", "--out", "x"], "--steps"),
    (["sample", "--target", "ring8", "--set", "batch_size=0", "--steps", "2", "--out", "x"], "batch_size"),
    (["sample", "--target", "ring8", "--time-limit", "0", "--out", "x"], "--time-limit"),
])
def test_bad_arguments(argv, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=match):
        main(argv)
