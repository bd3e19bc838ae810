"""The reaction (Fisher–Rao) half of the data-mode Sinkhorn flow, on a component generator.

The Wasserstein–Fisher–Rao flow of the Sinkhorn divergence S_ε(q, p) moves mass by transport
(the velocity −∇φ, what the regression does) and by growth: ∂_t q = … − q (φ − E_q φ), with
φ = δS_ε/δq = f_{q→p} − f_{q→q} (dual potentials).  For the discrete-latent generator
q = Σ_k π_k q_k this acts on the weights alone:

    d log π_k / dt = −(Φ_k − Φ̄),   Φ_k = E_{q_k}[φ],   Φ̄ = E_q[φ]

estimated on the batch (each sample's component is known) with the two-batch potentials
(:func:`~freeflow.velocities.sinkhorn.sinkhorn_first_variation`, φ in units of ε) and applied
with the data-free mode's :func:`~freeflow.velocities.fisher_rao.fisher_rao_step`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..velocities.fisher_rao import component_rates, fisher_rao_step
from ..velocities.sinkhorn import sinkhorn_first_variation

Tensor = torch.Tensor

__all__ = ["SinkhornReaction"]


@dataclass
class SinkhornReaction:
    """One Fisher–Rao step per training step on a :class:`~freeflow.generators.components.ComponentMLP`."""

    step_size: float = 0.05
    max_change: float = 0.5
    rel_eps: tuple = (0.01, 0.05)
    num_iters: int = 5

    def __post_init__(self):
        if not (math.isfinite(self.step_size) and self.step_size >= 0):
            raise ValueError(f"reaction_step must be a finite number >= 0, got {self.step_size!r}")

    @torch.no_grad()
    def __call__(self, generator, x: Tensor, k: Tensor, data: Tensor, x_prime: Tensor, *, step: int = 0) -> dict:
        if self.step_size == 0:
            return {}
        phi = sinkhorn_first_variation(x, data, x_prime, rel_eps=self.rel_eps, num_iters=self.num_iters)
        log_resp = torch.full((x.shape[0], generator.components), -math.inf, dtype=x.dtype)
        log_resp[torch.arange(x.shape[0]), k] = 0.0
        g, g_bar, _ = component_rates(log_resp, -phi)
        new = fisher_rao_step(generator.log_weights(), g, g_bar, self.step_size, self.max_change)
        if not bool(torch.isfinite(new).all()):
            from ..train.trainer import NonFiniteError
            raise NonFiniteError(f"non-finite component weights at step {step} (Fisher-Rao step)")
        generator.set_log_weights(new)
        return {"components_eff": generator.effective_components}
