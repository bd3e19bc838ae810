"""Cost of one velocity evaluation vs batch size and dimension (writes benchmarks/results/data_cost.json).

    python benchmarks/data_cost.py [--threads 1] [--reps 3]

Times the drift alone (no generator): V at N generated points against N data points and an
independent N-point second batch, float32, CPU.  For Sinkhorn, also the converged geomloss
solver (default ε-scaling 0.5, tensorized backend, the same absolute ε as ``sinkhorn_1eps``)
computing the same two maps from its dual potentials: the fixed-iteration solver is the training
estimator, geomloss the oracle; this shows what (approximately) converging would cost.  Note that
geomloss at scaling 0.5 is itself not tightly converged (marginal errors ~1e-2 remain even at
scaling 0.99 in our tests).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from freeflow.velocities.kde_ratio import kde_ratio_velocity
from freeflow.velocities.kernels import drifting_velocity, mmd_velocity
from freeflow.velocities.sinkhorn import half_sq_dist, relative_epsilon, sinkhorn_velocity

RESULTS = Path(__file__).resolve().parent / "results"

FIELDS = {
    "sinkhorn": lambda x, y, z: sinkhorn_velocity(x, y, z, rel_eps=(0.01, 0.05), num_iters=5),
    "sinkhorn_1eps": lambda x, y, z: sinkhorn_velocity(x, y, z, rel_eps=0.05, num_iters=5),
    "drifting": lambda x, y, z: drifting_velocity(x, y, z),
    "mmd": lambda x, y, z: mmd_velocity(x, y, z),
    "kde_kl": lambda x, y, z: kde_ratio_velocity(x, y, z),
}


def geomloss_velocity(x, y, z, rel=0.05):
    from geomloss import SamplesLoss

    eps = float(relative_epsilon(x, y, rel))
    loss = SamplesLoss("sinkhorn", p=2, blur=math.sqrt(eps), debias=False, potentials=True, backend="tensorized")
    out = []
    for t in (y, z):
        _, g = loss(x, t)
        w = torch.softmax((g.reshape(1, -1) - half_sq_dist(x, t)) / eps, dim=-1)
        out.append(w @ t)
    return out[0] - out[1]


def timeit(fn, reps):
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    p.add_argument("--dims", type=int, nargs="+", default=[2, 64, 512])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for d in args.dims:
        for n in args.sizes:
            g = torch.Generator().manual_seed(0)
            x, y, z = (torch.randn(n, d, generator=g) for _ in range(3))
            for name, fn in {**FIELDS, "sinkhorn_geomloss_converged": geomloss_velocity}.items():
                with torch.no_grad():
                    sec = timeit(lambda: fn(x, y, z), args.reps)
                row = {"velocity": name, "n": n, "dim": d, "ms": 1000 * sec}
                rows.append(row)
                print(row, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"threads": args.threads, "device": "cpu", "reps": args.reps,
           "note": "median wall time of one drift evaluation; shared 2-core machine, other jobs running",
           "rows": rows}
    (RESULTS / "data_cost.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
