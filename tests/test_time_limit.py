"""fit(time_limit=): training ends at the first step past the limit, with samples, a verdict and
a resumable run; bad values are refused by name."""
import math
import warnings

import pytest
import torch

import freeflow as ff
from freeflow.train import Callback, TimeLimit


def gauss(x):
    return -0.5 * (x ** 2).sum(-1)


class SlowStep(Callback):
    """Makes every step take at least ``seconds`` (a stand-in for an expensive log-density)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def on_step_end(self, trainer, state, info):
        import time
        time.sleep(self.seconds)


def test_time_limit_stops_with_samples_and_a_verdict_then_resumes(tmp_path):
    s = ff.OneStepSampler(gauss, dim=2, seed=0, batch_size=128)
    ckpt = tmp_path / "run.pt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s.fit(steps=400, time_limit=0.5, callbacks=[SlowStep(0.02)], progress=False, checkpoint=ckpt)
    # 0.5 s at >= 20 ms a step: stopped after at most ~25 steps (and at least one)
    assert 1 <= s.steps_done < 100
    assert s.state.total_steps == 400                     # the schedule is kept
    assert s.stop_reason is not None and "time_limit=0.5" in s.stop_reason
    assert f"at step {s.steps_done} of 400" in s.stop_reason
    assert any("time_limit" in str(w.message) for w in caught)
    assert s.last_reliability is not None                 # a verdict on the draws as they are
    x = s.sample(500)
    assert x.shape == (500, 2) and bool(torch.isfinite(x).all())
    # the checkpoint holds the stopped state (on_fit_end ran)
    loaded = ff.OneStepSampler.load(ckpt, gauss)
    assert loaded.steps_done == s.steps_done
    # fit() with the same length resumes to the end; no stop reason then
    s.fit(steps=400, progress=False, check=False)
    assert s.steps_done == 400 and s.stop_reason is None


def test_time_limit_callback_alone():
    """TimeLimit asks the trainer to stop; a limit never reached changes nothing."""
    s = ff.OneStepSampler(gauss, dim=2, seed=1, batch_size=64)
    s.fit(steps=30, callbacks=[TimeLimit(3600.0)], progress=False, check=False)
    assert s.steps_done == 30 and s.trainer.stop_reason is None


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "10", True])
def test_time_limit_bad_values_are_refused_by_name(bad):
    s = ff.OneStepSampler(gauss, dim=2, seed=0, batch_size=64)
    with pytest.raises((ValueError, TypeError), match="time_limit"):
        s.fit(steps=10, time_limit=bad, progress=False)
    assert s.steps_done == 0


def test_time_limit_in_an_automatic_run_leaves_it_resumable():
    s = ff.OneStepSampler(gauss, dim=2, seed=2, batch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.fit(time_limit=0.3, callbacks=[SlowStep(0.02)], progress=False)
    assert 1 <= s.steps_done < s.state.total_steps
    assert not s.auto.done and s.last_reliability is not None
    assert s.last_reliability.trusted is not None         # judged (exact log q), whatever the outcome


def test_ff_sample_passes_time_limit_to_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata, s = ff.sample(gauss, draws=50, chains=2, dim=2, seed=0, batch_size=64, steps=5000, time_limit=0.5,
                             progress=False, return_sampler=True, callbacks=[SlowStep(0.02)])
    assert s.steps_done < 5000 and s.stop_reason is not None
    assert idata.posterior.sizes["draw"] == 50
    assert "time_limit=0.5" in idata.posterior.attrs["stopped_early"]
