"""Does evaluating a PyMC (or NumPyro, ``--route numpyro``) model's log-density in float32 change the verdict? One fitted sampler,
its final MCMC check run on the same draws with float32 rows and with float64 rows, and again on
the draws with one coordinate made too narrow (a q the check must flag):

    OMP_NUM_THREADS=1 python benchmarks/precision_check.py     # -> results/precision_check.json

The sampler: ``OneStepSampler(posterior_models.pymc_posterior(model), seed=s).fit()`` (the
defaults; its Gaussian stage decides the precision, ``freeflow.bayes.precision``); the check:
``freeflow.datafree.verdict.mcmc_check`` with the final check's options on 4096 of 4000 draws
(all of them) for up to 200 steps, as ``verdict.confirm`` runs it. One row per (precision, draws):
fired, |t| and threshold, the test and column that decided, steps run, acceptance, step size,
seconds."""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
import posterior_models as models  # noqa: E402

import freeflow as ff  # noqa: E402
from freeflow.datafree import verdict  # noqa: E402
from freeflow.mcmc import final_options  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="logreg_breast_cancer")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--narrow", type=float, default=0.9, help="the narrowed coordinate's sd factor")
    ap.add_argument("--coordinate", type=int, default=5)
    ap.add_argument("--route", choices=("pymc", "numpyro"), default="pymc")
    ap.add_argument("--name", default="precision_check")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    post = models.pymc_posterior(args.model) if args.route == "pymc" else models.numpyro_posterior(args.model)
    t0 = time.perf_counter()
    s = ff.OneStepSampler(post, seed=args.seed)
    s.fit(progress=False)
    post = s.reparam.posterior if getattr(s, "reparam", None) is not None else post   # (a twin's, if trained there)
    fit = {"model": args.model, "route": args.route, "seed": args.seed, "fit_s": time.perf_counter() - t0, "steps": s.steps_done,
           "precision": s.gaussian_fit.get("precision"), "verdict": s.last_reliability.verdict}
    print(fit, flush=True)
    x = s._draw(4000, seed=12345)
    j = args.coordinate
    narrow = x.clone()
    m = narrow[:, j].mean()
    narrow[:, j] = m + args.narrow * (narrow[:, j] - m)
    fn32 = getattr(post, "_fn32", None)
    rows = []
    for label, single, draws in (("q's draws", True, x), ("q's draws", False, x),
                                 (f"coordinate {j} at {args.narrow} of its sd", True, narrow),
                                 (f"coordinate {j} at {args.narrow} of its sd", False, narrow)):
        if single and fn32 is None:
            continue
        post._fn32 = fn32 if single else None
        t = time.perf_counter()
        r = verdict.mcmc_check(s, draws, 12345, verdict.FINAL_MCMC_STEPS, 4096, **final_options(x.shape[1]),
                               **verdict.derived_features(s))
        row = {"draws": label, "rows": "float32" if single else "float64", "fired": r.fired, "statistic": r.statistic,
               "threshold": r.threshold, "kind": r.kind, "where": r.where, "steps": r.steps, "acceptance": r.acceptance,
               "step_size": r.step_size, "seconds": time.perf_counter() - t}
        rows.append(row)
        print(row, flush=True)
    post._fn32 = fn32
    write_result(args.name, {"fit": fit, "rows": rows})


if __name__ == "__main__":
    main()
