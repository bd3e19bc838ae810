"""A NaN/inf in a step never aborts a fit (freeflow.train.recovery).

* trainer level: a step that fails after it has moved the parameters (inside the JKO inner
  loop) is undone exactly (generator, EMA and Adam state equal the pre-step ones bit for bit),
  the learning rate halves, the retry draws new noise; too many failures in a row stop the
  loop cleanly with ``state.failure`` and a TrainingStoppedWarning;
* OneStepSampler: a log-density that turns NaN (value and gradient) on the half-space x₀ > 0
  after step 50 ends with samples and a "do not trust" verdict naming the failure, no
  exception; a single bad step is recovered and the fit on N(0, I) still ends trusted.
"""
import copy
import math
import warnings

import pytest
import torch
from torch import nn

import freeflow as ff
from freeflow.reliability import ReliabilityWarning
from freeflow.train import TrainConfig, Trainer, TrainingStoppedWarning, lr_at

NOISE, N = 3, 64


class LinearGenerator(nn.Module):
    """G_Θ(z) = [z, 1] Θ (float64), with a buffer to check that buffers are restored too."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.theta = nn.Parameter(torch.randn(NOISE + 1, 2, generator=g, dtype=torch.float64))
        self.register_buffer("calls", torch.zeros((), dtype=torch.float64))

    def forward(self, z):
        self.calls += 1  # a side effect on a buffer, undone with the rest
        return torch.cat([z.double(), torch.ones(z.shape[0], 1, dtype=torch.float64)], 1) @ self.theta


class FlakyDrift:
    """V(x) = μ − x on N noise draws; its call number ``fail_at`` (and every later one if
    ``persist``) returns a NaN velocity. Records the noise of every call."""

    def __init__(self, fail_at=None, persist=False):
        self.fail_at, self.persist, self.noise = fail_at, persist, []

    def __call__(self, generator, step, rng, *, total_steps, update=True):
        z = torch.randn(N, NOISE, generator=rng)
        self.noise.append(z)
        x = generator(z)
        v = torch.tensor([1.0, -2.0], dtype=torch.float64) - x.detach()
        n = len(self.noise)
        if self.fail_at is not None and (n == self.fail_at or (self.persist and n > self.fail_at)):
            v = v * float("nan")
        return x, v, {}


def _tensors(tree, prefix=""):
    """Flatten a state-dict tree into {path: tensor or value}."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_tensors(v, f"{prefix}/{k}"))
        return out
    if isinstance(tree, (list, tuple)):
        out = {}
        for i, v in enumerate(tree):
            out.update(_tensors(v, f"{prefix}/{i}"))
        return out
    return {prefix: tree}


def _assert_same(a, b):
    fa, fb = _tensors(a), _tensors(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        if isinstance(fa[k], torch.Tensor):
            assert torch.equal(fa[k], fb[k]), k
        else:
            assert fa[k] == fb[k], k


def test_failed_step_is_undone_exactly_and_retried_with_new_noise_and_half_the_lr():
    """JKO with 4 inner steps: call 23 is the 3rd inner call of step 5 (5 × 4 + 3), i.e. after
    two inner optimiser steps. The failed attempt is undone bit for bit; the retry sees other
    noise and half the scheduled learning rate; training then runs to the end."""
    cfg = TrainConfig(lr=0.05, step="jko", jko_inner=4, max_recoveries=3)
    drift = FlakyDrift(fail_at=23)
    trainer = Trainer(LinearGenerator(), drift, cfg, seed=0)
    state = trainer.init()
    trainer.fit(state, 5)
    before = copy.deepcopy({k: v for k, v in trainer.state_dict(state).items() if k != "rng"})
    rng_before = state.rng.get_state()

    # the same failure with no retry allowed: the loop stops at the pre-step state
    stopped = copy.deepcopy(trainer)
    stopped_state = copy.deepcopy(state)
    stopped.config = TrainConfig(lr=0.05, step="jko", jko_inner=4, max_recoveries=0)
    stopped.generator = stopped_state.generator
    with pytest.warns(TrainingStoppedWarning, match=r"stopped at step 5 of 8 after 1 failed attempt.*"
                                                    r"non-finite velocity at step 5 \(JKO inner step 3 of 4\)"):
        hist = stopped.fit(stopped_state, 8)
    assert len(hist) == 0 and stopped_state.step == 5 and stopped_state.recoveries == 0
    assert "non-finite velocity" in stopped_state.failure
    after = {k: v for k, v in stopped.state_dict(stopped_state).items() if k != "rng"}
    for key in ("generator", "ema", "optimizer"):
        _assert_same(before[key], after[key])
    assert not torch.equal(stopped_state.rng.get_state(), rng_before)  # the noise was drawn

    # with retries: one recovery, the retry at half the rate, new noise
    hist = trainer.fit(state, 8)
    assert state.failure is None and state.step == 8 and state.recoveries == 1
    assert [row["recoveries"] for row in hist] == [1, 1, 1]
    assert "non-finite velocity at step 5" in hist[0]["recovered_from"]
    assert hist[0]["lr"] == pytest.approx(lr_at(5, 8, cfg) * 0.5, rel=1e-12)
    assert not torch.equal(drift.noise[20], drift.noise[23])  # the retry's noise is new
    assert all(torch.isfinite(p).all() for p in state.generator.parameters())
    assert state.lr_factor == pytest.approx(0.5 * 2 ** (3 / 100), rel=1e-12)  # growing back


def test_failures_in_a_row_stop_the_loop_cleanly_at_the_last_good_state(tmp_path):
    """Every call from the 4th on fails: max_recoveries=4 retries, the 5th failure stops the loop
    at step 3 with the reason, the lr factor halved 4 times, and the checkpoint written at the
    end holds the last good state (it loads, finite, at step 3, with the failure recorded)."""
    cfg = TrainConfig(lr=0.05, max_recoveries=4)
    trainer = Trainer(LinearGenerator(), FlakyDrift(fail_at=4, persist=True), cfg, seed=0)
    state = trainer.init()
    trainer.fit(state, 3)
    good = copy.deepcopy(trainer.state_dict(state)["generator"])
    path = tmp_path / "ck.pt"
    ck = ff.train.Checkpoint(path, lambda p: torch.save(trainer.state_dict(state), p), every=100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hist = trainer.fit(state, 10, callbacks=[ck])
    stops = [w for w in caught if issubclass(w.category, TrainingStoppedWarning)]
    assert len(stops) == 1 and "checkpoint" in str(stops[0].message)
    assert len(hist) == 0 and state.step == 3 and state.recoveries == 4
    assert state.failure.startswith("training stopped at step 3 of 10 after 5 failed attempt(s) in a row")
    assert state.lr_factor == pytest.approx(0.5**4, rel=1e-12)
    _assert_same(good, trainer.state_dict(state)["generator"])
    saved = torch.load(path, weights_only=True)
    assert saved["step"] == 3 and saved["failure"].startswith("training stopped")
    _assert_same(good, saved["generator"])
    # the recovery counters survive a checkpoint round trip
    fresh = Trainer(LinearGenerator(), FlakyDrift(), cfg, seed=0)
    st = fresh.load_state_dict(fresh.init(), saved)
    assert (st.recoveries, st.lr_factor, st.failure) == (4, state.lr_factor, saved["failure"])


@pytest.mark.parametrize("kw, exc, pattern", [
    (dict(max_recoveries=-1), ValueError, "max_recoveries"),
    (dict(max_recoveries=2.0), TypeError, "max_recoveries"),
    (dict(recovery_lr_factor=0.0), ValueError, "recovery_lr_factor"),
    (dict(recovery_lr_factor=1.5), ValueError, "recovery_lr_factor"),
    (dict(min_lr_factor=float("nan")), ValueError, "min_lr_factor"),
    (dict(recovery_lr_steps=0), ValueError, "recovery_lr_steps"),
])
def test_bad_recovery_settings_named(kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        TrainConfig(**kw)


# -- OneStepSampler ----------------------------------------------------------------------------

SMALL = dict(batch_size=128, reference_size=128)


class _ArmAt(ff.train.Callback):
    def __init__(self, step, flag):
        self.step, self.flag = step, flag

    def on_step_end(self, trainer, state, info):
        if state.step == self.step:
            self.flag["on"] = True


@pytest.mark.parametrize("seed", [0, 1])
def test_log_density_nan_on_a_half_space_ends_untrusted_without_exception(seed):
    """Target N((1, 0), I); from step 50 on, log p̃ and its gradient are NaN where x₀ > 0 (84% of
    the target's mass, ~80% of the generator's then): every batch has more than MAX_OUTSIDE
    of its samples outside, so step 50 fails 21 times in a row and training stops there.
    The fit returns, the samples are finite, the verdict is "do not trust" with the failure
    as its first reason, and both warnings are issued."""
    flag = {"on": False}
    mu = torch.tensor([1.0, 0.0])

    def log_density(x):
        out = -0.5 * (x - mu).pow(2).sum(-1)
        if flag["on"]:  # NaN value and gradient on the half-space only
            out = out * torch.where(x[:, 0] > 0, math.nan, 1.0)
        return out

    s = ff.OneStepSampler(log_density, dim=2, seed=seed, **SMALL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hist = s.fit(150, progress=False, callbacks=[_ArmAt(50, flag)])
    kinds = {w.category for w in caught}
    assert TrainingStoppedWarning in kinds and ReliabilityWarning in kinds
    assert s.steps_done == 50 and len(hist) == 50
    assert s.state.recoveries == 20 and s.state.lr_factor == pytest.approx(1e-3)
    rep = s.last_reliability
    assert rep.trusted is False
    assert rep.reasons[0] == s.state.failure and "log_density returned NaN" in rep.reasons[0]
    assert rep.verdict.startswith("do not trust these samples: training stopped at step 50")
    x = s.sample(1000, seed=0)
    assert x.shape == (1000, 2) and torch.isfinite(x).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_one_bad_step_is_recovered_and_the_fit_ends_trusted(seed):
    """N(0, I) whose log-density returns NaN everywhere exactly once (the first call of step
    30): one recovery, the fit continues to 200 steps and the reliability check passes."""
    flag = {"on": False}

    def log_density(x):
        out = -0.5 * x.pow(2).sum(-1)
        if flag["on"]:
            flag["on"] = False
            return out * math.nan
        return out

    s = ff.OneStepSampler(log_density, dim=2, seed=seed, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingStoppedWarning)
        hist = s.fit(200, progress=False, callbacks=[_ArmAt(30, flag)])
    assert s.state.failure is None and s.steps_done == 200
    assert s.state.recoveries == 1
    assert hist["recoveries"][:31] == [0] * 30 + [1] and hist["recoveries"][-1] == 1
    assert "log_density returned NaN or +inf for 128 of 128 samples at step 30" in hist[30]["recovered_from"]
    assert s.last_reliability.trusted is True, s.last_reliability.verdict


def test_image_training_that_stopped_early_exits_with_status_2(tmp_path, monkeypatch, capsys):
    """`freeflow images train`: a run whose steps kept failing stops at its last good state, and
    the command says so on one line and exits with status 2 (as a NaN did before recovery)."""
    import freeflow.images.train as image_train

    class Stopped:
        def __init__(self, cfg, **kw):
            self.state = type("S", (), {"failure": None})()

        def fit(self, out, **kw):
            self.state.failure = "training stopped at step 7 of 10 after 21 failed attempt(s) in a row"

    monkeypatch.setattr(image_train, "ImageRun", Stopped)
    assert image_train.main(["--config", "digits", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("freeflow images train: error: training stopped at step 7 of 10")
