"""A product of tilted, coupled double wells: a validation target unlike Many-Well.

dim/2 independent pairs (x_{2k}, x_{2k+1}), each

    log p̃(x₁, x₂) = −a (x₁² − c)² + t x₁ − ½ ((x₂ − ρ x₁) / s)²,

defaults a = 2, c = 1.5, t = −0.6 (the tilt favours the *negative* well, Many-Well's favours
the positive one), ρ = 0.5, s = 0.7 (x₂ is correlated with x₁; Many-Well's x₂ is independent
N(0, 1)). Per pair Z = Z₁ · s√(2π) with Z₁ = ∫ exp(−a(u² − c)² + t u) du (scipy quad), and
P(x₁ > 0) = ∫₀^∞ … / Z₁, so log Z and the per-pair mode weight are known exactly.

Exact sampler: x₁ by inverse CDF on a 200 001-point grid over [−6, 6] (the density there is
below e^{−1000} at the ends), linear interpolation; x₂ | x₁ ~ N(ρ x₁, s²).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .base import Target, check_float, check_int, check_positive
from .registry import register_target


@functools.lru_cache(maxsize=8)
def _constants(a: float, c: float, t: float) -> dict:
    from scipy.integrate import quad

    f = lambda u: math.exp(-a * (u * u - c) ** 2 + t * u)  # noqa: E731
    z_neg = quad(f, -np.inf, 0.0, epsabs=0.0, epsrel=1e-13)[0]
    z_pos = quad(f, 0.0, np.inf, epsabs=0.0, epsrel=1e-13)[0]
    grid = np.linspace(-6.0, 6.0, 200_001)
    logf = -a * (grid**2 - c) ** 2 + t * grid
    pdf = np.exp(logf - logf.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    return {"log_z1": math.log(z_neg + z_pos), "p_pos": z_pos / (z_neg + z_pos),
            "grid": grid, "cdf": cdf / cdf[-1]}


@register_target("tilted_wells")
class TiltedWells(Target):
    """dim/2 tilted, coupled double-well pairs (see the module docstring)."""

    name = "tilted_wells"
    has_exact_sampler = True

    def __init__(self, dim: int = 16, a: float = 2.0, c: float = 1.5, tilt: float = -0.6,
                 rho: float = 0.5, s: float = 0.7) -> None:
        dim = check_int("dim", dim, 2)
        if dim % 2:
            raise ValueError(f"dim must be even (pairs), got {dim}")
        a, c, s = check_positive("a", a), check_positive("c", c), check_positive("s", s)
        tilt, rho = check_float("tilt", tilt), check_float("rho", rho)
        super().__init__(dim=dim, a=a, c=c, tilt=tilt, rho=rho, s=s)
        self.dim, self.a, self.c, self.tilt, self.rho, self.s = dim, a, c, tilt, rho, s
        k = _constants(a, c, tilt)
        self.pairs = dim // 2
        self.log_Z = self.pairs * (k["log_z1"] + math.log(s) + 0.5 * math.log(2 * math.pi))
        self.p_pos = k["p_pos"]
        self.plot_range = (-3.0, 3.0)

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        well = -self.a * (x1 * x1 - self.c) ** 2 + self.tilt * x1
        cond = -0.5 * ((x2 - self.rho * x1) / self.s) ** 2
        return (well + cond).sum(-1)

    def _sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        k = _constants(self.a, self.c, self.tilt)
        u = torch.rand(n, self.pairs, generator=generator, dtype=torch.float64).numpy()
        x1 = torch.from_numpy(np.interp(u, k["cdf"], k["grid"]).copy())
        x2 = self.rho * x1 + self.s * torch.randn(n, self.pairs, generator=generator, dtype=torch.float64)
        return torch.stack([x1, x2], -1).reshape(n, self.dim)

    def log_prob_jax(self, x):
        import jax.numpy as jnp

        x1, x2 = x[0::2], x[1::2]
        return jnp.sum(-self.a * (x1 * x1 - self.c) ** 2 + self.tilt * x1
                       - 0.5 * ((x2 - self.rho * x1) / self.s) ** 2)

    def diagnostics(self, x: torch.Tensor) -> dict:
        """Raw per-pair P(x₁ > 0) against the exact value."""
        frac = (torch.as_tensor(x)[:, 0::2] > 0).double().mean(0)
        err = (frac - self.p_pos).abs()
        return {"positive_fraction": [float(v) for v in frac], "p_pos": self.p_pos,
                "positive_fraction_error_mean": float(err.mean()), "positive_fraction_error_max": float(err.max())}


__all__ = ["TiltedWells"]
