"""A generator that *is* a normalizing flow: x = G_θ(z), z ~ N(0, I), with exact log q(x).

It plugs into the trainer like any ``nn.Module`` generator (``forward(z) -> x``; training still
follows the drift regression of MATH.md §1), and additionally gives the exact density of its
own samples by the change of variables

    log q(x) = log N(z; 0, I) − log |det ∂G_θ/∂z (z)|,

which makes importance weights w = p̃/q, log Ẑ, the reverse ESS and the ELBO available without
any density estimate (MATH.md §2, flow route (b)).

Layout (noise → data): coupled rational-quadratic splines (or tanh-bounded affine couplings)
with LU-linear mixing, then a learned per-dimension affine map x = t + e^s ⊙ y initialised at
``init_loc``/``init_scale``.  The splines act on a standard-normal-scale variable, so the
final affine map carries the target's location and scale and the splines' ±tail_bound window
sits where the mass is.  Coupled (not autoregressive) splines keep sampling and density
evaluation one pass each.
"""
from __future__ import annotations

import contextlib
import math
from typing import Literal

import normflows as nf
import torch

from ..density.flow import build_flow
from .base import Generator
from .exact import ExactDensity

__all__ = ["FlowGenerator", "ExactFlowDensity"]


class FlowGenerator(Generator):
    """Normalizing-flow generator with exact log-density.

    Parameters
    ----------
    dim: data dimension d (= noise dimension).
    layers, hidden, kind, bins, tail_bound: architecture (see ``freeflow.density.flow.build_flow``).
    init_loc, init_scale: initial value of the final affine map (scalars or (d,) tensors);
        set them to the target's rough location and scale.
    """

    exact_log_prob = True

    def __init__(
        self,
        dim: int,
        *,
        layers: int = 6,
        hidden: int = 64,
        kind: Literal["spline", "realnvp"] = "spline",
        bins: int = 8,
        tail_bound: float = 5.0,
        init_loc: float | torch.Tensor = 0.0,
        init_scale: float | torch.Tensor = 1.0,
    ) -> None:
        super().__init__()
        self.dim = self.noise_dim = self.out_dim = dim
        scale = torch.as_tensor(init_scale, dtype=torch.float32).expand(dim)
        if not bool((scale > 0).all()):
            raise ValueError(f"init_scale must be > 0, got {init_scale!r}")
        flows = build_flow(dim, layers=layers, hidden=hidden, kind=kind, bins=bins,
                           tail_bound=tail_bound, for_sampling=True)
        out = nf.flows.AffineConstFlow((dim,))
        with torch.no_grad():
            out.s.copy_(scale.log()[None])
            out.t.copy_(torch.as_tensor(init_loc, dtype=torch.float32).expand(dim)[None])
        self.flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows + [out])

    @staticmethod
    def _log_normal(z: torch.Tensor) -> torch.Tensor:
        return -0.5 * z.pow(2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """x = G(z), (n, d) -> (n, d), with graph."""
        return self.flow.forward(z)

    @contextlib.contextmanager
    def widened(self, factor: float):
        """Within the block the base noise is N(0, factor² I): sampling and log q belong to a
        wider flow q_f (a defensive proposal for tail checks)."""
        old, self._widen = getattr(self, "_widen", 1.0), float(factor)
        try:
            yield self
        finally:
            self._widen = old

    def forward_and_log_prob(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = G(z) and the exact log q(x) = log N(z) − log|det ∂G/∂z|, with graph."""
        f = getattr(self, "_widen", 1.0)
        x, log_det = self.flow.forward_and_log_det(f * z)
        return x, self._log_normal(z) - self.dim * math.log(f) - log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log q(x) at arbitrary points (inverse pass), with graph."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {tuple(x.shape)}")
        f = getattr(self, "_widen", 1.0)
        if f == 1.0:
            return self.flow.log_prob(x)
        z, log_det = x, torch.zeros(x.shape[0], dtype=x.dtype)
        for layer in reversed(self.flow.flows):
            z, ld = layer.inverse(z)
            log_det = log_det + ld
        return self._log_normal(z / f) - self.dim * math.log(f) + log_det

    @torch.no_grad()
    def sample_with_log_prob(
        self, n: int, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n samples x ~ q and their exact log q(x), no graph."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n!r}")
        p = next(self.parameters())
        z = torch.randn(n, self.dim, generator=generator, dtype=p.dtype, device=p.device)
        return self.forward_and_log_prob(z)


class ExactFlowDensity(ExactDensity):
    """:class:`~freeflow.generators.exact.ExactDensity` for a :class:`FlowGenerator` (no fitting):
    log q(x) and ∇log q(x) come from the generator's inverse pass and autograd, so the
    data-free drift gets the *exact* q of the current generator."""

    def __init__(self, generator: FlowGenerator) -> None:
        if not isinstance(generator, FlowGenerator):
            raise TypeError(f"generator must be a FlowGenerator, got {type(generator).__name__}")
        super().__init__(generator)
