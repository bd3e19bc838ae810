"""``freeflow sample --target ring8 --out runs/ring8``: train a one-step sampler on a built-in target."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .common import parse_key_values

__all__ = ["add_sample_subcommand", "run_sample"]


def add_sample_subcommand(sub) -> None:
    p = sub.add_parser("sample", help="train a one-step sampler on a built-in target",
                       description="Train a one-step sampler on a built-in target and write its "
                       "checkpoint, JSONL log, samples (.npy), figure (.png) and metrics (.json).")
    p.add_argument("--target", required=True, help="built-in target name (see `freeflow targets`)")
    p.add_argument("--target-arg", action="append", metavar="KEY=VALUE", help="target constructor argument")
    p.add_argument("--divergence", default="kl_pq", help="f-divergence name (default: kl_pq)")
    p.add_argument("--steps", type=int, default=None,
                   help="schedule length (default: train in rounds until the reliability check passes)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="end training at the first step past this many seconds (--resume continues)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a sampler setting")
    p.add_argument("--samples", type=int, default=20_000, help="samples written to samples.npy")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--resume", action="store_true", help="continue from OUT/sampler.pt if present")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_sample)


def run_sample(args) -> int:
    import torch

    import targets
    from .. import metrics as M
    from ..io import atomic_save_npy, atomic_write_json
    from ..plotting import plot_history, plot_samples
    from ..datafree.sampler import OneStepSampler

    if args.steps is not None and args.steps < 1:
        raise SystemExit(f"error: --steps must be a positive int, got {args.steps}")
    if args.time_limit is not None and not args.time_limit > 0:
        raise SystemExit(f"error: --time-limit must be a positive number of seconds, got {args.time_limit}")
    if args.samples < 1:
        raise SystemExit(f"error: --samples must be a positive int, got {args.samples}")
    if args.checkpoint_every < 1:
        raise SystemExit(f"error: --checkpoint-every must be a positive int, got {args.checkpoint_every}")
    try:
        target = targets.get_target(args.target, **parse_key_values(args.target_arg, "--target-arg"))
    except (ValueError, TypeError) as e:
        raise SystemExit(f"error: --target: {e}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "sampler.pt"
    if args.resume and ckpt.exists():
        sampler = OneStepSampler.load(ckpt, target)
        print(f"resuming {ckpt} at step {sampler.steps_done}", file=sys.stderr)
    else:
        try:
            sampler = OneStepSampler(target, divergence=args.divergence, seed=args.seed,
                                     **parse_key_values(args.set, "--set"))
        except (ValueError, TypeError) as e:
            raise SystemExit(f"error: {e}") from None
    t0 = time.perf_counter()
    sampler.fit(args.steps, progress=not args.no_progress, log=out / "log.jsonl", checkpoint=ckpt,
                checkpoint_every=args.checkpoint_every, time_limit=args.time_limit)
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    x = sampler.sample(args.samples, seed=args.seed + 10_000)
    sample_seconds = time.perf_counter() - t1

    atomic_save_npy(x.numpy(), out / "samples.npy")
    plot_samples(x, out / "samples.png", log_prob=target.log_prob, plot_range=getattr(target, "plot_range", None),
                 reference=target.sample(len(x), torch.Generator().manual_seed(1)) if target.has_exact_sampler else None,
                 title=f"{args.target}: {args.divergence}, {sampler.steps_done} steps")
    plot_history(sampler.history, out / "history.png")
    # Metrics on (at most) 5000 samples: energy distances are O(n²).
    summary = M.summarize(x[:5000], target, n_ref=5000, generator=torch.Generator().manual_seed(args.seed + 20_000))
    rel = sampler.last_reliability
    if rel is not None:
        summary["reliability"] = rel.to_dict()
        print(f"reliability: {rel.verdict}", file=sys.stderr)
    summary.update({"target": args.target, "divergence": args.divergence, "steps": sampler.steps_done,
                    "training_seconds": sampler.training_seconds, "this_run_wall_seconds": wall,
                    "sampling_seconds": sample_seconds, "num_samples": len(x), "stopped_early": sampler.stop_reason})
    atomic_write_json(summary, out / "metrics.json")
    print(json.dumps(summary, indent=2, default=str))
    print(f"wrote {ckpt}, {out / 'log.jsonl'}, {out / 'samples.npy'}, {out / 'samples.png'}, "
          f"{out / 'history.png'}, {out / 'metrics.json'}", file=sys.stderr)
    return 0
