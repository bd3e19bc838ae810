"""Dilation moves: a log-scale coordinate and the spread of the others, moved together.

A hierarchical scale and the coordinates it scales form a funnel (centred eight schools: log τ
and the θ's about μ; a random walk: its log innovation scale and the increments). Along the
funnel a move of one coordinate alone must be tiny (shrinking log τ with the θ's spread is
improbable; shrinking the θ's with τ large is too), so a kernel of single-coordinate and
gradient moves walks into the neck only over hundreds of steps. The dilation move goes along
the funnel in one step, the direction a non-centred parameterisation makes straight:

    δ = s_j ξ, ξ ~ N(0, 1);   x′_j = x_j + δ;   x′_S = m + e^{γδ} (x_S − m),

with S the other coordinates, m = mean(x_S) (one number per chain, unchanged by the move) and
γ ∈ {½, 1} (a scale e^{γ x_j}: 1 for log τ, ½ for Neal's funnel's v) drawn with the move,
independently of the state. For fixed γ the map is a bijection whose inverse is the move with
−δ, and |det ∂x′/∂x| = e^{γδ(|S| − 1)} (the mean direction of S is kept, the |S| − 1
deviations scaled), so the move accepted with probability

    min(1, p̃(x′)/p̃(x) · e^{γδ(|S| − 1)})

leaves p invariant, for any p: where x_j is not a scale the move is merely rejected more
often and its step s_j adapts down.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..importance import LOG_DENSITY_CHUNK, log_density_at

__all__ = ["build_dilation_kernel", "default_dilations", "GAMMAS"]

#: the exponents γ a move draws from (x_j = log scale: 1; x_j = log variance: ½)
GAMMAS = (0.5, 1.0)


def default_dilations(d: int) -> int:
    """Dilation moves per step where a caller asks for the default: min(d, 10), none below 3-D
    (with fewer than two other coordinates there is no spread to scale)."""
    return min(d, 10) if d >= 3 else 0


def build_dilation_kernel(logdensity_fn, *, chunk_size: int = LOG_DENSITY_CHUNK):
    """``kernel(generator, x, lp, coordinates, step) -> (x, lp, acceptance (k,))``: one
    dilation move per coordinate j in ``coordinates`` (every chain at once), steps ``step`` (d,)."""
    def log_density(x: Tensor) -> Tensor:   # +inf too is outside the support: rejected
        lp = log_density_at(logdensity_fn, x, chunk_size)
        return torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -math.inf))

    def kernel(generator: torch.Generator, x: Tensor, lp: Tensor, coordinates, step: Tensor):
        n, d = x.shape
        acc = []
        for j in coordinates:
            gamma = GAMMAS[int(torch.randint(len(GAMMAS), (1,), generator=generator, device=generator.device))]
            delta = step[j].to(x) * torch.randn(n, generator=generator, dtype=x.dtype, device=x.device)
            others = torch.ones(d, dtype=torch.bool, device=x.device)
            others[j] = False
            xs = x[:, others]
            m = xs.mean(1, keepdim=True)
            xn = x.clone()
            xn[:, others] = m + torch.exp(gamma * delta)[:, None] * (xs - m)
            xn[:, j] = x[:, j] + delta
            lpn = log_density(xn).to(x.dtype)
            log_ratio = lpn.double() - lp.double() + gamma * delta.double() * (d - 2)
            good = torch.isfinite(log_ratio) & torch.isfinite(xn).all(1)
            log_ratio = torch.where(good, log_ratio, torch.full_like(log_ratio, -math.inf))
            accept = torch.log(torch.rand(n, generator=generator, dtype=torch.float64, device=x.device)) < log_ratio
            x = torch.where(accept[:, None], xn, x)
            lp = torch.where(accept, lpn, lp)
            acc.append(log_ratio.clamp(max=0).exp().mean())
        return x, lp, (torch.stack(acc) if acc else torch.zeros(0, dtype=torch.float64))

    return kernel
