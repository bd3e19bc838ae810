"""Sinkhorn gradient flow on samples (W-Flow), MATH.md §3.

Conventions (fixed across freeflow, and the same as geomloss with ``p=2``):

* cost ``c(x, y) = ½‖x − y‖²``;
* entropic OT between ``a = Σ_i a_i δ_{x_i}`` and ``b = Σ_j b_j δ_{y_j}`` with dual potentials
  ``(f, g)`` and plan ``π_ij = a_i b_j exp((f_i + g_j − c(x_i, y_j)) / ε)``;
* the log-domain Sinkhorn updates, from ``f = g = 0``::

      f_i = −ε logsumexp_j( log b_j + (g_j − c_ij) / ε )
      g_j = −ε logsumexp_i( log a_i + (f_i − c_ij) / ε )

  one *iteration* is one ``f`` update followed by one ``g`` update;
* the barycentric map (rows of π renormalised, which is the implicit next ``f`` update)::

      T_{a→b}(x_i) = Σ_j softmax_j( log b_j + (g_j − c_ij) / ε ) y_j ;

* the Sinkhorn-divergence velocity with the two-batch estimator::

      V(x_i) = T_{q̂→p̂}(x_i) − T_{q̂→q̂′}(x_i),

  q̂′ an independent second batch of the generator.  Using q̂ itself for the self term matches
  every point to itself and biases V toward contraction; with q̂′, ``E[V | q̂] = 0`` when q = p.
  The identity behind it: ``∇_{x_i} S_ε = a_i [T_{q→q}(x_i) − T_{q→p}(x_i)]``.

Scale: ``eps`` given to :func:`sinkhorn_velocity` is *relative*.  The published recipe scales the
features so the RMS pairwise distance is √D and sets ``ε = R·D``; the barycentric map is
equivariant under scaling, so this is the same as ``ε = R · mean_ij ‖x_i − y_j‖²`` in the raw
coordinates, which is what is computed here (no rescaled copy of the features is made).

The solver runs a FIXED number of iterations from zero potentials (no ε-annealing): with few
iterations this is a different, cheaper estimator than a converged solve, and the one the
published models train with.  geomloss (converged, ε-scaling) is the test oracle.

All functions accept leading batch dimensions: ``x`` of shape ``(..., N, D)``, ``y`` of shape
``(..., M, D)``, log-weights of shape ``(..., N)`` / ``(..., M)``; uniform weights when omitted.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..validation import check_positive_int
from .common import rms_normalize

__all__ = [
    "half_sq_dist",
    "sinkhorn_potentials",
    "barycentric_map",
    "relative_epsilon",
    "sinkhorn_velocity",
    "sinkhorn_first_variation",
]

#: Exponents below ``max − EXP_FLOOR`` are clamped before ``exp``: their weight (< e^-80) is far
#: below float32 resolution, and clamping avoids slow denormal arithmetic on CPU.
EXP_FLOOR = 80.0


def _check_eps(name: str, eps: float | torch.Tensor) -> None:
    e = torch.as_tensor(eps)
    if not torch.isfinite(e).all() or (e <= 0).any():
        raise ValueError(f"{name} must be finite and > 0, got {eps}")



def _as_list(name: str, value: float | Sequence[float]) -> list[float]:
    """One positive scale or a non-empty sequence of them (several ε, temperatures, bandwidths)."""
    vals = [value] if isinstance(value, (int, float)) else list(value)
    if not vals:
        raise ValueError(f"{name} must be a positive number or a non-empty sequence of them")
    for v in vals:
        _check_eps(name, v)
    return [float(v) for v in vals]

def _check_points(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (..., N, D), got {tuple(x.shape)}")
    if x.shape[-2] < 1:
        raise ValueError(f"{name} must hold at least one point, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")


def _uniform_log_weights(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[-2]
    return torch.full(x.shape[:-1], -math.log(n), dtype=x.dtype, device=x.device)


def _logsumexp(z: torch.Tensor, dim: int) -> torch.Tensor:
    """logsumexp with exponents more than EXP_FLOOR below the max clamped (no denormals)."""
    m = z.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    s = (z - m).clamp_min_(-EXP_FLOOR).exp_().sum(dim=dim, keepdim=True)
    return (s.log_() + m).squeeze(dim)


def _softmax(z: torch.Tensor, dim: int) -> torch.Tensor:
    m = z.amax(dim=dim, keepdim=True)
    w = (z - m).clamp_min_(-EXP_FLOOR).exp_()
    return w / w.sum(dim=dim, keepdim=True)


def half_sq_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cost matrix ``c_ij = ½‖x_i − y_j‖²``, shape ``(..., N, M)`` (clamped at 0)."""
    xx = x.pow(2).sum(-1, keepdim=True)  # (..., N, 1)
    yy = y.pow(2).sum(-1).unsqueeze(-2)  # (..., 1, M)
    c = xx + yy - 2.0 * (x @ y.transpose(-1, -2))  # (..., N, M)
    return c.clamp_min_(0.0).mul_(0.5)


def _sinkhorn_scaled(
    neg_c_over_eps: torch.Tensor,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    num_iters: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sinkhorn on ``K = −C/ε`` with potentials in units of ε: returns ``(f/ε, g/ε)``."""
    k = neg_c_over_eps
    v = torch.zeros_like(log_b)  # g / eps
    u = torch.zeros_like(log_a)  # f / eps
    for _ in range(num_iters):
        u = -_logsumexp(k + (log_b + v).unsqueeze(-2), dim=-1)  # (..., N)
        v = -_logsumexp(k + (log_a + u).unsqueeze(-1), dim=-2)  # (..., M)
    return u, v


def _validate(x, y, eps, num_iters, log_a, log_b):
    _check_points("x", x)
    _check_points("y", y)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[-1]} and {y.shape[-1]}")
    _check_eps("eps", eps)
    check_positive_int(num_iters, "num_iters")
    if log_a is not None and log_a.shape != x.shape[:-1]:
        raise ValueError(f"log_a must have shape {tuple(x.shape[:-1])}, got {tuple(log_a.shape)}")
    if log_b is not None and log_b.shape != y.shape[:-1]:
        raise ValueError(f"log_b must have shape {tuple(y.shape[:-1])}, got {tuple(log_b.shape)}")
    for name, lw in (("log_a", log_a), ("log_b", log_b)):
        if lw is not None and (torch.isnan(lw).any() or (lw == float("inf")).any()):
            raise ValueError(f"{name} contains NaN or +inf")


def _eps_tensor(eps, x: torch.Tensor) -> torch.Tensor:
    """ε as a tensor broadcastable against ``(..., N, M)``."""
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    while e.dim() < x.dim():
        e = e.unsqueeze(-1)
    return e


def sinkhorn_potentials(
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | torch.Tensor,
    num_iters: int,
    *,
    log_a: torch.Tensor | None = None,
    log_b: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual potentials ``(f, g)`` after ``num_iters`` log-domain Sinkhorn iterations from zero.

    ``eps`` is absolute here (same units as the cost ½‖x − y‖²); a tensor of shape ``(...)``
    gives one ε per leading batch entry.  Log-weights need not be normalised for the map, but
    they must be for the potentials to be the OT dual potentials.
    """
    _validate(x, y, eps, num_iters, log_a, log_b)
    e = _eps_tensor(eps, x)
    la = _uniform_log_weights(x) if log_a is None else log_a
    lb = _uniform_log_weights(y) if log_b is None else log_b
    u, v = _sinkhorn_scaled(-half_sq_dist(x, y) / e, la, lb, num_iters)
    return u * e.squeeze(-1), v * e.squeeze(-1)


def barycentric_map(
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | torch.Tensor,
    num_iters: int,
    *,
    log_a: torch.Tensor | None = None,
    log_b: torch.Tensor | None = None,
) -> torch.Tensor:
    """``T_{a→b}(x_i) = Σ_j softmax_j(log b_j + (g_j − c_ij)/ε) y_j`` after ``num_iters`` iterations.

    ``eps`` is absolute.  Returns a tensor shaped like ``x``.
    """
    _validate(x, y, eps, num_iters, log_a, log_b)
    e = _eps_tensor(eps, x)
    la = _uniform_log_weights(x) if log_a is None else log_a
    lb = _uniform_log_weights(y) if log_b is None else log_b
    k = -half_sq_dist(x, y) / e  # (..., N, M)
    _, v = _sinkhorn_scaled(k, la, lb, num_iters)
    w = _softmax(k + (lb + v).unsqueeze(-2), dim=-1)  # rows of the plan, renormalised
    return w @ y  # (..., N, D)


def relative_epsilon(x: torch.Tensor, y: torch.Tensor, rel_eps: float) -> torch.Tensor:
    """Absolute ε equal to ``rel_eps · mean_ij ‖x_i − y_j‖²`` (per leading batch entry).

    This is the published ``ε = R·D`` after scaling features to RMS pairwise distance √D.
    The mean squared distance has the closed form ``E‖x‖² + E‖y‖² − 2 E[x]·E[y]`` (O(N·D)).
    """
    m2 = x.pow(2).sum(-1).mean(-1) + y.pow(2).sum(-1).mean(-1) - 2.0 * (x.mean(-2) * y.mean(-2)).sum(-1)
    m2 = m2.clamp_min(torch.finfo(x.dtype).tiny)
    return rel_eps * m2


def sinkhorn_velocity(
    x: torch.Tensor,
    data: torch.Tensor,
    x_prime: torch.Tensor,
    *,
    rel_eps: float | Sequence[float] = 0.05,
    num_iters: int = 5,
    log_b_data: torch.Tensor | None = None,
    log_b_prime: torch.Tensor | None = None,
    normalize: bool = True,
    batch_dims: int = 0,
) -> torch.Tensor:
    """Two-batch Sinkhorn velocity ``V = T_{q̂→p̂}(x) − T_{q̂→q̂′}(x)`` (MATH.md §3).

    Args:
        x: generated batch, shape ``(..., N, D)``; the points being moved.
        data: data batch p̂, shape ``(..., M, D)``.
        x_prime: an independent generated batch q̂′ (same labels/guidance, fresh noise),
            shape ``(..., N′, D)``.  Passing ``x`` itself gives the biased same-batch estimator.
        rel_eps: ε relative to the feature scale (``ε = R·mean‖x − y‖²``, see module doc); a
            sequence gives one velocity per ε, each RMS-normalised, then summed.
        num_iters: fixed number of Sinkhorn iterations from zero potentials (>= 1).
        log_b_data / log_b_prime: optional column log-weights of the two target sets (for
            distribution guidance); uniform when omitted.
        normalize: RMS-normalise each per-ε velocity (always on when several ε are given).
        batch_dims: normalise separately per index of the first ``batch_dims`` dimensions
            (see :func:`~freeflow.velocities.common.rms_normalize`).

    The scale for ε is computed once, from ``x`` against ``data``, and shared by both maps so
    that they are computed at the same resolution.  Returns a tensor shaped like ``x``.
    """
    _check_points("x", x)
    _check_points("data", data)
    _check_points("x_prime", x_prime)
    if not (x.shape[-1] == data.shape[-1] == x_prime.shape[-1]):
        raise ValueError(
            f"x, data and x_prime must share the last dimension, got "
            f"{x.shape[-1]}, {data.shape[-1]}, {x_prime.shape[-1]}"
        )
    check_positive_int(num_iters, "num_iters")
    rels = _as_list("rel_eps", rel_eps)
    out = torch.zeros_like(x)
    for r in rels:
        eps = relative_epsilon(x, data, float(r))
        v = barycentric_map(x, data, eps, num_iters, log_b=log_b_data) - barycentric_map(
            x, x_prime, eps, num_iters, log_b=log_b_prime
        )
        out = out + (rms_normalize(v, batch_dims=batch_dims) if (normalize or len(rels) > 1) else v)
    return out


def sinkhorn_first_variation(
    x: torch.Tensor,
    data: torch.Tensor,
    x_prime: torch.Tensor,
    *,
    rel_eps: float | Sequence[float] = 0.05,
    num_iters: int = 5,
) -> torch.Tensor:
    """The first variation of the Sinkhorn divergence at the generated points, in units of ε:
    ``φ(x_i) = (f_{q̂→p̂}(x_i) − f_{q̂→q̂′}(x_i)) / ε`` (two-batch, like the velocity, whose
    field is ``−∇φ`` up to scale).  ``f`` is the c-transform of the column potential after
    ``num_iters`` iterations.  For large ε, φ ≈ log(q̃/p̃) with q̃, p̃ smoothed at scale √ε, so
    ``−φ`` is the growth rate of the Fisher–Rao (reaction) half of the flow; several ε are
    averaged.  Shape ``(..., N)``."""
    _check_points("x", x)
    _check_points("data", data)
    _check_points("x_prime", x_prime)
    check_positive_int(num_iters, "num_iters")
    rels = _as_list("rel_eps", rel_eps)
    out = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    for r in rels:
        e = _eps_tensor(relative_epsilon(x, data, float(r)), x)         # broadcasts to (..., N, M)
        f = []
        for y in (data, x_prime):
            k = -half_sq_dist(x, y) / e
            la, lb = _uniform_log_weights(x), _uniform_log_weights(y)
            _, v = _sinkhorn_scaled(k, la, lb, num_iters)
            f.append(-_logsumexp(k + (lb + v).unsqueeze(-2), dim=-1))     # f/ε (c-transform)
        out = out + (f[0] - f[1]) / len(rels)
    return out
