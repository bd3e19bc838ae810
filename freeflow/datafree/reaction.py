"""The reaction (Fisher–Rao, birth–death) half of the data-free flow, for a mixture generator.

Each training step, after the drift has the batch's self-normalised log-ratio log r̂ (clipped
as the drift's is), :class:`MixtureReaction` moves the mixture's log-weights by one explicit
Fisher–Rao step of the chosen divergence (:mod:`freeflow.velocities.fisher_rao`), and every
``birth_every`` steps during the first ``birth_fraction`` of training it looks for mass that q
misses. Candidates c are drawn around the batch (each sample plus noise of 2, 4, 8 or 16 times
the batch's per-coordinate spread, an exact proposal density ρ), and the missing mass is
estimated by importance sampling, m̂ = mean_c (p − q)₊(c)/ρ(c), with p = π_β/Ẑ (Ẑ from the
batch). If m̂ exceeds ``birth_mass``, the component that holds the least mass of its own (mass ×
exclusivity, so a redundant twin goes first) is re-initialised at a candidate drawn ∝ the
deficit (p − q)₊/ρ, with weight min(m̂, 1/(2K)), provided it held less than that. Drawing by
the deficit, not by the ratio p/q, keeps births out of far tails where q is merely lighter
than p.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..divergences import Divergence
from ..velocities.fisher_rao import component_rates, fisher_rao_step, reaction_rate

Tensor = torch.Tensor

__all__ = ["MixtureReaction"]


def _finite_or_neg_inf(v: Tensor) -> Tensor:
    return torch.where(torch.isfinite(v), v, torch.full_like(v, -math.inf))


@dataclass
class MixtureReaction:
    """Fisher–Rao steps on a :class:`~freeflow.generators.mixture.MixtureGenerator`'s weights.

    Attributes:
        divergence: fixes the reaction rate ρ(r).
        step_size: η_FR, the step of d log π_k/dt = G_k − Ḡ (rates ≈ r − 1 near equilibrium).
        birth_every, birth_mass, birth_fraction: births (see the module docstring); 0 disables.
        max_change: cap on |Δ log π_k| per step.
    """

    divergence: Divergence
    step_size: float = 0.2
    birth_every: int = 10
    birth_mass: float = 0.005
    birth_fraction: float = 0.7
    max_change: float = 1.0

    def __post_init__(self):
        if not (math.isfinite(self.step_size) and self.step_size >= 0):
            raise ValueError(f"reaction_step must be a finite number >= 0, got {self.step_size!r}")
        if isinstance(self.birth_every, bool) or not isinstance(self.birth_every, int) or self.birth_every < 0:
            raise ValueError(f"birth_every must be an int >= 0, got {self.birth_every!r}")
        if not (math.isfinite(self.birth_mass) and 0 < self.birth_mass < 1):
            raise ValueError(f"birth_mass must be a number in (0, 1), got {self.birth_mass!r}")
        if not 0 <= self.birth_fraction <= 1:
            raise ValueError(f"birth_fraction must lie in [0, 1], got {self.birth_fraction!r}")

    @torch.no_grad()
    def __call__(self, generator, xd: Tensor, log_r: Tensor, log_w: Tensor, log_target, *,
                 step: int, total_steps: int, rng: torch.Generator, log_resp: Tensor | None = None) -> dict:
        """One reaction step. ``log_r``: regularised log r̂ (N,); ``log_w``: unnormalised
        log π_β − log q at the batch (N,); ``log_target``: x ↦ log π_β(x) (no gradient);
        ``log_resp``: the log responsibilities at the batch (N, J, K) if already computed."""
        if log_resp is None:
            log_resp = generator.log_responsibilities(xd)                 # (N, J, K)
        rate = reaction_rate(self.divergence, log_r)
        g, g_bar, mass = component_rates(log_resp, rate)                   # (J, K), (), (J, K)
        info = {}
        if self.step_size > 0:
            log_pi = generator.log_weights().reshape(g.shape)
            new = fisher_rao_step(log_pi, g, g_bar, self.step_size, self.max_change)
            if not bool(torch.isfinite(new).all()):
                from ..train.trainer import NonFiniteError
                raise NonFiniteError(f"non-finite mixture weights at step {step} (Fisher-Rao step)")
            generator.set_log_weights(new)
        pi = generator.log_weights().exp()
        info["weight_min"] = float(pi.min())
        info["weight_entropy"] = float(-(pi * pi.clamp_min(1e-30).log()).sum(-1).mean())
        if (self.birth_every and generator.has_births and log_resp.shape[1] == 1
                and step % self.birth_every == 0
                and step < self.birth_fraction * total_steps):
            info["birth"] = float(self._birth(generator, xd, log_w, log_resp[:, 0], mass[0], log_target, rng))
        return info

    def _birth(self, generator, xd, log_w, log_resp, mass, log_target, rng) -> bool:
        n, k = xd.shape[0], generator.components
        cand, log_rho = _candidates(xd, rng)
        log_z = torch.logsumexp(log_w, 0) - math.log(n)
        log_p = _finite_or_neg_inf(log_target(cand).to(xd.dtype)) - log_z
        log_q = generator.log_prob(cand)
        # importance estimate of the mass q misses: ∫ (p − q)₊ ≈ mean_c (p − q)₊(c) / ρ(c)
        deficit = ((log_p.exp() - log_q.exp()).clamp_min(0) / log_rho.exp()).nan_to_num(0.0, 0.0, 0.0)
        missing = float(deficit.mean())
        if not missing > self.birth_mass:
            return False
        resp = log_resp.exp()
        exclusivity = (resp * resp).sum(0) / resp.sum(0).clamp_min(1e-12)
        held = mass * exclusivity
        j = int(held.argmin())
        if float(held[j]) >= min(0.5 / k, missing):
            return False
        c = int(torch.multinomial(deficit.double(), 1, generator=rng))
        generator.rebirth(j, cand[c], math.log(min(0.5 / k, missing)))
        return True


def _candidates(xd: Tensor, rng: torch.Generator, n_base: int = 256, n_cand: int = 512) -> tuple[Tensor, Tensor]:
    """Candidates c = x_i + f·σ ⊙ ε around ``n_base`` batch points x_i, f ∈ {2, 4, 8, 16} (σ: the
    batch's per-coordinate std), and their exact proposal log-density log ρ(c) (a Gaussian KDE
    of those points at the four scales)."""
    sigma = xd.std(0).clamp_min(1e-6)
    xd = xd[torch.randperm(xd.shape[0], generator=rng)[:n_base]]
    n, d = xd.shape
    factors = torch.tensor([2.0, 4.0, 8.0, 16.0], dtype=xd.dtype)
    f = factors[torch.randint(0, 4, (n_cand,), generator=rng)]
    idx = torch.randint(0, n, (n_cand,), generator=rng)
    cand = xd[idx] + f[:, None] * sigma * torch.randn(n_cand, d, generator=rng, dtype=xd.dtype)
    terms = []
    for fac in factors:
        d2 = torch.cdist(cand / (fac * sigma), xd / (fac * sigma)).pow(2)        # (n, n)
        terms.append(torch.logsumexp(-0.5 * d2, 1) - d * math.log(float(fac))
                     - torch.log(sigma).sum() - 0.5 * d * math.log(2 * math.pi))
    log_rho = torch.logsumexp(torch.stack(terms), 0) - math.log(4 * n)
    return cand, log_rho
