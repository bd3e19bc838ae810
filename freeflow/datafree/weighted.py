"""The sampler's importance-weight methods (flow route; docs/flow-route.md): draws with their
log q, weights, log Ẑ, summaries and weighted expectations. A mixin of
:class:`~freeflow.datafree.sampler.OneStepSampler`."""
from __future__ import annotations

from typing import Callable

import torch

from .. import importance as _iw
from ..density import DensityEstimator
from ..placement import placed
from ..validation import check_positive_int
from . import space as _space
from . import verdict as _verdict

Tensor = torch.Tensor

__all__ = ["ImportanceMethods"]


class ImportanceMethods:
    @placed
    @torch.no_grad()
    def sample_and_log_prob(self, n: int, *, seed: int | None = None, ema: bool = True,
                            chunk_size: int = 16384) -> tuple[Tensor, Tensor]:
        """n samples x ~ q (n, d) and log q(x): exact for generator="flow", the auxiliary flow's
        estimate for density="flow"; any other estimator is refused with a ValueError (a KDE's
        log q̂ is too biased to weight with). In the model's own coordinates, also where training
        ran in a twin's (``self.reparam``: log q then carries the map's log-Jacobian)."""
        x, log_q = self._draw_and_log_prob(n, seed=seed, ema=ema, chunk_size=chunk_size)
        if self.reparam is None:
            return x, log_q
        z = _space.to_model(self, x)
        return z, log_q - _space.model_log_det(self, x, z).to(log_q.dtype)

    def _draw_and_log_prob(self, n: int, *, seed: int | None = None, ema: bool = True,
                           chunk_size: int = 16384) -> tuple[Tensor, Tensor]:
        """:meth:`sample_and_log_prob` in the coordinates training ran in."""
        check_positive_int(n, "n")
        net = self.state.ema.module if ema else self.generator
        if self.spec.exact:
            u, log_q = _verdict.draw(net, n, seed, self.settings["noise_dim"], self._sample_rng, chunk_size)
        elif isinstance(self.density, DensityEstimator) and getattr(self.density, "normalized", False):
            u = self.frame.to_u(self._draw(n, seed=seed, ema=ema))
            log_q = torch.cat([self.density.log_prob(c) for c in u.split(chunk_size)])
        else:
            raise ValueError(
                f"importance weights need log q: use a generator with exact log q (e.g. generator='flow') "
                f"or density='flow' (approximate), not density={self.density_name!r}"
            )
        return self.frame.to_x(u), log_q - self.frame.log_det

    @torch.no_grad()
    @placed
    def importance_weights(self, n: int, *, seed: int | None = None, ema: bool = True,
                           constrained: bool | None = None):
        """Samples x ~ q (n, d) and log w = log p̃(x) − log q(x) (float64).

        For a :class:`~freeflow.Posterior` the samples are the dict of :meth:`sample` (named
        constrained values, deterministic sites included); ``constrained=False`` gives the
        unconstrained (n, dim) tensor instead."""
        if constrained and self.posterior is None:
            raise ValueError("constrained=True needs a sampler built on a freeflow.Posterior; this one "
                             "samples a plain log_density on R^d")
        x, log_q = self._draw_and_log_prob(n, seed=seed, ema=ema)
        lw = _iw.log_importance_weights(self._log_density_chunked(x), log_q)   # (the same in any coordinates)
        x = _space.to_model(self, x)
        if self.posterior is not None and constrained is not False:
            return self.posterior.constrain(x), lw
        return x, lw

    @placed
    def log_normalizer(self, n: int, *, seed: int | None = None, ema: bool = True) -> tuple[float, float]:
        """(log Ẑ, standard error) from n importance samples (see :mod:`freeflow.importance`)."""
        return _iw.log_normalizer(self.importance_weights(n, seed=seed, ema=ema, constrained=False)[1])

    @placed
    def importance_summary(self, n: int, *, seed: int | None = None, ema: bool = True) -> "_iw.ImportanceSummary":
        """log Ẑ ± se, reverse ESS (``ess_fraction``, ``ess``), ELBO and Pareto k̂ (``pareto_k``)
        from n importance samples."""
        return _iw.summarize(self.importance_weights(n, seed=seed, ema=ema, constrained=False)[1])

    @placed
    def expectation(self, f: Callable, n: int, *, seed: int | None = None, ema: bool = True):
        """Self-normalised importance estimate of E_p[f(x)] and its standard error.

        ``f`` takes the samples as :meth:`importance_weights` gives them: x (n, d) for a plain
        log-density; for a :class:`~freeflow.Posterior`, the dict of named constrained values,
        e.g. ``sampler.expectation(lambda d: d["tau"], 100_000)``; returns (n,) or (n, k)."""
        if not callable(f):
            raise TypeError(f"f must be callable (samples -> values (n,) or (n, k)), got {type(f).__name__}")
        x, lw = self.importance_weights(n, seed=seed, ema=ema)
        return _iw.self_normalized_expectation(f(x), lw)
