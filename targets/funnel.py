"""Neal's funnel (normalised, ``log_Z = 0``).

    x_0 ~ N(0, scale²),   x_i | x_0 ~ N(0, e^{x_0})  for i = 1..dim-1   (variance e^{x_0}),

    log p(x) = log N(x_0; 0, scale²) + Σ_{i≥1} [ -½ x_i² e^{-x_0} - ½ x_0 - ½ log 2π ].

Default dim = 10, scale = 3 (MATH.md §4): Neal's (2003) original funnel.  The diffusion-sampler
code of Sendera et al. 2024 (gfn-diffusion) has two 10-D funnels, ``hard_funnel`` (scale 3: this
target) and ``easy_funnel`` (x_0 ~ N(0, 1): ``get_target("funnel10", scale=1.0)``); check which
one a published number used before comparing.  Closed forms: E x = 0, Var x_0 = scale²,
Var x_i = E e^{x_0} = e^{scale²/2} (= 90.0 for scale 3), and x_i e^{-x_0/2} ~ N(0, 1).
No mode centres.
"""
from __future__ import annotations

import math

import torch

from .base import Target, check_int, check_positive
from .registry import register_target

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@register_target("funnel10")
class Funnel(Target):
    name = "funnel10"
    log_Z = 0.0
    has_exact_sampler = True

    def __init__(self, dim: int = 10, scale: float = 3.0) -> None:
        dim = check_int("dim", dim, 2)
        scale = check_positive("scale", scale)
        super().__init__(dim=dim, scale=scale)
        self.dim = dim
        self.scale = scale
        self.plot_range = [(-3 * scale, 3 * scale)] + [(-10.0, 10.0)] * (dim - 1)

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x0, rest = x[..., 0], x[..., 1:]
        lp0 = -0.5 * (x0 / self.scale) ** 2 - math.log(self.scale) - _HALF_LOG_2PI
        lp_rest = (-0.5 * rest.pow(2).sum(-1) * torch.exp(-x0)
                   - 0.5 * (self.dim - 1) * x0 - (self.dim - 1) * _HALF_LOG_2PI)
        return lp0 + lp_rest

    def _sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x0 = self.scale * z[:, :1]
        return torch.cat([x0, torch.exp(0.5 * x0) * z[:, 1:]], dim=1)

    def log_prob_jax(self, x):
        import jax.numpy as jnp

        x0, rest = x[0], x[1:]
        lp0 = -0.5 * (x0 / self.scale) ** 2 - math.log(self.scale) - _HALF_LOG_2PI
        return lp0 + (-0.5 * jnp.sum(rest * rest) * jnp.exp(-x0)
                      - 0.5 * (self.dim - 1) * x0 - (self.dim - 1) * _HALF_LOG_2PI)
