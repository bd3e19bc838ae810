"""Critic velocities (issue 13 part 2): estimator accuracy against closed forms, and mode masses.

    python benchmarks/critics.py                      # -> benchmarks/results/critics.json
    python benchmarks/critics.py --skip-modes         # accuracy only (about a minute)
    python benchmarks/critics.py --gp-ablation        # -> critics_gp.json: W1 at λ = 0.2 / 10, one-/two-sided

Accuracy (the protocol of tests/test_critics.py, whose helpers are imported so the two cannot
drift apart): data p = N(0, I₂), generator q = N((1, 0), 1.5² I₂); each critic is trained
streaming (fresh batches of 512 from p and q, one Adam step each, lr 3e-3, 400 steps, default
128×2 network) and read on 50 000 held-out points: the bound against KL = 0.4776,
χ² = 0.9248 (closed forms) and JS = 0.1304 (quadrature), and V = ∇h against the optimal critic's
gradient (cosine, relative L2 error).  W1: 1-D N(0,1) vs N(1,1.5²), exact 1.0085.
Seeds 0, 1, 2 for every estimator.

Modes: ``unequal5`` of benchmarks/data_modes.py (five modes, weights 0.5/0.2/0.15/0.1/0.05),
DataFlow defaults (2000 steps × batch 512) with each critic velocity, seeds 0, 1, 2, TV of the
mode masses (``score``); the sinkhorn/drifting rows are in benchmarks/results/data_modes.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import write_result  # noqa: E402
from data_modes import SETS, score  # noqa: E402

import freeflow as ff  # noqa: E402
import test_critics as T  # noqa: E402

ESTIMATORS = ("kl_dv", "kl_nwj", "chi2", "js", "w1gp")


def accuracy(seeds):
    truth = {"kl_dv": T.KL_PQ, "kl_nwj": T.KL_PQ, "chi2": T.CHI2_PQ, "js": T._js_quadrature(), "w1gp": T.W1_1D}
    rows = []
    for est in ESTIMATORS:
        for s in seeds:
            dim = 1 if est == "w1gp" else 2
            t0 = time.perf_counter()
            critic = T._trained(est, s, dim=dim)
            p, q = T._held_out(s, dim=dim)
            value = float(critic.estimate(q, p))
            row = {"estimator": est, "seed": s, "estimate": value, "truth": truth[est], "error": value - truth[est],
                   "rel_error": value / truth[est] - 1, "train_s": time.perf_counter() - t0}
            if dim == 2:
                x = q[:5000]
                v = critic.velocity(x, normalize=False)
                ref = T._grad_log_r(x)
                if est == "chi2":
                    ref = 2 * T._log_r(x).exp()[:, None] * ref
                cos = torch.nn.functional.cosine_similarity(v, ref, dim=-1)
                row.update(grad_cos_median=float(cos.median()), grad_cos_mean=float(cos.mean()),
                           grad_rel_l2=float((v - ref).pow(2).sum() / ref.pow(2).sum()) ** 0.5)
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


def modes(seeds, steps, names):
    cells = []
    for s in seeds:
        for est in names:
            data, truth = SETS["unequal5"](20_000, 100 + s)
            t0 = time.perf_counter()
            flow = ff.DataFlow(2, f"critic:{est}", seed=s)
            flow.fit(data, steps=steps)
            res = score(flow.sample(20_000, seed=1000 + s), truth)
            cells.append({"estimator": est, "seed": s, "steps": steps, "fit_s": time.perf_counter() - t0,
                          "tv": res["tv"], "off": res["off"], "masses": res["masses"], "weights": res["weights"]})
            print(f"unequal5 critic:{est} seed {s}: TV {res['tv']:.4f} off {res['off']:.3f} "
                  f"{cells[-1]['fit_s']:.0f} s", flush=True)
            yield cells


def gp_ablation(seeds):
    """The 1-D W1 protocol at gp_weight 0.2 and 10, one-sided (the library's) and two-sided
    ``(‖∇h‖ − 1)²`` (patched in for the comparison only)."""
    from freeflow.velocities import critics as C
    one_sided = C.gradient_penalty
    rows = []
    for sided, fn in (("one-sided", one_sided), ("two-sided", lambda g: (g - 1.0).pow(2).mean())):
        C.gradient_penalty = fn
        try:
            for lam in (0.2, 10.0):
                T._CACHE.clear()  # the cache key does not see the patched penalty
                for s in seeds:
                    critic = T._trained("w1gp", s, dim=1, gp_weight=lam)
                    p, q = T._held_out(s, dim=1)
                    with torch.no_grad():
                        raw = float(critic.net(p).mean() - critic.net(q).mean())
                    grid = torch.linspace(-4.0, 6.0, 11)[:, None]
                    slopes = critic._grad_norm(grid, create_graph=False)
                    est = float(critic.estimate(q, p))
                    rows.append({"penalty": sided, "gp_weight": lam, "seed": s, "estimate": est, "raw": raw,
                                 "rel_error": est / T.W1_1D - 1, "max_slope_on_[-4,6]": float(slopes.max())})
                    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
        finally:
            C.gradient_penalty = one_sided
    return rows


def summary(acc, cells):
    out = {"accuracy": {}, "modes_unequal5": {}}
    for est in ESTIMATORS:
        rs = [r for r in acc if r["estimator"] == est]
        if rs:
            out["accuracy"][est] = {k: [round(r[k], 4) for r in rs] for k in rs[0] if k not in ("estimator", "truth")}
            out["accuracy"][est]["truth"] = rs[0]["truth"]
        cs = [c for c in cells if c["estimator"] == est]
        if cs:
            out["modes_unequal5"][est] = {"median_tv": statistics.median(c["tv"] for c in cs),
                                          "tv_per_seed": [c["tv"] for c in cs], "seeds": [c["seed"] for c in cs],
                                          "median_off": statistics.median(c["off"] for c in cs),
                                          "median_fit_s": statistics.median(c["fit_s"] for c in cs)}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--estimators", nargs="+", default=list(ESTIMATORS))
    p.add_argument("--skip-modes", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="critics")
    p.add_argument("--gp-ablation", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.gp_ablation:
        write_result(args.name + "_gp", {"exact_w1": T.W1_1D, "rows": gp_ablation(args.seeds)})
        return
    acc = accuracy(args.seeds)
    write_result(args.name, {"accuracy": acc, "cells": [], "summary": summary(acc, [])})
    if not args.skip_modes:
        for cells in modes(args.seeds, args.steps, args.estimators):
            write_result(args.name, {"accuracy": acc, "cells": cells, "summary": summary(acc, cells)})


if __name__ == "__main__":
    main()
