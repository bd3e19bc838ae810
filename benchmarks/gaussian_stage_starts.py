"""Where the Gaussian stage's VI starts, and how long it runs from the origin.

    OMP_NUM_THREADS=1 python benchmarks/gaussian_stage_starts.py   # -> results/gaussian_stage_starts.json

On the zoo's centred varying-intercepts posterior (``radon``: 56 groups of 1–40) the L-BFGS path
ends in the funnel's neck (log sigma_a far below the posterior), and VI started there stays
there. Per seed: full-rank VI (``gaussian_stage._vi``, 32 draws a step) from the path's end, and
from the origin at unit scale with the Newton mean step (500, 1000, 2000 steps) and with ADVI's
Adam on the mean (500, 1000 steps); for each, the ELBO and the
importance-sampling log Ẑ on 1024 common draws of the Gaussian, and the largest error of its
mean in NUTS-reference sds (the reference: benchmarks/results/zoo_reference/<model>.json). Then
the stage as ``fit()`` runs it (``fit_gaussian`` with its defaults): which candidate won and the
same figures for its Gaussian (before the 1.2 inflation)."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402
import zoo_models as zm  # noqa: E402

from freeflow.datafree import gaussian_stage as gs  # noqa: E402
from freeflow.importance import log_density_at  # noqa: E402
from freeflow.placement import noise_generator  # noqa: E402


def scores(f, loc, chol, eps, ref_mean, ref_sd, names):
    x = loc + eps @ chol.T
    lp = log_density_at(f, x)
    lq = torch.distributions.MultivariateNormal(loc, scale_tril=chol).log_prob(x)
    lw = torch.where(torch.isfinite(lp), lp - lq, torch.full_like(lp, -math.inf))
    err = (loc - ref_mean).abs() / ref_sd
    return {"elbo": float(lw.mean()), "is_log_z": float(torch.logsumexp(lw, 0) - math.log(len(lw))),
            "max_mean_err_sd": float(err.max()), "at": names[int(err.argmax())]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["radon"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--stage-only", action="store_true", help="only the stage as fit() runs it")
    ap.add_argument("--name", default="gaussian_stage_starts")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.models:
        post = zm.posterior(name)
        ref = json.loads((RESULTS / "zoo_reference" / f"{name}.json").read_text())["unconstrained"]
        rm = torch.tensor(ref["mean"], dtype=torch.float64)
        rs = torch.tensor(ref["sd"], dtype=torch.float64)
        f = gs._Counter(post.log_density, post.dim)
        eps = torch.randn(1024, post.dim, generator=noise_generator(12345), dtype=torch.float64)
        zero = torch.zeros(post.dim, dtype=torch.float64)
        for seed in args.seeds:
            g = noise_generator(seed)
            path = gs._lbfgs_path(f, post.dim, 100)
            runs = {}
            starts = [("path_end_500", path[-1], gs._diag_scale(f, path[-1]), 500, "newton")] + \
                [(f"origin_{k}", zero, torch.ones_like(zero), k, "newton") for k in (500, 1000, 2000)] + \
                [(f"origin_adam_{k}", zero, torch.ones_like(zero), k, "adam") for k in (500, 1000)]
            for label, start, sd, steps, mean_step in ([] if args.stage_only else starts):
                t0 = time.perf_counter()
                loc, chol = gs._vi(f, start, sd, steps, 32, 0.1, g, mean_step=mean_step)
                runs[label] = {**scores(f, loc, chol, eps, rm, rs, ref["names"]),
                               "seconds": time.perf_counter() - t0}
            t0 = time.perf_counter()
            fit = gs.fit_gaussian(post.log_density, post.dim, seed=seed)
            stage = {**scores(f, fit.loc, fit.chol / 1.2, eps, rm, rs, ref["names"]), "note": fit.note,
                     "seconds": time.perf_counter() - t0, "evaluations": fit.evaluations}
            rows.append({"model": name, "seed": seed, "runs": runs, "stage": stage})
            print(name, seed, {k: round(v["elbo"], 1) for k, v in runs.items()}, "stage:", fit.note[:45],
                  round(stage["elbo"], 1), round(stage["max_mean_err_sd"], 2), flush=True)
            write_result(args.name, {"rows": rows})


if __name__ == "__main__":
    main()
