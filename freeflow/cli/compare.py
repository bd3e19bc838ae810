"""``freeflow compare``: freeflow vs NUTS vs normflows VI on a built-in target, one report.

    freeflow compare --target logreg_breast_cancer --out runs/logreg

Steps: build the target; train a OneStepSampler (or ``--sampler PATH`` to load one); run
blackjax NUTS (cached under ``--cache-dir``); train the VI baseline for the same wall-clock
time as freeflow's training (or ``--vi-seconds``); compare all of them with the reference —
exact samples when the target has an exact sampler, else the NUTS draws (flagged when
unreliable) — and write report.md, report.json and PNG figures to ``--out``.

The lead wires it into the CLI with ``add_compare_subcommand(sub)`` in ``build_parser``.
"""
from __future__ import annotations

from .common import parse_key_values

import argparse
import sys
from pathlib import Path

__all__ = ["add_compare_subcommand", "run_compare"]




def add_compare_subcommand(subparsers) -> argparse.ArgumentParser:
    """Register ``compare`` on an argparse subparsers object; returns the sub-parser."""
    p = subparsers.add_parser(
        "compare", help="compare freeflow with NUTS and normflows VI on a built-in target",
        description="Train freeflow, run NUTS (blackjax) and reverse-KL VI (normflows) on a "
        "built-in target and write a comparison report (markdown, JSON, PNG) to --out.")
    p.add_argument("--target", required=True, help="built-in target name (see `freeflow targets`)")
    p.add_argument("--target-arg", action="append", metavar="KEY=VALUE", help="target constructor argument")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--sampler", help="load a trained OneStepSampler checkpoint instead of training")
    p.add_argument("--steps", type=int, default=3000, help="freeflow training steps (default 3000)")
    p.add_argument("--divergence", default="kl_pq")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a freeflow setting")
    p.add_argument("--n", type=int, default=4000, help="samples compared per method (default 4000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    p.add_argument("--warmup", type=int, default=1000, help="NUTS warmup steps per chain")
    p.add_argument("--draws", type=int, default=2000, help="NUTS draws per chain")
    p.add_argument("--no-nuts", action="store_true", help="skip NUTS (needs an exact sampler)")
    p.add_argument("--no-vi", action="store_true", help="skip the normflows VI baseline")
    p.add_argument("--vi-seconds", type=float, help="VI time budget (default: freeflow's training time)")
    p.add_argument("--vi-flow", default="spline", choices=["spline", "realnvp"])
    p.add_argument("--cache-dir", default=".cache/freeflow/nuts", help="NUTS draw cache")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_compare)
    return p


def run_compare(args) -> int:
    import targets
    import targets.posteriors  # noqa: F401  (registers the eight-schools targets)

    from ..compare import compare

    for name in ("steps", "n", "chains", "warmup", "draws"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name} must be a positive int, got {getattr(args, name)}")
    try:
        target = targets.get_target(args.target, **parse_key_values(args.target_arg, "--target-arg"))
    except (ValueError, TypeError) as e:
        raise SystemExit(f"error: --target: {e}") from None
    exact = bool(getattr(target, "has_exact_sampler", False))
    if args.no_nuts and not exact:
        raise SystemExit(f"error: --no-nuts: target {args.target!r} has no exact sampler; NUTS is "
                         "the reference")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    methods, names = [], []

    # -- freeflow ----------------------------------------------------------------------
    from ..datafree.sampler import OneStepSampler

    if args.sampler:
        sampler = OneStepSampler.load(args.sampler, target)
        print(f"loaded {args.sampler} ({sampler.steps_done} steps, {sampler.training_seconds:.1f} s)",
              file=sys.stderr)
    else:
        try:
            sampler = OneStepSampler(target, divergence=args.divergence, seed=args.seed,
                                     **parse_key_values(args.set, "--set"))
        except (ValueError, TypeError) as e:
            raise SystemExit(f"error: {e}") from None
        sampler.fit(args.steps, progress=progress, log=out / "log.jsonl")
        sampler.save(out / "sampler.pt")
    methods.append(sampler)
    names.append("freeflow")

    # -- NUTS ----------------------------------------------------------------------------
    ref = None
    if not args.no_nuts:
        from ..compare.reference import nuts

        ref = nuts(target, chains=args.chains, warmup=args.warmup, draws=args.draws,
                   seed=args.seed, cache_dir=args.cache_dir, progress=progress)
        methods.append(ref)
        names.append("NUTS")

    # -- VI --------------------------------------------------------------------------------
    if not args.no_vi:
        from ..compare.baselines import fit_vi

        budget = args.vi_seconds if args.vi_seconds is not None else max(sampler.training_seconds, 1.0)
        print(f"training normflows VI for {budget:.1f} s", file=sys.stderr)
        vi = fit_vi(target, time_budget_s=budget, flow=args.vi_flow, seed=args.seed)
        methods.append(vi)
        names.append("normflows VI")

    reference = target if exact else ref
    report = compare(methods, reference, n=args.n, target=target, names=names, seed=args.seed)
    report.save(out, figures=not args.no_figures)
    print(report.table())
    print(f"wrote {out / 'report.md'}, {out / 'report.json'}", file=sys.stderr)
    return 0
