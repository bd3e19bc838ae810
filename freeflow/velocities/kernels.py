"""Kernel velocity fields on samples: the drifting field and the MMD flow (MATH.md §3).

Both move generated points ``x`` toward data ``y⁺`` and away from generated points ``y⁻``
(a second generator batch, or ``x`` itself with the diagonal masked).

* Drifting field (Laplace kernel ``k(x, y) = exp(−‖x − y‖ / τ)`` on the L2 distance, attraction
  minus repulsion, joint row/column normalisation)::

      logits = −[‖x_i − y⁺_j‖, ‖x_i − y⁻_k‖] / τ                 (N × (M⁺+M⁻))
      A      = sqrt(softmax_row(logits) · softmax_col(logits))
      W⁺_ij  = A⁺_ij · Σ_k A⁻_ik,   W⁻_ik = A⁻_ik · Σ_j A⁺_ij
      V(x_i) = Σ_j W⁺_ij y⁺_j − Σ_k W⁻_ik y⁻_k

  Row sums of ``W⁺`` and ``W⁻`` are equal, so ``x_i`` itself cancels.  τ is relative: the
  published recipe scales features to mean pairwise distance √D and uses τ̃ ∈ {0.02, 0.05, 0.2}
  times √D, which is ``τ = τ̃ · mean‖x − y⁺‖`` here.  Several τ are summed after RMS
  normalisation.

* MMD flow with a Gaussian kernel ``k_h(x, y) = exp(−‖x − y‖² / 2h²)``: the velocity is minus
  the gradient of the witness function ``f = E_q k(x, ·) − E_p k(x, ·)``::

      V(x_i) = (1/h²) [ mean_j k(x_i, y⁺_j)(y⁺_j − x_i) − mean_k k(x_i, y⁻_k)(y⁻_k − x_i) ]

  (no softmax: the kernel weights are not normalised, which is what distinguishes it from
  the drifting and Sinkhorn fields).  ``h² = rel_bandwidth · median‖x − y⁺‖²``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .common import rms_normalize
from .sinkhorn import _as_list, _check_points, half_sq_dist

__all__ = ["drifting_velocity", "mmd_velocity"]


def _check_sets(x, pos, neg):
    _check_points("x", x)
    _check_points("pos", pos)
    _check_points("neg", neg)
    if not (x.shape[-1] == pos.shape[-1] == neg.shape[-1]):
        raise ValueError(
            f"x, pos and neg must share the last dimension, got {x.shape[-1]}, {pos.shape[-1]}, {neg.shape[-1]}"
        )


def _dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (2.0 * half_sq_dist(x, y)).sqrt_()


def drifting_velocity(
    x: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    *,
    temperature: float | Sequence[float] = (0.02, 0.05, 0.2),
    exclude_self: bool = False,
    normalize: bool = True,
    batch_dims: int = 0,
) -> torch.Tensor:
    """Drifting kernel field (see module doc).  Shapes ``(..., N, D)``, ``(..., M⁺, D)``, ``(..., M⁻, D)``.

    ``exclude_self=True`` masks the diagonal of the ``x``/``neg`` block (use when ``neg is x``).
    ``temperature`` is relative to the mean distance between ``x`` and ``pos``.
    """
    _check_sets(x, pos, neg)
    temps = _as_list("temperature", temperature)
    if exclude_self and neg.shape[-2] != x.shape[-2]:
        raise ValueError("exclude_self=True needs neg to have as many points as x")
    d_pos = _dist(x, pos)  # (..., N, M+)
    d_neg = _dist(x, neg)  # (..., N, M-)
    if exclude_self:
        d_neg = d_neg + torch.eye(x.shape[-2], dtype=x.dtype, device=x.device) * 1e6
    scale = d_pos.mean(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    m_pos = pos.shape[-2]
    out = torch.zeros_like(x)
    for t in temps:
        logits = -torch.cat([d_pos, d_neg], dim=-1) / (t * scale)  # (..., N, M+ + M-)
        a = (logits.softmax(dim=-1) * logits.softmax(dim=-2)).sqrt()
        a_pos, a_neg = a[..., :m_pos], a[..., m_pos:]
        w_pos = a_pos * a_neg.sum(-1, keepdim=True)
        w_neg = a_neg * a_pos.sum(-1, keepdim=True)
        v = w_pos @ pos - w_neg @ neg  # (..., N, D)
        out = out + (rms_normalize(v, batch_dims=batch_dims) if (normalize or len(temps) > 1) else v)
    return out


def mmd_velocity(
    x: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    *,
    rel_bandwidth: float | Sequence[float] = (0.1, 1.0),
    exclude_self: bool = False,
    normalize: bool = True,
) -> torch.Tensor:
    """MMD gradient flow with Gaussian kernels (see module doc).

    ``rel_bandwidth`` scales the median squared distance between ``x`` and ``pos`` to give h²;
    several bandwidths are summed after RMS normalisation.
    """
    _check_sets(x, pos, neg)
    rels = _as_list("rel_bandwidth", rel_bandwidth)
    if exclude_self and neg.shape[-2] != x.shape[-2]:
        raise ValueError("exclude_self=True needs neg to have as many points as x")
    c_pos = 2.0 * half_sq_dist(x, pos)  # squared distances
    c_neg = 2.0 * half_sq_dist(x, neg)
    med = c_pos.flatten(-2).median(dim=-1).values.clamp_min(torch.finfo(x.dtype).tiny)
    med = med[..., None, None]
    out = torch.zeros_like(x)
    for r in rels:
        h2 = r * med
        k_pos = torch.exp(-c_pos / (2 * h2))
        k_neg = torch.exp(-c_neg / (2 * h2))
        if exclude_self:
            k_neg = k_neg * (1 - torch.eye(x.shape[-2], dtype=x.dtype, device=x.device))
            n_neg = neg.shape[-2] - 1
        else:
            n_neg = neg.shape[-2]
        att = (k_pos @ pos - k_pos.sum(-1, keepdim=True) * x) / pos.shape[-2]
        rep = (k_neg @ neg - k_neg.sum(-1, keepdim=True) * x) / max(n_neg, 1)
        v = (att - rep) / h2
        out = out + (rms_normalize(v) if (normalize or len(rels) > 1) else v)
    return out
