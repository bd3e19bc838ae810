"""Helpers shared by the command-line subcommands."""
from __future__ import annotations

import ast

__all__ = ["parse_key_values"]


def parse_key_values(items: list[str] | None, flag: str) -> dict:
    """Parse KEY=VALUE pairs; values are Python literals where they parse, else strings."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"error: {flag} expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out
