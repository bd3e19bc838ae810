"""The verdict on the posteriors we publish (docs/benchmarks.md, "Posterior cost"): with the
defaults, ``OneStepSampler(posterior, seed=s).fit()`` and nothing else, is each still trusted,
and what did the final check (dilation moves and tail tests) measure? A false alarm there
would be a "do not trust" on draws that are right.

    OMP_NUM_THREADS=1 python benchmarks/verdict_published.py --seeds 0 1 2   # -> results/verdict_published.json

Per posterior and seed: the verdict, the steps, the fit's wall seconds, the MCMC check's
largest statistic against its threshold and where, and the checks' cost."""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_rows  # noqa: E402
import posterior_models as models  # noqa: E402

import freeflow as ff  # noqa: E402


def run(name: str, seed: int) -> dict:
    post = models.numpyro_posterior(name)
    t0 = time.perf_counter()
    s = ff.OneStepSampler(post, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.fit(progress=False)
    rel = s.last_reliability
    return {"model": name, "seed": seed, "dim": s.dim, "steps": s.steps_done,
            "fit_seconds": round(time.perf_counter() - t0, 1), "trusted": rel.trusted, "verdict": rel.verdict,
            "mcmc_statistic": rel.mcmc_statistic, "mcmc_threshold": rel.mcmc_threshold,
            "mcmc_coordinate": rel.mcmc_coordinate, "rounds": s.auto.rounds, "cost": s.cost()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(models.MODELS), choices=list(models.MODELS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--out", default=str(RESULTS / "verdict_published.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.models:
        for seed in args.seeds:
            rows.append(run(name, seed))
            r = rows[-1]
            print(f"{name} seed {seed}: {r['steps']} steps, {r['fit_seconds']} s, trusted={r['trusted']}, "
                  f"MCMC |t| {r['mcmc_statistic']:.2f} vs {r['mcmc_threshold']:.2f}", flush=True)
            write_rows(rows, args.out)


if __name__ == "__main__":
    main()
