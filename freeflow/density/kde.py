"""Gaussian kernel density estimate of the generator's density q (MATH.md §2, KDE route).

With kernel covariance K = L Lᵀ and reference points x′_1..x′_M,

    log q̂(x) = logsumexp_j(−½‖L⁻¹(x − x′_j)‖²) − log M − log|det L| − (d/2) log 2π,
    ∇log q̂(x) = K⁻¹ (m(x) − x),   m(x) = Σ_j softmax_j(·) x′_j      (mean shift; no autograd).

The kernel covariance is ``h² · Σ`` with h from a rule and Σ the reference batch's covariance
(``covariance="full"``: this is scipy.stats.gaussian_kde's convention, used as the test oracle),
its diagonal (``"diag"``) or its mean variance times I (``"iso"``). The median heuristic gives
an isotropic bandwidth directly.

Bias: the KDE estimates q * N(0, K), not q. A drift that matches the smoothed q̂ to p makes q
*narrower* than p by about K (see docs/theory.md), so the bandwidth must be small against the
target's local scale; the data-free sampler anneals it.

Evaluating q̂ at one of its own reference points adds a self term exp(0) that biases the score
toward 0 (badly from d ≈ 30 on): use an independent reference batch or ``same_batch=True``
(leave-one-out).
"""
from __future__ import annotations

import math

import torch

from .base import DensityEstimator

Tensor = torch.Tensor

__all__ = ["KDE", "bandwidth_factor"]

_RULES = ("scott", "silverman", "median")
_COVARIANCES = ("full", "diag", "iso")


def bandwidth_factor(n: int, d: int, rule: str) -> float:
    """Scott n^(−1/(d+4)) or Silverman (n(d+2)/4)^(−1/(d+4)): multiplies the data scale."""
    if rule == "scott":
        return n ** (-1.0 / (d + 4))
    if rule == "silverman":
        return (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    raise ValueError(f"bandwidth rule must be one of 'scott', 'silverman' for a factor, got {rule!r}")


def _median_bandwidth(x: Tensor) -> Tensor:
    """h with 2h² = median(‖x_i − x_j‖²) / log(n + 1)  (the SVGD median heuristic)."""
    n = x.shape[0]
    d2 = torch.cdist(x, x).pow(2)
    med = d2[~torch.eye(n, dtype=torch.bool, device=x.device)].median()
    return torch.sqrt(med / (2.0 * math.log(n + 1.0))).clamp_min(1e-12)


class KDE(DensityEstimator):
    """Gaussian KDE with a closed-form (mean-shift) score.

    Args:
        bandwidth: ``"scott"``, ``"silverman"``, ``"median"`` or a positive float (the factor h
            multiplying the data scale for ``covariance`` "full"/"diag"/"iso", used as is in
            coordinate units when ``covariance="none"``).
        factor: extra multiplier on the bandwidth (e.g. 0.5 for half Scott).
        covariance: data scale the bandwidth multiplies: "full", "diag", "iso".
        jitter: added to the covariance diagonal (relative to its mean) for stability.
        chunk_size: evaluate at most this many query points at once (memory ∝ chunk · M).
    """

    def __init__(
        self,
        bandwidth: str | float = "scott",
        *,
        factor: float = 1.0,
        covariance: str = "full",
        jitter: float = 1e-6,
        chunk_size: int = 4096,
    ):
        if isinstance(bandwidth, str):
            if bandwidth not in _RULES:
                raise ValueError(f"bandwidth must be one of {_RULES} or a positive float, got {bandwidth!r}")
        elif not (isinstance(bandwidth, (int, float)) and bandwidth > 0 and math.isfinite(bandwidth)):
            raise ValueError(f"bandwidth must be one of {_RULES} or a positive float, got {bandwidth!r}")
        if covariance not in _COVARIANCES:
            raise ValueError(f"covariance must be one of {_COVARIANCES}, got {covariance!r}")
        if not (factor > 0 and math.isfinite(factor)):
            raise ValueError(f"factor must be a positive float, got {factor!r}")
        self.bandwidth = bandwidth
        self.factor = float(factor)
        self.covariance = covariance
        self.jitter = jitter
        self.chunk_size = int(chunk_size)
        self._ref: Tensor | None = None
        self._chol: Tensor | None = None  # L, kernel covariance K = L Lᵀ (lower-triangular)

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, samples: Tensor) -> "KDE":
        if samples.ndim != 2 or samples.shape[0] < 2:
            raise ValueError(f"samples must have shape (m >= 2, d), got {tuple(samples.shape)}")
        x = samples.detach()
        self._ref = x
        self._chol = self.kernel_cholesky(x)
        return self

    def kernel_cholesky(self, x: Tensor) -> Tensor:
        """Cholesky factor L of the kernel covariance K for reference points x."""
        n, d = x.shape
        if self.bandwidth == "median":
            h = _median_bandwidth(x) * self.factor
            return torch.eye(d, dtype=x.dtype, device=x.device) * h
        h = self.bandwidth if not isinstance(self.bandwidth, str) else bandwidth_factor(n, d, self.bandwidth)
        h = h * self.factor
        xc = x - x.mean(0)
        cov = xc.T @ xc / (n - 1)
        if self.covariance == "diag":
            cov = torch.diag(torch.diagonal(cov))
        elif self.covariance == "iso":
            cov = torch.eye(d, dtype=x.dtype, device=x.device) * torch.diagonal(cov).mean()
        scale = torch.diagonal(cov).mean().clamp_min(torch.finfo(x.dtype).tiny)
        cov = cov + self.jitter * scale * torch.eye(d, dtype=x.dtype, device=x.device)
        return torch.linalg.cholesky(cov) * h

    @property
    def kernel_std(self) -> Tensor:
        """Per-coordinate kernel standard deviation sqrt(diag K) (for logging)."""
        if self._chol is None:
            raise RuntimeError("KDE.fit must be called first")
        return self._chol.pow(2).sum(-1).sqrt()

    # -- evaluation --------------------------------------------------------------------------
    def log_prob_and_score(self, x: Tensor, *, same_batch: bool = False) -> tuple[Tensor, Tensor]:
        if self._ref is None or self._chol is None:
            raise RuntimeError("KDE.fit must be called before evaluating it")
        ref, L = self._ref, self._chol
        if x.ndim != 2 or x.shape[1] != ref.shape[1]:
            raise ValueError(f"x must have shape (n, {ref.shape[1]}), got {tuple(x.shape)}")
        if same_batch and x.shape != ref.shape:
            raise ValueError("same_batch=True needs x to be the batch passed to fit")
        m, d = ref.shape
        x = x.detach().to(ref.dtype)
        # Whiten: y = L⁻¹ (x − centre), so the kernel is the standard normal in y. Centring keeps
        # ‖y‖² ~ d/h², so the GEMM form ‖a‖² + ‖b‖² − 2aᵀb of the squared distances loses
        # nothing that matters in float32.
        centre = ref.mean(0)
        y_ref = torch.linalg.solve_triangular(L, (ref - centre).T, upper=False).T  # (M, d)
        y = torch.linalg.solve_triangular(L, (x - centre).T, upper=False).T  # (N, d)
        ref_sq = y_ref.pow(2).sum(-1)  # (M,)
        log_det = torch.log(torch.diagonal(L)).sum()
        m_eff = m - 1 if same_batch else m
        const = -math.log(m_eff) - log_det - 0.5 * d * math.log(2 * math.pi)
        log_q, shift = [], []
        for start in range(0, y.shape[0], self.chunk_size):
            yc = y[start : start + self.chunk_size]
            d2 = (yc.pow(2).sum(-1, keepdim=True) + ref_sq - 2.0 * yc @ y_ref.T).clamp_min_(0.0)
            logits = d2.mul_(-0.5)  # (n, M)
            if same_batch:
                rows = torch.arange(yc.shape[0], device=x.device)
                cols = torch.arange(start, start + yc.shape[0], device=x.device)
                logits[rows, cols] = -math.inf
            # One exp serves both logsumexp (log q̂) and softmax (mean shift). Exponents below
            # −80 are clamped: exp would return float32 subnormals, which are ~50× slower on
            # CPUs, and terms below e^−80 relative to the largest change nothing.
            top = logits.max(dim=1, keepdim=True).values  # (n, 1)
            e = logits.sub_(top).clamp_min_(-80.0).exp_()  # (n, M)
            if same_batch:
                e[rows, cols] = 0.0
            total = e.sum(dim=1, keepdim=True)  # (n, 1)
            log_q.append((top + total.log()).squeeze(1) + const)
            shift.append((e @ y_ref) / total - yc)  # mean shift in y (n, d)
        log_q = torch.cat(log_q)
        dy = torch.cat(shift)
        # ∇_x log q̂ = L⁻ᵀ (m_y − y)
        score = torch.linalg.solve_triangular(L.T, dy.T, upper=True).T
        return log_q, score
