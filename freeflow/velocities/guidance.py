"""Guidance for conditional data flows (MATH.md §3, "Conditional generation and guidance").

Two forms, both for a generated batch ``x`` of class c (leading dims allowed: one class per
leading entry), its independent second batch ``x′``, class data ``p_c`` and unconditional data
``p_∅`` (reals of random classes):

* velocity guidance, ``w = scale − 1``::

      V_w = (1 + w)(T_{q→p_c} − T_{q→q′}) − w (T_{q→p_∅} − T_{q→q′})
          = (1 + w) T_{q→p_c} − w T_{q→p_∅} − T_{q→q′}

* distribution guidance: the unconditional reals join the negatives (the self term) with
  column weight ``(α − 1) · N_neg / N_unc`` each, against weight 1 for each of the ``N_neg``
  generated negatives (``N_neg = N_gen − 1`` in a leave-one-out self term, ``N_gen`` with the
  two-batch estimator).  The negative measure is then ``(q + (α − 1) p_∅) / α``, and V = 0 at
  ``q(·|c) = α p(·|c) − (α − 1) p(·|∅)``.

``scale``/``alpha`` may be a float or a tensor of shape ``(...)`` (one per leading entry).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..validation import check_positive_int
from .common import rms_normalize
from .sinkhorn import _as_list, _check_points, barycentric_map, relative_epsilon, sinkhorn_velocity

__all__ = ["velocity_guidance", "distribution_guidance_log_weights", "distribution_guidance", "guided_field"]


def _scale_tensor(name: str, scale, like: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(scale, dtype=like.dtype, device=like.device)
    if not torch.isfinite(s).all() or (s < 1).any():
        raise ValueError(f"{name} must be finite and >= 1, got {scale}")
    if s.dim() != 0 and tuple(s.shape) != tuple(like.shape[:-2]):
        raise ValueError(f"{name} must be a float or have shape {tuple(like.shape[:-2])}, got {tuple(s.shape)}")
    return s


def velocity_guidance(
    x: torch.Tensor,
    data_cond: torch.Tensor,
    data_uncond: torch.Tensor,
    x_prime: torch.Tensor,
    *,
    scale: float | torch.Tensor,
    rel_eps: float | Sequence[float] = 0.05,
    num_iters: int = 5,
    batch_dims: int = 0,
) -> torch.Tensor:
    """Sinkhorn velocity guidance ``(1+w) T_{q→p_c} − w T_{q→p_∅} − T_{q→q′}``, w = scale − 1.

    One ε (relative to ``mean‖x − data_cond‖²``) is shared by the three maps; several ε are
    RMS-normalised then summed (per index of the first ``batch_dims`` dimensions, if given).
    ``scale = 1`` is the plain two-batch Sinkhorn velocity.
    """
    for name, t in (("x", x), ("data_cond", data_cond), ("data_uncond", data_uncond), ("x_prime", x_prime)):
        _check_points(name, t)
    check_positive_int(num_iters, "num_iters")
    s = _scale_tensor("scale", scale, x)
    w = (s - 1).reshape(s.shape + (1, 1))
    out = torch.zeros_like(x)
    for r in _as_list("rel_eps", rel_eps):
        eps = relative_epsilon(x, data_cond, r)
        t_c = barycentric_map(x, data_cond, eps, num_iters)
        t_u = barycentric_map(x, data_uncond.expand(x.shape[:-2] + data_uncond.shape[-2:]), eps, num_iters)
        t_q = barycentric_map(x, x_prime, eps, num_iters)
        out = out + rms_normalize((1 + w) * t_c - w * t_u - t_q, batch_dims=batch_dims)
    return out


def distribution_guidance_log_weights(
    n_neg: int, n_unc: int, alpha: float | torch.Tensor, *, dtype=torch.float32, device=None
) -> torch.Tensor:
    """Normalised column log-weights for the negatives ``[x′ (n_neg points); p_∅ (n_unc points)]``.

    Unnormalised weights: 1 for each generated negative, ``(α − 1) n_neg / n_unc`` for each
    unconditional real.  Shape ``(..., n_neg + n_unc)`` with ``(...)`` the shape of ``alpha``.
    At α = 1 the reals get log-weight −inf (they drop out).
    """
    check_positive_int(n_neg, "n_neg")
    check_positive_int(n_unc, "n_unc")
    a = torch.as_tensor(alpha, dtype=dtype, device=device)
    if not torch.isfinite(a).all() or (a < 1).any():
        raise ValueError(f"alpha must be finite and >= 1, got {alpha}")
    lw_gen = torch.zeros(a.shape + (n_neg,), dtype=dtype, device=device)
    lw_unc = (torch.log(a - 1) + math.log(n_neg / n_unc)).unsqueeze(-1).expand(a.shape + (n_unc,))
    lw = torch.cat([lw_gen, lw_unc], dim=-1)
    return lw - torch.logsumexp(lw, dim=-1, keepdim=True)


def distribution_guidance(
    x: torch.Tensor,
    data_cond: torch.Tensor,
    data_uncond: torch.Tensor,
    x_prime: torch.Tensor,
    *,
    alpha: float | torch.Tensor,
    rel_eps: float | Sequence[float] = 0.05,
    num_iters: int = 5,
    batch_dims: int = 0,
) -> torch.Tensor:
    """Sinkhorn velocity with unconditional reals as weighted extra negatives (module doc)."""
    for name, t in (("x", x), ("data_cond", data_cond), ("data_uncond", data_uncond), ("x_prime", x_prime)):
        _check_points(name, t)
    a = _scale_tensor("alpha", alpha, x)
    data_uncond = data_uncond.expand(x_prime.shape[:-2] + data_uncond.shape[-2:])
    neg = torch.cat([x_prime, data_uncond], dim=-2)
    lb = distribution_guidance_log_weights(
        x_prime.shape[-2], data_uncond.shape[-2], a, dtype=x.dtype, device=x.device
    )
    lb = lb.expand(neg.shape[:-1])
    return sinkhorn_velocity(x, data_cond, neg, rel_eps=rel_eps, num_iters=num_iters, log_b_prime=lb,
                             batch_dims=batch_dims)


def guided_field(field, x: torch.Tensor, pos: torch.Tensor, unc: torch.Tensor, x_prime: torch.Tensor,
                 alpha: torch.Tensor) -> torch.Tensor:
    """Velocity guidance for any two-set field ``field(x, pos, neg)`` (drifting, MMD, KDE):
    ``V_α = α V(x; p_c, q′) − (α − 1) V(x; p_∅, q′)``, each field computed (and normalised)
    alone.  ``alpha`` has the shape of the leading dimensions of ``x`` (one scale per set)."""
    w = (alpha - 1).reshape(alpha.shape + (1, 1))
    unc_b = unc.expand(x.shape[:-2] + unc.shape[-2:])
    return (1 + w) * field(x, pos, x_prime) - w * field(x, unc_b, x_prime)
