"""Argument checks that turn bad input into errors naming the argument, before training starts."""
from __future__ import annotations

import math
from typing import Callable

import torch

Tensor = torch.Tensor
LogDensity = Callable[[Tensor], Tensor]

__all__ = ["check_positive_int", "check_log_density", "log_density_and_score"]


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def log_density_and_score(
    log_density: LogDensity, x: Tensor, *, name: str = "log_density", step: int | None = None,
    max_bad_fraction: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """log p̃(x) (n,) and ∇log p̃(x) (n, d) by autograd, both detached, with shape/finiteness checks.

    Up to ``max_bad_fraction`` of the rows may be NaN (outside the support, as Stan treats a
    failed evaluation): they come back as log p̃ = −inf with a zero gradient (see
    :func:`outside_support`). More than that raises, naming the step."""
    where = f" at step {step}" if step is not None else ""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        out = log_density(xg)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{name} must return a torch.Tensor, got {type(out).__name__}")
        if out.shape != (x.shape[0],):
            raise ValueError(
                f"{name} must map a batch of shape {tuple(x.shape)} to shape ({x.shape[0]},), "
                f"got {tuple(out.shape)}"
            )
        if not out.dtype.is_floating_point:
            raise TypeError(f"{name} must return a floating-point tensor, got {out.dtype}")
        nan = torch.isnan(out)
        if (out == math.inf).any() or int(nan.sum()) > max_bad_fraction * x.shape[0]:
            bad = int((nan | (out == math.inf)).sum())
            raise FloatingPointError(f"{name} returned NaN or +inf for {bad} of {x.shape[0]} samples{where}")
        if not out.requires_grad:
            raise TypeError(
                f"{name} is not differentiable: its output has no gradient with respect to x "
                "(use torch operations only, no .detach()/.numpy()/.item())"
            )
        (grad,) = torch.autograd.grad(out.sum(), xg, allow_unused=True)
    if grad is None:
        raise TypeError(f"{name} does not depend on x through autograd")
    out, grad = out.detach(), grad.detach()
    if max_bad_fraction > 0:
        bad = outside_support(out, grad)
        if bad.any():
            out = torch.where(bad, torch.full_like(out, -math.inf), out)
            grad = torch.where(bad[:, None], torch.zeros_like(grad), grad)
    return out, grad


def outside_support(log_p: Tensor, score: Tensor) -> Tensor:
    """Rows whose log-density is NaN/−inf or whose gradient is not finite (n,) bool."""
    return ~torch.isfinite(log_p) | ~torch.isfinite(score).all(-1)


def check_log_density(log_density: LogDensity, dim: int, *, name: str = "log_density", n: int = 8) -> None:
    """Probe ``log_density`` on a standard-normal batch of shape (n, dim) before training."""
    if not callable(log_density):
        raise TypeError(f"{name} must be callable, got {type(log_density).__name__}")
    check_positive_int(dim, "dim")
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(1234))
    try:
        out, grad = log_density_and_score(log_density, x, name=name)
    except (TypeError, ValueError, FloatingPointError):
        raise
    except Exception as e:
        raise ValueError(
            f"{name} failed on a probe batch of shape ({n}, {dim}) (is dim={dim} right?): "
            f"{type(e).__name__}: {e}"
        ) from e
    if (out == -math.inf).all():
        raise ValueError(f"{name} is -inf at every probe point of shape ({n}, {dim}): nowhere to start")
    if not torch.isfinite(grad[torch.isfinite(out)]).all():
        raise FloatingPointError(f"{name} has a non-finite gradient at a probe point")
