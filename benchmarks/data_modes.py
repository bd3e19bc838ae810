"""Mode weights in data mode (issue 12 part 1): DataFlow defaults on mixtures with minority modes.

    python benchmarks/data_modes.py                       # -> benchmarks/results/data_modes.json
    python benchmarks/data_modes.py --shard 0/2 --name data_modes_s0   # parallel halves
    python benchmarks/data_modes.py --merge data_modes_s0 data_modes_s1

Data sets (built here, 20 000 points each, fresh exact samples for the noise floor):
* ``ring6_far2``: six modes on a ring of radius 3 (sd 0.3) with 95 % of the mass, two distant
  modes (at (20, 0) and (−14, 14)) with 2.5 % each — the issue's shape;
* ``unequal5``: five modes, weights 0.5/0.2/0.15/0.1/0.05, sds 1.0/0.3/0.6/0.5/0.25;
* ``grid9_3d``: NOT looked at while developing: nine modes in 3-D on a 3×3 grid (spacing 5),
  weights ∝ 1.6^−k (largest 0.38, two smallest 0.025 and 0.016 before the two extra 2.5 % modes
  below), sds alternating 0.3/0.7, plus two 2.5 % modes far off the grid.

Velocities at equal budget (2000 steps × batch 512, the defaults): ``sinkhorn`` (DataFlow's
default: the component generator with the Fisher–Rao step) and ``drifting`` (the kernel
baseline; one residual MLP).  ``--methods sinkhorn_mlp`` adds ``sinkhorn`` with
``generator="mlp"`` (the default before issue 12; not in the default run).
Mode masses: each sample goes to the mode of highest responsibility under the true mixture,
or to an "off" bin when it lies more than 4 sd (Mahalanobis, per dimension) from that mode;
TV counts the off bin.  Seeds 0, 1, 2; medians are reported.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, write_result  # noqa: E402

import freeflow as ff  # noqa: E402


def mixture(means, sds, weights, n, seed):
    g = torch.Generator().manual_seed(seed)
    means = torch.tensor(means, dtype=torch.float32)
    sds = torch.tensor(sds, dtype=torch.float32)
    w = torch.tensor(weights, dtype=torch.float64)
    w = w / w.sum()
    k = torch.multinomial(w, n, replacement=True, generator=g)
    return means[k] + sds[k, None] * torch.randn(n, means.shape[1], generator=g), (means, sds, w)


def ring6_far2(n, seed):
    ang = torch.arange(6) * 2 * math.pi / 6 + 0.3
    ring = torch.stack([3 * ang.cos(), 3 * ang.sin()], 1).tolist()
    return mixture(ring + [[20.0, 0.0], [-14.0, 14.0]], [0.3] * 8, [0.95 / 6] * 6 + [0.025, 0.025], n, seed)


def unequal5(n, seed):
    return mixture([[0, 0], [6, 0], [0, 7], [-6, -3], [5, 8]], [1.0, 0.3, 0.6, 0.5, 0.25],
                   [0.5, 0.2, 0.15, 0.1, 0.05], n, seed)


def grid9_3d(n, seed):
    means = [[5.0 * i, 5.0 * j, 0.0] for i in range(3) for j in range(3)] + [[25.0, 0.0, 10.0], [-12.0, 12.0, -8.0]]
    w = [1.6 ** -k for k in range(9)]
    w = [0.95 * v / sum(w) for v in w] + [0.025, 0.025]
    sds = [0.3 if k % 2 else 0.7 for k in range(9)] + [0.4, 0.4]
    return mixture(means, sds, w, n, seed)


SETS = {"ring6_far2": ring6_far2, "unequal5": unequal5, "grid9_3d": grid9_3d}
METHODS = {"sinkhorn": ("sinkhorn", {}), "drifting": ("drifting", {}),
           "sinkhorn_mlp": ("sinkhorn", {"generator": "mlp"})}


def mode_masses(x, means, sds, w):
    d2 = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    lp = -0.5 * d2 / sds[None] ** 2 - x.shape[1] * sds[None].log() + w.float().log()[None]
    k = lp.argmax(1)
    z2 = d2.gather(1, k[:, None]).squeeze(1) / sds[k] ** 2
    k = torch.where(z2 > 16.0 * x.shape[1], torch.full_like(k, len(w)), k)
    return torch.bincount(k, minlength=len(w) + 1).double() / len(x)


def score(x, truth):
    means, sds, w = truth
    m = mode_masses(x, means, sds, w)
    ww = torch.cat([w, torch.zeros(1, dtype=w.dtype)])
    minority = [i for i in range(len(w)) if w[i] <= 0.0255]
    ratios = (m[:-1] / w).tolist()
    return {"tv": 0.5 * float((m - ww).abs().sum()), "off": float(m[-1]), "masses": m.tolist(),
            "weights": w.tolist(), "minority_ratios": [ratios[i] for i in minority],
            "minority_within_1.5x": all(1 / 1.5 <= ratios[i] <= 1.5 for i in minority)}


def run_cell(set_name, method, seed, steps):
    data, truth = SETS[set_name](20_000, 100 + seed)
    velocity, extra = METHODS[method]
    t0 = time.perf_counter()
    flow = ff.DataFlow(dim=data.shape[1], velocity=velocity, seed=seed, **extra)
    flow.fit(data, steps=steps)
    fit_s = time.perf_counter() - t0
    res = score(flow.sample(20_000, seed=1000 + seed), truth)
    floor = score(SETS[set_name](20_000, 999 + seed)[0], truth)
    return {"set": set_name, "method": method, "seed": seed, "steps": steps, "fit_s": fit_s,
            "batch_size": flow.settings["batch_size"], "generator": flow.settings.get("generator"),
            **res, "tv_floor": floor["tv"]}


def init_ablation(sets, seeds, steps):
    """How much of the component generator's accuracy is its initialisation?  (a) TV after one
    step (k-means++ centres, weights from the members' share: the fit starts there); (b) the
    full default fit with the initial weights replaced by uniform ones, so that only the
    Fisher-Rao (reaction) step of the flow can move mass between the components."""
    from freeflow.generators.components import ComponentMLP

    original = ComponentMLP.init_from_data
    cells = []
    for s in sets:
        for seed in seeds:
            data, truth = SETS[s](20_000, 100 + seed)
            flow = ff.DataFlow(dim=data.shape[1], velocity="sinkhorn", seed=seed)
            flow.fit(data, steps=1)
            cells.append({"set": s, "seed": seed, "variant": "after_1_step", "steps": 1,
                          **score(flow.sample(20_000, seed=1000 + seed), truth)})
            print(s, seed, "after 1 step: TV", round(cells[-1]["tv"], 4), flush=True)

    def uniform(self, data, rng, max_points=4096):
        original(self, data, rng, max_points)
        self.set_log_weights(torch.zeros(self.components))

    ComponentMLP.init_from_data = uniform
    try:
        for s in sets:
            data, truth = SETS[s](20_000, 100 + seeds[0])
            t0 = time.perf_counter()
            flow = ff.DataFlow(dim=data.shape[1], velocity="sinkhorn", seed=seeds[0])
            flow.fit(data, steps=1)
            first = score(flow.sample(20_000, seed=1000 + seeds[0]), truth)
            flow = ff.DataFlow(dim=data.shape[1], velocity="sinkhorn", seed=seeds[0])
            flow.fit(data, steps=steps)
            cells.append({"set": s, "seed": seeds[0], "variant": "uniform_initial_weights", "steps": steps,
                          "fit_s": time.perf_counter() - t0, "tv_after_1_step": first["tv"],
                          **score(flow.sample(20_000, seed=1000 + seeds[0]), truth)})
            c = cells[-1]
            print(s, "uniform initial weights: TV after 1 step", round(first["tv"], 4), f"after {steps}:",
                  round(c["tv"], 4), "minority", [round(r, 2) for r in c["minority_ratios"]], flush=True)
            write_result("data_modes_init", {"cells": cells})
    finally:
        ComponentMLP.init_from_data = original
    write_result("data_modes_init", {"cells": cells})


def summarize(cells):
    out = {}
    for c in cells:
        out.setdefault(c["set"], {}).setdefault(c["method"], []).append(c)
    table = {}
    for s, by in out.items():
        for m, cs in by.items():
            table.setdefault(s, {})[m] = {
                "median_tv": statistics.median(c["tv"] for c in cs), "tv_per_seed": [c["tv"] for c in cs],
                "median_off": statistics.median(c["off"] for c in cs),
                "minority_ratios_per_seed": [c["minority_ratios"] for c in cs],
                "all_minority_within_1.5x": all(c["minority_within_1.5x"] for c in cs),
                "median_tv_floor": statistics.median(c["tv_floor"] for c in cs),
                "median_fit_s": statistics.median(c["fit_s"] for c in cs), "seeds": [c["seed"] for c in cs]}
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", nargs="+", default=list(SETS))
    p.add_argument("--methods", nargs="+", default=["sinkhorn", "drifting"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--shard", default="0/1", help="I/N: run every N-th cell starting at I")
    p.add_argument("--name", default="data_modes")
    p.add_argument("--merge", nargs="+", help="merge these result names into --name")
    p.add_argument("--init-ablation", action="store_true",
                   help="-> results/data_modes_init.json: TV after 1 step, and the fit from uniform weights")
    args = p.parse_args(argv)
    if args.init_ablation:
        torch.set_num_threads(args.threads)
        init_ablation(args.sets, args.seeds, args.steps)
        return
    if args.merge:
        import json
        cells = [c for n in args.merge for c in json.loads((RESULTS / f"{n}.json").read_text())["cells"]]
        shards = {n: json.loads((RESULTS / f"{n}.json").read_text())["machine"] for n in args.merge}
        write_result(args.name, {"command": " ".join(sys.argv), "machine": machine(), "shards": shards,
                                 "cells": cells, "summary": summarize(cells)})
        print(summarize(cells))
        return
    torch.set_num_threads(args.threads)
    i, n = (int(v) for v in args.shard.split("/"))
    grid = [(s, m, seed) for s in args.sets for m in args.methods for seed in args.seeds][i::n]
    cells = []
    for s, m, seed in grid:
        cells.append(run_cell(s, m, seed, args.steps))
        c = cells[-1]
        print(f"{s} {m} seed {seed}: TV {c['tv']:.4f} (floor {c['tv_floor']:.4f}) off {c['off']:.3f} "
              f"minority x{[round(r, 2) for r in c['minority_ratios']]} {c['fit_s']:.0f} s", flush=True)
        write_result(args.name, {"command": " ".join(sys.argv), "machine": machine(), "cells": cells,
                                 "summary": summarize(cells)})


if __name__ == "__main__":
    main()
