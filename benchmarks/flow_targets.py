"""Targets for the flow-route benchmarks (MATH.md §4): the project's ``targets`` package, plus
the 4-mode mixture with known unequal weights used by the dimension sweep."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from targets import get_target  # noqa: E402
from targets.mixtures import GaussianMixture  # noqa: E402


def gmm_known_weights(dim: int, radius: float = 4.0, seed: int = 0) -> GaussianMixture:
    """4 unit-std modes with weights (0.4, 0.3, 0.2, 0.1) at radius·u_k, u_k fixed random unit
    vectors (seeded): pairwise distances ≈ radius·√2 in high d, so modes are separated in every d."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(4, dim, generator=g, dtype=torch.float64)
    if dim == 2:
        u = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    t = GaussianMixture(radius * u, torch.ones(4, dtype=torch.float64),
                        torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64))
    t.name = f"gmm4_d{dim}"
    return t


def ring8():
    return get_target("ring8")


def imbalanced2():
    return get_target("imbalanced2")


def gmm40():
    return get_target("gmm40")
