"""The final check's test of a posterior's deterministic sites (``mcmc_shift(features=...)``).

    OMP_NUM_THREADS=1 python benchmarks/derived_check.py [--seeds 6] [--no-sv]

1. Exact draws of a 7-D NumPyro model (a ~ N(0, I₆), b ~ N(0, 1); deterministic c = a·e^{b/2},
   s = Σa², and a constant) through the final check's kernel and tests with the deterministic
   columns: false alarms over ``--seeds`` runs; and the same draws with b 15 % too wide (fires?).
2. Stochastic volatility (benchmarks/zoo_models.py), seed 2: ``fit()``, and ``fit(1000)`` (the
   state its first round judged: trusted before the deterministic columns, its log-volatility
   path h too wide); for each the final check on its 4000 checked draws with and without the
   deterministic columns, and h's sds against the zoo reference.
-> benchmarks/results/derived_check.json
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
from _common import RESULTS, machine, write_result  # noqa: E402

import freeflow as ff  # noqa: E402
from freeflow.datafree import verdict as V  # noqa: E402
from freeflow.mcmc import final_options, mcmc_shift  # noqa: E402


def exact_runs(seeds: int) -> list[dict]:
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    def model():
        a = numpyro.sample("a", dist.Normal(0.0, 1.0).expand([6]))
        b = numpyro.sample("b", dist.Normal(0.0, 1.0))
        numpyro.deterministic("c", a * jnp.exp(b / 2))
        numpyro.deterministic("s", jnp.sum(a ** 2))
        numpyro.deterministic("k", jnp.zeros(2))

    post = ff.from_numpyro(model)

    def feats(z):
        return torch.cat([v.reshape(len(z), -1) for v in post.derived(z).values()], 1)

    rows = []
    for seed in range(seeds):
        x = torch.randn(4000, post.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        wide = x.clone()
        wide[:, -1] *= 1.15
        for case, pts in (("exact", x), ("b 15 % too wide", wide)):
            m = mcmc_shift(post.log_density, pts, steps=200, n=4000, seed=seed, features=feats,
                           **final_options(post.dim))
            rows.append({"case": case, "seed": seed, "fired": m.fired, "statistic": m.statistic,
                         "threshold": m.threshold, "where": m.where, "kind": m.kind})
            print(rows[-1], flush=True)
    return rows


def sv_run(seed: int = 2, steps: int | None = None) -> dict:
    """``fit()`` (or ``fit(steps)``: 1000 is the state the first round's check judged) of SV."""
    import zoo_models as zm

    post = zm.posterior("stochastic_volatility")
    t0 = time.perf_counter()
    s = ff.OneStepSampler(post, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.fit(steps, progress=False)
    out = {"seed": seed, "fit_s": time.perf_counter() - t0, "steps": s.steps_done, "verdict": s.last_reliability.verdict}
    ref = json.loads((RESULTS / "zoo_reference" / "stochastic_volatility.json").read_text())["constrained"]["h"]
    h = s.sample(20000, seed=10_000 + seed)["h"].double().numpy()
    ratio = h.std(0, ddof=1) / np.asarray(ref["sd"]) - 1
    out["h_sd_error_median"], out["h_sd_error_max"] = float(np.median(ratio)), float(ratio.max())
    out["h_sd_error_at"] = int(ratio.argmax())
    x = s.sample_unconstrained(4000, seed=12345)          # the draws the final check checks
    steps = min(V.FINAL_MCMC_STEPS, s.steps_done // V.CONFIRM_STEPS_DIVISOR)
    for label, kw in (("without deterministic sites", {}), ("with deterministic sites", V.derived_features(s))):
        m = V.mcmc_check(s, x, 12345, steps, 4000, **final_options(x.shape[1]), **kw)
        out[label] = {"fired": m.fired, "statistic": m.statistic, "threshold": m.threshold, "where": m.where,
                      "kind": m.kind, "seconds": m.seconds}
        print(label, out[label], flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--no-sv", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    payload = {"machine": machine(), "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
               "exact": exact_runs(args.seeds)}
    payload["false_alarms"] = sum(r["fired"] for r in payload["exact"] if r["case"] == "exact")
    payload["detections"] = sum(r["fired"] for r in payload["exact"] if r["case"] != "exact")
    write_result("derived_check", payload)
    if not args.no_sv:
        payload["stochastic_volatility"] = sv_run()
        write_result("derived_check", payload)
        payload["stochastic_volatility_1000_steps"] = sv_run(steps=1000)
        write_result("derived_check", payload)
    print(f"false alarms {payload['false_alarms']} of {args.seeds}; detections {payload['detections']} of {args.seeds}")


if __name__ == "__main__":
    main()
