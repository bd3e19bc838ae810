"""gmm40 under a wall-clock budget (default 10 minutes of training): modes covered, mass error,
energy distance vs its noise floor. Writes benchmarks/results/gmm40.json.

The number of steps is chosen from a short timing run so that training fits the budget
(the schedule — annealing, learning-rate decay — needs its length up front).

    python benchmarks/gmm40.py --budget 600 --seed 0
"""
from __future__ import annotations

import argparse
import time

import torch
from _common import write_result

import freeflow as ff
import targets
from freeflow import metrics as M


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=600.0, help="training seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--divergence", default="kl_pq")
    ap.add_argument("--n-eval", type=int, default=10_000)
    ap.add_argument("--set", nargs="*", default=[], help="KEY=VALUE sampler settings")
    args = ap.parse_args()
    import ast

    overrides = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in args.set)}
    target = targets.get_target("gmm40")
    probe = ff.OneStepSampler(target, seed=args.seed, divergence=args.divergence, **overrides)
    t0 = time.perf_counter()
    probe.fit(30, progress=False)
    per_step = (time.perf_counter() - t0) / 30
    steps = max(int(args.budget / per_step), 100)
    sampler = ff.OneStepSampler(target, seed=args.seed, divergence=args.divergence, **overrides)
    t0 = time.perf_counter()
    sampler.fit(steps, progress=False)
    train_s = time.perf_counter() - t0
    x = sampler.sample(args.n_eval, seed=1)
    s = M.summarize(x, target, n_ref=args.n_eval, generator=torch.Generator().manual_seed(7))
    row = {"seed": args.seed, "divergence": args.divergence, "overrides": overrides, "steps": steps,
           "train_seconds": train_s, "modes_covered": s["modes"]["modes_covered"], "num_modes": 40,
           "mass_tv": s["modes"]["tv"], "mass_tv_floor": s["noise_floor"]["mode_tv"]["median"],
           "emc": s["modes"]["emc"], "energy_distance": s["energy_distance"],
           "energy_distance_floor": s["noise_floor"]["energy_distance"]["median"]}
    print(row)
    write_result(f"gmm40_seed{args.seed}", row)


if __name__ == "__main__":
    main()
