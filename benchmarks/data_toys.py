"""Data-mode benchmarks on 2-D toys (writes JSON to benchmarks/results/).

    python benchmarks/data_toys.py toys      --steps 500   # W2 to held-out data vs noise floor
    python benchmarks/data_toys.py imbalance --steps 800   # minority-mode mass, sinkhorn vs drifting
    python benchmarks/data_toys.py transfer  --steps 500   # oval -> disc transfer

Every velocity gets the same budget: same generator, batch size, steps, learning rate.
W2 is exact discrete OT (POT's emd) between 2000 generated and 2000 held-out points; the noise
floor is the same W2 between two independent 2000-point draws of the true distribution.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import ot
import torch

from freeflow.data import DataFlow

RESULTS = Path(__file__).resolve().parent / "results"
FIGS = Path(__file__).resolve().parents[1] / "docs" / "figures"
VELOCITIES = ("sinkhorn", "drifting", "mmd", "kde_kl")


def eight_gaussians(n, rng):
    k = rng.integers(0, 8, n)
    ang = 2 * np.pi * k / 8
    return np.stack([4 * np.cos(ang), 4 * np.sin(ang)], 1) + 0.3 * rng.normal(size=(n, 2))


def checkerboard(n, rng):
    x1 = rng.uniform(-2, 2, n)
    x2 = rng.uniform(0, 1, n) - rng.integers(0, 2, n) * 2.0 + (np.floor(x1) % 2)
    return np.stack([x1, x2], 1) * 2.0


def two_moons(n, rng):
    from sklearn.datasets import make_moons

    x, _ = make_moons(n, noise=0.05, random_state=int(rng.integers(1 << 31)))
    return (x - [0.5, 0.25]) * 2.5


TOYS = {"8gaussians": eight_gaussians, "checkerboard": checkerboard, "two_moons": two_moons}


def w2(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    m = ot.dist(a, b)  # squared Euclidean
    return float(math.sqrt(ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), m, numItermax=10**7)))


def _save(name, obj):
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(json.dumps(obj, indent=2) + "\n")
    print(json.dumps(obj, indent=2))


def _scatter(panels, path, ncols):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows), squeeze=False)
    for ax, (title, pts) in zip(axes.flat, panels):
        ax.scatter(pts[:, 0], pts[:, 1], s=0.5, alpha=0.4)
        ax.set_title(title, fontsize=8)
        ax.set_aspect("equal")
        ax.set_xticks([]); ax.set_yticks([])
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    FIGS.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_toys(args):
    rows, panels = [], []
    for toy, draw in TOYS.items():
        rng = np.random.default_rng(0)
        train, held, held2 = draw(20_000, rng), draw(2000, rng), draw(2000, rng)
        floor = w2(held, held2)
        panels.append((f"{toy}: data", train[:4000]))
        for vel in VELOCITIES:
            flow = DataFlow(2, vel, seed=args.seed, batch_size=args.batch_size)
            t0 = time.perf_counter()
            flow.fit(torch.from_numpy(train).float(), steps=args.steps)
            secs = time.perf_counter() - t0
            x = flow.sample(2000, seed=123).numpy()
            row = {"toy": toy, "velocity": vel, "w2": w2(x, held), "noise_floor": floor,
                   "seconds": secs, "ms_per_step": 1000 * secs / args.steps}
            rows.append(row)
            print(row, flush=True)
            panels.append((f"{vel}: W2 {row['w2']:.3f} (floor {floor:.3f})", flow.sample(4000, seed=7).numpy()))
    _scatter(panels, FIGS / "data_toys.png", ncols=5)
    _save("data_toys.json", {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
                             "threads": torch.get_num_threads(), "rows": rows})


def imbalance_data(n, rng):
    """6 equal dominant modes on a radius-3 circle (95 %) + 2 minority modes at (±9, 0) (5 %)."""
    centres = np.array([[3 * np.cos(a), 3 * np.sin(a)] for a in 2 * np.pi * (np.arange(6) + 0.5) / 6]
                       + [[9.0, 0.0], [-9.0, 0.0]])
    w = np.array([0.95 / 6] * 6 + [0.025, 0.025])
    k = rng.choice(8, n, p=w)
    return centres[k] + 0.3 * rng.normal(size=(n, 2)), centres, w


def run_imbalance(args):
    rows, panels = [], []
    rng = np.random.default_rng(0)
    train, centres, w = imbalance_data(20_000, rng)
    panels.append(("data", train[:4000]))
    configs = [("sinkhorn", {}), ("drifting", {})]
    if args.rel_eps:
        configs.insert(1, ("sinkhorn", {"rel_eps": tuple(args.rel_eps)}))
    for seed in range(args.seeds):
        for vel, extra in configs:
            flow = DataFlow(2, vel, seed=seed, batch_size=args.batch_size, **extra)
            t0 = time.perf_counter()
            flow.fit(torch.from_numpy(train).float(), steps=args.steps)
            x = flow.sample(20_000, seed=99).numpy()
            d = np.linalg.norm(x[:, None] - centres[None], axis=-1)
            near = d.min(1) < 1.0  # within 3.3 σ of a centre
            k = d.argmin(1)
            mass = np.array([(near & (k == j)).mean() for j in range(8)])
            row = {"velocity": vel, "settings": {k: list(v) for k, v in extra.items()}, "seed": seed, "minority_mass": float(mass[6:].sum()),
                   "minority_mass_each": mass[6:].tolist(), "dominant_mass": float(mass[:6].sum()),
                   "off_mode_mass": float(1 - near.mean()), "target_minority_mass": 0.05,
                   "seconds": time.perf_counter() - t0}
            rows.append(row)
            print(row, flush=True)
            if seed == 0:
                tag = f" rel_eps={list(extra['rel_eps'])}" if extra else ""
                panels.append((f"{vel}{tag}: minority {row['minority_mass']:.3f} (true 0.05)", x[:4000]))
    _scatter(panels, FIGS / "data_imbalance.png", ncols=len(panels))
    _save("data_imbalance.json", {"steps": args.steps, "batch_size": args.batch_size, "rows": rows})


def run_transfer(args):
    rng = np.random.default_rng(0)

    def oval(n):  # uniform in an ellipse with semi-axes (3, 1)
        r, t = np.sqrt(rng.uniform(size=n)), rng.uniform(0, 2 * np.pi, n)
        return np.stack([3 * r * np.cos(t), r * np.sin(t)], 1)

    def disc(n):  # uniform in a disc of the same area (radius √3)
        r, t = np.sqrt(3 * rng.uniform(size=n)), rng.uniform(0, 2 * np.pi, n)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)

    src, tgt, src_test, tgt_test, tgt_test2 = oval(20_000), disc(20_000), oval(2000), disc(2000), disc(2000)
    flow = DataFlow(2, "sinkhorn", source=torch.from_numpy(src).float(), seed=args.seed, batch_size=args.batch_size)
    t0 = time.perf_counter()
    flow.fit(torch.from_numpy(tgt).float(), steps=args.steps)
    secs = time.perf_counter() - t0
    out = flow.transform(torch.from_numpy(src_test).float()).numpy()
    m = ot.dist(src_test, tgt_test)
    plan = ot.emd(np.full(2000, 1 / 2000), np.full(2000, 1 / 2000), m, numItermax=10**7)
    ot_mean_dist = float((plan * np.sqrt(m)).sum())
    row = {"mean_transport_distance": float(np.linalg.norm(out - src_test, axis=1).mean()),
           "ot_mean_transport_distance_w2_plan": ot_mean_dist,
           "w2_transported_to_target": w2(out, tgt_test), "w2_noise_floor": w2(tgt_test2, tgt_test),
           "w2_source_to_target": w2(src_test, tgt_test), "steps": args.steps, "seconds": secs}
    _scatter([("source (oval)", src_test), ("target (disc)", tgt_test), ("G(source)", out)],
             FIGS / "data_transfer.png", ncols=3)
    _save("data_transfer.json", row)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("which", choices=["toys", "imbalance", "transfer"])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rel-eps", type=float, nargs="+", help="imbalance: also run sinkhorn with these rel_eps")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    {"toys": run_toys, "imbalance": run_imbalance, "transfer": run_transfer}[args.which](args)


if __name__ == "__main__":
    main()
