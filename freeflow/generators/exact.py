"""The density protocol answered exactly by a generator that has its own log q."""
from __future__ import annotations

import torch
from torch import nn

from ..density.base import DensityEstimator

Tensor = torch.Tensor

__all__ = ["ExactDensity"]


class ExactDensity(DensityEstimator):
    """The density protocol answered exactly by a generator with ``log_prob`` (no fitting):
    a :class:`~freeflow.generators.flow.FlowGenerator` or a
    :class:`~freeflow.generators.mixture.MixtureGenerator`."""

    exact = True

    def __init__(self, generator: nn.Module) -> None:
        if not callable(getattr(generator, "log_prob", None)):
            raise TypeError(f"generator must have an exact log_prob, got {type(generator).__name__}")
        self.generator = generator

    def fit(self, samples: Tensor) -> "ExactDensity":
        return self

    def log_prob_and_score(self, x: Tensor, *, same_batch: bool = False):
        """log q(x) and ∇log q(x). For a mixture generator the log responsibilities at x come
        out of the same pass and are kept in ``last_log_resp`` (for the Fisher–Rao step)."""
        gen = self.generator
        with torch.enable_grad():
            xg = x.detach().to(next(gen.parameters()).dtype).requires_grad_(True)
            if getattr(gen, "has_weights", False):
                lp, log_resp = gen.log_prob_and_responsibilities(xg)
                self.last_log_resp = (x, log_resp.detach())
            else:
                lp = gen.log_prob(xg)
            (g,) = torch.autograd.grad(lp.sum(), xg)
        return lp.detach().to(x.dtype), g.to(x.dtype)

    def responsibilities_at(self, x: Tensor) -> Tensor:
        """The log responsibilities at x: cached from the last pass when x is that batch."""
        cached = getattr(self, "last_log_resp", None)
        if cached is not None and cached[0] is x:
            return cached[1]
        with torch.no_grad():
            return self.generator.log_responsibilities(x)

    def log_prob(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.generator.log_prob(x)
