"""Many-Well (MATH.md §4): dim/2 independent copies of an asymmetric double well (unnormalised).

The definition of flow annealed importance sampling (FAB; Midgley et al. 2023) and of the
diffusion-sampler benchmarks (Sendera et al. 2024, ``energies/many_well.py`` of gfn-diffusion).
Pairs are interleaved, as in the FAB code: pair k is (x_{2k}, x_{2k+1}), with

    log p̃(x_1, x_2) = -x_1⁴ + 6 x_1² + 0.5 x_1 - 0.5 x_2².

Per pair Z = Z_1 · sqrt(2π) with Z_1 = ∫ exp(-t⁴ + 6t² + 0.5t) dt (computed with scipy quad:
11784.509265, the published constant is 11784.50927), so

    log_Z = (dim/2) · (ln Z_1 + ½ ln 2π) = (dim/2) · 10.293480,

164.6957 for dim = 32, 658.7827 for 128 and 2635.131 for 512.  Registered at the field's three
sizes: ``manywell32``, ``manywell128`` and ``manywell512`` (each also takes ``dim``).  The double
well has modes near t = -1.711 and t = 1.753 and P(x_1 > 0) = 0.844307 in every pair: there are
2^(dim/2) modes, so no mode centres are listed; ``positive_fraction`` checks the per-pair mode
weight instead.

Exact sampler: x_2 ~ N(0, 1); x_1 by rejection sampling from a two-Gaussian proposal g centred
on the two wells (std 0.45, weights P(x_1 ≷ 0)), with the bound M = max f/(Z_1 g) found on a
fine grid over [-8, 8] (outside, f/g decays like exp(-t⁴)) times a 1e-3 safety margin in log.
Accepted draws are exact samples of the 1-D marginal.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .base import Target, check_int
from .registry import register_target

_PROPOSAL_STD = 0.45


def double_well_log_density(t):
    """-t⁴ + 6t² + 0.5t (works on numpy arrays, torch tensors and jax arrays)."""
    t2 = t * t
    return -t2 * t2 + 6.0 * t2 + 0.5 * t


@functools.lru_cache(maxsize=1)
def _double_well_constants() -> dict:
    """log Z_1, P(t > 0), the well locations and the rejection bound (float64, computed once)."""
    from scipy.integrate import quad

    f = lambda t: math.exp(double_well_log_density(t))  # noqa: E731
    z_neg = quad(f, -np.inf, 0.0, epsabs=0.0, epsrel=1e-13)[0]
    z_pos = quad(f, 0.0, np.inf, epsabs=0.0, epsrel=1e-13)[0]
    log_z1 = math.log(z_neg + z_pos)
    p_pos = z_pos / (z_neg + z_pos)
    roots = np.sort(np.roots([-4.0, 0.0, 12.0, 0.5]).real)       # d/dt log f = 0
    mu_neg, mu_pos = float(roots[0]), float(roots[2])
    grid = np.linspace(-8.0, 8.0, 400_001)
    log_ratio = double_well_log_density(grid) - log_z1 - _log_proposal_np(grid, mu_neg, mu_pos, p_pos)
    log_m = float(log_ratio.max()) + 1e-3
    return dict(log_z1=log_z1, p_pos=p_pos, mu_neg=mu_neg, mu_pos=mu_pos, log_m=log_m)


def _log_proposal_np(t, mu_neg, mu_pos, p_pos):
    s = _PROPOSAL_STD
    a = math.log(1 - p_pos) - 0.5 * ((t - mu_neg) / s) ** 2
    b = math.log(p_pos) - 0.5 * ((t - mu_pos) / s) ** 2
    return np.logaddexp(a, b) - math.log(s) - 0.5 * math.log(2 * math.pi)


def sample_double_well(m: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``m`` exact draws (float64) from p(t) ∝ exp(-t⁴ + 6t² + 0.5t) by rejection sampling."""
    c = _double_well_constants()
    s = _PROPOSAL_STD
    out = torch.empty(m, dtype=torch.float64)
    filled = 0
    while filled < m:
        k = int((m - filled) * math.exp(c["log_m"]) * 1.1) + 16
        pos = torch.rand(k, generator=generator, dtype=torch.float64) < c["p_pos"]
        mean = torch.where(pos, c["mu_pos"], c["mu_neg"])
        t = mean + s * torch.randn(k, generator=generator, dtype=torch.float64)
        log_g = torch.logaddexp(
            math.log(1 - c["p_pos"]) - 0.5 * ((t - c["mu_neg"]) / s) ** 2,
            math.log(c["p_pos"]) - 0.5 * ((t - c["mu_pos"]) / s) ** 2,
        ) - math.log(s) - 0.5 * math.log(2 * math.pi)
        log_accept = double_well_log_density(t) - c["log_z1"] - log_g - c["log_m"]
        u = torch.rand(k, generator=generator, dtype=torch.float64)
        accepted = t[u.log() < log_accept][: m - filled]
        out[filled : filled + accepted.numel()] = accepted
        filled += accepted.numel()
    return out


#: the published per-pair constant Z_1 (FAB; Sendera et al. 2024), for the closed form of log_Z
PUBLISHED_Z1 = 11784.50927


@register_target("manywell32")
class ManyWell(Target):
    """dim/2 independent double-well pairs (dim = 32 by default); unnormalised, log_Z known."""

    name = "manywell32"
    has_exact_sampler = True
    plot_range = (-3.0, 3.0)

    def __init__(self, dim: int = 32) -> None:
        dim = check_int("dim", dim, 2)
        if dim % 2:
            raise ValueError(f"dim must be even (pairs of coordinates), got {dim}")
        super().__init__(dim=dim)
        self.dim = dim
        self.num_pairs = dim // 2
        c = _double_well_constants()
        self.log_Z = self.num_pairs * (c["log_z1"] + 0.5 * math.log(2 * math.pi))
        self.p_positive = c["p_pos"]      # P(x_1 > 0) in every pair

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return (double_well_log_density(x1) - 0.5 * x2.pow(2)).sum(-1)

    def _sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        x = torch.empty(n, self.dim, dtype=torch.float64)
        x[:, 0::2] = sample_double_well(n * self.num_pairs, generator).view(n, self.num_pairs)
        x[:, 1::2] = torch.randn(n, self.num_pairs, generator=generator, dtype=torch.float64)
        return x

    def log_prob_jax(self, x):
        import jax.numpy as jnp

        x1, x2 = x[0::2], x[1::2]
        return jnp.sum(double_well_log_density(x1) - 0.5 * x2 * x2)

    def positive_fraction(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pair fraction of samples with x_1 > 0, ``(n, dim) -> (dim/2,)``; truth 0.8443."""
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {tuple(x.shape)}")
        return (x[:, 0::2] > 0).double().mean(0)

    def diagnostics(self, x: torch.Tensor) -> dict:
        frac = self.positive_fraction(x)
        return {
            "positive_fraction_true": self.p_positive,
            "positive_fraction_mean": float(frac.mean()),
            "positive_fraction_min": float(frac.min()),
            "positive_fraction_max": float(frac.max()),
            "positive_fraction_max_abs_err": float((frac - self.p_positive).abs().max()),
        }


@register_target("manywell128")
class ManyWell128(ManyWell):
    """Many-Well at d = 128 (64 pairs)."""

    name = "manywell128"

    def __init__(self, dim: int = 128) -> None:
        super().__init__(dim=dim)


@register_target("manywell512")
class ManyWell512(ManyWell):
    """Many-Well at d = 512 (256 pairs)."""

    name = "manywell512"

    def __init__(self, dim: int = 512) -> None:
        super().__init__(dim=dim)
