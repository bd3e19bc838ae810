"""KDE-ratio f-divergence drift on samples (MATH.md §2 applied to data, §3 baseline).

p̂ is a Gaussian KDE of the data batch, q̂ a KDE of an independent second generator batch x′
(never the batch being moved: the self term biases the score to 0).  Both KDEs share one
isotropic bandwidth h, so that with the mean-shift form of the score::

    ∇log p̂(x) = (m_p(x) − x) / h²,   m_p(x) = Σ_j softmax_j(−‖x − y_j‖² / 2h²) y_j

the KL(q‖p) velocity (w = 1) is ``V = β = ∇log p̂ − ∇log q̂ = (m_p(x) − m_q(x)) / h²``.
Other f-divergences use ``V = w(r̂) β`` with ``log r̂ = log p̂ − log q̂`` (both KDEs are
normalised densities, so r̂ needs no further normaliser); pass ``weight_fn(log_r) -> w`` (for
example ``lambda lr: lr.clamp(max=log(20)).exp()`` for KL(p‖q), w = r, clipped).

Bandwidth: ``h = rel_bandwidth · scott · σ̄`` with Scott's factor ``n^(−1/(d+4))`` (n the data
batch size) and σ̄ the root mean per-dimension variance of the data batch.  Good for d ≲ 10.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .common import rms_normalize
from .sinkhorn import _check_eps, _check_points, _logsumexp, _softmax, half_sq_dist

__all__ = ["kde_bandwidth", "kde_log_prob_and_score", "kde_ratio_velocity"]


def kde_bandwidth(data: torch.Tensor, rel_bandwidth: float = 1.0) -> torch.Tensor:
    """Scott bandwidth ``rel · n^(−1/(d+4)) · sqrt(mean_k Var(data_k))``, shape ``(...)``."""
    n, d = data.shape[-2], data.shape[-1]
    sigma = data.var(dim=-2, unbiased=n > 1).mean(-1).sqrt()
    return rel_bandwidth * n ** (-1.0 / (d + 4)) * sigma.clamp_min(torch.finfo(data.dtype).eps)


def kde_log_prob_and_score(
    x: torch.Tensor, centres: torch.Tensor, h: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """log q̂(x) and ∇log q̂(x) for the Gaussian KDE on ``centres`` with bandwidth h.

    ``log q̂(x) = logsumexp_j(−‖x − c_j‖²/2h²) − log M − (d/2) log(2π h²)``,
    ``∇log q̂(x) = (m(x) − x)/h²`` (mean shift).
    """
    h2 = torch.as_tensor(h, dtype=x.dtype, device=x.device) ** 2
    while h2.dim() < x.dim():
        h2 = h2.unsqueeze(-1)
    logits = -half_sq_dist(x, centres) / h2  # (..., N, M)
    m, d = centres.shape[-2], x.shape[-1]
    log_q = _logsumexp(logits, dim=-1) - math.log(m) - 0.5 * d * torch.log(2 * math.pi * h2[..., 0, 0])[..., None]
    score = (_softmax(logits, dim=-1) @ centres - x) / h2
    return log_q, score


def kde_ratio_velocity(
    x: torch.Tensor,
    data: torch.Tensor,
    x_prime: torch.Tensor,
    *,
    rel_bandwidth: float = 1.0,
    weight_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """``V = w(r̂) (∇log p̂ − ∇log q̂)`` at ``x`` with p̂ = KDE(data), q̂ = KDE(x_prime).

    ``weight_fn=None`` is KL(q‖p) (w = 1).  Returns a tensor shaped like ``x``.
    """
    _check_points("x", x)
    _check_points("data", data)
    _check_points("x_prime", x_prime)
    if not (x.shape[-1] == data.shape[-1] == x_prime.shape[-1]):
        raise ValueError("x, data and x_prime must share the last dimension")
    _check_eps("rel_bandwidth", rel_bandwidth)
    h = kde_bandwidth(data, rel_bandwidth)
    log_p, s_p = kde_log_prob_and_score(x, data, h)
    log_q, s_q = kde_log_prob_and_score(x, x_prime, h)
    v = s_p - s_q
    if weight_fn is not None:
        w = weight_fn(log_p - log_q)
        if not torch.isfinite(w).all():
            raise ValueError("weight_fn returned NaN or inf; clip log r before exponentiating")
        v = w.unsqueeze(-1) * v
    return rms_normalize(v) if normalize else v
