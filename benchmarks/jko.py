"""Explicit vs implicit (JKO) training step at equal wall time (issue 13 part 1).

    python benchmarks/jko.py                          # -> benchmarks/results/jko.json
    python benchmarks/jko.py --budget 25 --seeds 0 1 2     # the defaults

Two 2-D problems with unequal mode weights:

* data mode: ``unequal5`` of ``benchmarks/data_modes.py`` (five modes, weights 0.5/0.2/0.15/
  0.1/0.05, 20 000 points), ``DataFlow(velocity="sinkhorn", generator="mlp")``, base step
  η = 1 (DataFlow's default);
* data-free: the ``imbalanced2`` target (two unit modes, weights 0.8/0.2, 8 apart),
  ``OneStepSampler(generator="mlp", density="kde")`` (the route that relies on transport alone
  to place mass; the default mixture generator also has a Fisher-Rao step on its weights),
  base step η = 0.5 (the sampler's default).

Configurations: explicit with η ∈ {1, 4, 16}×base, and JKO with τ ∈ {1, 4, 16}×base and
M ∈ {3, 10} inner steps; all other settings default (Adam, lr 1e-3, cosine decay), batch 256
(data) and 512 (data-free; KDE reference batch 512).
Equal wall time: each configuration's seconds per step are measured once (a short run, seed
0), and every run gets ``budget / (seconds per step)`` steps; the measured fit seconds are
reported next to the result.  Mode-mass TV as in ``data_modes.score`` (each sample to the mode
of highest responsibility, or an "off" bin beyond 4 sd), from 20 000 samples; the noise floor is
the TV of 20 000 exact samples.  Medians over seeds 0, 1, 2.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
from data_modes import SETS, score  # noqa: E402

from freeflow.metrics import energy_distance  # noqa: E402

import freeflow as ff  # noqa: E402
from targets import get_target  # noqa: E402

BASE = {"data": 1.0, "datafree": 0.5}
CONFIGS = [("explicit", f, None) for f in (1, 4, 16)] + [("jko", f, m) for f in (1, 4, 16) for m in (3, 10)]


def config_name(step, factor, inner):
    return f"explicit_eta{factor}x" if step == "explicit" else f"jko_tau{factor}x_M{inner}"


def settings(mode, step, factor, inner):
    eta = BASE[mode] * factor
    if step == "explicit":
        return {"step_size": eta}
    return {"step": "jko", "jko_tau": eta, "jko_inner": inner}


class Problem:
    def __init__(self, mode, seed):
        self.mode, self.seed = mode, seed
        if mode == "data":
            self.data, self.truth = SETS["unequal5"](20_000, 100 + seed)
            self.floor = score(SETS["unequal5"](20_000, 999 + seed)[0], self.truth)["tv"]
            self.exact = lambda n, s: SETS["unequal5"](n, s)[0]
        else:
            self.target = get_target("imbalanced2")
            t = self.target
            self.truth = (t.means.float(), t.stds.float(), t.weights.double())
            exact = t.sample(20_000, generator=torch.Generator().manual_seed(999 + seed)).float()
            self.floor = score(exact, self.truth)["tv"]
            self.exact = lambda n, s: t.sample(n, generator=torch.Generator().manual_seed(s)).float()
        # energy distance of 4000 samples to 4000 fresh exact ones, and its floor (exact vs exact)
        self.heldout = self.exact(4000, 5000 + seed)
        self.energy_floor = energy_distance(self.exact(4000, 6000 + seed), self.heldout)

    def energy(self, x):
        return energy_distance(x[:4000], self.heldout)

    def build(self, extra):
        if self.mode == "data":
            return ff.DataFlow(2, "sinkhorn", seed=self.seed, generator="mlp", batch_size=256, **extra)
        return ff.OneStepSampler(self.target, seed=self.seed, generator="mlp", density="kde",
                                 batch_size=512, reference_size=512, **extra)

    def fit(self, model, steps):
        if self.mode == "data":
            return model.fit(self.data, steps=steps)
        return model.fit(steps, progress=False, check=False)


def seconds_per_step(problem, extra, n=12):
    model = problem.build(extra)
    hist = problem.fit(model, n)
    return statistics.median(h["seconds"] for h in hist[2:])


def run(mode, seeds, budget):
    cells = []
    calib = {}
    for step, factor, inner in CONFIGS:
        name = config_name(step, factor, inner)
        extra = settings(mode, step, factor, inner)
        calib[name] = seconds_per_step(Problem(mode, 0), extra)
        steps = max(int(budget / calib[name]), 10)
        for seed in seeds:
            prob = Problem(mode, seed)
            model = prob.build(extra)
            t0 = time.perf_counter()
            hist = prob.fit(model, steps)
            fit_s = time.perf_counter() - t0
            xs = model.sample(20_000, seed=1000 + seed)
            res = score(xs, prob.truth)
            cell = {"mode": mode, "config": name, "step": step, "size": BASE[mode] * factor,
                    "inner": inner, "seed": seed, "steps": steps, "fit_s": fit_s,
                    "energy": prob.energy(xs), "energy_floor": prob.energy_floor,
                    "train_s": model.training_seconds, "tv": res["tv"], "off": res["off"],
                    "masses": res["masses"], "weights": res["weights"], "tv_floor": prob.floor}
            if step == "jko":
                cell["jko_move_last"] = hist[-1].get("jko_move")
            cells.append(cell)
            print(f"{mode} {name} seed {seed}: {steps} steps {fit_s:.1f} s TV {res['tv']:.4f} "
                  f"(floor {prob.floor:.4f}) off {res['off']:.3f}", flush=True)
    return cells, calib


#: ``--side``: DataFlow's own defaults beside the JKO rows, same data, budget and protocol
SIDE = {"sinkhorn_default": ("sinkhorn", {}), "critic_chi2_default": ("critic:chi2", {}),
        "critic_w1gp_default": ("critic:w1gp", {})}


def run_side(seeds, budget):
    """Data mode only: the Sinkhorn default (component generator, batch 512) and the two best
    critic velocities at their defaults, at the same wall-time budget as the JKO rows."""
    cells, calib = [], {}
    for name, (velocity, extra) in SIDE.items():
        def build(seed):
            return ff.DataFlow(2, velocity, seed=seed, **extra)
        probe = Problem("data", 0)
        hist = build(0).fit(probe.data, steps=12)
        calib[name] = statistics.median(h["seconds"] for h in hist[2:])
        steps = max(int(budget / calib[name]), 10)
        for seed in seeds:
            prob = Problem("data", seed)
            model = build(seed)
            t0 = time.perf_counter()
            model.fit(prob.data, steps=steps)
            fit_s = time.perf_counter() - t0
            xs = model.sample(20_000, seed=1000 + seed)
            res = score(xs, prob.truth)
            cells.append({"mode": "data", "config": name, "step": "explicit", "velocity": velocity,
                          "seed": seed, "steps": steps, "fit_s": fit_s,
                          "energy": prob.energy(xs), "energy_floor": prob.energy_floor, "tv": res["tv"], "off": res["off"],
                          "masses": res["masses"], "weights": res["weights"], "tv_floor": prob.floor})
            print(f"data {name} seed {seed}: {steps} steps {fit_s:.1f} s TV {res['tv']:.4f} "
                  f"(floor {prob.floor:.4f})", flush=True)
    return cells, calib


#: ``--digits``: the shipped digits config (images, class-conditional, Sinkhorn drift), explicit
#: vs JKO at the same wall time
DIGITS = {"explicit": {}, "jko_tau1_M3": {"train.step": "jko", "train.jko_tau": 1.0, "train.jko_inner": 3}}


def run_digits(seeds, budget, guidance=(1.0, 1.25)):
    import tempfile

    from freeflow.images.config import load_config
    from freeflow.images.metrics import DigitsEvaluator
    from freeflow.images.sample import evaluate_digits
    from freeflow.images.train import ImageRun, load_run

    ev = DigitsEvaluator.build(cache_dir=Path(__file__).resolve().parents[1] / "runs" / "bench_digits" / "evaluator")
    cells, calib = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, over in DIGITS.items():
            hist = ImageRun(load_config("digits", {**over, "train.steps": 12})).fit(Path(tmp) / f"cal_{name}",
                                                                                  progress=False)
            calib[name] = statistics.median(h["seconds"] for h in hist[2:])
            steps = max(int(budget / calib[name]), 10)
            for seed in seeds:
                cfg = load_config("digits", {**over, "train.steps": steps, "train.seed": seed,
                                             "train.checkpoint_every": steps})
                t0 = time.perf_counter()
                ImageRun(cfg).fit(Path(tmp) / f"{name}_{seed}", progress=False)
                fit_s = time.perf_counter() - t0
                net = load_run(Path(tmp) / f"{name}_{seed}").generator
                for g in guidance:
                    m = evaluate_digits(net, n=1000, guidance=g, seed=1000 + seed, evaluator=ev)
                    cells.append({"mode": "digits", "config": name, "seed": seed, "steps": steps, "fit_s": fit_s,
                                  **m})
                    print(f"digits {name} seed {seed} guidance {g}: {steps} steps {fit_s:.0f} s accuracy "
                          f"{m['accuracy']:.3f} FD {m['fid']:.2f} (floor {m['fid_real_floor']:.2f})", flush=True)
    return cells, calib


def summarize_digits(cells):
    out = {}
    for c in cells:
        out.setdefault(f"{c['config']} guidance {c['guidance']}", []).append(c)
    return {k: {"median_accuracy": statistics.median(c["accuracy"] for c in cs),
                "median_fid": statistics.median(c["fid"] for c in cs),
                "fid_per_seed": [round(c["fid"], 2) for c in cs],
                "median_fid_real_floor": statistics.median(c["fid_real_floor"] for c in cs),
                "steps": cs[0]["steps"], "median_fit_s": statistics.median(c["fit_s"] for c in cs)}
            for k, cs in out.items()}


def summarize(cells):
    out = {}
    for c in cells:
        out.setdefault(c["mode"], {}).setdefault(c["config"], []).append(c)
    return {mode: {name: {"median_tv": statistics.median(c["tv"] for c in cs),
                          "tv_per_seed": [round(c["tv"], 4) for c in cs],
                          "median_fit_s": statistics.median(c["fit_s"] for c in cs),
                          "median_energy": statistics.median(c["energy"] for c in cs)
                          if all("energy" in c for c in cs) else None,
                          "median_energy_floor": statistics.median(c["energy_floor"] for c in cs)
                          if all("energy_floor" in c for c in cs) else None,
                          "steps": cs[0]["steps"],
                          "median_tv_floor": statistics.median(c["tv_floor"] for c in cs)}
                   for name, cs in by.items()} for mode, by in out.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", nargs="+", default=["data", "datafree"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budget", type=float, default=25.0, help="training seconds per run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="jko")
    p.add_argument("--side", action="store_true",
                   help="only the DataFlow defaults (sinkhorn, critic:chi2, critic:w1gp) at the same budget "
                        "(-> results/jko_side.json)")
    p.add_argument("--digits", action="store_true",
                   help="only the digits image config, explicit vs JKO τ=1 M=3 (-> results/jko_digits.json); "
                        "--budget is then per run (default 240 s)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.digits:
        budget = 240.0 if args.budget == 25.0 else args.budget
        cells, calib = run_digits(args.seeds, budget)
        write_result("jko_digits" if args.name == "jko" else args.name,
                     {"budget_s": budget, "seconds_per_step": calib, "cells": cells,
                      "summary": summarize_digits(cells)})
        for k, row in summarize_digits(cells).items():
            print(k, row)
        return
    if args.side:
        cells, calib = run_side(args.seeds, args.budget)
        write_result("jko_side" if args.name == "jko" else args.name,
                     {"budget_s": args.budget, "seconds_per_step": calib, "cells": cells,
                      "summary": summarize(cells)})
        for name, row in summarize(cells)["data"].items():
            print(f"{name:20s} steps {row['steps']:5d} TV {row['median_tv']:.4f} {row['tv_per_seed']} "
                  f"{row['median_fit_s']:.1f} s")
        return
    cells, calib = [], {}
    for mode in args.modes:
        c, k = run(mode, args.seeds, args.budget)
        cells += c
        calib[mode] = k
        write_result(args.name, {"budget_s": args.budget, "seconds_per_step": calib, "cells": cells,
                                 "summary": summarize(cells)})
    for mode, table in summarize(cells).items():
        for name, row in table.items():
            print(f"{mode:8s} {name:18s} steps {row['steps']:5d} TV {row['median_tv']:.4f} "
                  f"{row['tv_per_seed']} floor {row['median_tv_floor']:.4f} {row['median_fit_s']:.1f} s")


if __name__ == "__main__":
    main()
