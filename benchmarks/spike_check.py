"""Rare far-out draws of q, and the verdict's check for them (``verdict.spike_reason``).

    OMP_NUM_THREADS=1 python benchmarks/spike_check.py     # -> results/spike_check.json

On the zoo's persistent GARCH(1,1) posterior (``garch11_persist``, seed 2) a 1000-step fit was
trusted while 20 000 raw draws gave alpha0's sd 86 % too wide (posteriors_zoo_d.json). Here:
(1) that state, ``fit(1000)``: how many of 200 000 draws lie how far below the median of
log p̃, the raw mean and sd of alpha0 over 20 000 draws with several seeds against the NUTS
reference, and how often ``spike_reason`` fires on 20 000 draws (10 seeds); (2) ``fit()`` with
the defaults (the check in place) on seeds 0, 1, 2: steps, verdict, and the constrained errors
of 20 000 raw draws against the reference."""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine  # noqa: E402
import zoo_models as zm  # noqa: E402

import freeflow as ff  # noqa: E402
from freeflow.datafree.verdict import SPIKE_DRAWS, spike_reason  # noqa: E402
from freeflow.io import atomic_write_json  # noqa: E402

NAME = "garch11_persist"


def fitted(seed: int, steps: int | None):
    s = ff.OneStepSampler(zm.posterior(NAME), seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.fit(steps, progress=False) if steps else s.fit(progress=False)
    return s


def constrained_errors(s, ref: dict, seed: int) -> dict:
    d = s.sample(20_000, seed=seed)
    out = {}
    for k, r in ref.items():
        x = d[k].double().numpy().reshape(20_000, -1)
        m, sd = np.array(r["mean"]), np.array(r["sd"])
        out[k] = {"mean_err_sd": float(np.abs(x.mean(0) - m).max() / sd.max()),
                  "sd_ratio": float((x.std(0) / sd).max())}
    return out


def main() -> None:
    ref = json.loads((RESULTS / "zoo_reference" / f"{NAME}.json").read_text())["constrained"]
    t0 = time.perf_counter()
    s = fitted(2, 1000)
    x = s.sample_unconstrained(200_000, seed=5)
    lp = s._log_density_chunked(x)
    med = float(lp.median())
    below = {str(t): int((lp < med - t).sum()) for t in (20, 100, 1000, 10_000)}
    a0 = {str(k): (float(v["alpha0"].double().mean()), float(v["alpha0"].double().std()))
          for k, v in ((k, s.sample(20_000, seed=k)) for k in (1, 2, 10_002))}
    fired = [spike_reason(s._log_density_chunked(s.sample_unconstrained(SPIKE_DRAWS, seed=100 + k))) is not None
             for k in range(10)]
    state = {"seed": 2, "steps": s.steps_done, "median_log_p": med, "draws_below_median_by": below,
             "alpha0_raw_mean_sd_by_sample_seed": a0, "reference_alpha0": [ref["alpha0"]["mean"], ref["alpha0"]["sd"]],
             "spike_check_fired_of_10": int(sum(fired))}
    print(json.dumps(state), flush=True)
    rows = []
    for seed in (0, 1, 2):
        t = time.perf_counter()
        s = fitted(seed, None)
        rep = s.last_reliability
        rows.append({"seed": seed, "steps": s.steps_done, "fit_s": round(time.perf_counter() - t, 1),
                     "trusted": rep.trusted, "verdict": rep.verdict,
                     "constrained": constrained_errors(s, ref, 10_000 + seed)})
        print(json.dumps(rows[-1]), flush=True)
    atomic_write_json({"command": "OMP_NUM_THREADS=1 python benchmarks/spike_check.py", "machine": machine(),
                       "model": NAME, "first_round_state": state, "defaults": rows,
                       "seconds": round(time.perf_counter() - t0, 1)}, RESULTS / "spike_check.json")


if __name__ == "__main__":
    main()
