"""The twisted Gaussian "banana" of Haario, Saksman & Tamminen (Comput. Stat. 1999; Bernoulli 2001).

Start from u ~ N(0, diag(scale², 1, ..., 1)) and bend the second coordinate:

    x_1 = u_1,   x_2 = u_2 - b (u_1² - scale²),   x_i = u_i (i ≥ 3).

The map has unit Jacobian, so the density is normalised (``log_Z = 0``):

    log p(x) = log N(x_1; 0, scale²) + log N(x_2 + b (x_1² - scale²); 0, 1) + Σ_{i≥3} log N(x_i; 0, 1).

Defaults scale = 10, b = 0.1 (Haario's strongly twisted f_0.1; b = 0.03 is the moderate one),
dim = 2.  Closed forms: E x = 0, Var x_1 = scale², Var x_2 = 1 + 2 b² scale⁴ (= 201 by default).
Exact sampler: the transformation above.  No mode centres.
"""
from __future__ import annotations

import math

import torch

from .base import Target, check_float, check_int, check_positive
from .registry import register_target

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@register_target("banana")
class Banana(Target):
    name = "banana"
    log_Z = 0.0
    has_exact_sampler = True

    def __init__(self, b: float = 0.1, scale: float = 10.0, dim: int = 2) -> None:
        b = check_float("b", b)
        scale = check_positive("scale", scale)
        dim = check_int("dim", dim, 2)
        super().__init__(b=b, scale=scale, dim=dim)
        self.b, self.scale, self.dim = b, scale, dim
        # x_1 within ±2.5 scale; x_2's bend over that range, ±4 noise.
        ends = (b * scale**2, -b * scale**2 * (2.5**2 - 1))
        self.plot_range = ([(-2.5 * scale, 2.5 * scale), (min(ends) - 4.0, max(ends) + 4.0)]
                           + [(-4.0, 4.0)] * (dim - 2))

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2, rest = x[..., 0], x[..., 1], x[..., 2:]
        u2 = x2 + self.b * (x1.pow(2) - self.scale**2)
        return (-0.5 * (x1 / self.scale) ** 2 - math.log(self.scale) - 0.5 * u2.pow(2)
                - 0.5 * rest.pow(2).sum(-1) - self.dim * _HALF_LOG_2PI)

    def _sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        u = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        u[:, 0] *= self.scale
        u[:, 1] -= self.b * (u[:, 0].pow(2) - self.scale**2)
        return u

    def log_prob_jax(self, x):
        import jax.numpy as jnp

        x1, x2, rest = x[0], x[1], x[2:]
        u2 = x2 + self.b * (x1 * x1 - self.scale**2)
        return (-0.5 * (x1 / self.scale) ** 2 - math.log(self.scale) - 0.5 * u2 * u2
                - 0.5 * jnp.sum(rest * rest) - self.dim * _HALF_LOG_2PI)
