"""``divergence="auto"``: switch the weighting during training from the measured under-coverage.

The regional-response theory (docs/theory.md §8) says a mass-covering weighting (w = r, forward
KL) moves mass into under-covered regions at a rate that does not shrink with the region's
deficit, where reverse KL (w = 1) moves it in proportion to what q already holds. Once no
region is under-covered, reverse KL is the better finisher: its weight has no variance, so the
drift is the plain score difference and the tails are fitted without importance-weight noise
(docs/divergences.md, measured in the grid).

:class:`CoverageSchedule` estimates the missing mass of the batch each step,

    Û = mean_i (r̂_i − 1)₊  ≈  E_q[(p/q − 1)₊] = ∫ (p − q)₊,

(r̂: the self-normalised, clipped ratios the drift already has), smooths it with an
exponential moving average, and switches from ``cover`` to ``finish`` once the annealing has
reached β = 1 and the smoothed Û has stayed below ``threshold`` for ``patience`` steps. The
switch is one-way: mass once placed is not revisited. Mass in a region the batch never visits
is invisible to Û, as it is to every drift; the mixture generator's births look for it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..divergences import Divergence, get_divergence

__all__ = ["CoverageSchedule", "missing_mass"]


def missing_mass(log_r: torch.Tensor) -> float:
    """Û = mean_i (r̂_i − 1)₊ from self-normalised log-ratios (mean r̂ = 1): the batch estimate of
    ∫ (p − q)₊, the total-variation distance between p and q."""
    return float((log_r.double().exp() - 1.0).clamp_min(0.0).mean())


@dataclass
class CoverageSchedule:
    """Mass-covering weighting while Û is large, then the finishing one (module docstring).

    Attributes:
        cover, finish: divergence names of the two phases.
        threshold: switch once the smoothed Û stays below this...
        patience: ...for this many consecutive steps (at β = 1).
        smoothing: EMA rate of Û per step.
    """

    cover: str = "kl_pq"
    finish: str = "kl_qp"
    threshold: float = 0.05
    patience: int = 100
    smoothing: float = 0.05
    ema: float | None = None
    below: int = 0
    switched_at: int | None = None

    def __post_init__(self):
        self._cover: Divergence = get_divergence(self.cover)
        self._finish: Divergence = get_divergence(self.finish)

    @property
    def current(self) -> Divergence:
        return self._finish if self.switched_at is not None else self._cover

    def update(self, log_r: torch.Tensor, beta: float, step: int) -> Divergence:
        """Feed one batch's log r̂; returns the divergence to use for this step."""
        u = missing_mass(log_r)
        self.ema = u if self.ema is None else (1 - self.smoothing) * self.ema + self.smoothing * u
        if self.switched_at is None:
            self.below = self.below + 1 if (beta >= 1.0 and self.ema < self.threshold) else 0
            if self.below >= self.patience:
                self.switched_at = int(step)
        return self.current

    def state_dict(self) -> dict:
        return {"ema": self.ema, "below": self.below, "switched_at": self.switched_at}

    def load_state_dict(self, state: dict) -> None:
        self.ema, self.below, self.switched_at = state.get("ema"), int(state.get("below", 0)), state.get("switched_at")
