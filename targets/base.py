"""The `Target` protocol: an unnormalised log-density plus what a benchmark needs to score samples.

Conventions (every target):
  * ``log_prob(x)`` takes ``x`` of shape ``(..., dim)`` (normally ``(n, dim)``) and returns
    ``log p̃(x)`` of shape ``(...)`` in ``x``'s dtype and on ``x``'s device; it is differentiable
    with autograd.  ``log p̃ = log p + log_Z``: ``log_Z`` is the log normaliser when known
    (0 for targets written normalised), else ``None``.
  * ``sample(n, generator)`` returns ``n`` exact samples as a float32 tensor ``(n, dim)``; targets
    without an exact sampler raise ``NotImplementedError``.  Sampling draws only from
    ``generator`` (or the global torch RNG when it is ``None``).
  * ``mode_centers`` ``(K, dim)`` and ``mode_weights`` ``(K,)`` (true masses, sum 1) are set where
    modes are meaningful; ``assign_modes`` labels samples with a mode index.
  * ``config()`` is ``{"name": ..., **constructor kwargs}``; ``get_target(**config())``
    rebuilds an identical target.

Subclasses implement ``_log_prob`` (and ``_sample`` when exact samples exist); shape and
argument checks live here once, for every target.
"""
from __future__ import annotations

import math
from typing import Any

import torch

PlotRange = tuple[float, float] | list[tuple[float, float]]


class Target:
    """Base class for benchmark targets.  See the module docstring for the conventions."""

    name: str = "target"
    dim: int
    log_Z: float | None = None
    has_exact_sampler: bool = False
    mode_centers: torch.Tensor | None = None
    mode_weights: torch.Tensor | None = None
    plot_range: PlotRange = (-5.0, 5.0)

    def __init__(self, **kwargs: Any) -> None:
        # Constructor kwargs, already validated and converted to plain int/float/str by the
        # subclass, so that config() is JSON-serialisable and round-trips through get_target.
        self._kwargs = dict(kwargs)

    # ----------------------------------------------------------------------------- density
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p̃(x): ``(..., dim) -> (...)``, in x's dtype, differentiable."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x must have a floating dtype (float32/float64), got {x.dtype}")
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(
                f"x must have shape (..., {self.dim}) for target {self.name!r}, got {tuple(x.shape)}"
            )
        return self._log_prob(x)

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob_jax(self, x):
        """The same log p̃ in jax.numpy for one point ``(dim,) -> ()`` (for blackjax references)."""
        raise NotImplementedError(f"target {self.name!r} provides no JAX log-density")

    # ---------------------------------------------------------------------------- sampling
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact samples, float32 ``(n, dim)``."""
        if not self.has_exact_sampler:
            raise NotImplementedError(
                f"target {self.name!r} has no exact sampler; use a reference MCMC run instead"
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if n == 0:
            return torch.empty(0, self.dim, dtype=torch.float32)
        return self._sample(n, generator).to(torch.float32)

    def _sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    # ------------------------------------------------------------------------------- modes
    def assign_modes(self, x: torch.Tensor) -> torch.Tensor:
        """Mode index of each sample, ``(n, dim) -> (n,)`` long: the nearest centre (Euclidean)."""
        if self.mode_centers is None:
            raise ValueError(f"target {self.name!r} has no mode centres to assign samples to")
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {tuple(x.shape)}")
        return nearest_center(x, self.mode_centers)

    def diagnostics(self, x: torch.Tensor) -> dict:
        """Target-specific, JSON-serialisable checks of samples ``x`` (none by default)."""
        return {}

    # ------------------------------------------------------------------------------ config
    def config(self) -> dict:
        """``{"name": name, **constructor kwargs}``; ``get_target(**t.config())`` rebuilds ``t``."""
        return {"name": self.name, **self._kwargs}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())
        return f"{type(self).__name__}({args})"


# --------------------------------------------------------------------------------- helpers
def nearest_center(x: torch.Tensor, centers: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Index of the nearest centre (Euclidean) for each row of ``x``; chunked over rows."""
    c = centers.to(device=x.device, dtype=torch.float64)
    out = []
    for start in range(0, x.shape[0], chunk):
        xb = x[start : start + chunk].detach().to(torch.float64)
        out.append(torch.cdist(xb, c).argmin(dim=1))
    if not out:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    return torch.cat(out)


def check_positive(name: str, value: Any) -> float:
    """A finite float > 0, or ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def check_int(name: str, value: Any, minimum: int) -> int:
    """An int >= minimum, or ValueError/TypeError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(name: str, value: Any) -> float:
    """Any finite float, or an error naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value
