"""Sample-quality metrics: pure functions, torch or numpy arrays in, floats / dicts out.

Conventions:
  * Samples are ``(n, d)`` arrays (a 1-D array is read as ``(n, 1)``); everything is computed in
    float64.  Non-finite inputs raise ``ValueError`` naming the argument (no silent NaN).
  * Two-sample statistics are V-statistics (all pairs, including i = j), hence ≥ 0:
      energy distance   ED(P, Q) = 2 E‖X − Y‖ − E‖X − X′‖ − E‖Y − Y′‖,
      MMD²              = E k(X, X′) + E k(Y, Y′) − 2 E k(X, Y),  k(a, b) = exp(−‖a − b‖² / 2h²),
    with h the median pairwise distance of the pooled sample when not given (median heuristic).
    Pairwise sums are chunked over rows, so n = 10k needs only (chunk × n) floats at a time.
  * A metric is only meaningful next to its noise floor: the same metric between two
    independent exact draws (``noise_floor``).
  * Mode masses use nearest-centre assignment; TV = ½ Σ_k |p̂_k − p_k|;
    EMC = −Σ_k p̂_k log p̂_k / log K (0 log 0 = 0; EMC = 1 when K = 1).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray

_DEFAULT_CHUNK = 2048


# ------------------------------------------------------------------------------- helpers
def _as_samples(a: Any, name: str) -> torch.Tensor:
    """float64 (n, d) tensor on CPU; ValueError naming ``name`` if empty or non-finite."""
    if isinstance(a, torch.Tensor):
        t = a.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            t = torch.as_tensor(np.asarray(a, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a torch tensor or numpy array of numbers") from err
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d) or (n,), got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} must contain at least one sample")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains non-finite values")
    return t


def _check_same_dim(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")


def _cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Up to 8 dimensions the distances come from explicit differences (exact zeros on the
    # diagonal); above, from the ‖a‖² + ‖b‖² − 2a·b expansion, ~3× faster and, in float64,
    # off by at most ~1e-8·‖a‖ (near-zero distances).
    mode = "donot_use_mm_for_euclid_dist" if a.shape[1] <= 8 else "use_mm_for_euclid_dist"
    return torch.cdist(a, b, compute_mode=mode)


def _pairwise_sum(a: torch.Tensor, b: torch.Tensor | None, fn: Callable[[torch.Tensor], torch.Tensor],
                  chunk: int) -> float:
    """Σ_ij fn(‖a_i − b_j‖) over all pairs, chunked over rows; ``b=None`` means b = a, where only
    the blocks on or above the diagonal are computed (symmetry halves the work).
    ``fn`` may work in place on the distance block."""
    total = 0.0
    if b is not None:
        for start in range(0, a.shape[0], chunk):
            total += float(fn(_cdist(a[start : start + chunk], b)).sum())
        return total
    for start in range(0, a.shape[0], chunk):
        stop = min(start + chunk, a.shape[0])
        d = _cdist(a[start:stop], a[start:])                  # (rows, n - start)
        d[:, : stop - start].diagonal().zero_()               # exact self-distances
        f = fn(d)
        total += float(f[:, : stop - start].sum()) + 2.0 * float(f[:, stop - start :].sum())
    return total


def _mean_distance(a: torch.Tensor, b: torch.Tensor | None, chunk: int) -> float:
    nb = a.shape[0] if b is None else b.shape[0]
    return _pairwise_sum(a, b, lambda d: d, chunk) / (a.shape[0] * nb)


# ------------------------------------------------------------------------- two-sample tests
def energy_distance(x: ArrayLike, y: ArrayLike, *, chunk_size: int = _DEFAULT_CHUNK) -> float:
    """Energy distance V-statistic 2E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖ (Euclidean, float64, ≥ 0).

    For point masses at a and b it equals 2‖a − b‖; it is 0 iff the empirical measures agree.
    Above 8 dimensions distances use the fast ‖a‖² + ‖b‖² − 2a·b expansion, so two copies of
    the same sample give ~1e-10 (relative to ‖x‖) rather than exactly 0.
    """
    x, y = _as_samples(x, "x"), _as_samples(y, "y")
    _check_same_dim(x, y)
    value = (2.0 * _mean_distance(x, y, chunk_size)
             - _mean_distance(x, None, chunk_size) - _mean_distance(y, None, chunk_size))
    return max(value, 0.0)  # exact arithmetic gives ≥ 0; clamp rounding at the 1e-15 level


def median_bandwidth(x: ArrayLike, y: ArrayLike | None = None, *, max_points: int = 2000,
                     seed: int = 0) -> float:
    """Median heuristic: the median pairwise Euclidean distance (i < j) of the pooled sample.

    When the pooled sample exceeds ``max_points`` a random subset of that size (drawn with a
    generator seeded ``seed``: deterministic) is used.
    """
    pooled = _as_samples(x, "x")
    if y is not None:
        y = _as_samples(y, "y")
        _check_same_dim(pooled, y)
        pooled = torch.cat([pooled, y])
    if pooled.shape[0] > max_points:
        g = torch.Generator().manual_seed(seed)
        pooled = pooled[torch.randperm(pooled.shape[0], generator=g)[:max_points]]
    if pooled.shape[0] < 2:
        raise ValueError("the median heuristic needs at least two samples")
    iu = torch.triu_indices(pooled.shape[0], pooled.shape[0], offset=1)
    h = float(torch.cdist(pooled, pooled)[iu[0], iu[1]].median())
    if not h > 0:
        raise ValueError("median pairwise distance is 0 (all samples equal); pass bandwidth explicitly")
    return h


def mmd(x: ArrayLike, y: ArrayLike, bandwidth: float | None = None, *,
        chunk_size: int = _DEFAULT_CHUNK) -> float:
    """Gaussian-kernel MMD² V-statistic, k(a, b) = exp(−‖a−b‖²/2h²), h = ``bandwidth`` or the
    median heuristic on the pooled sample (``median_bandwidth``).  ≥ 0."""
    x, y = _as_samples(x, "x"), _as_samples(y, "y")
    _check_same_dim(x, y)
    h = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"bandwidth must be a finite number > 0, got {bandwidth!r}")
    k = lambda d: d.mul_(d).mul_(-0.5 / (h * h)).exp_()  # noqa: E731  (in place on the block)
    value = (_pairwise_sum(x, None, k, chunk_size) / x.shape[0] ** 2
             + _pairwise_sum(y, None, k, chunk_size) / y.shape[0] ** 2
             - 2.0 * _pairwise_sum(x, y, k, chunk_size) / (x.shape[0] * y.shape[0]))
    return max(value, 0.0)


def noise_floor(metric: Callable[[Any, Any], float],
                sample_fn: Callable[[int, torch.Generator], Any],
                n: int, seeds: Sequence[int] = (0, 1, 2), *, n_other: int | None = None) -> dict:
    """The metric between two independent exact draws: the level below which it cannot tell.

    For each seed s: ``g = torch.Generator().manual_seed(s)``, ``a = sample_fn(n, g)``,
    ``b = sample_fn(n_other or n, g)``, value = ``metric(a, b)``.
    Returns ``{"median": ..., "values": [...], "n": n, "n_other": ...}``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    n_other = n if n_other is None else n_other
    if isinstance(n_other, bool) or not isinstance(n_other, int) or n_other < 1:
        raise ValueError(f"n_other must be a positive int, got {n_other!r}")
    if len(seeds) == 0:
        raise ValueError("seeds must not be empty")
    values = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        a = sample_fn(n, g)
        b = sample_fn(n_other, g)
        values.append(float(metric(a, b)))
    return {"median": float(np.median(values)), "values": values, "n": n, "n_other": n_other}


# ---------------------------------------------------------------------------------- modes
def _nearest(x: torch.Tensor, centers: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    return torch.cat([torch.cdist(x[i : i + chunk], centers).argmin(1)
                      for i in range(0, x.shape[0], chunk)])


def mode_masses(x: ArrayLike, centers: ArrayLike) -> torch.Tensor:
    """Fraction of samples whose nearest centre (Euclidean) is centre k: float64 ``(K,)``."""
    x, c = _as_samples(x, "x"), _as_samples(centers, "centers")
    _check_same_dim(x, c)
    labels = _nearest(x, c)
    return torch.bincount(labels, minlength=c.shape[0]).double() / x.shape[0]


def _masses_from_labels(labels: Any, k: int) -> torch.Tensor:
    labels = torch.as_tensor(labels).long().reshape(-1)
    if labels.numel() == 0:
        raise ValueError("labels must not be empty")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}), got range [{int(labels.min())}, {int(labels.max())}]")
    return torch.bincount(labels, minlength=k).double() / labels.numel()


def mode_report(x: ArrayLike, centers: ArrayLike, weights: ArrayLike,
                min_mass_fraction: float = 0.1, *, labels: Any | None = None) -> dict:
    """Per-mode masses against the true weights.

    masses: nearest-centre fractions p̂_k (or from ``labels``, e.g. ``target.assign_modes(x)``);
    tv = ½ Σ |p̂_k − p_k|; modes_covered = #{k : p̂_k ≥ min_mass_fraction · p_k};
    emc = −Σ p̂_k log p̂_k / log K.  JSON-serialisable.
    """
    c = _as_samples(centers, "centers")
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64) if not isinstance(weights, torch.Tensor)
                        else weights.detach().cpu().double()).reshape(-1)
    k = c.shape[0]
    if w.shape[0] != k:
        raise ValueError(f"weights must have one entry per centre ({k}), got {w.shape[0]}")
    if (w < 0).any() or abs(float(w.sum()) - 1.0) > 1e-6:
        raise ValueError("weights must be non-negative and sum to 1")
    if not (0.0 <= min_mass_fraction <= 1.0):
        raise ValueError(f"min_mass_fraction must be in [0, 1], got {min_mass_fraction}")
    p_hat = mode_masses(x, c) if labels is None else _masses_from_labels(labels, k)
    nz = p_hat[p_hat > 0]
    entropy = float(-(nz * nz.log()).sum())
    emc = entropy / math.log(k) if k > 1 else 1.0
    return {
        "masses": [float(v) for v in p_hat],
        "weights": [float(v) for v in w],
        "tv": float(0.5 * (p_hat - w).abs().sum()),
        "modes_covered": int((p_hat >= min_mass_fraction * w).sum()),
        "num_modes": int(k),
        "emc": float(emc),
    }


# -------------------------------------------------------------------------------- moments
def moment_errors(x: ArrayLike, ref: ArrayLike) -> dict:
    """Per-coordinate |mean(x) − mean(ref)| / std(ref) and |std(x) − std(ref)| / std(ref)
    (population std), with their max and mean over coordinates."""
    x, ref = _as_samples(x, "x"), _as_samples(ref, "ref")
    _check_same_dim(x, ref)
    s_ref = ref.std(0, unbiased=False)
    if not (s_ref > 0).all():
        raise ValueError("ref has a coordinate with zero standard deviation")
    mean_err = (x.mean(0) - ref.mean(0)).abs() / s_ref
    std_err = (x.std(0, unbiased=False) - s_ref).abs() / s_ref
    return {
        "mean_err": [float(v) for v in mean_err],
        "std_err": [float(v) for v in std_err],
        "mean_err_max": float(mean_err.max()), "mean_err_mean": float(mean_err.mean()),
        "std_err_max": float(std_err.max()), "std_err_mean": float(std_err.mean()),
    }


# ------------------------------------------------------------------------------ summarize
def summarize(x: ArrayLike, target, n_ref: int = 5000, generator: torch.Generator | None = None,
              *, floor_seeds: Sequence[int] = (0, 1, 2), min_mass_fraction: float = 0.1) -> dict:
    """Every applicable metric of samples ``x`` against ``target``; a JSON-serialisable dict.

    Always: n, num_nonfinite (rows dropped before any metric, with a warning), mean_log_prob,
    target config and ``target.diagnostics(x)``.  With mode centres: ``mode_report`` (labels from
    ``target.assign_modes``).  With an exact sampler: energy distance to ``n_ref`` exact samples
    drawn from ``generator`` (default: seeded 1234), moment errors against them, and noise floors
    of the energy distance, mode TV and moment errors, from exact draws of sizes (n, n_ref) made
    exactly as ``noise_floor`` does (seeds ``floor_seeds``).  Targets without an exact sampler
    get what does not need one.
    """
    xt = torch.as_tensor(x).detach().cpu()
    if xt.ndim != 2 or xt.shape[1] != target.dim:
        raise ValueError(f"x must have shape (n, {target.dim}), got {tuple(xt.shape)}")
    finite = torch.isfinite(xt).all(1)
    out: dict[str, Any] = {"target": target.config(), "n": int(xt.shape[0]),
                           "num_nonfinite": int((~finite).sum())}
    if out["num_nonfinite"]:
        warnings.warn(f"summarize: dropping {out['num_nonfinite']} non-finite samples of {xt.shape[0]}")
    xt = xt[finite]
    if xt.shape[0] == 0:
        return out
    n = int(xt.shape[0])
    with torch.no_grad():
        out["mean_log_prob"] = float(target.log_prob(xt.double()).mean())
    out["target_diagnostics"] = target.diagnostics(xt)

    has_modes = target.mode_centers is not None
    if has_modes:
        out["modes"] = mode_report(xt, target.mode_centers, target.mode_weights, min_mass_fraction,
                                   labels=target.assign_modes(xt))

    if target.has_exact_sampler:
        if generator is None:
            generator = torch.Generator().manual_seed(1234)
        ref = target.sample(n_ref, generator)
        out["n_ref"] = int(n_ref)
        out["energy_distance"] = energy_distance(xt, ref)
        out["moments"] = moment_errors(xt, ref)
        floors: dict[str, list[float]] = {"energy_distance": [], "mean_err_max": [], "std_err_max": []}
        if has_modes:
            floors["mode_tv"] = []
        for s in floor_seeds:
            g = torch.Generator().manual_seed(int(s))
            a, b = target.sample(n, g), target.sample(n_ref, g)
            floors["energy_distance"].append(energy_distance(a, b))
            me = moment_errors(a, b)
            floors["mean_err_max"].append(me["mean_err_max"])
            floors["std_err_max"].append(me["std_err_max"])
            if has_modes:
                floors["mode_tv"].append(mode_report(a, target.mode_centers, target.mode_weights,
                                                     labels=target.assign_modes(a))["tv"])
        out["noise_floor"] = {k: {"median": float(np.median(v)), "values": v} for k, v in floors.items()}
    return out


# ------------------------------------------------------------------------- under-coverage
def smooth_hinge(u, tau: float = 0.1):
    """C¹ hinge s_τ(u): 0 for u ≤ 0, u²/(2τ) for 0 < u ≤ τ, u − τ/2 above (docs/theory.md §8).

    Works on floats and tensors; its derivative is clamp(u/τ, 0, 1)."""
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    u_t = torch.as_tensor(u, dtype=torch.float64)
    out = torch.where(u_t <= 0, torch.zeros_like(u_t),
                      torch.where(u_t <= tau, u_t * u_t / (2 * tau), u_t - tau / 2))
    return out if isinstance(u, torch.Tensor) else float(out) if out.ndim == 0 else out


def under_coverage(masses: ArrayLike, weights: ArrayLike, tau: float = 0.1) -> float:
    """Soft under-coverage U(q) = Σ_k p_k · s_τ(1 − q_k/p_k) of mode masses q_k against the true
    weights p_k (docs/theory.md §8): 0 when no mode holds less than its weight, → Σ_k p_k over
    the modes that are missing entirely; over-covered modes count 0. τ smooths the hinge, so
    the sampling noise of q_k (relative size ≪ τ) adds ≈ 0."""
    q = torch.as_tensor(np.asarray(masses, dtype=np.float64)).reshape(-1)
    p = torch.as_tensor(np.asarray(weights, dtype=np.float64)).reshape(-1)
    if q.shape != p.shape:
        raise ValueError(f"masses and weights must have the same length, got {q.numel()} and {p.numel()}")
    if not bool((p > 0).all()):
        raise ValueError("weights must be > 0")
    return float((p * smooth_hinge(1.0 - q / p, tau)).sum())


__all__ = [
    "energy_distance", "mmd", "median_bandwidth", "noise_floor", "mode_masses", "mode_report",
    "moment_errors", "summarize", "smooth_hinge", "under_coverage",
]
