"""log Ẑ of the standard targets with the defaults: ``OneStepSampler(target, seed=s).fit()`` and
nothing else, then log Ẑ from 20 000 importance-weighted draws against the known log Z, with the
verdict and the cost per stage. One row per (target, seed), written as they finish.

    OMP_NUM_THREADS=1 python benchmarks/logz_defaults.py --targets funnel10 manywell32 manywell128 --seeds 0

(``benchmarks/standard.py`` adds ELBO, energy distances and the published numbers; this script is
its short form for the defaults' log Ẑ.) ``--time-limit 1800`` gives the fit a 30-minute budget
(``fit(time_limit=1800)``), as for the 1600-D Cox process."""
from __future__ import annotations

import argparse
import ast
import math
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import RESULTS, write_rows  # noqa: E402

import freeflow as ff  # noqa: E402
import targets  # noqa: E402


def run(name: str, seed: int, n: int, time_limit: float | None = None, save_dir: str | None = None,
        settings: dict | None = None) -> dict:
    tg = targets.get_target(name)
    t0 = time.perf_counter()
    s = ff.OneStepSampler(tg, seed=seed, **(settings or {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.fit(progress=False, time_limit=time_limit)
    fit_s = time.perf_counter() - t0
    if save_dir is not None:                   # the fitted sampler, before anything can fail
        s.save(Path(save_dir) / f"{name}_seed{seed}.pt")
    _, lw = s.importance_weights(n, seed=5)
    lw = lw.double()
    lz = float(torch.logsumexp(lw, 0) - math.log(len(lw)))
    w = torch.softmax(lw, 0)
    rel = s.last_reliability
    # a target without a closed-form log Z (the Cox process) is compared with its published reference
    ref = tg.log_Z if tg.log_Z is not None else getattr(tg, "log_z_reference", None)
    return {"target": name, "seed": seed, "dim": s.dim, "fit_seconds": round(fit_s, 1), "steps": s.steps_done,
            "log_z_hat": lz, "log_z": ref, "log_z_is_reference_estimate": tg.log_Z is None,
            "log_z_error": None if ref is None else lz - ref,
            "ess_fraction_20k": float(1.0 / (w ** 2).sum() / len(w)), "trusted": rel.trusted,
            "verdict": rel.verdict, "cost": s.cost(), "batch_size": s.settings["batch_size"],
            "time_limit": time_limit, "stopped_early": s.stop_reason, "settings_changed": settings or {}}


def parse_setting(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` (VALUE a Python literal, else a string) -> (key, value)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", nargs="+", default=["funnel10", "manywell32", "manywell128"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--time-limit", type=float, default=None,
                    help="fit(time_limit=...) in seconds (default: none, the plain defaults)")
    ap.add_argument("--save-dir", default=None, help="save each fitted sampler there")
    ap.add_argument("--set", nargs="*", type=parse_setting, default=[], metavar="KEY=VALUE",
                    help="settings changed from the defaults (e.g. mixture_flow_layers=0), for comparisons")
    ap.add_argument("--out", default=str(RESULTS / "logz_defaults.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.targets:
        for seed in args.seeds:
            rows.append(run(name, seed, args.n, args.time_limit, args.save_dir, dict(args.set)))
            r = rows[-1]
            err = "n/a" if r["log_z_error"] is None else f"{r['log_z_error']:+.3f}"
            print(f"{name} seed {seed}: log Z {r['log_z_hat']:.3f}, error {err} (ESS fraction {r['ess_fraction_20k']:.3f}), "
                  f"{r['steps']} steps, {r['fit_seconds']} s, {r['verdict'][:120]}", flush=True)
            write_rows(rows, args.out)


if __name__ == "__main__":
    main()
