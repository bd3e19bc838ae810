"""The MCMC verdict check: does a p-invariant kernel move q's draws?

(Docstring completed after calibration.)
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..importance import LOG_DENSITY_CHUNK, log_density_at
from ..validation import check_float, check_int, check_points, check_seed
from .kernel import LogDensity, run_chains

__all__ = ["MCMCShift", "mcmc_shift", "shift_threshold", "MCMC_ALPHA", "MIN_SHIFT"]

#: family-wise false-alarm rate of mcmc_shift on exact draws (Bonferroni over its 2(d+1) tests)
MCMC_ALPHA = 0.05
#: the least movement (sd units: |Δmean|/sd or |log sd ratio|) that fires: a significant but
#: smaller move is a q too close to p to matter
MIN_SHIFT = 0.05


@dataclass
class MCMCShift:
    """How far a p-invariant kernel moves q's draws (see :func:`mcmc_shift`)."""
    fired: bool
    statistic: float      # largest |t| over the 2(d+1) paired tests
    threshold: float      # Bonferroni critical value z_{1−α/(2m)}, m = 2(d+1)
    shift: float          # the movement at that test, in sd units (Δmean/sd or log sd ratio)
    kind: str             # "mean" or "sd"
    coordinate: int       # where; −1 = log p̃
    mean_shift: float     # max_j |Δmean_j| / sd_j over coordinates (rank-normalised)
    sd_shift: float       # max_j |log(sd_after/sd_before)| over coordinates (rank-normalised)
    logp_shift: float     # Δ mean log p̃ / sd (rank-normalised; < 0: log p̃ dropped)
    acceptance: float
    step_size: float
    grad_evals: int       # rows passed to log p̃ with a gradient
    density_evals: int    # rows passed to log p̃ without (coordinate updates)
    n: int
    d: int
    steps: int
    seconds: float
    dropped: int = 0      # rows of x not finite or outside the support (log p̃ not finite), not started

    def to_dict(self) -> dict:
        return asdict(self)


def _normal_scores(a: np.ndarray) -> np.ndarray:
    """Pooled rank-normalisation per column (Blom: Φ⁻¹((r − 3/8)/(N + 1/4)), ties averaged)."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    return ndtri((rankdata(a, axis=0, method="average") - 0.375) / (a.shape[0] + 0.25))


def _paired_t(diff: np.ndarray) -> np.ndarray:
    n = diff.shape[0]
    sd = diff.std(0, ddof=1)
    return np.where(sd > 0, diff.mean(0) / np.where(sd > 0, sd, 1.0) * math.sqrt(n), 0.0)


def shift_threshold(d: int, alpha: float = MCMC_ALPHA) -> float:
    """z_{1−α/(2m)} with m = 2(d + 1) two-sided tests."""
    from scipy.special import ndtri

    return float(-ndtri(alpha / (4 * (d + 1))))


def mcmc_shift(log_density: LogDensity, x, *, steps: int = 40, n: int = 1024, num_integration_steps: int = 1,
               local_step_size: bool = True, coordinates_per_step: int | None = None, warmup: int | None = None,
               alpha: float = MCMC_ALPHA, min_shift: float = MIN_SHIFT, seed: int = 0,
               chunk_size: int = LOG_DENSITY_CHUNK) -> MCMCShift:
    """Run the kernel ``steps`` steps (the first ``warmup``, default steps // 2, adapt ε) from ``n``
    of q's draws ``x`` and test whether the draws' distribution moved (module docstring)."""
    t0 = time.perf_counter()
    nonfinite = 0
    if isinstance(x, torch.Tensor) and x.ndim == 2:
        finite = torch.isfinite(x).all(1)                # a generator's overflowed draws: not started
        nonfinite, x = int((~finite).sum()), x[finite]
    x = check_points(x, "x", min_rows=2)
    steps = check_int(steps, "steps", minimum=1)
    n = check_int(n, "n", minimum=8)
    warmup = steps // 2 if warmup is None else check_int(warmup, "warmup", minimum=0, maximum=steps)
    alpha = check_float(alpha, "alpha", low=0.0, high=1.0, low_open=True, high_open=True)
    min_shift = check_float(min_shift, "min_shift", low=0.0)
    seed = check_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if x.shape[0] > n:
        x = x[torch.randperm(x.shape[0], generator=gen)[:n]]
    lp0 = log_density_at(log_density, x, chunk_size)
    inside = torch.isfinite(lp0)
    dropped = nonfinite + int((~inside).sum())
    x = x[inside]
    nn, d = x.shape
    if nn < 8:
        raise ValueError(f"x: only {nn} rows have a finite log-density; need at least 8")
    res = run_chains(log_density, x, steps - warmup, warmup=warmup, num_integration_steps=num_integration_steps,
                     local_step_size=local_step_size and num_integration_steps == 1,
                     coordinates_per_step=min(d, 10) if coordinates_per_step is None else coordinates_per_step,
                     seed=seed, chunk_size=chunk_size)
    before = torch.cat([x, lp0[inside, None]], 1).double().numpy()                 # (n, d + 1)
    after = torch.cat([res.state.position, res.state.logdensity[:, None]], 1).double().numpy()
    s = _normal_scores(np.concatenate([before, after]))
    sa, sb = s[:nn], s[nn:]
    t_mean = _paired_t(sb - sa)                                                      # (d + 1,)
    t_sd = _paired_t(sb ** 2 - sa ** 2)
    mean_eff = sb.mean(0) - sa.mean(0)
    sd_eff = np.log(sb.std(0, ddof=1) / sa.std(0, ddof=1))
    tt = np.abs(np.stack([t_mean, t_sd]))                                            # (2, d + 1)
    eff = np.abs(np.stack([mean_eff, sd_eff]))
    threshold = shift_threshold(d, alpha)
    fires = (tt > threshold) & (eff >= min_shift)
    kind, col = np.unravel_index(int(np.argmax(np.where(fires, tt, -1.0) if fires.any() else tt)), tt.shape)
    stat = float(tt[kind, col])
    return MCMCShift(
        fired=bool(fires.any()), statistic=stat, threshold=threshold, shift=float(eff[kind, col]),
        kind=("mean", "sd")[kind],
        coordinate=int(col) if col < d else -1, mean_shift=float(np.abs(mean_eff[:d]).max()),
        sd_shift=float(np.abs(sd_eff[:d]).max()), logp_shift=float(mean_eff[d]), acceptance=res.acceptance,
        step_size=res.step_size, grad_evals=res.grad_evals, density_evals=res.density_evals + len(lp0), n=nn, d=d,
        steps=steps, seconds=time.perf_counter() - t0, dropped=dropped)
