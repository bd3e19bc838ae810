"""Where a default training step spends its time, before and after issue 10 (cProfile).

    python benchmarks/step_profile.py            # -> benchmarks/results/step_profile.json

Configurations (200 profiled steps after 20 warm-up steps, 2 threads):
  ring8/before       MLP generator + KDE of q (the d ≤ 3 default before)
  ring8/after        mixture generator, exact log q, Fisher–Rao step and births (default now)
  manywell32/before  RealNVP flow generator (the d > 3 default before)
  manywell32/after   product mixture + 4-layer flow (default now)
Each part is the cumulative time of the function(s) named beside it, per step in ms.
"""
from __future__ import annotations

import cProfile
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

import freeflow as ff  # noqa: E402
import targets  # noqa: E402

PARTS = {
    "generator forward": [("generators/mlp.py", "forward"), ("generators/flow.py", "forward"),
                          ("generators/mixture.py", "forward")],
    "log q and its score": [("kde.py", "log_prob_and_score"), ("generators/flow.py", "log_prob_and_score"),
                            ("generators/mixture.py", "log_prob_and_score"), ("kde.py", "fit")],
    "log p and its score": [("validation.py", "log_density_and_score")],
    "reaction (Fisher-Rao + births)": [("datafree/reaction.py", "__call__")],
    "  of which births": [("datafree/reaction.py", "_birth")],
    "backward": [("_tensor.py", "backward")],
    "optimizer step": [("optimizer.py", "wrapper")],
    "EMA": [("generators/mlp.py", "update")],
}
CONFIGS = {
    "ring8/before": ("ring8", dict(generator="mlp", density="kde")),
    "ring8/after": ("ring8", {}),
    "manywell32/before": ("manywell32", dict(generator="flow")),
    "manywell32/after": ("manywell32", {}),
}


def run(target_name: str, kw: dict, steps: int = 200) -> dict:
    t = targets.get_target(target_name)
    s = ff.OneStepSampler(t.log_prob, dim=t.dim, seed=0, **kw)
    s.fit(1000, progress=False, check=False, callbacks=[_StopAt(20)])
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    s.fit(1000, progress=False, check=False, callbacks=[_StopAt(20 + steps)])
    pr.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(pr).stats
    out = {"generator": s.generator_name, "ms_per_step": 1000 * wall / steps}
    for part, keys in PARTS.items():
        cum = 0.0
        for (file, _line, fn), (_cc, _nc, _tt, ct, _callers) in stats.items():
            if any(file.endswith(f) and fn == name for f, name in keys):
                cum += ct
        out[part] = 1000 * cum / steps
    return out


class _StopAt(ff.train.trainer.Callback):
    """Ends a fit early by shortening the state's schedule bound (the lr schedule is unchanged
    for the steps that ran, since total_steps is read at each step)."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, trainer, state, info):
        if state.step >= self.at:
            state.total_steps = state.step


def main():
    torch.set_num_threads(2)
    rows = {}
    for name, (target, kw) in CONFIGS.items():
        rows[name] = run(target, kw)
        print(name, {k: round(v, 2) if isinstance(v, float) else v for k, v in rows[name].items()}, flush=True)
    write_result("step_profile", {"rows": rows, "parts": {k: [f"{f}:{n}" for f, n in v] for k, v in PARTS.items()}})


if __name__ == "__main__":
    main()
