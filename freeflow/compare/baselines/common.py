"""Shared by the baselines: unwrap a Target into (target, log-density, dim) and a start box."""
from __future__ import annotations

from typing import Any, Callable

import torch

from ...validation import check_float, check_int

Tensor = torch.Tensor


def _unwrap_target(log_density: Any, dim: int | None) -> tuple[Any, Callable[[Tensor], Tensor], int | None]:
    """(target or None, log-density callable, dim) from a Target object or a plain callable."""
    target = None
    if callable(getattr(log_density, "log_prob", None)) and hasattr(log_density, "dim"):
        target = log_density
        dim = target.dim if dim is None else dim
        log_density = target.log_prob
    if not callable(log_density):
        raise TypeError("log_density must be callable (n, d) -> (n,) or a Target")
    if dim is None:
        raise ValueError("dim is required when log_density is a plain function")
    return target, log_density, dim


def _check_budget(time_budget_s, max_steps) -> None:
    """fit(): a wall-clock budget in seconds, a step count, or both."""
    if time_budget_s is None and max_steps is None:
        raise ValueError("give time_budget_s or max_steps")
    check_float(time_budget_s, "time_budget_s", low=0.0, low_open=True, allow_none=True)
    check_int(max_steps, "max_steps", minimum=1, allow_none=True)


def _loc_scale_from_target(target: Any, dim: int) -> tuple[Tensor, Tensor]:
    pr = getattr(target, "plot_range", None)
    if pr is None:
        return torch.zeros(dim), torch.ones(dim)
    if isinstance(pr, tuple) and len(pr) == 2 and not isinstance(pr[0], (tuple, list)):
        pr = [pr] * dim
    lo = torch.tensor([float(a) for a, _ in pr])
    hi = torch.tensor([float(b) for _, b in pr])
    return (lo + hi) / 2, (hi - lo) / 6
