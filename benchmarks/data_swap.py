"""Warm start on new data: time to a trusted fit from the previous sampler vs from scratch.

    python benchmarks/data_swap.py                 # 3 seeds -> benchmarks/results/data_swap.json
    python benchmarks/data_swap.py --seeds 0 --quick

A NumPyro linear regression y ~ N(X w, s²) (N rows, K features, w ~ N(0, 1), s ~ HalfNormal(1))
whose data enter as arguments.  Per seed: data set A, ``ff.sample(reg, (X_a,), {"y": y_a})``
(defaults: ``fit()`` until trusted); then a second data set B from the same process (new X, new
noise, the same w), fitted twice, alternately so that both see the same machine load:

* fresh: ``ff.sample(reg, model_args=(X_b,), model_kwargs={"y": y_b})``, defaults;
* warm:  ``ff.sample(reg, model_args=(X_b,), model_kwargs={"y": y_b}, init=sampler_a)``
  (``freeflow.bayes.warm``: check the old generator on B, train rounds of 200 steps while the
  check fails).

Recorded: wall time of each ``ff.sample`` call (building the posterior and sampler, training,
checks and the 4000-draw export included), steps, the verdict, and both posteriors against
JAX-native NUTS on B (4 × 1000 after 1000 warmup): the largest |mean diff| and |sd diff| in
NUTS sds over the K + 1 parameters.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402  (sets sys.path to the repository)

import freeflow as ff  # noqa: E402


def regression():
    import numpyro
    import numpyro.distributions as dist

    def reg(X, y=None):
        w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
        s = numpyro.sample("s", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Normal(X @ w, s), obs=y)

    return reg


def data(rng, w: np.ndarray, n: int):
    X = rng.normal(size=(n, w.shape[0]))
    return X, X @ w + 0.5 * rng.normal(size=n)


def timed_sample(*args, **kwargs):
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ff.ReliabilityWarning)
        idata, sampler = ff.sample(*args, return_sampler=True, progress=False, **kwargs)
    return idata, sampler, time.perf_counter() - t0, [str(w.message) for w in caught
                                                      if issubclass(w.category, ff.ReliabilityWarning)]


def against(idata, idata_nuts) -> dict:
    t = ff.bayes.side_by_side(idata, idata_nuts)
    return {"mean_diff_max": float(t["mean diff"].abs().max()), "sd_diff_max": float(t["sd diff"].abs().max())}


def run_seed(seed: int, n: int, k: int, nuts_draws: int) -> dict:
    reg = regression()
    rng = np.random.default_rng(seed)
    w = rng.normal(size=k)
    Xa, ya = data(rng, w, n)
    Xb, yb = data(rng, w, n)
    ia, sa, ta, _ = timed_sample(reg, model_args=(Xa,), model_kwargs={"y": ya}, seed=seed)
    print(f"seed {seed}: A fresh {ta:.1f} s, {sa.steps_done} steps, {ia.attrs.get('reliability')}")
    ib, sb, tb, wb = timed_sample(reg, model_args=(Xb,), model_kwargs={"y": yb}, seed=seed)
    print(f"seed {seed}: B fresh {tb:.1f} s, {sb.steps_done} steps, {ib.attrs.get('reliability')}")
    iw, sw, tw, ww = timed_sample(reg, model_args=(Xb,), model_kwargs={"y": yb}, seed=seed, init=sa)
    print(f"seed {seed}: B warm {tw:.1f} s, {sw.steps_done - sa.steps_done} more steps, {iw.attrs.get('reliability')}")
    ref = ff.reference.nuts(sb.posterior, chains=4, warmup=nuts_draws, draws=nuts_draws, seed=0, progress=False)
    inuts = ff.bayes.nuts_inference_data(sb.posterior, ref, log_likelihood=False)
    return {
        "seed": seed,
        "fit_a": {"seconds": ta, "steps": sa.steps_done, "verdict": ia.attrs.get("reliability")},
        "fresh_b": {"seconds": tb, "steps": sb.steps_done, "verdict": ib.attrs.get("reliability"),
                    "warnings": wb, **against(ib, inuts)},
        "warm_b": {"seconds": tw, "steps_after_warm_start": sw.steps_done - sa.steps_done,
                   "verdict": iw.attrs.get("reliability"), "warnings": ww, **against(iw, inuts)},
        "speedup": tb / tw,
        "nuts": {"reliable": bool(ref.reliable), "draws": nuts_draws},
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--features", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="smaller NUTS reference (for a smoke run)")
    p.add_argument("--out", default="data_swap")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    runs = [run_seed(s, a.rows, a.features, 200 if a.quick else 1000) for s in a.seeds]
    summary = {
        "fresh_seconds_median": statistics.median(r["fresh_b"]["seconds"] for r in runs),
        "warm_seconds_median": statistics.median(r["warm_b"]["seconds"] for r in runs),
        "speedup_min": min(r["speedup"] for r in runs), "speedup_max": max(r["speedup"] for r in runs),
        "fresh_steps": [r["fresh_b"]["steps"] for r in runs],
        "warm_extra_steps": [r["warm_b"]["steps_after_warm_start"] for r in runs],
        "all_trusted": all(r[k]["verdict"].startswith("trusted") for r in runs for k in ("fresh_b", "warm_b")),
        "mean_diff_max": max(max(r["fresh_b"]["mean_diff_max"], r["warm_b"]["mean_diff_max"]) for r in runs),
        "sd_diff_max": max(max(r["fresh_b"]["sd_diff_max"], r["warm_b"]["sd_diff_max"]) for r in runs),
    }
    print(summary)
    write_result(a.out, {"settings": vars(a), "runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
