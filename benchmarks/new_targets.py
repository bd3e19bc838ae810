"""Mode weights on targets nobody tuned for: the defaults now against the defaults before (issue 10).

Targets (built here; the ``val_*`` ones were generated after the defaults were chosen and were
never run while tuning):
  ring8            the library's 8-mode ring
  ring6_unequal    6 modes on a ring of radius 5, std 0.4, weights 0.30 … 0.05 (6×)
  widths5          5 modes, stds 0.15 … 0.9 (6×), weights 0.40 … 0.06 (6.7×)
  val_mix_<s>      seeded random 2-D mixtures: 4–7 modes, weights geometric with a ratio of
                   6–10 between the largest and the smallest, stds log-uniform over 0.2 … 1.0
                   (both ends present: 5×), centres at least 3·(σ_i + σ_j) apart
  gmm40            the library's 40-mode GMM (budget: 5 minutes)
  tilted_wells16/32  targets.tilted_wells (tilt −0.6, coupled x₂): per-pair P(x₁>0) = 0.2004
  val_wells24      tilted_wells with other constants (a = 1, c = 2, tilt +0.9, ρ = −0.3, s = 1.2)
  manywell32       the library's Many-Well

Methods:
  after    ``OneStepSampler(log_density, dim, seed=seed).fit()``: nothing set (the new defaults)
  before   the defaults before issue 10: MLP generator + KDE in d ≤ 3, RealNVP flow generator
           above, 3000 steps (``generator='mlp', density='kde'`` / ``generator='flow'``)

Metrics (5000 samples; 20 000 for the pair masses and log Ẑ): mode-mass TV and its noise floor,
energy distance over its noise floor, per-pair |P(x₁>0) − exact| (mean over pairs, raw samples),
|log Ẑ − log Z| (importance sampling, where log q is exact), training seconds, the reliability
verdict. Cells are written as they finish and skipped when already present (resumable):

    python benchmarks/new_targets.py --seeds 0 1 2
    python benchmarks/new_targets.py --targets widths5 val_mix_1 --methods after
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine  # noqa: E402

import freeflow as ff  # noqa: E402
import targets  # noqa: E402
from freeflow import metrics as M  # noqa: E402
from freeflow.io import atomic_write_json  # noqa: E402
from targets.mixtures import GaussianMixture  # noqa: E402

OUT = RESULTS / "new_targets.json"
T64 = torch.float64


def _ring(n, radius, std, weights):
    a = 2 * math.pi * torch.arange(n, dtype=T64) / n
    return GaussianMixture(radius * torch.stack([a.cos(), a.sin()], 1), torch.full((n,), std, dtype=T64),
                           torch.tensor(weights, dtype=T64))


def random_mixture(seed: int) -> GaussianMixture:
    """A seeded random 2-D mixture (see the module docstring)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    k = int(torch.randint(4, 8, (1,), generator=g))
    ratio = 6 + 4 * float(torch.rand(1, generator=g))
    w = ratio ** (-torch.arange(k, dtype=T64) / (k - 1))
    w = (w / w.sum())[torch.randperm(k, generator=g)]
    u = torch.cat([torch.tensor([0.0, 1.0], dtype=T64), torch.rand(k - 2, generator=g, dtype=T64)])
    stds = (0.2 * 5 ** u)[torch.randperm(k, generator=g)]  # spans exactly 0.2 … 1.0
    means = []
    while len(means) < k:
        c = (torch.rand(2, generator=g, dtype=T64) - 0.5) * 16
        i = len(means)
        if all(float((c - m).norm()) >= 3 * float(stds[i] + stds[j]) + 1.0 for j, m in enumerate(means)):
            means.append(c)
    return GaussianMixture(torch.stack(means), stds, w)


def make_target(name: str):
    if name in ("ring8", "gmm40", "manywell32"):
        return targets.get_target(name)
    if name == "ring6_unequal":
        return _ring(6, 5.0, 0.4, [0.30, 0.25, 0.18, 0.12, 0.10, 0.05])
    if name == "widths5":
        means = torch.tensor([[0., 0.], [4., 1.], [-3., 3.], [1., -4.], [-4., -3.]], dtype=T64)
        return GaussianMixture(means, torch.tensor([0.9, 0.15, 0.5, 0.3, 0.6], dtype=T64),
                               torch.tensor([0.40, 0.25, 0.17, 0.12, 0.06], dtype=T64))
    if name.startswith("val_mix_"):
        return random_mixture(int(name.rsplit("_", 1)[1]))
    if name.startswith("tilted_wells"):
        return targets.get_target("tilted_wells", dim=int(name[len("tilted_wells"):]))
    if name == "val_wells24":
        return targets.get_target("tilted_wells", dim=24, a=1.0, c=2.0, tilt=0.9, rho=-0.3, s=1.2)
    raise ValueError(f"unknown target {name!r}")


DEFAULT_TARGETS = ["ring8", "ring6_unequal", "widths5", "val_mix_1", "val_mix_2", "val_mix_3", "gmm40",
                   "tilted_wells16", "tilted_wells32", "val_wells24", "manywell32"]


def run_cell(name: str, method: str, seed: int) -> dict:
    t = make_target(name)
    if method == "after":
        s = ff.OneStepSampler(t.log_prob, dim=t.dim, seed=seed)
        steps = None
    elif method == "before":
        kw = dict(generator="mlp", density="kde") if t.dim <= 3 else dict(generator="flow")
        s = ff.OneStepSampler(t.log_prob, dim=t.dim, seed=seed, **kw)
        steps = 3000
    else:
        raise ValueError(method)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ff.ReliabilityWarning)
        s.fit(steps, progress=False)
    row = {"target": name, "method": method, "seed": seed, "dim": t.dim, "generator": s.generator_name,
           "steps": s.steps_done, "train_seconds": time.perf_counter() - t0,
           "verdict": s.last_reliability.verdict, "trusted": s.last_reliability.trusted}
    x = s.sample(5000, seed=1000 + seed)
    summ = M.summarize(x, t, n_ref=5000, generator=torch.Generator().manual_seed(2000 + seed))
    if "modes" in summ:
        row.update(mass_tv=summ["modes"]["tv"], mass_tv_floor=summ["noise_floor"]["mode_tv"]["median"],
                   modes_covered=summ["modes"]["modes_covered"], num_modes=summ["modes"]["num_modes"],
                   masses=summ["modes"]["masses"], weights=summ["modes"]["weights"])
    if "energy_distance" in summ:
        row["ed_over_floor"] = summ["energy_distance"] / summ["noise_floor"]["energy_distance"]["median"]
    if t.mode_centers is None:  # double-well products: per-pair mass, raw samples
        xl = s.sample(20_000, seed=3000 + seed)
        frac = (xl[:, 0::2] > 0).double().mean(0)
        p_pos = getattr(t, "p_pos", None) or getattr(t, "p_positive")
        row.update(pair_p_pos=p_pos, pair_frac_mean=float(frac.mean()),
                   pair_err_mean=float((frac - p_pos).abs().mean()), pair_err_max=float((frac - p_pos).abs().max()))
    if t.log_Z is not None and hasattr(s.state.ema.module, "forward_and_log_prob"):
        lz, se = s.log_normalizer(20_000, seed=4000 + seed)
        row.update(log_z_error=lz - t.log_Z, log_z_se=se)
    return row


def summarize(rows: list[dict]) -> dict:
    out = {}
    keys = ("mass_tv", "mass_tv_floor", "ed_over_floor", "pair_err_mean", "log_z_error", "train_seconds", "steps")
    for name in sorted({r["target"] for r in rows}):
        for method in ("before", "after"):
            rs = [r for r in rows if r["target"] == name and r["method"] == method]
            if not rs:
                continue
            agg = {"seeds": len(rs)}
            for k in keys:
                vals = [abs(r[k]) if k == "log_z_error" else r[k] for r in rs if k in r]
                if vals:
                    agg[k + "_median"] = statistics.median(vals)
                    agg[k + "_max"] = max(vals)
            agg["untrusted"] = sum(1 for r in rs if r["trusted"] is False)
            out[f"{name}/{method}"] = agg
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", nargs="+", default=DEFAULT_TARGETS)
    ap.add_argument("--methods", nargs="+", default=["after", "before"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="results file (default: results/new_targets.json)")
    args = ap.parse_args()
    out = Path(args.out) if args.out else OUT
    torch.set_num_threads(args.threads)
    data = json.loads(out.read_text()) if out.exists() else {"rows": []}
    done = {(r["target"], r["method"], r["seed"]) for r in data["rows"]}
    for name in args.targets:
        for method in args.methods:
            for seed in args.seeds:
                if (name, method, seed) in done:
                    continue
                row = run_cell(name, method, seed)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                                  if k not in ("masses", "weights")}), flush=True)
                data["rows"].append(row)
                data["summary"] = summarize(data["rows"])
                data["machine"] = machine()
                atomic_write_json(data, out)
    print(json.dumps(data.get("summary", {}), indent=1))


if __name__ == "__main__":
    main()
