"""ring8 with the default settings: modes, per-mode mass error (TV), energy distance vs its
noise floor, wall time. Several seeds; writes benchmarks/results/ring8.json.

    python benchmarks/ring8.py --seeds 0 1 2 --steps 3000
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import write_result

import freeflow as ff
import targets
from freeflow import metrics as M


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=None, help="default: the library's default")
    ap.add_argument("--n-eval", type=int, default=5000)
    args = ap.parse_args()
    target = targets.get_target("ring8")
    runs = []
    for seed in args.seeds:
        sampler = ff.OneStepSampler(target.log_prob, dim=target.dim, seed=seed)  # defaults only
        steps = args.steps or ff.default_steps(target.dim)
        t0 = time.perf_counter()
        sampler.fit(steps, progress=False)
        train_s = time.perf_counter() - t0
        x = sampler.sample(args.n_eval, seed=1000 + seed)
        s = M.summarize(x, target, n_ref=args.n_eval, generator=torch.Generator().manual_seed(2000 + seed))
        row = {"seed": seed, "steps": steps, "train_seconds": train_s, "ms_per_step": 1000 * train_s / steps,
               "modes_covered": s["modes"]["modes_covered"], "mass_tv": s["modes"]["tv"],
               "energy_distance": s["energy_distance"], "energy_distance_floor": s["noise_floor"]["energy_distance"]["median"],
               "ed_over_floor": s["energy_distance"] / s["noise_floor"]["energy_distance"]["median"],
               "moments": s["moments"]}
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "moments"}, flush=True)
        runs.append(row)
    agg = {k: statistics.median(r[k] for r in runs) for k in ("train_seconds", "ms_per_step", "mass_tv", "ed_over_floor")}
    agg["modes_covered_min"] = min(r["modes_covered"] for r in runs)
    agg["mass_tv_max"] = max(r["mass_tv"] for r in runs)
    agg["ed_over_floor_max"] = max(r["ed_over_floor"] for r in runs)
    agg["train_seconds_max"] = max(r["train_seconds"] for r in runs)
    print("median/worst:", agg)
    write_result("ring8", {"settings": ff.default_settings(2), "runs": runs, "summary": agg,
                           "acceptance": {"modes": 8, "mass_tv_max": 0.05, "ed_over_floor_max": 3.0, "seconds_max": 180}})


if __name__ == "__main__":
    main()
