"""The default batch from the measured cost of the log-density (freeflow.datafree.cost)."""
import time

import pytest
import torch

import freeflow as ff
from freeflow.datafree import cost


def gaussian(x):
    return -0.5 * (x ** 2).sum(-1)


def slow_gaussian(seconds_per_row):
    """A Gaussian whose evaluation sleeps in proportion to the rows (an expensive likelihood)."""
    calls = []

    def f(x):
        calls.append(x.shape[0])
        time.sleep(seconds_per_row * x.shape[0])
        return gaussian(x)
    f.calls = calls
    return f


def test_batch_for_cost_halves_to_the_budget_and_stops_at_the_floor():
    assert cost.batch_for_cost(1e-6, 1024) == 1024                 # 1 ms per step: unchanged
    assert cost.batch_for_cost(1.5e-4, 1024) == 512                # 0.154 s -> 0.077 s
    assert cost.batch_for_cost(1e-2, 1024) == cost.MIN_AUTO_BATCH  # never below the floor
    assert cost.batch_for_cost(1e-2, 64) == 64                     # nor above a small default


def test_cheap_log_density_keeps_the_default_batch_and_check():
    s = ff.OneStepSampler(gaussian, dim=4)
    assert s.settings["batch_size"] == 1024 and s.settings["check_chains"] is None


def test_expensive_log_density_gets_a_smaller_batch_and_as_many_check_chains():
    f = slow_gaussian(4e-4)       # 0.41 s per 1024 rows
    s = ff.OneStepSampler(f, dim=4)
    assert s.settings["batch_size"] == cost.MIN_AUTO_BATCH
    assert s.settings["check_chains"] == cost.MIN_AUTO_BATCH
    assert cost.PROBE_ROWS in f.calls                # the probe ran (twice: compile, then time)


def test_explicit_batch_size_skips_the_probe():
    f = slow_gaussian(4e-4)
    s = ff.OneStepSampler(f, dim=4, batch_size=512)
    assert s.settings["batch_size"] == 512 and s.settings["check_chains"] is None
    assert cost.PROBE_ROWS not in f.calls


def test_the_probe_is_not_counted_as_training_or_check_work():
    s = ff.OneStepSampler(gaussian, dim=3, generator="mlp")
    assert sum(v["evaluations"] for v in s.cost().values()) == 0


def test_a_probe_that_fails_names_the_log_density():
    def breaks_on_big_batches(x):
        if x.shape[0] > 64:
            raise RuntimeError("out of memory")
        return gaussian(x)
    with pytest.raises(ValueError, match="log_density failed on the cost probe.*out of memory"):
        ff.OneStepSampler(breaks_on_big_batches, dim=4)


def test_a_probe_that_takes_too_long_says_so_and_how_to_skip_it(monkeypatch):
    monkeypatch.setattr(cost, "PROBE_LIMIT_SECONDS", 0.0)
    with pytest.raises(ValueError, match=r"log_density: one value-and-gradient call on 256 rows.*batch_size="):
        ff.OneStepSampler(gaussian, dim=4)


def test_check_chains_is_a_validated_setting():
    with pytest.raises(ValueError, match="check_chains"):
        ff.OneStepSampler(gaussian, dim=4, check_chains=2)


def test_reduced_settings_survive_save_and_load(tmp_path):
    f = slow_gaussian(4e-4)
    s = ff.OneStepSampler(f, dim=4)
    p = s.save(tmp_path / "s.pt")
    f.calls.clear()
    t = ff.OneStepSampler.load(p, f)
    assert t.settings["batch_size"] == s.settings["batch_size"] == cost.MIN_AUTO_BATCH
    assert t.settings["check_chains"] == cost.MIN_AUTO_BATCH
    assert cost.PROBE_ROWS not in f.calls            # the checkpoint's batch, no new probe
    torch.testing.assert_close(t.sample(64, seed=1), s.sample(64, seed=1))
