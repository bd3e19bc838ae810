"""The optional pieces of a hand-written :class:`~freeflow.Posterior`: per-observation
log-likelihood, deterministic sites, posterior predictive draws (their output checks and a
probe at construction)."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

Tensor = torch.Tensor


def named(out: Any, what: str, n: int, default_name: str) -> dict[str, Tensor]:
    """A user function's tensor or dict output as ``{name: tensor (n, ...)}``, checked: one row
    per draw.  A bare tensor is named ``default_name``."""
    if isinstance(out, torch.Tensor):
        out = {default_name: out}
    if not isinstance(out, Mapping) or not out:
        raise TypeError(f"{what} must return a tensor (n, ...) or a non-empty dict of them, "
                        f"got {type(out).__name__}")
    result = {}
    for k, v in out.items():
        v = torch.as_tensor(v)
        if v.ndim < 1 or v.shape[0] != n:
            raise ValueError(f"{what} must return one row per draw: {k!r} has shape {tuple(v.shape)} "
                             f"for n={n} draws")
        result[str(k)] = v
    return result


def deterministics(fn: Callable, values: dict[str, Tensor], n: int, params: Mapping) -> dict[str, Tensor]:
    """``fn(values)`` checked: a dict of (n, ...) tensors whose names are not parameters'."""
    out = fn(dict(values))
    if not isinstance(out, Mapping):
        raise TypeError(f"deterministics must return a dict {{name: tensor (n, ...)}}, got {type(out).__name__}")
    result = named(out, "deterministics", n, "") if out else {}
    clash = [k for k in result if k in params]
    if clash:
        raise ValueError(f"deterministics returns {clash}, which are parameter names; rename them")
    return result


def probe(posterior, what: str, n: int = 4) -> list[str]:
    """Call ``what`` (deterministics, log_likelihood or predictive) once on a probe batch of n
    draws: errors name the argument; returns the output names."""
    z = 0.5 * torch.randn(n, posterior.dim, generator=torch.Generator().manual_seed(20260102))
    try:
        with torch.no_grad():
            if what == "deterministics":
                out = posterior._derived(z)
            elif what == "log_likelihood":
                out = posterior._pointwise_log_likelihood(z)
            else:
                out = posterior._predict(z, 0)
    except (TypeError, ValueError) as e:
        if what in str(e):
            raise
        raise type(e)(f"{what} raised {type(e).__name__}: {e} on a probe batch of n={n} draws") from e
    except Exception as e:
        raise ValueError(f"{what} raised {type(e).__name__}: {e} on a probe batch of n={n} draws; it must "
                         "take the dict of batched constrained values (leading dimension n)") from e
    if what == "log_likelihood":
        flat = [k for k, v in out.items() if v.ndim < 2]
        if flat:
            raise ValueError(f"log_likelihood must return one value per observation, shape (n, *obs_shape): "
                             f"{flat} has shape (n,) (did it sum over the observations?)")
    return list(out)
