"""The trainer's typed step record and the record of a fit() without steps.

* ``StepInfo``: the trainer's fields and the drift's diagnostics in one frozen record that
  reads as a mapping (the readers of the old info dicts keep working); a callback adds a
  diagnostic by returning ``info.with_extra(...)``; checkpoints hold plain dict rows;
* ``AutoRun``: ``AutoStop`` extends the run by a round while the check fails and stops when
  it passes or the budget is spent; a checkpoint's ``auto`` dict (also the string-keyed dict
  of earlier versions) loads as an ``AutoRun``.
"""
import dataclasses
import warnings

import pytest
import torch
from torch import nn

import freeflow as ff
from freeflow.datafree.autostop import AutoRun, AutoStop
from freeflow.train import Callback, History, StepInfo, TrainConfig, Trainer


class Drift:
    """V(x) = 1 − x on 16 noise draws, with one diagnostic."""

    def __call__(self, generator, step, rng, *, total_steps):
        x = generator(torch.randn(16, 2, generator=rng))
        return x, (1.0 - x).detach(), {"beta": 0.5 + step}


def _trainer(callbacks=()):
    torch.manual_seed(0)
    return Trainer(nn.Linear(2, 2), Drift(), TrainConfig(lr=1e-2), seed=0, callbacks=list(callbacks))


def test_step_info_is_a_frozen_record_read_as_a_mapping():
    tr = _trainer()
    state = tr.init()
    state.total_steps = 3
    state, info = tr.step(state)
    assert isinstance(info, StepInfo) and info.step == 1 and info.extra["beta"] == 0.5
    assert list(info) == ["step", "lr", "loss", "grad_norm", "seconds", "recoveries", "beta"]
    assert info["loss"] == info.loss and info.get("beta") == 0.5 and info.get("nope") is None
    assert "recovered_from" not in info and "beta" in info
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.loss = 0.0
    with pytest.raises(TypeError):
        info.extra["beta"] = 1.0
    more = info.with_extra(note="x")
    assert more["note"] == "x" and "note" not in info
    # plain dict rows (checkpoints) round-trip
    row = dict(more)
    assert StepInfo.from_dict(row) == more and History([row])["note"] == ["x"]
    # a drift's name never shadows a trainer field
    assert StepInfo(step=1, lr=0.1, loss=2.0, grad_norm=0.0, seconds=0.0, extra={"loss": 9})["loss"] == 2.0


def test_callback_adds_a_diagnostic_the_history_keeps():
    seen = []

    class Note(Callback):
        def on_step_end(self, trainer, state, info):
            return info.with_extra(even=state.step % 2 == 0)

    class Look(Callback):
        def on_step_end(self, trainer, state, info):
            seen.append(info["even"])

    tr = _trainer([Note(), Look()])
    hist = tr.fit(tr.init(), 4)
    assert seen == [False, True, False, True] and hist["even"] == seen
    assert hist["step"] == [1, 2, 3, 4] and all(isinstance(r, StepInfo) for r in hist)


class FakeSampler:
    """reliability() answers from a script: untrusted ``fails`` times, then trusted."""

    def __init__(self, fails):
        self.fails, self.calls, self.cheap_first = fails, 0, []

    def reliability(self, *, cheap_first=False):
        self.calls += 1
        self.cheap_first.append(cheap_first)
        trusted = self.calls > self.fails
        return ff.Reliability(trusted, [] if trusted else ["not yet"])


@pytest.mark.parametrize("fails,steps,stopped", [(0, 5, 5), (1, 8, 8), (5, 11, 11)])
def test_autostop_adds_rounds_until_trusted_or_budget(fails, steps, stopped):
    run = AutoRun(max_steps=11, round_steps=3, anneal_steps=0)
    tr = _trainer()
    state = tr.init()
    sampler = FakeSampler(fails)
    hist = tr.fit(state, 5, callbacks=[AutoStop(sampler, run)])
    assert state.step == steps and run.stopped_at == stopped and len(hist) == steps
    checks = [r["step"] for r in run.rounds]
    assert checks == [5, 8, 11][:min(fails + 1, 3)]
    # only the last possible round's check is complete; the earlier ones may stop early
    assert sampler.cheap_first == [True, True, False][:len(checks)]
    assert [s for s, v in zip(hist["step"], hist["round_check"]) if v is not None] == checks


def test_auto_record_round_trips_and_old_dicts_load(tmp_path):
    run = AutoRun(max_steps=3000, round_steps=1000, anneal_steps=300, stopped_at=2000,
                  rounds=[{"step": 1000, "trusted": False, "reasons": ["k̂"]}])
    assert AutoRun.from_dict(run.to_dict()) == run
    old = {"max_steps": 3000, "stopped_at": None, "round_steps": 1000, "anneal_steps": 300}
    assert AutoRun.from_dict(old) == AutoRun(3000, 1000, 300)
    with pytest.warns(DeprecationWarning, match="auto.rounds"):
        assert run["rounds"] == run.rounds

    target = lambda x: -0.5 * x.pow(2).sum(-1)
    s = ff.OneStepSampler(target, dim=2, generator="mlp", density="kde", batch_size=64)
    s.fit(2, progress=False, check=False)
    sd = s.state_dict()
    sd["auto"] = old  # a checkpoint written before AutoRun
    torch.save(sd, tmp_path / "old.pt")
    again = ff.OneStepSampler.load(tmp_path / "old.pt", target)
    assert again.auto == AutoRun(3000, 1000, 300) and again.drift.anneal_steps == 300
    s.auto = run
    s.save(tmp_path / "new.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ff.OneStepSampler.load(tmp_path / "new.pt", target).auto == run


def test_the_batch_ess_is_ess_fraction_and_the_old_key_still_reads():
    target = lambda x: -0.5 * x.pow(2).sum(-1)
    s = ff.OneStepSampler(target, dim=2, batch_size=64)
    hist = s.fit(2, progress=False, check=False)
    assert all(0 < v <= 1 for v in hist["ess_fraction"]) and "ess" not in hist[0].extra
    with pytest.warns(DeprecationWarning, match="ess_fraction"):
        assert hist[0]["ess"] == hist[0]["ess_fraction"]
