"""Per-step cost of the recovery snapshot (freeflow.train.recovery) on 32-D samplers.

Before every step the trainer copies generator, EMA, Adam state and the drift's carried state
into buffers allocated once (in place). For a 32-D Gaussian target and three routes —
``product_mixture`` (the default above d = 3), ``flow`` (exact flow generator) and ``mlp``
with ``density="flow"`` (an auxiliary flow whose state is part of the snapshot) — at the
default batch of 1024: train WARMUP steps, then time

* ``take``: ``Snapshot.take`` per step as the trainer calls it: a fused in-place copy of
  generator, EMA and Adam state (``take_fast``, median of TAKES calls), and every
  ``TrainConfig.drift_snapshot_every`` steps instead a full pass that also copies the drift's
  state (``take_full``, median of 20); take = ((every − 1)·take_fast + take_full) / every, and
  ``take_mean_of_calls`` the plain mean over TAKES consecutive steps (scheduling noise included);
* ``drift``: the copy of the drift's state alone (part of ``take_full``), median;
* ``step``: ``Trainer.step`` (the history's ``seconds``), median over STEPS steps;
* ``restore``: ``Snapshot.restore`` (only paid on a failed step), median of 20 calls;

one thread. The overhead per step is take / step.
Writes benchmarks/results/recovery_overhead.json.

    python benchmarks/recovery_overhead.py
"""
from __future__ import annotations

import statistics
import time

import torch
from _common import write_result

import freeflow as ff
from freeflow.train import TrainConfig
from freeflow.train.recovery import Snapshot, copy_into

DIM, WARMUP, STEPS, TAKES = 32, 5, 30, 200
ROUTES = {"product_mixture": {}, "flow": {"generator": "flow"}, "mlp_flow_density": {"density": "flow"}}


def _median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    torch.set_num_threads(1)

    def log_density(x):
        return -0.5 * x.pow(2).sum(-1)

    rows = []
    for name, kw in ROUTES.items():
        s = ff.OneStepSampler(log_density, dim=DIM, seed=0, **kw)
        s.fit(WARMUP, progress=False, check=False)  # Adam state and drift state exist now
        every = TrainConfig().drift_snapshot_every
        args = (s.state, s.trainer.drift, s.generator)
        snap = Snapshot(drift_every=10**9)
        snap.take(*args)  # allocates the buffers (and copies the drift once)
        take_fast = _median_time(lambda: snap.take(*args), TAKES)
        take_full = _median_time(lambda: snap._full(*args), 20)
        drift = _median_time(lambda: copy_into(snap.drift, s.trainer.drift.state_dict()), 20)
        restore = _median_time(lambda: snap.restore(*args), 20)
        snap, step0 = Snapshot(drift_every=every), s.state.step
        calls = []
        for i in range(TAKES):  # as in a run: the step advances between snapshots
            s.state.step = step0 + i
            t0 = time.perf_counter()
            snap.take(*args)
            calls.append(time.perf_counter() - t0)
        s.state.step = step0
        # per step: (every − 1) fast calls and one full pass; the mean of the calls also
        # carries the shared machine's scheduling noise
        take = ((every - 1) * take_fast + take_full) / every
        hist = s.fit(WARMUP + STEPS, progress=False, check=False)
        step = statistics.median(hist["seconds"])
        n_gen = sum(p.numel() for p in s.generator.parameters())
        row = {"route": name, "dim": DIM, "batch_size": s.settings["batch_size"], "generator_params": n_gen,
               "take_ms": 1e3 * take, "take_mean_of_calls_ms": 1e3 * statistics.mean(calls), "take_fast_ms": 1e3 * take_fast, "take_full_ms": 1e3 * take_full,
               "drift_ms": 1e3 * drift, "drift_snapshot_every": every,
               "restore_ms": 1e3 * restore, "step_ms": 1e3 * step, "overhead_percent": 100 * take / step}
        print(row)
        rows.append(row)
    write_result("recovery_overhead", {"rows": rows, "warmup": WARMUP, "steps": STEPS, "takes": TAKES})


if __name__ == "__main__":
    main()
