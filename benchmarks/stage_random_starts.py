"""The Gaussian stage with and without its random L-BFGS starts, on the zoo's posteriors up to
110-D (``fit_gaussian(..., starts=0)`` against the default ``starts=4``, seed 0, float32 default
dtype as the sampler runs it): whether the fit is the same to the bit, the final ELBO, the
log-density rows, the seconds and the stage's note.

    OMP_NUM_THREADS=1 python benchmarks/stage_random_starts.py          # -> results/stage_random_starts.json
    OMP_NUM_THREADS=1 python benchmarks/stage_random_starts.py --models lotka_volterra_ode
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
import zoo_models as zm  # noqa: E402

from freeflow.datafree import gaussian_stage as gs  # noqa: E402


def compare(name: str, seed: int = 0) -> dict:
    post = zm.posterior(name)
    row = {"model": name, "dim": post.dim}
    fits = {}
    for starts in (0, gs.STARTS):
        t = time.perf_counter()
        fit = gs.fit_gaussian(post.log_density, post.dim, seed=seed, starts=starts)
        fits[starts] = fit
        row[f"starts_{starts}"] = {"elbo": fit.elbo, "evaluations": fit.evaluations,
                                   "seconds": time.perf_counter() - t, "note": fit.note}
    a, b = fits[0], fits[gs.STARTS]
    row["same"] = bool(torch.equal(a.loc, b.loc) and torch.equal(a.chol, b.chol))
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=[n for n in zm.ORDER if zm.DIMS[n] <= 110], choices=list(zm.ORDER))
    ap.add_argument("--name", default="stage_random_starts")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_default_dtype(torch.float32)
    rows = []
    for name in args.models:
        rows.append(compare(name))
        r = rows[-1]
        print(f"{name:28s} d={r['dim']:4d} same={r['same']} ELBO {r['starts_0']['elbo']:.2f} -> "
              f"{r[f'starts_{gs.STARTS}']['elbo']:.2f}  rows {r['starts_0']['evaluations']} -> "
              f"{r[f'starts_{gs.STARTS}']['evaluations']}", flush=True)
        write_result(args.name, {"command": " ".join(sys.argv), "rows": rows,
                                 "note": "seconds include JAX compilation on the first run of each model"})


if __name__ == "__main__":
    main()
