"""The protocol every estimator of the generator's density q follows.

An estimator is refitted to the generator's current samples at every training step (a KDE just
stores them; a normalizing flow takes a few warm-started maximum-likelihood steps) and then
answers log q(x) and the score ∇log q(x) at the points where the drift is evaluated.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class DensityEstimator(ABC):
    """fit(samples) -> self;  log_prob_and_score(x) -> (log q (n,), ∇log q (n, d))."""

    #: True when log_prob is the generator's exact density (a flow generator), not an estimate.
    exact: bool = False
    #: True when log_prob is a normalised density usable for importance weights (an auxiliary
    #: flow), False for estimates too biased to weight with (a KDE's log q̂).
    normalized: bool = False

    @abstractmethod
    def fit(self, samples: torch.Tensor) -> "DensityEstimator":
        """(Re)fit to samples (m, d) of the generator.  Called once per training step."""

    @abstractmethod
    def log_prob_and_score(
        self, x: torch.Tensor, *, same_batch: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log q̂(x) (n,) and ∇log q̂(x) (n, d), without autograd graph.

        ``same_batch=True`` says x *is* the batch passed to :meth:`fit`; estimators whose
        evaluation is biased by a point's own contribution (a KDE) must then leave it out.
        """

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob_and_score(x)[0]

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob_and_score(x)[1]

    # Estimators with learnable state (a flow) override these so training can resume exactly.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None
