"""Would a shorter training schedule be safe? Fixed-length fits (``fit(steps=S)``, batch B) of the
published posteriors, judged by the full verdict (round check + the final check) and by their
raw draws' errors against the NUTS reference moments of ``results/posterior_cost.json``.

    OMP_NUM_THREADS=1 python benchmarks/short_schedule.py --models eight_schools logreg_breast_cancer \
        --configs 250x256 500x256 250x1024 1000x1024     # -> results/short_schedule.json

The question behind it: the default first round is 1000 steps at batch 1024, and nutpie reaches
10⁴ effective samples in seconds (docs/benchmarks.md, "Against nutpie"). A shorter first round is
only acceptable if the verdict still catches what it leaves wrong. One row per (model, config):
seconds of training and of the checks, the verdict, the largest raw mean error (reference sds)
and sd error (relative), the cost per stage.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_rows  # noqa: E402
import posterior_models as models  # noqa: E402
from posterior_cost import _errors, _scalars  # noqa: E402

import freeflow as ff  # noqa: E402
from freeflow.datafree import verdict  # noqa: E402
from freeflow.datafree.verdict import confirm  # noqa: E402


def run(name: str, steps: int, batch: int, ref: dict, seed: int, full_confirm: bool = False) -> dict:
    post = models.torch_posterior(name)
    t0 = time.perf_counter()
    s = ff.OneStepSampler(post, seed=seed, batch_size=batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.fit(steps=steps, progress=False, check=False)
    fit_s = time.perf_counter() - t0
    rep = s.reliability()
    if rep.trusted:
        divisor = verdict.CONFIRM_STEPS_DIVISOR
        if full_confirm:   # the final check at its full 200 steps, whatever the training's length
            verdict.CONFIRM_STEPS_DIVISOR = steps / verdict.FINAL_MCMC_STEPS
        try:
            rep = confirm(s, rep)
        finally:
            verdict.CONFIRM_STEPS_DIVISOR = divisor
    check_s = time.perf_counter() - t0 - fit_s
    err = _errors(_scalars(post, s.sample_unconstrained(20000, seed=3)), ref)
    return {"model": name, "seed": seed, "steps": steps, "batch": batch, "fit_s": round(fit_s, 1),
            "check_s": round(check_s, 1), "full_confirm": full_confirm, "final_check_statistic": rep.mcmc_statistic,
            "final_check_threshold": rep.mcmc_threshold, "trusted": rep.trusted, "reasons": rep.reasons,
            "mean_err_max": err["mean_err_max"], "mean_err_at": err["mean_err_at"],
            "sd_err_max": err["sd_err_max"], "sd_err_at": err["sd_err_at"], "cost": s.cost()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["eight_schools", "logreg_breast_cancer"], choices=list(models.MODELS))
    ap.add_argument("--configs", nargs="+", default=["250x256", "500x256", "250x1024", "1000x1024"],
                    help="STEPSxBATCH")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--full-confirm", action="store_true",
                    help="run the final check's full 200 steps (default: one per 5 training steps, as fit() does)")
    ap.add_argument("--out", default=str(RESULTS / "short_schedule.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    refs = {m["model"]: {k: (np.array(v["mean"]), np.array(v["sd"])) for k, v in m["reference_moments"].items()}
            for m in json.loads((RESULTS / "posterior_cost.json").read_text())["models"]}
    rows = []
    for name in args.models:
        for cfg in args.configs:
            steps, batch = (int(v) for v in cfg.split("x"))
            for seed in args.seeds:
                row = run(name, steps, batch, refs[name], seed, args.full_confirm)
                rows.append(row)
                write_rows(rows, args.out)
                print(f"{name} {steps} steps x batch {batch}, seed {seed}: fit {row['fit_s']} s, checks "
                      f"{row['check_s']} s, trusted {row['trusted']}, mean err {row['mean_err_max']:.3f} "
                      f"({row['mean_err_at']}), sd err {row['sd_err_max']:.3f} ({row['sd_err_at']})", flush=True)


if __name__ == "__main__":
    main()
