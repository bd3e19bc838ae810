"""Targets for the flow-route benchmarks, with exact samplers.

Mirrors the definitions of the project's ``targets`` package (ring8, imbalanced2, gmm40;
MATH.md §4) so the benchmarks run on this branch alone; ``get`` prefers the
package when it is importable.
"""
from __future__ import annotations

import math

import numpy as np
import torch


class Mixture:
    """Isotropic Gaussian mixture Σ w_k N(μ_k, σ_k² I); log_Z = 0."""

    log_Z = 0.0

    def __init__(self, means, stds, weights, name="mixture"):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.stds = torch.as_tensor(stds, dtype=torch.float64)
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.dim = self.means.shape[1]
        self.mode_centers, self.mode_weights, self.name = self.means, self.weights, name

    def log_prob(self, x):
        mu, sd = self.means.to(x), self.stds.to(x)
        z = (x.unsqueeze(-2) - mu) / sd[:, None]
        comp = -0.5 * z.pow(2).sum(-1) - self.dim * (sd.log() + 0.5 * math.log(2 * math.pi))
        return torch.logsumexp(self.weights.to(x).log() + comp, -1)

    def sample(self, n, generator=None):
        idx = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[idx] + self.stds[idx, None] * eps).float()

    def assign(self, x):
        return torch.cdist(x.double(), self.means).argmin(1)


def gmm_known_weights(dim: int, radius: float = 4.0, seed: int = 0) -> Mixture:
    """4 unit-std modes with weights (0.4, 0.3, 0.2, 0.1) at radius·u_k, u_k fixed random unit
    vectors (seeded): pairwise distances ≈ radius·√2 in high d, so modes are separated in every d."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(4, dim, generator=g, dtype=torch.float64)
    if dim == 2:
        u = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    return Mixture(radius * u, torch.ones(4), torch.tensor([0.4, 0.3, 0.2, 0.1]), f"gmm4_d{dim}")


def ring8():
    a = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    return Mixture(4.0 * torch.stack([a.cos(), a.sin()], 1), torch.full((8,), 0.3), torch.full((8,), 1 / 8), "ring8")


def imbalanced2():
    return Mixture(torch.tensor([[-4.0, 0.0], [4.0, 0.0]]), torch.ones(2), torch.tensor([0.8, 0.2]), "imbalanced2")


def gmm40():
    g = torch.Generator().manual_seed(0)
    means = (torch.rand(40, 2, generator=g, dtype=torch.float32) - 0.5) * 80
    std = float(torch.nn.functional.softplus(torch.tensor(1.0, dtype=torch.float64)))
    return Mixture(means.double(), torch.full((40,), std), torch.full((40,), 1 / 40), "gmm40")
