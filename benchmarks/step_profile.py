"""Where a default training step spends its time, before and after issue 10 (cProfile).

    python benchmarks/step_profile.py            # -> benchmarks/results/step_profile.json
    python benchmarks/step_profile.py --configs lgcp1600/flow4 lgcp1600/flow0 --steps 50 --threads 1 \
        --name step_profile_lgcp                 # the shared flow's share of a 1600-D step

Configurations (200 profiled steps after 20 warm-up steps, 2 threads):
  ring8/before       MLP generator + KDE of q (the d ≤ 3 default before)
  ring8/after        mixture generator, exact log q, Fisher–Rao step and births (default now)
  manywell32/before  RealNVP flow generator (the d > 3 default before)
  manywell32/after   product mixture + 4-layer flow (default now)
Each part is the cumulative time of the function(s) named beside it, per step in ms.
"""
from __future__ import annotations

import argparse
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
                            ("generators/mixture.py", "log_prob_and_score"), ("generators/exact.py", "log_prob_and_score"),
                            ("kde.py", "fit")],
    "log p and its score": [("validation.py", "log_density_and_score")],
    "  of which the Gaussian stage's frame": [("datafree/gaussian_stage.py", "to_x")],
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
    # the 1600-D Cox process, batch fixed (the cost probe would pick 512 or 1024 with the load):
    # the product mixture with and without its shared 4-layer RealNVP flow
    "lgcp1600/flow4": ("lgcp_pines", dict(batch_size=1024, mixture_flow_layers=4)),
    "lgcp1600/flow0": ("lgcp_pines", dict(batch_size=1024, mixture_flow_layers=0)),
}
DEFAULT_CONFIGS = ("ring8/before", "ring8/after", "manywell32/before", "manywell32/after")


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(DEFAULT_CONFIGS))
    ap.add_argument("--steps", type=int, default=200, help="profiled steps per configuration")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="step_profile", help="results/<name>.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = {}
    for name in args.configs:
        target, kw = CONFIGS[name]
        rows[name] = run(target, kw, args.steps)
        print(name, {k: round(v, 2) if isinstance(v, float) else v for k, v in rows[name].items()}, flush=True)
    write_result(args.name, {"rows": rows, "parts": {k: [f"{f}:{n}" for f, n in v] for k, v in PARTS.items()},
                             "steps": args.steps, "threads": args.threads})


if __name__ == "__main__":
    main()
