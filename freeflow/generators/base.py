"""The generator protocol: noise z (n, noise_dim) -> samples x (n, dim) in one pass.

Every generator derives from :class:`Generator` and says what it can do with two class
attributes instead of being probed (flowjax's way: a small base, capabilities declared):

* ``exact_log_prob`` — it knows its own density: :meth:`forward_and_log_prob` (x and log q(x)
  from one forward pass), :meth:`log_prob` at arbitrary points and :meth:`widened` (the
  defensive proposal q_f of the reliability check) are implemented and exact;
* ``has_weights`` — it carries mixture weights that a Fisher–Rao step moves
  (:meth:`log_responsibilities`, ``set_log_weights``; :mod:`freeflow.datafree.reaction`);
* ``has_births`` — a weighted generator whose dead components can be reborn where mass is
  missing (``rebirth``; the full-covariance mixture, not the per-coordinate product).

The registry (:mod:`.registry`) builds generators by name from the sampler's settings.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

Tensor = torch.Tensor

__all__ = ["Generator"]


class Generator(nn.Module):
    """Base class of the one-step generators (see the module docstring)."""

    exact_log_prob: bool = False
    has_weights: bool = False
    has_births: bool = False
    noise_dim: int
    out_dim: int

    def _refuse(self, what: str):
        return NotImplementedError(f"{type(self).__name__} has no exact density: {what} is unavailable "
                                   "(use a generator with exact log q, e.g. 'product_mixture' or 'flow')")

    def forward_and_log_prob(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """x = G(z) and the exact log q(x) (exact generators only)."""
        raise self._refuse("forward_and_log_prob")

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log q(x) at arbitrary points (exact generators only)."""
        raise self._refuse("log_prob")

    @contextlib.contextmanager
    def widened(self, factor: float):
        """A wider copy q_f of q within the block (exact generators only)."""
        raise self._refuse("widened")
        yield self  # pragma: no cover

    def log_responsibilities(self, x: Tensor) -> Tensor | None:
        """log γ (n, J, K) of a weighted mixture; None for generators without weights."""
        return None

    def param_groups(self) -> list[dict]:
        """Optimiser parameter groups, each with an ``lr_scale`` (one group by default)."""
        return [{"params": list(self.parameters()), "lr_scale": 1.0}]
