"""Calibration of the MCMC verdict check (``freeflow.mcmc.mcmc_shift``) with its defaults.

    python benchmarks/mcmc_check_calibration.py                 # -> results/mcmc_check_calibration.json
    python benchmarks/mcmc_check_calibration.py --seeds 10 --detect-seeds 5 --name mcmc_check_quick

False alarms: exact draws of correlated Gaussians (2, 10, 30, 100-D; scales 0.1-10), a two-
component mixture (4-D), Neal's funnel (10-D) and a latent random-walk posterior with unknown
scales (32-D; exact draws up to a fine grid on the two scales), each over ``--seeds`` seeds (the
draws and the kernel seeded apart), plus the 30-D Gaussian at n = 256 and 4096 chains. Detection:
(a) the 30-D Gaussian with one coordinate 25% too narrow, (b) the random walk with the obs scale
log τ shrunk 28% about its mean, and with log σ shrunk 28% and moved 0.34 sd, (c) the funnel
without its neck (draws with v < −2 removed) and with v's sd shrunk to 70% (and 85%) of 3.
Per case: the fraction of seeds where the check fired (with a 95% Clopper-Pearson interval),
the statistic's quantiles against the threshold, the largest movement seen, and the cost.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import beta

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import write_result  # noqa: E402
import mcmc_targets as mt  # noqa: E402

from freeflow.mcmc import MCMC_ALPHA, MIN_SHIFT, final_options, mcmc_shift  # noqa: E402
from freeflow.datafree.verdict import FINAL_MCMC_STEPS  # noqa: E402


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    lo = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def shrink(x: torch.Tensor, j: int, factor: float, shift_sd: float = 0.0) -> torch.Tensor:
    """Coordinate j scaled by ``factor`` about its mean and moved by ``shift_sd`` sds."""
    x = x.clone()
    m, s = x[:, j].mean(), x[:, j].std()
    x[:, j] = m + factor * (x[:, j] - m) + shift_sd * s
    return x


def funnel_without_neck(case: mt.Case, n: int, seed: int) -> torch.Tensor:
    x = case.sample(4 * n, seed)
    return x[x[:, 0] > -2][:n]


def funnel_shrunk(n: int, seed: int, factor: float, d: int = 10) -> torch.Tensor:
    """v ~ N(0, (3·factor)²), x_i | v exact: a q whose v is too narrow, consistent otherwise."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    v = 3 * factor * z[:, :1]
    return torch.cat([v, torch.exp(0.5 * v) * z[:, 1:]], 1).float()


FINAL: dict = {}   # --final: the final verdict's check (4000 chains, 200 steps, final_options)


def run_case(name: str, log_density, draws, seeds: int, **kw) -> dict:
    if FINAL:
        kw = {**FINAL, **kw}
    rows = []
    for s in range(seeds):
        x = draws(1000 + s)
        opts = {**final_options(x.shape[1]), **kw} if FINAL else kw
        r = mcmc_shift(log_density, x, seed=s, **opts)
        rows.append(r)
    fired = sum(r.fired for r in rows)
    stats = np.array([r.statistic for r in rows])
    out = {
        "case": name, "seeds": seeds, "fired": fired, "rate": fired / seeds, "rate_ci95": clopper_pearson(fired, seeds),
        "threshold": rows[0].threshold, "statistic_median": float(np.median(stats)),
        "statistic_q95": float(np.quantile(stats, 0.95)), "statistic_max": float(stats.max()),
        "shift_median": float(np.median([r.shift for r in rows])),
        "where": [f"{r.kind}@{r.coordinate}" for r in rows][:10],
        "acceptance": float(np.mean([r.acceptance for r in rows])),
        "grad_evals": rows[0].grad_evals, "density_evals": rows[0].density_evals,
        "seconds_mean": float(np.mean([r.seconds for r in rows])), "n": rows[0].n, "d": rows[0].d,
        "steps": rows[0].steps, "steps_run": [r.steps for r in rows],
        "steps_run_median": float(np.median([r.steps for r in rows])), **{k: v for k, v in kw.items()},
    }
    print(f"{name:28s} fired {fired:2d}/{seeds} thr {out['threshold']:.2f} stat med {out['statistic_median']:.2f} "
          f"q95 {out['statistic_q95']:.2f} shift {out['shift_median']:.3f} steps {out['steps_run_median']:.0f} "
          f"{out['seconds_mean']:.2f}s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=40, help="seeds per exact-draw case")
    ap.add_argument("--detect-seeds", type=int, default=20, help="seeds per detection case")
    ap.add_argument("--name", default="mcmc_check_calibration", help="results/<name>.json")
    ap.add_argument("--final", action="store_true",
                    help="the final verdict's check: 4000 chains, up to --final-steps steps (ended once the chains have "
                         "mixed), tail tests and dilation moves")
    ap.add_argument("--fixed-length", action="store_true",
                    help="with --final: always the full length (the final check before it ended on mixing)")
    ap.add_argument("--final-steps", type=int, default=FINAL_MCMC_STEPS,
                    help="with --final: the most steps (default the verdict's FINAL_MCMC_STEPS)")
    args = ap.parse_args()
    if args.final:
        FINAL.update(n=4000, steps=args.final_steps)
        if args.fixed_length:
            FINAL.update(until_mixed=None)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    g = {d: mt.correlated_gaussian(d) for d in (2, 10, 30, 100)}
    mix, fun, rw, es = mt.mixture(4), mt.funnel(), mt.random_walk(), mt.eight_schools_centred()
    n = FINAL.get("n", 1024)
    null = [run_case(c.name, c.log_density, lambda s, c=c: c.sample(n, s), args.seeds)
            for c in [*g.values(), mix, fun, rw, es]]
    null += [run_case(f"gauss30 n={m}", g[30].log_density, lambda s, m=m: g[30].sample(m, s), args.seeds, n=m)
             for m in (256, 4096)]
    k = args.detect_seeds
    detect = [
        run_case("a gauss30 coord 5 x0.75", g[30].log_density, lambda s: shrink(g[30].sample(n, s), 5, 0.75), k),
        run_case("b random walk log tau x0.72", rw.log_density, lambda s: shrink(rw.sample(n, s), 1, 0.72), k),
        run_case("b random walk log sigma x0.72 +0.34sd", rw.log_density,
                 lambda s: shrink(rw.sample(n, s), 0, 0.72, 0.34), k),
        run_case("c funnel without v < -2", fun.log_density, lambda s: funnel_without_neck(fun, n, s), k),
        run_case("c funnel v sd x0.7", fun.log_density, lambda s: funnel_shrunk(n, s, 0.7), k),
        run_case("c funnel v sd x0.85", fun.log_density, lambda s: funnel_shrunk(n, s, 0.85), k),
        run_case("d eight schools log tau x0.875", es.log_density, lambda s: es.sample(n, s, narrow=0.875), k),
        run_case("d eight schools log tau x0.8", es.log_density, lambda s: es.sample(n, s, narrow=0.8), k),
    ]
    runs = sum(r["seeds"] for r in null)
    alarms = sum(r["fired"] for r in null)
    summary = {"alpha": MCMC_ALPHA, "min_shift": MIN_SHIFT, "final": bool(args.final),
               "until_mixed": FINAL.get("until_mixed", final_options(10)["until_mixed"]) if args.final else None, "false_alarms": alarms, "null_runs": runs, "false_alarm_rate": alarms / runs,
               "false_alarm_ci95": clopper_pearson(alarms, runs),
               "worst_target_rate": max(r["rate"] for r in null), "seconds": time.perf_counter() - t0}
    print(summary)
    write_result(args.name, {"summary": summary, "null": null, "detect": detect})


if __name__ == "__main__":
    main()
