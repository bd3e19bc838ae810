"""The divergence grid of docs/divergences.md (issue 11): the same code as
``freeflow compare-divergences``.

    python benchmarks/divergences.py --quick --out /tmp/div-quick        # whole grid, small (minutes)
    python benchmarks/divergences.py --out benchmarks/results/divergences --resume
    # two processes on a 2-core machine, then one pass that assembles table and figures:
    python benchmarks/divergences.py --out DIR --resume --shard 0/2 --threads 1 &
    python benchmarks/divergences.py --out DIR --resume --shard 1/2 --threads 1 &
    wait; python benchmarks/divergences.py --out DIR --resume

Writes DIR/table.csv, DIR/table.json (one row per target × generator × divergence × seed ×
checkpoint), DIR/summary.json and the figures (freeflow.compare.divergence_figures).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from freeflow.cli.divergences import add_arguments, run  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 per process when sharding)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
