"""``freeflow compare-divergences``: the divergence grid (freeflow.compare.divergences).

    freeflow compare-divergences --out runs/div --quick            # the whole grid, small
    freeflow compare-divergences --out runs/div --resume           # continue a killed grid
    freeflow compare-divergences --out runs/div --divergences kl_qp,kl_pq,auto --targets ring8

benchmarks/divergences.py runs exactly this code.
"""
from __future__ import annotations

import argparse
import importlib

__all__ = ["add_compare_divergences_subcommand", "add_arguments", "run"]


def _list(text: str | None):
    return None if text is None else [t for t in (s.strip() for s in text.split(";" if ";" in text else ",")) if t]


def _targets(text: str | None):
    """Targets are separated by ';' (their own arguments use ',') or given one per --target."""
    return None if text is None else [t.strip() for t in text.split(";") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder for cells/, table.csv, table.json, figures")
    p.add_argument("--quick", action="store_true", help="the whole grid, small (one seed, 50 steps of 128)")
    p.add_argument("--resume", action="store_true", help="continue the grid in --out; finished cells are kept")
    p.add_argument("--divergences", default=None, help="comma-separated (default: every registered one, "
                   "lv:<reference> for each reference, auto)")
    p.add_argument("--targets", default=None, help="';'-separated target specs, e.g. "
                   "'ring8;imbalanced2:separation=6,dim=5' (default: the grid of docs/divergences.md)")
    p.add_argument("--generators", default="default,transport", help="comma-separated: default, transport")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; quick: 0)")
    p.add_argument("--steps", type=int, default=None, help="training steps per cell (budget = steps × batch)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--checkpoints", type=int, default=None, help="evaluations along training per cell")
    p.add_argument("--eval-samples", type=int, default=None)
    p.add_argument("--shard", default=None, help="I/N: run only every N-th cell from I (parallel processes)")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    cd = importlib.import_module("freeflow.compare.divergences")
    seeds = None
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in _list(args.seeds)]
        except ValueError:
            raise ValueError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    shard = None
    if args.shard is not None:
        try:
            i, n = (int(v) for v in args.shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like I/N, got {args.shard!r}") from None
        shard = (i, n)
    study = cd.compare_divergences(
        _list(args.divergences), _targets(args.targets), generators=_list(args.generators), seeds=seeds,
        steps=args.steps, batch_size=args.batch_size, checkpoints=args.checkpoints,
        eval_samples=args.eval_samples, out=args.out, resume=args.resume, quick=args.quick, shard=shard,
        progress=not args.no_progress)
    print(f"{study.computed} cells trained, {study.reused} reused; rows: {len(study.rows)}")
    if shard is None:
        print(f"wrote {study.out / 'table.csv'} and table.json")
        if not args.no_figures:
            figs = importlib.import_module("freeflow.compare.divergence_figures")
            for path in figs.write_figures(study):
                print(f"wrote {path}")
    return 0


def add_compare_divergences_subcommand(sub) -> None:
    p = sub.add_parser("compare-divergences", help="train every divergence on the mixture benchmarks "
                       "and tabulate mode coverage along training")
    add_arguments(p)
    p.set_defaults(func=run)
