"""Ablation: two-batch self term T_{q→q′} vs the same-batch T_{q→q} (MATH.md §3).

    python benchmarks/data_self_term.py --steps 400

Fits N(0, I₂) data (and the 8-Gaussian ring) with both self terms at the same budget and
reports the fitted covariance trace (2 for the Gaussian) and W2 to held-out data.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from freeflow.data import DataFlow

import data_toys as T


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    sets = {"gaussian": lambda n, r: r.normal(size=(n, 2)), "8gaussians": T.eight_gaussians}
    for name, draw in sets.items():
        rng = np.random.default_rng(0)
        train, held, held2 = draw(20_000, rng), draw(2000, rng), draw(2000, rng)
        for seed in range(args.seeds):
            for self_term in ("independent", "same"):
                flow = DataFlow(2, "sinkhorn", seed=seed, batch_size=args.batch_size, self_term=self_term)
                flow.fit(torch.from_numpy(train).float(), steps=args.steps)
                x = flow.sample(2000, seed=5).numpy()
                row = {"data": name, "seed": seed, "self_term": self_term,
                       "cov_trace": float(np.trace(np.cov(x.T))), "data_cov_trace": float(np.trace(np.cov(train.T))),
                       "w2": T.w2(x, held), "noise_floor": T.w2(held, held2)}
                rows.append(row)
                print(row, flush=True)
    T._save("data_self_term.json", {"steps": args.steps, "batch_size": args.batch_size, "rows": rows})


if __name__ == "__main__":
    main()
