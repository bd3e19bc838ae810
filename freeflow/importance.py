"""Importance weights of samples x_i ~ q against an unnormalised target p̃ (pure functions).

Conventions.  log w_i = log p̃(x_i) − log q(x_i), with p̃ = Z·p.  Then

* self-normalised weights  w̄_i = w_i / Σ_j w_j = softmax(log w)_i;
* log Ẑ = logsumexp_i(log w_i) − log n   (Ẑ = mean w is unbiased for Z; log Ẑ is biased low
  by about Var(w)/(2 n Z²));
* its standard error by the delta method: se(log Ẑ) = sd(w) / (√n · mean(w)), computed on
  w / max w so nothing overflows.  It is itself a noisy estimate and underestimates the error
  when q misses mass of p (heavy-tailed weights): look at Pareto k̂ before trusting it;
* reverse ESS (fraction in (0, 1]) = (Σ w)² / (n Σ w²) = 1 / (n Σ w̄²);
* ELBO = mean_i log w_i ≤ log Z  (Jensen);  log Z − ELBO = KL(q‖p);
* self-normalised expectation E_p[f] ≈ Σ_i w̄_i f(x_i), with the delta-method standard error
  sqrt(Σ_i w̄_i² (f_i − Ê)²);
* Pareto k̂ (PSIS, Vehtari et al. 2024) of the weights' upper tail: k̂ < 0.5 good, up to 0.7
  usable, above 0.7 the estimates above are unreliable whatever their standard errors say.

If log q comes from an auxiliary flow fitted to the generator (``density="flow"``) rather than
the generator's exact density (``generator="flow"``), the weights are *approximate*: they
correct toward p only as far as q̂ matches q.

Weights are float64 on the device of the log-densities they come from (a sampler placed on a GPU
keeps them there); the summaries are Python floats.

Bad input: NaN or +inf log weights, or all log weights −inf (no sample has positive weight),
raise ``ValueError``; individual −inf entries (zero weights) are allowed.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
import torch

__all__ = [
    "ImportanceSummary",
    "log_importance_weights",
    "normalized_weights",
    "log_normalizer",
    "reverse_ess",
    "elbo",
    "self_normalized_expectation",
    "pareto_k",
    "pareto_khat",
    "summarize",
    "summarize_importance",
    "LOG_DENSITY_CHUNK",
    "log_density_at",
]

ArrayLike = torch.Tensor | np.ndarray


#: rows of x per call when a log-density is evaluated at many draws (importance weights,
#: diagnostics). Small enough that a model's per-row intermediates (e.g. the (rows, N)
#: logits of a regression on N observations) stay in cache: on the 2-core CI-class machine the
#: breast-cancer logistic regression (569 rows) took 0.68 s per 10⁵ draws in chunks of 16384
#: and 0.18-0.25 s in chunks of 1024-2048 (float32, one thread); the per-call overhead of
#: cheap models is ~0.1 s per 10⁵ draws at most.
LOG_DENSITY_CHUNK = 2048


def log_density_at(log_density: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   chunk_size: int = LOG_DENSITY_CHUNK) -> torch.Tensor:
    """log p̃(x) (n,) evaluated in chunks of ``chunk_size`` rows, without gradients; NaN (outside
    the support, e.g. a failed Cholesky far in the tails) is returned as −inf, as Stan treats it."""
    with torch.no_grad():
        lp = torch.cat([log_density(c) for c in x.split(chunk_size)])
    return torch.where(torch.isnan(lp), torch.full_like(lp, -math.inf), lp)


class ImportanceSummary(NamedTuple):
    """All diagnostics of one batch of importance weights (arviz's names: ``pareto_k``;
    ``ess`` a count of draws, ``ess_fraction`` the fraction of ``n``)."""

    log_normalizer: float  # log Ẑ
    log_normalizer_se: float  # delta-method standard error of log Ẑ
    ess_fraction: float  # reverse ESS as a fraction of n
    elbo: float  # mean log w
    pareto_k: float  # PSIS k̂ (nan if not computed)
    n: int

    @property
    def ess(self) -> float:
        """The reverse ESS as a count of draws (``ess_fraction`` · ``n``)."""
        return self.ess_fraction * self.n


def _as_log_weights(log_w: ArrayLike, name: str = "log_w") -> torch.Tensor:
    """Validate and convert to a float64 1-D tensor."""
    if isinstance(log_w, np.ndarray):
        log_w = torch.from_numpy(np.array(log_w, dtype=np.float64))
    if not isinstance(log_w, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(log_w).__name__}")
    log_w = log_w.detach().to(torch.float64)  # (on its own device: a placed sampler's)
    if log_w.ndim != 1 or log_w.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {tuple(log_w.shape)}")
    if torch.isnan(log_w).any():
        raise ValueError(f"{name} contains NaN ({int(torch.isnan(log_w).sum())} of {log_w.numel()})")
    if (log_w == math.inf).any():
        raise ValueError(f"{name} contains +inf: log q(x) = -inf at a sample of q, or log p̃ = +inf")
    if (log_w == -math.inf).all():
        raise ValueError(
            f"all {log_w.numel()} entries of {name} are -inf: no sample has positive target density, "
            "so no importance estimate exists"
        )
    return log_w


def log_importance_weights(log_p: ArrayLike, log_q: ArrayLike) -> torch.Tensor:
    """log w = log p̃(x) − log q(x) (float64), validated (see module docstring)."""
    lp = _as_log_weights_raw(log_p, "log_p")
    lq = _as_log_weights_raw(log_q, "log_q")
    if lp.shape != lq.shape:
        raise ValueError(f"log_p and log_q must have the same shape, got {tuple(lp.shape)} and {tuple(lq.shape)}")
    if (lq == -math.inf).any() or torch.isnan(lq).any() or (lq == math.inf).any():
        raise ValueError("log_q must be finite at samples of q")
    return _as_log_weights(lp - lq)


def _as_log_weights_raw(a: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(np.array(a, dtype=np.float64))
    if not isinstance(a, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(a).__name__}")
    return a.detach().to(torch.float64)


def normalized_weights(log_w: ArrayLike) -> torch.Tensor:
    """Self-normalised weights w̄ = softmax(log w) (float64, sums to 1)."""
    return torch.softmax(_as_log_weights(log_w), 0)


def log_normalizer(log_w: ArrayLike) -> tuple[float, float]:
    """(log Ẑ, se) with log Ẑ = logsumexp(log w) − log n and se = sd(w)/(√n mean w)."""
    lw = _as_log_weights(log_w)
    n = lw.numel()
    log_z = float(torch.logsumexp(lw, 0) - math.log(n))
    w = torch.exp(lw - lw.max())  # in (0, 1], max = 1
    se = float(w.std(unbiased=True) / (math.sqrt(n) * w.mean())) if n > 1 else math.inf
    return log_z, se


def reverse_ess(log_w: ArrayLike) -> float:
    """Reverse effective sample size as a fraction of n: 1 / (n Σ w̄²) ∈ (0, 1]."""
    wb = normalized_weights(log_w)
    return float(1.0 / (wb.numel() * wb.pow(2).sum()))


def elbo(log_w: ArrayLike) -> float:
    """ELBO = mean log w ≤ log Z (−inf if some sample has zero target density)."""
    return float(_as_log_weights(log_w).mean())


def self_normalized_expectation(
    values: ArrayLike | Callable[[torch.Tensor], torch.Tensor],
    log_w: ArrayLike,
    x: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """E_p[f] ≈ Σ w̄_i f(x_i) and its delta-method standard error, per output component.

    ``values`` are f(x_i), shape (n,) or (n, k); or a callable f applied to ``x``.
    """
    if callable(values):
        if x is None:
            raise ValueError("x is required when values is a callable f")
        values = values(x)
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(np.array(values, dtype=np.float64))
    wb = normalized_weights(log_w)
    f = values.detach().to(device=wb.device, dtype=torch.float64)
    if f.shape[0] != wb.shape[0]:
        raise ValueError(f"values has {f.shape[0]} rows but log_w has {wb.shape[0]} entries")
    if not torch.isfinite(f).all():
        raise ValueError("values contain NaN or inf")
    wcol = wb.reshape(-1, *([1] * (f.ndim - 1)))
    est = (wcol * f).sum(0)
    se = (wcol.pow(2) * (f - est).pow(2)).sum(0).sqrt()
    return est, se


def pareto_k(log_w: ArrayLike) -> float:
    """PSIS shape estimate k̂ of the importance weights' upper tail (``arviz.psislw``).

    Uses the finite log weights with r_eff = 1 (independent draws).  Returns nan when fewer
    than 10 weights are positive (no tail to fit).
    """
    lw = _as_log_weights(log_w)
    finite = lw[torch.isfinite(lw)]
    if finite.numel() < 10:
        return math.nan
    import warnings

    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, k = az.psislw(finite.cpu().numpy().copy(), reff=1.0)
    return float(np.asarray(k))


def pareto_khat(log_w: ArrayLike) -> float:
    """Deprecated name of :func:`pareto_k`."""
    import warnings

    warnings.warn("freeflow.importance.pareto_khat is deprecated: use pareto_k", DeprecationWarning, stacklevel=2)
    return pareto_k(log_w)


def summarize(log_w: ArrayLike, *, with_pareto_k: bool = True) -> ImportanceSummary:
    """All diagnostics of the log importance weights ``log_w`` (n,)."""
    lw = _as_log_weights(log_w)
    log_z, se = log_normalizer(lw)
    return ImportanceSummary(log_normalizer=log_z, log_normalizer_se=se, ess_fraction=reverse_ess(lw),
                             elbo=elbo(lw), pareto_k=pareto_k(lw) if with_pareto_k else math.nan, n=lw.numel())


def summarize_importance(log_p: ArrayLike, log_q: ArrayLike, *, pareto_k: bool = True,
                         khat: bool | None = None) -> ImportanceSummary:
    """All diagnostics for samples x ~ q from log p̃(x) and log q(x); ``pareto_k=False`` skips
    k̂ (nan); ``khat`` is its deprecated name."""
    if khat is not None:
        import warnings

        warnings.warn("summarize_importance(khat=...) is deprecated: use pareto_k=...", DeprecationWarning,
                      stacklevel=2)
        pareto_k = khat
    return summarize(log_importance_weights(log_p, log_q), with_pareto_k=pareto_k)
