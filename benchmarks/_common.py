"""Shared helpers for benchmark scripts: machine description and atomic JSON results."""
from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from freeflow.io import atomic_write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def write_rows(rows: list, out) -> Path:
    """{"command", "machine", "rows"} to ``out`` (atomically: rewritten after every row)."""
    return atomic_write_json({"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                              "machine": machine(), "rows": rows}, out)


def write_result(name: str, payload: dict) -> Path:
    payload = {**payload, "machine": machine(), "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}
    path = atomic_write_json(payload, RESULTS / f"{name}.json")
    print(f"wrote {path}")
    return path
