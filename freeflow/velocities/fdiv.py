"""The data-free drift V(x) = w(r(x)) · (∇log p̃(x) − ∇log q(x))   (MATH.md §2).

All functions are pure and run under ``torch.no_grad()`` by the caller.

The density ratio r = p/q needs the normaliser of p̃, which is unknown. We use the
self-normalised importance estimate over the batch x_1..x_N ~ q

    r̂_i = N · softmax_i(log p̃(x_i) − log q̂(x_i)),

which is exactly invariant to adding a constant to log p̃. For power-law weights (``kl_pq``,
``pearson``, ``alpha:a`` …) any global factor in r only rescales V and is removed by the RMS
normalisation; for ``js`` and ``jeffreys`` the self-normalisation is what makes the weight
meaningful.

r̂ has exploding variance exactly when q misses regions of p (one sample carries all the
weight). Two standard controls, both applied in log space:

* clipping, r̂ ← min(r̂, r_max): bounds the influence of any one sample;
* tempering, r̂ ← r̂^τ with τ ∈ (0, 1]: flattens the weights as a whole (τ = 0 turns every
  weight into w(1), i.e. the ``kl_qp`` flow).
"""
from __future__ import annotations

import math

import torch

from ..divergences import Divergence
from .common import rms_normalize

Tensor = torch.Tensor

__all__ = ["log_ratio_snis", "regularize_log_ratio", "fdiv_velocity", "effective_sample_fraction"]


def log_ratio_snis(log_p: Tensor, log_q: Tensor) -> Tensor:
    """log r̂_i = log N + log_softmax_i(log p̃ − log q̂): self-normalised, mean of r̂ is 1."""
    log_w = log_p - log_q
    return math.log(log_w.shape[0]) + torch.log_softmax(log_w, dim=0)


def regularize_log_ratio(
    log_r: Tensor, *, max_ratio: float | None = None, temper: float = 1.0
) -> Tensor:
    """Temper (r^τ) then clip (min(r, r_max)) a log-ratio. ``None`` disables clipping."""
    if not 0.0 <= temper <= 1.0:
        raise ValueError(f"temper must lie in [0, 1], got {temper}")
    out = log_r * temper if temper != 1.0 else log_r
    if max_ratio is not None:
        if max_ratio <= 0:
            raise ValueError(f"max_ratio must be positive, got {max_ratio}")
        out = out.clamp_max(math.log(max_ratio))
    return out


def effective_sample_fraction(log_w: Tensor) -> Tensor:
    """(Σw)² / (N Σw²) from log weights: 1 for uniform weights, 1/N when one dominates."""
    lw = log_w - log_w.max()
    w = lw.exp()
    return w.sum() ** 2 / (w.shape[0] * w.pow(2).sum())


def fdiv_velocity(
    score_p: Tensor,
    score_q: Tensor,
    log_r: Tensor,
    divergence: Divergence,
    *,
    normalize: bool = True,
) -> Tensor:
    """V_i = w(r_i) (∇log p̃(x_i) − ∇log q(x_i)), optionally RMS-normalised.

    Args:
        score_p: ∇log p̃ at the samples, (N, d).
        score_q: ∇log q̂ at the samples, (N, d).
        log_r: log of the density ratio estimate at the samples, (N,). Only its values up to
            an additive constant matter for power-law weights once ``normalize`` is on.
        divergence: supplies log w(log r).
        normalize: divide by sqrt(mean(V²)) (MATH.md §1) so that the step size is in units
            of the batch's own drift.
    """
    if score_p.shape != score_q.shape:
        raise ValueError(f"score_p {tuple(score_p.shape)} and score_q {tuple(score_q.shape)} differ")
    if log_r.shape != score_p.shape[:1]:
        raise ValueError(f"log_r must have shape ({score_p.shape[0]},), got {tuple(log_r.shape)}")
    log_w = divergence.log_weight(log_r)
    if normalize:
        # A global factor in w cancels in the normalisation: subtract the max for overflow safety.
        log_w = log_w - log_w.max()
    v = log_w.exp().unsqueeze(-1) * (score_p - score_q)
    return rms_normalize(v) if normalize else v
