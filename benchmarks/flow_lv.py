"""Log-variance divergence variants on ring8, imbalanced2 and gmm40 (2-D, KDE route).

Compares the derived LV flow V = 2 r̂ [β + c ∇log(ρ/q)] with its surrogate V = 2 r̂ β for each
reference ρ (on_policy = twice the kl_qp flow; gaussian; mixture; replay), with kl_pq (the
library default) as the baseline.  Reports mode coverage, mass TV and energy distance vs the
noise floor.

    PYTHONPATH=$PWD python benchmarks/flow_lv.py [--steps 600]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from flow_common import energy_distance, env, mode_report, write  # noqa: E402
from flow_targets import gmm40, imbalanced2, ring8  # noqa: E402

from freeflow.datafree.sampler import OneStepSampler  # noqa: E402

TARGETS = {"ring8": (ring8, 3.0), "imbalanced2": (imbalanced2, 3.0), "gmm40": (gmm40, 20.0)}
VARIANTS = {
    "kl_pq": dict(divergence="kl_pq"),
    "lv_on_policy": dict(divergence="lv", lv_reference="on_policy"),
    "lv_gaussian_derived": dict(divergence="lv", lv_reference="gaussian", lv_mode="derived"),
    "lv_gaussian_surrogate": dict(divergence="lv", lv_reference="gaussian", lv_mode="surrogate"),
    "lv_mixture_derived": dict(divergence="lv", lv_reference="mixture", lv_mode="derived"),
    "lv_mixture_surrogate": dict(divergence="lv", lv_reference="mixture", lv_mode="surrogate"),
    "lv_replay_derived": dict(divergence="lv", lv_reference="replay", lv_mode="derived"),
    "lv_replay_surrogate": dict(divergence="lv", lv_reference="replay", lv_mode="surrogate"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--targets", nargs="+", default=list(TARGETS))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for tname in a.targets:
        make, init_scale = TARGETS[tname]
        target = make()
        ref = target.sample(2000, torch.Generator().manual_seed(1))
        ref2 = target.sample(2000, torch.Generator().manual_seed(2))
        floor = energy_distance(ref2, ref)
        for vname in a.variants:
            s = OneStepSampler(target.log_prob, 2, seed=0, batch_size=a.batch, reference_size=a.batch,
                               init_scale=init_scale, **VARIANTS[vname])
            t0 = time.perf_counter()
            try:
                s.fit(a.steps, progress=False)
            except Exception as e:
                row = {"target": tname, "variant": vname, "error": f"{type(e).__name__}: {e}"}
            else:
                x = s.sample(20000, seed=3)
                row = {"target": tname, "variant": vname, "steps": a.steps,
                       "s_per_step": (time.perf_counter() - t0) / a.steps, **mode_report(x, target),
                       "energy": energy_distance(x[:2000], ref), "energy_noise_floor": floor}
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "mass" or tname != "gmm40"}, flush=True)
            write("flow_lv", {"env": env(), "settings": vars(a), "variants": VARIANTS, "rows": rows})


if __name__ == "__main__":
    main()
