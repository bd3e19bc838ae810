"""Gaussian mixtures with isotropic components (normalised: ``log_Z = 0``).

    p(x) = Σ_k w_k N(x; μ_k, σ_k² I),   log p(x) = logsumexp_k [log w_k + Σ_d log N(x_d; μ_kd, σ_k)].

Registered targets:
  * ``ring8``       — K equal-weight modes at radius·(cos 2πk/K, sin 2πk/K), k = 0..K-1, std σ.
  * ``gmm40``       — the flow-annealed-importance-sampling GMM (MATH.md §4): 40 equal-weight
                      components, means ``torch.manual_seed(0); (torch.rand(40, 2) - 0.5) * 80`` in
                      float32 (drawn from a private generator: the caller's RNG is untouched),
                      per-coordinate std softplus(1) = 1.3133.
  * ``imbalanced2`` — two unit-std modes with weights 0.8 / 0.2 at ∓separation/2 along the first
                      axis (mode 0, weight 0.8, at -separation/2).
  * ``unequal_widths`` — three modes in 2-D with stds 0.3 / 1.0 / 2.0 and weights 0.5 / 0.3 / 0.2
                      at (−6, 0), (0, 5), (6, 0): the narrow mode holds the most mass.
  * ``grid25``      — the 25-mode grid of the diffusion-sampler benchmarks ("25GMM", Sendera et al.
                      2024, ``energies/twenty_five_gmm.py`` of gfn-diffusion): 25 equal-weight 2-D
                      Gaussians with means {−10, −5, 0, 5, 10}² (spacing 5) and covariance 0.3·I
                      (std √0.3 = 0.5477 per coordinate); log_Z = 0 as published.
"""
from __future__ import annotations

import math

import torch

from .base import Target, check_int, check_positive
from .registry import register_target


class GaussianMixture(Target):
    """Isotropic Gaussian mixture: ``means`` (K, dim), ``stds`` (K,), ``weights`` (K,) summing to 1."""

    log_Z = 0.0
    has_exact_sampler = True

    def __init__(self, means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor, **kwargs) -> None:
        super().__init__(**kwargs)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, dim), got {tuple(means.shape)}")
        k, dim = means.shape
        if stds.shape != (k,) or weights.shape != (k,):
            raise ValueError("stds and weights must have shape (K,) matching means")
        if not torch.all(stds > 0):
            raise ValueError("stds must be > 0")
        if not torch.all(weights > 0) or abs(float(weights.sum()) - 1.0) > 1e-9:
            raise ValueError("weights must be positive and sum to 1")
        self.dim = int(dim)
        self.means = means
        self.stds = stds
        self.weights = weights
        self.mode_centers = means
        self.mode_weights = weights

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        mu = self.means.to(x)                                    # (K, d)
        sd = self.stds.to(x)                                     # (K,)
        logw = self.weights.to(x).log()                          # (K,)
        z = (x.unsqueeze(-2) - mu) / sd[:, None]                 # (..., K, d)
        comp = (-0.5 * z.pow(2).sum(-1)                          # (..., K)
                - self.dim * (sd.log() + 0.5 * math.log(2 * math.pi)))
        return torch.logsumexp(logw + comp, dim=-1)              # (...)

    def _sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        idx = torch.multinomial(self.weights.double(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means.double()[idx] + self.stds.double()[idx, None] * eps

    def log_prob_jax(self, x):
        import jax.numpy as jnp
        from jax.scipy.special import logsumexp

        mu = jnp.asarray(self.means.double().numpy(), dtype=x.dtype)
        sd = jnp.asarray(self.stds.double().numpy(), dtype=x.dtype)
        logw = jnp.log(jnp.asarray(self.weights.double().numpy(), dtype=x.dtype))
        z = (x[None, :] - mu) / sd[:, None]
        comp = -0.5 * jnp.sum(z * z, axis=-1) - self.dim * (jnp.log(sd) + 0.5 * math.log(2 * math.pi))
        return logsumexp(logw + comp)


@register_target("ring8")
class Ring(GaussianMixture):
    """``num_modes`` equal-weight modes on a circle of ``radius``, isotropic std ``std`` (2-D)."""

    name = "ring8"

    def __init__(self, num_modes: int = 8, radius: float = 4.0, std: float = 0.3) -> None:
        num_modes = check_int("num_modes", num_modes, 1)
        radius = check_positive("radius", radius)
        std = check_positive("std", std)
        angles = 2 * math.pi * torch.arange(num_modes, dtype=torch.float64) / num_modes
        means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
        super().__init__(
            means, torch.full((num_modes,), std, dtype=torch.float64),
            torch.full((num_modes,), 1.0 / num_modes, dtype=torch.float64),
            num_modes=num_modes, radius=radius, std=std,
        )
        half = radius + 5 * std + 0.5
        self.plot_range = (-half, half)


def gmm40_means(num_modes: int = 40, dim: int = 2, loc_scaling: float = 40.0, seed: int = 0) -> torch.Tensor:
    """``torch.manual_seed(seed); (torch.rand(num_modes, dim) - 0.5) * 2 * loc_scaling`` in float32,
    drawn from a private ``torch.Generator`` (same numbers; the global RNG is not touched)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(num_modes, dim, generator=g, dtype=torch.float32) - 0.5) * (2 * loc_scaling)


@register_target("gmm40")
class GMM40(GaussianMixture):
    """The 40-mode GMM of MATH.md §4 (std softplus(1) per coordinate, equal weights)."""

    name = "gmm40"

    def __init__(self, num_modes: int = 40, dim: int = 2, loc_scaling: float = 40.0, seed: int = 0) -> None:
        num_modes = check_int("num_modes", num_modes, 1)
        dim = check_int("dim", dim, 1)
        loc_scaling = check_positive("loc_scaling", loc_scaling)
        seed = check_int("seed", seed, 0)
        means = gmm40_means(num_modes, dim, loc_scaling, seed)          # float32, as in the recipe
        std = float(torch.nn.functional.softplus(torch.tensor(1.0, dtype=torch.float64)))
        super().__init__(
            means, torch.full((num_modes,), std, dtype=torch.float64),
            torch.full((num_modes,), 1.0 / num_modes, dtype=torch.float64),
            num_modes=num_modes, dim=dim, loc_scaling=loc_scaling, seed=seed,
        )
        half = loc_scaling + 10.0
        self.plot_range = (-half, half)


@register_target("imbalanced2")
class Imbalanced2(GaussianMixture):
    """Two unit-std modes, weights (``weight``, 1 - ``weight``) = (0.8, 0.2) by default, at
    ∓``separation``/2 along the first axis, in ``dim`` dimensions."""

    name = "imbalanced2"

    def __init__(self, separation: float = 8.0, dim: int = 2, weight: float = 0.8) -> None:
        separation = check_positive("separation", separation)
        dim = check_int("dim", dim, 1)
        weight = check_positive("weight", weight)
        if weight >= 1.0:
            raise ValueError(f"weight must be in (0, 1), got {weight}")
        means = torch.zeros(2, dim, dtype=torch.float64)
        means[0, 0], means[1, 0] = -separation / 2, separation / 2
        super().__init__(
            means, torch.ones(2, dtype=torch.float64),
            torch.tensor([weight, 1.0 - weight], dtype=torch.float64),
            separation=separation, dim=dim, weight=weight,
        )
        self.plot_range = [(-separation / 2 - 4.0, separation / 2 + 4.0)] + [(-4.0, 4.0)] * (dim - 1)


@register_target("unequal_widths")
class UnequalWidths(GaussianMixture):
    """Three 2-D modes whose widths differ 6×: stds (0.3, 1.0, 2.0), weights (0.5, 0.3, 0.2), at
    (−6, 0), (0, 5), (6, 0), all scaled by ``scale``."""

    name = "unequal_widths"

    def __init__(self, scale: float = 1.0) -> None:
        scale = check_positive("scale", scale)
        means = scale * torch.tensor([[-6.0, 0.0], [0.0, 5.0], [6.0, 0.0]], dtype=torch.float64)
        super().__init__(means, scale * torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64),
                         torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), scale=scale)
        self.plot_range = [(-9.0 * scale, 13.0 * scale), (-7.0 * scale, 10.0 * scale)]

    def assign_modes(self, x: torch.Tensor) -> torch.Tensor:
        """The component of highest responsibility (nearest centre is wrong for unequal widths)."""
        x = torch.as_tensor(x).to(torch.float64)
        sd = self.stds
        comp = (-0.5 * ((x.unsqueeze(-2) - self.means) / sd[:, None]).pow(2).sum(-1)
                - self.dim * sd.log() + self.weights.log())
        return comp.argmax(-1)


@register_target("grid25")
class Grid25(GaussianMixture):
    """The published 25-mode grid: means {−2, −1, 0, 1, 2}² · ``spacing`` (row-major, first
    coordinate slowest), covariance ``variance``·I, equal weights.  Defaults spacing 5, variance
    0.3 are the published values (module docstring)."""

    name = "grid25"

    def __init__(self, spacing: float = 5.0, variance: float = 0.3) -> None:
        spacing = check_positive("spacing", spacing)
        variance = check_positive("variance", variance)
        ticks = spacing * torch.arange(-2, 3, dtype=torch.float64)
        means = torch.cartesian_prod(ticks, ticks)                                  # (25, 2)
        super().__init__(means, torch.full((25,), math.sqrt(variance), dtype=torch.float64),
                         torch.full((25,), 1.0 / 25, dtype=torch.float64), spacing=spacing, variance=variance)
        half = 2 * spacing + 6 * math.sqrt(variance) + 0.5
        self.plot_range = (-half, half)


__all__ = ["GaussianMixture", "Ring", "GMM40", "Imbalanced2", "UnequalWidths", "Grid25", "gmm40_means"]
