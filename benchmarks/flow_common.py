"""Shared helpers of the flow-route benchmarks: metrics and a JSON writer."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """E‖X−Y‖ − ½E‖X−X′‖ − ½E‖Y−Y′‖ (V-statistic), float64."""
    x, y = x.double(), y.double()
    return float(torch.cdist(x, y).mean() - 0.5 * torch.cdist(x, x).mean() - 0.5 * torch.cdist(y, y).mean())


def mode_report(x: torch.Tensor, target) -> dict:
    """Per-mode mass by nearest centre, total variation to the true weights, modes covered
    (mass ≥ 10% of the true weight)."""
    k = target.mode_weights.numel()
    idx = target.assign_modes(x)
    mass = torch.bincount(idx, minlength=k).double() / x.shape[0]
    w = target.mode_weights.double()
    return {
        "mass": [round(float(m), 4) for m in mass],
        "tv": float(0.5 * (mass - w).abs().sum()),
        "modes_covered": int((mass >= 0.1 * w).sum()),
        "num_modes": k,
    }


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)
    return path


def env() -> dict:
    return {"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "load_avg_1min": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
