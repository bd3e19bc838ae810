"""Refine a sampler's draws by many short p-invariant HMC chains, with split R-hat and bulk ESS.

Diagnostics (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021, as arviz computes them,
vectorised over coordinates here; ``tests/test_mcmc.py`` checks them against ``arviz``):

* rank normalisation: z = Φ⁻¹((r − 3/8)/(S + 1/4)), r the pooled rank (ties averaged) of a
  draw among all S draws;
* split R-hat of chains (M chains × N draws, each chain split in halves):
  W = mean of the half-chains' variances, B/N = variance of their means,
  R̂ = sqrt(((N−1)/N W + B/N) / W); the reported R̂ is the larger of the rank-normalised
  ("bulk") one and that of the folded draws |x − median| ("tail"), arviz's ``method="rank"``;
* bulk ESS: on rank-normalised split chains, ρ_t = 1 − (W − mean_m γ_m(t))/var⁺ from the chains'
  autocovariances γ_m, summed by Geyer's initial monotone positive sequence; ESS = M N / τ̂.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from torch import Tensor

from ..importance import LOG_DENSITY_CHUNK, log_density_at
from ..validation import check_int, check_points
from .check import MCMC_ALPHA, MIN_SHIFT, MIN_TAIL_SHIFT, _columns, relative_tests
from .dilation import default_dilations
from .kernel import LogDensity, run_chains

__all__ = ["RefineResult", "refine", "split_rhat", "ess_bulk", "refine_rows_per_draw", "drift"]


class RefineResult(NamedTuple):
    draws: Tensor              # (n, d) the chains' final positions
    all_draws: Tensor | None   # (steps, n, d) every kept step, with keep_draws=True
    rhat: float                # largest split R-hat over coordinates (chains in groups; see refine)
    ess: float                 # smallest bulk ESS over coordinates (every chain a chain)
    acceptance: float
    step_size: float
    grad_evals: int
    seconds: float
    density_evals: int = 0     # rows passed to log p̃ without a gradient (the dilation moves)
    drift: float = math.nan    # the chains' move from their first to their last kept step, in
    #                            thresholds of the MCMC check's paired tests (≥ 1: still drifting; see drift)
    drift_where: str = ""      # the test and column behind ``drift``


def _rank_normalise(x: np.ndarray) -> np.ndarray:
    """x (M, N, d) -> normal scores of the ranks pooled over chains and draws, per coordinate."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    m, n, d = x.shape
    r = rankdata(x.reshape(m * n, d), axis=0, method="average")
    return ndtri((r - 0.375) / (m * n + 0.25)).reshape(m, n, d)


def _split(x: np.ndarray) -> np.ndarray:
    """(M, N, d) -> (2M, N//2, d): each chain in halves (the middle draw dropped for odd N)."""
    h = x.shape[1] // 2
    return np.concatenate([x[:, :h], x[:, x.shape[1] - h:]], 0)


def _rhat(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    w = x.var(1, ddof=1).mean(0)
    b_over_n = x.mean(1).var(0, ddof=1)
    return np.sqrt(((n - 1) / n * w + b_over_n) / w)


#: the most draws × coordinates R-hat and ESS work on at once: their FFTs and ranks take ~10
#: float64 copies (20 000 chains × 100 steps × 90 coordinates in one piece: 13.8 GB at peak,
#: and a zoo run killed for memory; in blocks 2.9 GB, 2.2 of them the draws)
BLOCK_ELEMENTS = 1 << 23


def _by_columns(fn):
    """``fn`` (per-coordinate statistics of x (M, N, d)) applied to blocks of coordinates."""
    def blocked(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        width = max(1, BLOCK_ELEMENTS // max(1, x.shape[0] * x.shape[1]))
        return np.concatenate([fn(x[..., j: j + width]) for j in range(0, x.shape[-1], width)])
    blocked.__doc__ = fn.__doc__
    return blocked


@_by_columns
def split_rhat(x: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat per coordinate (arviz ``rhat(method="rank")``); x (M, N, d)."""
    xs = _split(x)
    bulk = _rhat(_rank_normalise(xs))
    tail = _rhat(_rank_normalise(np.abs(xs - np.median(xs.reshape(-1, x.shape[-1]), 0))))
    return np.maximum(bulk, tail)


@_by_columns
def ess_bulk(x: np.ndarray) -> np.ndarray:
    """Bulk ESS per coordinate (arviz ``ess(method="bulk")``); x (M, N, d)."""
    z = _rank_normalise(_split(x))
    m, n, d = z.shape
    zc = z - z.mean(1, keepdims=True)
    f = np.fft.rfft(zc, n=2 * n, axis=1)
    acov = np.fft.irfft(f * np.conj(f), axis=1)[:, :n] / n                       # (M, N, d) biased γ_m(t)
    w = acov[:, 0].mean(0) * n / (n - 1)
    var_plus = w * (n - 1) / n + z.mean(1).var(0, ddof=1)
    rho = 1 - (w - acov.mean(0)) / var_plus                                       # (N, d)
    rho[0] = 1.0
    return np.array([m * n / _geyer_tau(rho[:, j], m * n) for j in range(d)])


def _geyer_tau(rho: np.ndarray, size: int) -> float:
    """τ̂ = −1 + 2 Σ ρ_t by Geyer's initial monotone positive sequence (arviz's ``_ess`` loop)."""
    n = len(rho)
    r = np.zeros(n)
    r[0], r[1] = 1.0, rho[1]
    even, odd, t = 1.0, rho[1], 1
    while t < n - 3 and even + odd > 0:
        even, odd = rho[t + 1], rho[t + 2]
        if even + odd >= 0:
            r[t + 1], r[t + 2] = even, odd
        t += 2
    max_t = t - 2
    if even > 0:
        r[max_t + 1] = even
    t = 1
    while t <= max_t - 2:                                         # monotone: no pair above the one before
        if r[t + 1] + r[t + 2] > r[t - 1] + r[t]:
            r[t + 1] = r[t + 2] = (r[t - 1] + r[t]) / 2
        t += 2
    tau = -1 + 2 * r[: max_t + 1].sum() + r[max_t + 1: max_t + 2].sum()
    return max(tau, 1 / math.log10(size))


def drift(log_density: LogDensity, first, last, *, alpha: float = MCMC_ALPHA,
          chunk_size: int = LOG_DENSITY_CHUNK) -> tuple[float, str]:
    """How far chains moved between two of their steps, ``first`` and ``last`` (n, d): the MCMC
    check's paired tests (:func:`freeflow.mcmc.mcmc_shift`: every coordinate and log p̃, mean,
    spread and both tails, Bonferroni at family-wise ``alpha``, each move counted only above its
    floor), as (largest |t| over its threshold, where). For chains at stationarity the two steps
    are exchangeable (a reversible p-invariant kernel), so ≥ 1 happens with chance ≤ ``alpha``;
    chains that still walk into a region q missed move on from step to step, and their
    draws are not yet p's. R-hat cannot see that on many short chains: each split half holds a
    large share of every chain's steps (the 32-D random walk of docs/refine.md: R̂ 1.00002 with
    log σ_obs 36 % too narrow)."""
    first = check_points(first, "first", min_rows=2, keep_placement=True)
    last = check_points(last, "last", min_rows=2, keep_placement=True)
    if last.shape != first.shape:
        raise ValueError(f"last: shape {tuple(last.shape)} differs from first's {tuple(first.shape)} (the same chains)")
    d = first.shape[1]
    before, after = (_columns(z, log_density_at(log_density, z, chunk_size), None) for z in (first, last))
    tests = {"tails": True, "min_shift": MIN_SHIFT, "min_tail_shift": MIN_TAIL_SHIFT}
    r = relative_tests(before, after, d, alpha, tests)
    if r is None:
        return math.nan, "too few chains with a finite log-density"
    rel, counted, eff, columns = r
    rel = np.where(counted, rel, 0.0)
    if not rel.max() > 0:
        return 0.0, "no move above its floor"
    i, j = np.unravel_index(int(np.argmax(rel)), rel.shape)
    kind = ("mean", "sd", "lower tail", "upper tail")[i]
    column = "log p̃" if j == rel.shape[1] - 1 else f"coordinate {int(columns[j])}"
    return float(rel[i, j]), f"{kind} of {column} (move {eff[i, j]:.3g})"


def refine_rows_per_draw(d: int, steps: int, *, warmup: int = 50, num_integration_steps: int = 4) -> int:
    """Log-density rows :func:`refine` spends per draw with its defaults, before the gradients
    of accepted dilations: the first gradient, then (warmup + steps) × (leapfrog gradients +
    dilation values), and the two log-density values of :func:`drift` (steps ≥ 4)."""
    return 1 + (warmup + steps) * (num_integration_steps + default_dilations(d)) + (2 if steps >= 4 else 0)


def refine(log_density: LogDensity, x0, steps: int, *, chains: int = 4, warmup: int = 50,
           num_integration_steps: int = 4, target_acceptance: float | None = None,
           dilations_per_step: int | None = None, seed: int = 0,
           keep_draws: bool = False, chunk_size: int = LOG_DENSITY_CHUNK,
           dilation_frames: tuple = ("chain", "ensemble")) -> RefineResult:
    """Refine a sampler's draws ``x0`` (n, d) by p-invariant HMC: one chain per row, ``warmup``
    steps adapting the step size, then ``steps`` kept steps; returns the final positions.
    Each step also makes ``dilations_per_step`` dilation moves (:mod:`freeflow.mcmc.dilation`;
    default min(d, 10) for d ≥ 3): along a hierarchical funnel HMC alone does not reach the
    neck a q missed (centred eight schools: log τ's sd 0.87 of the truth after 50 HMC steps,
    0.98 with the dilations; docs/refine.md). ``dilation_frames``: the steps alternate between
    scaling the other coordinates about each chain's own mean and about centres and spreads learnt
    from the other chains (:mod:`freeflow.mcmc.dilation`; on the zoo's 32-D random walk the second
    took log σ_obs from 38 % too narrow to 30 % in 20 steps, 26 % in 100; docs/refine.md).

    Diagnostics over the kept steps: ``rhat``, the largest over coordinates of the
    rank-normalised split R-hat with the n chains split into ``chains`` groups, each group one
    chain whose draws run step by step (all its chains at the first kept step, then the second,
    …): its halves are the early and the late kept steps, so R̂ > 1.01 says the draws still drift
    (or the groups disagree); ``ess``, the smallest bulk ESS over coordinates with every one of
    the n chains a chain; ``drift``, :func:`drift` between the first and the last kept step
    (≥ 1: the chains still move, the draws are not yet p's; 2n more log-density rows). Memory:
    the kept draws, steps × n × d floats."""
    x0 = check_points(x0, "x0", min_rows=2, keep_placement=True)
    steps = check_int(steps, "steps", minimum=1)
    chains = check_int(chains, "chains", minimum=1, maximum=x0.shape[0])
    warmup = check_int(warmup, "warmup", minimum=0)
    dil = default_dilations(x0.shape[1]) if dilations_per_step is None else dilations_per_step
    res = run_chains(log_density, x0, steps, warmup=warmup, num_integration_steps=num_integration_steps,
                     target_acceptance=target_acceptance, dilations_per_step=dil, seed=seed, keep_draws=True,
                     chunk_size=chunk_size, dilation_frames=dilation_frames)
    rhat = ess = moved = math.nan
    where = ""
    if steps >= 4:
        draws = res.draws.double().cpu().numpy()                                        # (steps, n, d)
        n, d = draws.shape[1:]
        per = n // chains
        grouped = draws[:, : per * chains].reshape(steps, chains, per, d).transpose(1, 0, 2, 3)
        rhat = float(np.nanmax(split_rhat(grouped.reshape(chains, steps * per, d))))
        ess = float(np.nanmin(ess_bulk(draws.transpose(1, 0, 2))))
        moved, where = drift(log_density, res.draws[0], res.draws[-1], chunk_size=chunk_size)
        drift_rows = 2 * n
    else:
        drift_rows = 0
    return RefineResult(res.state.position, res.draws if keep_draws else None, rhat, ess, res.acceptance,
                        res.step_size, res.grad_evals, res.seconds, res.density_evals + drift_rows, moved, where)
