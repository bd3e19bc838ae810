"""The reaction (Fisher–Rao, birth–death) half of the data-free flow, for a mixture generator.

Each training step, after the drift has the batch's self-normalised log-ratio log r̂ (clipped
as the drift's is), :class:`MixtureReaction` moves the mixture's log-weights by one explicit
Fisher–Rao step of the chosen divergence (:mod:`freeflow.velocities.fisher_rao`), and every
``birth_every`` steps during the first ``birth_fraction`` of training it looks for mass that q
misses: it scores candidate points drawn around the batch (each sample plus noise of twice the
batch's per-coordinate spread) by log π_β − log q − log Ẑ, and if the best exceeds
log ``birth_ratio`` it re-initialises there the component that holds the least mass of its own
(mass × exclusivity, so a redundant twin goes first), provided that mass is below 1/(2K).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .divergences import Divergence
from .velocities.fisher_rao import component_rates, fisher_rao_step, reaction_rate

Tensor = torch.Tensor

__all__ = ["MixtureReaction"]


def _finite_or_neg_inf(v: Tensor) -> Tensor:
    return torch.where(torch.isfinite(v), v, torch.full_like(v, -math.inf))


@dataclass
class MixtureReaction:
    """Fisher–Rao steps on a :class:`~freeflow.generators_mixture.MixtureGenerator`'s weights.

    Attributes:
        divergence: fixes the reaction rate ρ(r).
        step_size: η_FR, the step of d log π_k/dt = G_k − Ḡ (rates ≈ r − 1 near equilibrium).
        birth_every, birth_ratio, birth_fraction: births (see the module docstring); 0 disables.
        max_change: cap on |Δ log π_k| per step.
    """

    divergence: Divergence
    step_size: float = 0.2
    birth_every: int = 10
    birth_ratio: float = 3.0
    birth_fraction: float = 0.7
    max_change: float = 1.0

    def __post_init__(self):
        if not (math.isfinite(self.step_size) and self.step_size >= 0):
            raise ValueError(f"reaction_step must be a finite number >= 0, got {self.step_size!r}")
        if isinstance(self.birth_every, bool) or not isinstance(self.birth_every, int) or self.birth_every < 0:
            raise ValueError(f"birth_every must be an int >= 0, got {self.birth_every!r}")
        if not (math.isfinite(self.birth_ratio) and self.birth_ratio > 1):
            raise ValueError(f"birth_ratio must be a finite number > 1, got {self.birth_ratio!r}")
        if not 0 <= self.birth_fraction <= 1:
            raise ValueError(f"birth_fraction must lie in [0, 1], got {self.birth_fraction!r}")

    @torch.no_grad()
    def __call__(self, generator, xd: Tensor, log_r: Tensor, log_w: Tensor, log_target, *,
                 step: int, total_steps: int, rng: torch.Generator) -> dict:
        """One reaction step. ``log_r``: regularised log r̂ (N,); ``log_w``: unnormalised
        log π_β − log q at the batch (N,); ``log_target``: x ↦ log π_β(x) (no gradient)."""
        log_comp = generator.component_log_prob(xd)                        # (N, K)
        log_resp = log_comp - torch.logsumexp(log_comp, 1, keepdim=True)
        rate = reaction_rate(self.divergence, log_r)
        g, g_bar, mass = component_rates(log_resp, rate)
        info = {}
        if self.step_size > 0:
            new = fisher_rao_step(generator.log_weights(), g, g_bar, self.step_size, self.max_change)
            if not bool(torch.isfinite(new).all()):
                from .train.trainer import NonFiniteError
                raise NonFiniteError(f"non-finite mixture weights at step {step} (Fisher-Rao step)")
            generator.set_log_weights(new)
        pi = generator.log_weights().exp()
        info["weight_min"] = float(pi.min())
        info["weight_entropy"] = float(-(pi * pi.clamp_min(1e-30).log()).sum())
        if (self.birth_every and step % self.birth_every == 0
                and step < self.birth_fraction * total_steps):
            info["birth"] = float(self._birth(generator, xd, log_w, log_resp, mass, log_target, rng))
        return info

    def _birth(self, generator, xd, log_w, log_resp, mass, log_target, rng) -> bool:
        n, k = xd.shape[0], generator.components
        spread = 2.0 * xd.std(0).clamp_min(1e-6)
        idx = torch.randint(0, n, (n,), generator=rng)
        cand = xd[idx] + spread * torch.randn(n, xd.shape[1], generator=rng)
        log_z = torch.logsumexp(log_w, 0) - math.log(n)
        score = _finite_or_neg_inf(log_target(cand) - generator.log_prob(cand)) - log_z
        best = int(score.argmax())
        if not float(score[best]) > math.log(self.birth_ratio):
            return False
        resp = log_resp.exp()
        exclusivity = (resp * resp).sum(0) / resp.sum(0).clamp_min(1e-12)
        held = mass * exclusivity
        j = int(held.argmin())
        if float(held[j]) >= 0.5 / k:
            return False
        generator.rebirth(j, cand[best], math.log(0.5 / k))
        return True
