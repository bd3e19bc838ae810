"""The ``freeflow`` command: one parser, one module per subcommand (sample, compare, fit-data)."""
from __future__ import annotations

import argparse
import os
import sys

from ..validation import USER_ERRORS  # (re-exported: errors printed as one line, exit status 2)

__all__ = ["main", "build_parser", "USER_ERRORS"]


def _add_targets(sub) -> None:
    p = sub.add_parser("targets", help="list the built-in targets")
    p.set_defaults(func=lambda args: print("\n".join(__import__("targets").available_targets())) or 0)


def _add_divergences(sub) -> None:
    p = sub.add_parser("divergences", help="list the f-divergences")
    p.set_defaults(func=lambda args: print("\n".join(__import__("freeflow").available_divergences())) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="freeflow", description="One-step samplers for unnormalised densities.")
    sub = parser.add_subparsers(dest="command", required=True)
    from .sample import add_sample_subcommand

    add_sample_subcommand(sub)
    _add_targets(sub)
    _add_divergences(sub)
    from .compare import add_compare_subcommand

    add_compare_subcommand(sub)
    from .data import add_fit_data_subcommand

    add_fit_data_subcommand(sub)
    from .divergences import add_compare_divergences_subcommand

    add_compare_divergences_subcommand(sub)
    from .images import add_images_subcommand

    add_images_subcommand(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command. Bad input and failed runs print ``freeflow CMD: error: ...`` (no
    traceback; set FREEFLOW_DEBUG=1 for one) and return 2; Ctrl-C returns 130."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        if os.environ.get("FREEFLOW_DEBUG"):
            raise
        print(f"freeflow {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"freeflow {args.command}: interrupted (the last checkpoint is intact; rerun with --resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
