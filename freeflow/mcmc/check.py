"""The MCMC verdict check: does a p-invariant kernel move q's draws?

If q = p, a p-invariant Markov kernel K leaves q's draws distributed as they are; where q is
too narrow or misplaced, chains started from q's draws drift towards p within a few dozen
steps. Importance weights cannot see a q that is too narrow along a direction where p̃/q stays
flat over q's support (a posterior's scale parameter 28% too narrow passed Pareto k̂, the ESS
and the raw-vs-weighted gap), nor a region q never samples (a funnel's neck).

Procedure (:func:`mcmc_shift`). n of q's draws x₀ (default 1024; rows with a non-finite log p̃
are dropped) run T steps of K (default 40: the first T/2 adapt the step sizes, and the
preconditioner is estimated again at T/4) to x_T. A step of K is one MALA move with the local
step ε·s(x) (:func:`freeflow.mcmc.kernel.local_scale`) under the draws' covariance, then
Metropolis-within-Gibbs random-walk moves of min(d, 10) coordinates drawn at random: with a
single global step and no coordinate moves the chains cannot walk into a funnel's neck in 40
steps (measured: v's mean moved 0.02 sd, nothing fired), with them they do.

Statistics, for each column c ∈ {x₁, …, x_d, log p̃}: the 2n values x₀ᵢ꜀ and x_Tᵢ꜀ are
rank-normalised together, z = Φ⁻¹((r − 3/8)/(2n + 1/4)) with r the pooled rank (ties averaged),
so no moment of p is needed and heavy tails do no harm (a funnel's x_i have kurtosis ~10⁴).
Per chain i, Δᵢ = z_Tᵢ − z₀ᵢ (location) and Δ²ᵢ = z_Tᵢ² − z₀ᵢ² (spread), and
t = mean(Δ)/(sd(Δ)/√n). The reported moves are Δmean = mean z_T − mean z₀ (in sd units) and
log(sd z_T / sd z₀), the same as the raw |Δmean|/sd and log sd ratio for Gaussian marginals.

Null distribution (derived). If q = p, x₀ᵢ ~ p and, K being p-invariant, x_Tᵢ ~ p; the chains
are independent, so E Δᵢ = E Δ²ᵢ = 0 and t → N(0, 1) as n grows, however well or badly K mixes:
the test is paired, sd(Δ) measures how far the chains moved. (The step sizes and the
preconditioner are shared averages over all chains, an O(1/n) dependence.) Measured over 100
runs on the 10-D Gaussian: the 22 t's have variances 0.72-1.16 and P(|t| > 3) = 0.18%
(normal: 0.27%).

Threshold. With m = 2(d + 1) tests, Bonferroni: fire when some |t| > z* = Φ⁻¹(1 − α/(2m)),
α = :data:`MCMC_ALPHA` = 0.02, so the family-wise false-alarm rate is ≤ 2% for every n and d
(z* = 2.94, 3.32, 3.60, 3.89 for d = 2, 10, 30, 100), and the move there is at least
:data:`MIN_SHIFT` = 0.05 sd (a smaller, if significant, move is a q too close to p to matter);
for log p̃, which sums the errors of all coordinates, at least :func:`logp_floor` =
0.05·√(d/2) sd (the calibration below was measured before that floor; it can only remove
alarms, and a short rerun with it detected every case below as before).
In sd units, coordinate j fires above z*·sd(Δ)/√n with sd(Δ) ≤ √2 (√2: chains that forget
their start): the noise of a maximum over d coordinates, at most z*·√(2/n) with z* growing like
√(2 log(4(d + 1)/α)) (0.16 sd for d = 30, n = 1024; less where the chains move less).

Calibration (``python benchmarks/mcmc_check_calibration.py`` → results/mcmc_check_calibration.json,
2-core x86-64 VM, torch 2.13.0 CPU, one thread, defaults, 40 seeds per target): exact draws
of correlated Gaussians (2, 10, 30, 100-D, scales 0.1-10), a 4-D two-component mixture, Neal's
funnel (10-D) and a 32-D latent random walk with unknown scales, and the 30-D Gaussian at
n = 256 and 4096: 3 false alarms in 360 runs (0.8%, 95% interval 0.2-2.4%; at most 1 of 40
on any target). Detection, 20 seeds each, all 20/20: (a) the 30-D Gaussian with one coordinate
25% too narrow (median |t| 8.8 against 3.60, that coordinate's sd moved 0.27); (b) the random
walk with log τ (obs scale) 28% too narrow (|t| 9.0) and with log σ 28% too narrow and 0.34 sd
off (|t| 9.9); (c) the funnel without its neck, v < −2 removed (|t| 7.1 against 3.32), and
with v's sd shrunk to 70% (|t| 6.1). A milder funnel q, v's sd at 85%, fired 4/20. Cost on the
30-D Gaussian: 82,944 rows of log p̃ with a gradient and 410,624 without, 0.9-1.1 s (machine
under a load of ~12).

The final check (:func:`final_options`, run by :func:`freeflow.datafree.verdict.confirm` on
4000 chains for up to 200 steps) adds two things. Dilation moves
(:mod:`freeflow.mcmc.dilation`): a log-scale coordinate and the spread of the others moved
together, so that chains walk along a hierarchical funnel; without them, chains from a q of
centred eight schools whose log τ is 12% too narrow (the fitted generator's error there)
moved log τ's rank-normalised sd by 0.03 in 200 steps, with them its raw sd went from 1.08 to
1.16 (the truth: 1.17). Tail tests: per column, the paired indicators of lying beyond the pooled
2.5% and 97.5% quantiles (normal score ±1.96), so 4(d + 1) tests under Bonferroni; a tail's
mass must change by at least :data:`MIN_TAIL_SHIFT` (0.5 percentage points) to fire. The mass
that moves into a missed neck is a tail's (log p̃'s upper tail there: +1.9 to +2.5 points),
which the rank-normalised mean and spread barely register. On the three fitted centred
eight-schools samplers of docs/benchmarks.md the final check now fires (|t| 5.4, 5.8, 7.2
against 3.51; without the two additions 2.2, 2.0, 2.7 against 3.32); exact draws stayed below
(≤ 2.7). Calibration with ``--final`` (4000 chains, 200 steps; 20 seeds per exact-draw
target, the seven above plus exact centred eight schools and the 30-D Gaussian at 256 and
4096 chains): 2 false alarms in 200 runs (1.0%, 95% interval 0.1-3.6%); every detection case
above, and centred eight schools with log τ at 87.5% and 80% of its sd, fired 10/10 (the funnel
with v's sd at 85%: 10/10, against 4/20 for the round check). Table: docs/refine.md.

The final check ends once its chains have forgotten their starts (:func:`mixing_stop`): the
paired t grows with the steps only while a column still remembers its start. Calibration
(``--final``, 10 seeds per exact-draw target, 5 per detection case): 2 false alarms in 100
runs; every detection case fired with the fixed-length run's statistic (median |t| 8.7-20.6);
the Gaussians stop at 50 steps, the funnel at 100-200, the random walk and the mixture run 200.
It does not stop in its grey zone (largest |t| ≥ :data:`GREY_ZONE` of the threshold) and stops
on a clear alarm (:data:`CLEAR_ALARM`): :func:`mixing_stop`; calibration: docs/refine.md.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..importance import LOG_DENSITY_CHUNK, log_density_at
from ..validation import check_float, check_int, check_points, check_seed
from .dilation import default_dilations
from .kernel import LogDensity, run_chains

__all__ = ["MCMCShift", "mcmc_shift", "shift_threshold", "final_options", "logp_floor", "mixing_stop",
           "start_correlations", "MCMC_ALPHA", "MIN_SHIFT", "MIXED_CORRELATION", "FINAL_MOVES", "GREY_ZONE",
           "CLEAR_ALARM", "MIN_TAIL_SHIFT"]

#: family-wise false-alarm rate of mcmc_shift on exact draws (Bonferroni over its 2(d+1) tests)
MCMC_ALPHA = 0.02
#: the least movement (sd units: |Δmean|/sd or |log sd ratio|) that fires: a significant but
#: smaller move is a q too close to p to matter
MIN_SHIFT = 0.05
#: the tail tests (``tails=True``): the mass beyond the pooled 2.5% / 97.5% quantiles (normal
#: score ±1.96) of each column; the least change of that mass that fires (0.5 percentage points:
#: a Gaussian 5% too narrow holds 2.0% beyond its 2.5% quantile)
TAIL_Z = 1.959964
MIN_TAIL_SHIFT = 0.005
#: the final check ends once no column's start-to-now correlation exceeds this (:func:`mixing_stop`),
#: looked at every MIXED_EVERY steps from MIXED_MIN_STEPS on
MIXED_CORRELATION = 0.1
MIXED_EVERY = 25
MIXED_MIN_STEPS = 50
#: ... and not while the largest |t| is above this fraction of the threshold (:func:`mixing_stop`)
GREY_ZONE = 0.85
#: ... and stops, mixed or not, once a test whose move is above its floor has |t| this many thresholds
CLEAR_ALARM = 1.5
#: the final check's dilation and one-coordinate moves a step (each costs a log p̃ row per chain;
#: 3 + 3 kept every calibration detection with 1.4-2.7x fewer rows but missed a fitted 32-D random
#: walk that 10 + 10 flags: docs/refine.md)
FINAL_MOVES = 10


@dataclass
class MCMCShift:
    """How far a p-invariant kernel moves q's draws (see :func:`mcmc_shift`)."""
    fired: bool
    statistic: float      # largest |t| over the 2(d+1) paired tests
    threshold: float      # Bonferroni critical value z_{1−α/(2m)}, m = 2(d+1)
    shift: float          # the movement at that test: sd units (Δmean/sd, log sd ratio) or a tail's Δmass
    kind: str             # "mean", "sd", "lower tail" or "upper tail"
    coordinate: int       # where; −1 = log p̃; ≥ d: a ``features`` column (``where`` names it)
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
    where: str = ""       # the tested column in words: "log p̃", "coordinate j" or a feature's name

    def to_dict(self) -> dict:
        return asdict(self)


def _normal_scores(a: np.ndarray) -> np.ndarray:
    """Pooled rank-normalisation per column (Blom: Φ⁻¹((r − 3/8)/(N + 1/4)), ties averaged)."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    return ndtri((rankdata(a, axis=0, method="average") - 0.375) / (a.shape[0] + 0.25))


def _columns(z: torch.Tensor, lp: torch.Tensor, f: torch.Tensor | None) -> np.ndarray:
    """The tested columns: coordinates, the features' values ``f`` (if any), log p̃: (n, d [+ k] + 1)."""
    extra = [] if f is None else [f.reshape(len(z), -1).to(z.dtype)]
    return torch.cat([z, *extra, lp[:, None].to(z.dtype)], 1).double().cpu().numpy()


def _mixing_columns(z: torch.Tensor, lp: torch.Tensor, features) -> np.ndarray:
    """The columns whose memory of the start :func:`mixing_stop` watches (``features`` left out
    where they fail, as in :func:`mcmc_shift`)."""
    try:
        f = None if features is None else features(z)
    except Exception:  # noqa: BLE001
        f = None
    return _columns(z, lp, f)


def _kept(before: np.ndarray, after: np.ndarray, d: int) -> np.ndarray:
    """The columns tested: every coordinate and log p̃, the features that stay finite and vary."""
    both = np.concatenate([before, after])
    keep = np.isfinite(both).all(0) & (both.max(0) > both.min(0))  # (a feature may overflow, or be constant)
    keep[:d] = keep[-1] = True
    return keep


def _paired_tests(before: np.ndarray, after: np.ndarray, d: int, *, tails: bool, min_shift: float,
                  min_tail_shift: float):
    """The paired tests of :func:`mcmc_shift` on the columns (n, c) at the start and the end (log
    p̃ last): |t|, the moves and their floors (tests, c), and the signed mean and log-sd moves (c,)."""
    nn, c = before.shape
    s = _normal_scores(np.concatenate([before, after]))
    sa, sb = s[:nn], s[nn:]
    mean_eff = sb.mean(0) - sa.mean(0)
    sd_eff = np.log(sb.std(0, ddof=1) / sa.std(0, ddof=1))
    tt = [np.abs(_paired_t(sb - sa)), np.abs(_paired_t(sb ** 2 - sa ** 2))]
    eff = [np.abs(mean_eff), np.abs(sd_eff)]
    floor = np.full(c, min_shift)
    floor[-1] = logp_floor(d, min_shift)
    floors = [floor, floor]
    if tails:   # the mass beyond the pooled 2.5% and 97.5% quantiles, before and after
        for side in (-1, 1):
            ia, ib = (side * sa > TAIL_Z).astype(float), (side * sb > TAIL_Z).astype(float)
            tt.append(np.abs(_paired_t(ib - ia)))
            eff.append(np.abs(ib.mean(0) - ia.mean(0)))
            floors.append(np.full(c, min_tail_shift))
    return np.stack(tt), np.stack(eff), np.stack(floors), mean_eff, sd_eff


def relative_tests(before: np.ndarray, after: np.ndarray, d: int, alpha: float, tests: dict):
    """The paired tests between two sets of columns (n, c), on the rows finite in both: (|t| over
    its threshold (tests, c'), whether each move reaches its floor, the moves, the indices of the
    c' tested columns), or None where fewer than 8 rows are finite."""
    ok = np.isfinite(before).all(1) & np.isfinite(after).all(1)
    before, after = before[ok], after[ok]
    if len(before) < 8:
        return None
    keep = _kept(before, after, d)
    tt, eff, floors = _paired_tests(before[:, keep], after[:, keep], d, **tests)[:3]
    rel = tt / shift_threshold(tt.shape[1] - 1, alpha, tests_per_column=len(tt))
    return rel, eff >= floors, eff, np.flatnonzero(keep)


def _relative_statistic(before: np.ndarray, after: np.ndarray, d: int, alpha: float, tests: dict):
    """The largest |t| of the paired tests between two sets of columns over their threshold: of
    every test, and of the tests whose move reaches its floor (0 if none)."""
    r = relative_tests(before, after, d, alpha, tests)
    if r is None:
        return math.inf, 0.0
    rel, counted = r[:2]
    return float(rel.max()), float(np.where(counted, rel, 0.0).max())


def _paired_t(diff: np.ndarray) -> np.ndarray:
    n = diff.shape[0]
    sd = diff.std(0, ddof=1)
    return np.where(sd > 0, diff.mean(0) / np.where(sd > 0, sd, 1.0) * math.sqrt(n), 0.0)


def logp_floor(d: int, min_shift: float = MIN_SHIFT) -> float:
    """The least move of log p̃'s mean or log sd (in its sd) that fires: ``min_shift``·√(d/2),
    at least ``min_shift``. log p̃ sums the errors of every coordinate: a q whose d sds are each
    a fraction ε off moves it by about √(d/2)·2ε of its sd (N(0, I) against N(0, (1+ε)² I)),
    so a floor that does not grow with d fires on q's that are right coordinate by coordinate
    (the 56-D hierarchical regression: 0.19-0.23 sd with every mean within 0.054 sd and every
    sd within 4.2 %; docs/benchmarks.md). The floor is the move of every sd 2.5 % off."""
    return float(max(min_shift, min_shift * math.sqrt(d / 2)))


def final_options(d: int) -> dict:
    """The options of the final verdict's longer check (:func:`freeflow.datafree.verdict.confirm`):
    the tail tests, :data:`FINAL_MOVES` dilation moves a step (d ≥ 3; at most d), which walk
    along a funnel's neck in tens of steps where gradient and single-coordinate moves take
    hundreds, as many one-coordinate moves (at most d), and an end as soon as the chains have
    forgotten their starts (``until_mixed``, :func:`mixing_stop`)."""
    return {"tails": True, "dilations_per_step": min(default_dilations(d), FINAL_MOVES),
            "coordinates_per_step": min(d, FINAL_MOVES), "until_mixed": MIXED_CORRELATION}


def start_correlations(start: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Per column, the larger of |corr| between the chains' starts and their current values, in
    normal scores z (location) and in z² (spread): (n, k), (n, k) -> (k,)."""
    za, zb = _normal_scores(start), _normal_scores(now)
    out = []
    for a, b in ((za, zb), (za ** 2, zb ** 2)):
        a, b = a - a.mean(0), b - b.mean(0)
        den = np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0))
        out.append(np.abs(np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1.0), 0.0)))
    return np.maximum(*out)


def mixing_stop(columns, start, threshold: float, *, every: int = MIXED_EVERY, min_steps: int = MIXED_MIN_STEPS,
                statistic=None, grey: float = GREY_ZONE):
    """A ``stop`` for :func:`freeflow.mcmc.run_chains`: every ``every`` steps from ``min_steps`` on,
    True once every column (``columns(position, logdensity)`` -> (n, k)) has a start-to-now
    correlation (:func:`start_correlations`) below ``threshold`` and (with ``statistic(start
    columns, current columns)`` -> the largest |t| over the threshold, of every test and of those
    whose move is above its floor) the check is not in its grey zone: the first below ``grey``;
    or, mixed or not, once the second is at least :data:`CLEAR_ALARM` (an alarm that clear: a
    q this wrong does not need the full length to be told so; on exact draws a |t| above
    1.5·threshold (≥ 4.7) has a chance of ~10⁻⁵ per look). Why this keeps the check's power: the
    paired test's t grows with the steps only while the chains still remember their starts (for an AR(1) column
    with lag-T correlation ρ, E t ∝ √((1 − ρ)/(1 + ρ)): 90% of its limit at ρ = 0.1); a slow
    direction (a funnel's scale) keeps its correlation high and the run long. A fitted 32-D random
    walk broke that rule (columns mixed at 100 steps with |t| 4.5; the run went on to 6.2), hence
    the grey zone: a run whose statistic is near the threshold goes on to its full length, so an
    early end never turns an alarm of the full-length check into silence for long (and exact
    draws can fire only where the full-length check would: the false-alarm rate is at most its).
    ``stop.history``: (step, largest correlation, the first statistic or None) at each look."""
    base = np.asarray(columns(*start), dtype=np.float64)

    def stop(t: int, state) -> bool:
        if t < min_steps or t % every:
            return False
        now = np.asarray(columns(state.position, state.logdensity), dtype=np.float64)
        ok = np.isfinite(now).all(1) & np.isfinite(base).all(1)
        worst = float(start_correlations(base[ok], now[ok]).max()) if ok.sum() > 8 else 1.0
        if statistic is None:
            stop.history.append((t, worst, None))
            return worst < threshold
        every_test, firing = statistic(base, now)
        stop.history.append((t, worst, every_test))
        return (worst < threshold and every_test < grey) or firing >= CLEAR_ALARM

    stop.history = []
    return stop


def shift_threshold(d: int, alpha: float = MCMC_ALPHA, tests_per_column: int = 2) -> float:
    """z_{1−α/(2m)} with m = tests_per_column·(d + 1) two-sided tests."""
    from scipy.special import ndtri

    return float(-ndtri(alpha / (2 * tests_per_column * (d + 1))))


def mcmc_shift(log_density: LogDensity, x, *, steps: int = 40, n: int = 1024, num_integration_steps: int = 1,
               local_step_size: bool = True, coordinates_per_step: int | None = None,
               dilations_per_step: int = 0, warmup: int | None = None, tails: bool = False,
               alpha: float = MCMC_ALPHA, min_shift: float = MIN_SHIFT, min_tail_shift: float = MIN_TAIL_SHIFT,
               seed: int = 0, features=None, feature_names=(), until_mixed: float | None = None,
               chunk_size: int = LOG_DENSITY_CHUNK, progress: str | None = None) -> MCMCShift:
    """Run a p-invariant kernel ``steps`` steps from ``n`` of q's draws ``x`` (n, d) (a random
    subset when there are more) and test whether their distribution moved (module docstring).

    ``log_density``: log p̃, batched (n, d) -> (n,), differentiable. Budget: ``n`` chains ×
    ``steps`` steps, each one MALA move (``num_integration_steps`` > 1: HMC without the local
    step) and ``coordinates_per_step`` one-coordinate moves (default min(d, 10));
    ``dilations_per_step`` dilation moves (:mod:`freeflow.mcmc.dilation`; default none: the
    calibration above is without them); ``warmup`` (default steps // 2) of the steps adapt the
    step sizes. ``alpha``: the
    family-wise false-alarm rate; ``min_shift``: the least move (sd) that fires; ``progress``:
    a description to show a progress bar under (None: none). ``features``: a function
    (m, d) -> (m, k) of the draws (e.g. a posterior's deterministic sites) whose k columns are
    tested too (``feature_names`` name them, ``where`` names the column that decided; constant
    or non-finite columns are dropped, a function that raises is left out): a q right on every
    coordinate can be wrong on a function of several. ``until_mixed``: end before ``steps`` once
    the chains have forgotten their starts (:func:`mixing_stop` with this threshold, at least
    3.5/√n, the noise of n chains' correlations; ``steps`` of the result: the steps run)."""
    t0 = time.perf_counter()
    nonfinite = 0
    if isinstance(x, torch.Tensor) and x.ndim == 2:
        finite = torch.isfinite(x).all(1)                # a generator's overflowed draws: not started
        nonfinite, x = int((~finite).sum()), x[finite]
    x = check_points(x, "x", min_rows=2, keep_placement=True)
    steps = check_int(steps, "steps", minimum=1)
    n = check_int(n, "n", minimum=8)
    warmup = steps // 2 if warmup is None else check_int(warmup, "warmup", minimum=0, maximum=steps)
    alpha = check_float(alpha, "alpha", low=0.0, high=1.0, low_open=True, high_open=True)
    min_shift = check_float(min_shift, "min_shift", low=0.0)
    min_tail_shift = check_float(min_tail_shift, "min_tail_shift", low=0.0)
    seed = check_seed(seed)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    if x.shape[0] > n:
        x = x[torch.randperm(x.shape[0], generator=gen, device=x.device)[:n]]
    lp0 = log_density_at(log_density, x, chunk_size)
    inside = torch.isfinite(lp0)
    dropped = nonfinite + int((~inside).sum())
    x = x[inside]
    nn, d = x.shape
    if nn < 8:
        raise ValueError(f"x: only {nn} rows have a finite log-density; need at least 8")
    stop = None
    tests = {"tails": tails, "min_shift": min_shift, "min_tail_shift": min_tail_shift}
    if until_mixed is not None:
        until_mixed = check_float(until_mixed, "until_mixed", low=0.0, high=1.0, low_open=True)
        # (below ~3.5/√n a correlation is the noise of n chains: a floor, so that few chains can stop too)
        stop = mixing_stop(lambda z, lp: _mixing_columns(z, lp, features), (x, lp0[inside]),
                           max(until_mixed, 3.5 / math.sqrt(nn)),
                           statistic=lambda b, a: _relative_statistic(b, a, d, alpha, tests))
    res = run_chains(log_density, x, steps - warmup, warmup=warmup, num_integration_steps=num_integration_steps,
                     local_step_size=local_step_size and num_integration_steps == 1,
                     coordinates_per_step=min(d, 10) if coordinates_per_step is None else coordinates_per_step,
                     dilations_per_step=dilations_per_step,
                     seed=seed, chunk_size=chunk_size, progress=progress, stop=stop)
    fb = fa = None
    if features is not None:
        try:   # (features that fail on some draws: the check without them, never an abort)
            fb, fa = features(x), features(res.state.position)
        except Exception:  # noqa: BLE001
            fb = fa = None
    before, after = _columns(x, lp0[inside], fb), _columns(res.state.position, res.state.logdensity, fa)
    k = before.shape[1] - d - 1
    fnames = list(feature_names)[:k] + [f"feature {j}" for j in range(len(feature_names), k)]
    names = [f"coordinate {j}" for j in range(d)] + fnames + ["log p̃"]
    keep = _kept(before, after, d)
    names = [nm for nm, kept in zip(names, keep) if kept]
    tt, eff, floors, mean_eff, sd_eff = _paired_tests(before[:, keep], after[:, keep], d, **tests)
    threshold = shift_threshold(tt.shape[1] - 1, alpha, tests_per_column=len(tt))
    fires = (tt > threshold) & (eff >= floors)
    kind, col = np.unravel_index(int(np.argmax(np.where(fires, tt, -1.0) if fires.any() else tt)), tt.shape)
    stat = float(tt[kind, col])
    return MCMCShift(
        fired=bool(fires.any()), statistic=stat, threshold=threshold, shift=float(eff[kind, col]),
        kind=("mean", "sd", "lower tail", "upper tail")[kind],
        coordinate=int(col) if col < tt.shape[1] - 1 else -1, mean_shift=float(np.abs(mean_eff[:d]).max()),
        sd_shift=float(np.abs(sd_eff[:d]).max()), logp_shift=float(mean_eff[-1]), acceptance=res.acceptance,
        step_size=res.step_size, grad_evals=res.grad_evals, density_evals=res.density_evals + len(lp0), n=nn, d=d,
        steps=res.steps_run, seconds=time.perf_counter() - t0, dropped=dropped, where=names[col])
