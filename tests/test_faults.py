"""Faults lose nothing (issue 15): a real `freeflow sample` killed with SIGKILL after its first
checkpoint resumes to the same final parameters bit for bit; truncated, foreign and
other-dimension checkpoints are refused with a clear error."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import freeflow as ff

ARGS = ["sample", "--target", "banana", "--steps", "300", "--checkpoint-every", "20", "--no-progress",
        "--samples", "100", "--set", "hidden=16", "--set", "depth=1", "--set", "batch_size=64",
        "--set", "reference_size=64"]


def _cli(out, *extra) -> list[str]:
    code = "import sys; from freeflow.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *ARGS, "--out", str(out), *extra]


def _generator_params(path) -> dict:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    return ck["trainer"]["generator"]


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_cli(straight), check=True, env=env, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "sampler.pt"
    t0 = time.time()
    while not ckpt.exists() and proc.poll() is None and time.time() - t0 < 300:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; lengthen --steps"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step_at_kill = torch.load(ckpt, map_location="cpu", weights_only=True)["trainer"]["step"]
    assert 0 < step_at_kill < 300
    r = subprocess.run(_cli(killed, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    a, b = _generator_params(straight / "sampler.pt"), _generator_params(ckpt)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"parameter {k} differs after kill -9 and --resume"


def _small(tmp_path):
    s = ff.OneStepSampler(lambda x: -0.5 * (x**2).sum(-1), dim=2, batch_size=32, hidden=16, depth=1)
    s.fit(3, progress=False, check=False)
    return s, s.save(tmp_path / "s.pt")


def test_truncated_checkpoint_refused(tmp_path):
    _, path = _small(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot be read"):
        ff.OneStepSampler.load(path, lambda x: -0.5 * (x**2).sum(-1))


def test_foreign_checkpoint_refused(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a freeflow OneStepSampler checkpoint"):
        ff.OneStepSampler.load(tmp_path / "other.pt", lambda x: -0.5 * (x**2).sum(-1))


def test_checkpoint_for_another_dimension_refused(tmp_path):
    _, path = _small(tmp_path)
    mean = torch.ones(3)

    def three_d(x):
        return -0.5 * ((x - mean) ** 2).sum(-1)

    with pytest.raises(ValueError, match="log_density"):
        ff.OneStepSampler.load(path, three_d)
