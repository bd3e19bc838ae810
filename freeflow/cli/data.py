"""``freeflow fit-data --data points.npy [--labels y.npy] --out runs/pts``.

The lead wires it in with ``add_fit_data_subcommand(sub)`` in :func:`freeflow.cli.build_parser`.
Writes OUT/flow.pt (checkpoint), OUT/log.jsonl, OUT/samples.npy, OUT/samples.png and
OUT/metrics.json (energy distance to the data and its noise floor).
"""
from __future__ import annotations

from .common import parse_key_values

import json
import sys
import time
from pathlib import Path

__all__ = ["add_fit_data_subcommand", "run_fit_data"]




def add_fit_data_subcommand(sub) -> None:
    p = sub.add_parser("fit-data", help="fit a one-step generator to a point cloud (.npy)",
                       description="Fit a one-step generator to points (n, d) in a .npy file by a "
                       "sample-based gradient flow (Sinkhorn by default) and write its checkpoint, "
                       "JSONL log, samples (.npy), figure (.png) and metrics (.json).")
    p.add_argument("--data", required=True, help="points, a (n, d) .npy array")
    p.add_argument("--labels", help="integer class labels, a (n,) .npy array (conditional model)")
    p.add_argument("--velocity", default="sinkhorn",
                   help="sinkhorn | drifting | mmd | kde_kl | critic:kl_dv | critic:kl_nwj | critic:chi2 | "
                        "critic:js | critic:w1gp")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, default=1.0, help="guidance scale for the samples written")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a DataFlow setting")
    p.add_argument("--samples", type=int, default=10_000, help="samples written to samples.npy")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--resume", action="store_true", help="continue from OUT/flow.pt if present")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_fit_data)


def _energy_distance(x, y, n: int = 2000, seed: int = 0) -> float:
    import torch

    g = torch.Generator().manual_seed(seed)
    x = x[torch.randperm(len(x), generator=g)[:n]].double()
    y = y[torch.randperm(len(y), generator=g)[:n]].double()
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def run_fit_data(args) -> int:
    import numpy as np
    import torch

    from ..data import DataFlow
    from ..io import atomic_save_npy, atomic_write_json
    from ..plotting import plot_history, plot_samples

    if args.steps < 1:
        raise SystemExit(f"error: --steps must be a positive int, got {args.steps}")
    if args.samples < 1:
        raise SystemExit(f"error: --samples must be a positive int, got {args.samples}")
    try:
        data = np.load(args.data)
    except Exception as e:  # missing file, not an array, pickled object
        raise SystemExit(f"error: --data: cannot read {args.data!r}: {e}") from None
    labels = None
    if args.labels:
        try:
            labels = np.load(args.labels)
        except Exception as e:
            raise SystemExit(f"error: --labels: cannot read {args.labels!r}: {e}") from None
    if data.ndim != 2:
        raise SystemExit(f"error: --data must hold a (n, d) array, got shape {data.shape}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "flow.pt"
    try:
        if args.resume and ckpt.exists():
            flow = DataFlow.load(ckpt)
            print(f"resuming {ckpt} at step {flow.steps_done}", file=sys.stderr)
        else:
            num_classes = None if labels is None else int(np.max(labels)) + 1
            flow = DataFlow(data.shape[1], args.velocity, seed=args.seed, num_classes=num_classes,
                            **parse_key_values(args.set, "--set"))
        t0 = time.perf_counter()
        flow.fit(data, labels, steps=args.steps, progress=not args.no_progress, log=out / "log.jsonl",
                 checkpoint=ckpt, checkpoint_every=args.checkpoint_every)
        wall = time.perf_counter() - t0
        if labels is None:
            x = flow.sample(args.samples, seed=args.seed + 10_000)
            y = None
        else:
            y = torch.from_numpy(np.asarray(labels)[np.random.default_rng(args.seed).integers(0, len(labels), args.samples)]).long()
            x = flow.sample(args.samples, labels=y, guidance=args.guidance, seed=args.seed + 10_000)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"error: {e}") from None

    atomic_save_npy(x.numpy(), out / "samples.npy")
    ref = torch.from_numpy(np.asarray(data, dtype=np.float32))
    plot_samples(x, out / "samples.png", reference=ref[:len(x)],
                 title=f"{args.velocity}: {flow.steps_done} steps")
    plot_history(flow.history, out / "history.png", keys=("loss", "v_raw_rms", "grad_norm", "lr"))
    half = len(ref) // 2
    summary = {
        "velocity": args.velocity, "steps": flow.steps_done, "num_samples": len(x),
        "training_seconds": flow.training_seconds, "this_run_wall_seconds": wall,
        "energy_distance": _energy_distance(x, ref, seed=args.seed),
        "energy_distance_noise_floor": _energy_distance(ref[:half], ref[half:], seed=args.seed) if half >= 2 else None,
        "guidance": args.guidance if labels is not None else None,
    }
    atomic_write_json(summary, out / "metrics.json")
    print(json.dumps(summary, indent=2))
    print(f"wrote {ckpt}, {out / 'log.jsonl'}, {out / 'samples.npy'}, {out / 'samples.png'}, "
          f"{out / 'history.png'}, {out / 'metrics.json'}", file=sys.stderr)
    return 0
