"""Fréchet distance and KID between feature sets (the statistics behind FID and KID).

Numerics of :func:`frechet_distance` (both methods in float64):

    FD = |mu1 - mu2|² + tr S1 + tr S2 - 2 tr (S1 S2)^{1/2}

``method="eigh"`` (the default) uses tr (S1 S2)^{1/2} = Σ sqrt(λ_i(A)) with the symmetric PSD
matrix A = S1^{1/2} S2 S1^{1/2}, which has the same eigenvalues as S1 S2. Both steps are
symmetric eigen-decompositions, so the result is real by construction, exact for singular
covariances (fewer samples than feature dimensions) and needs no ε-jitter; rounding can only
make tiny eigenvalues slightly negative, and those are clipped to 0. ``method="sqrtm"`` is the
classic pytorch-fid / torch-fidelity computation with ``scipy.linalg.sqrtm(S1 @ S2)`` (a
non-symmetric matrix: Schur-based, can return a complex result or fail to converge on
near-singular products): non-finite results are retried with 1e-6 added to both diagonals,
imaginary parts are dropped when the diagonal's imaginary part is below 1e-3 and a
FloatingPointError is raised otherwise. The two agree to ~1e-10 relative on well-conditioned
inputs (tested).
"""
from __future__ import annotations

import numpy as np
import torch

from ..validation import check_choice, check_float, check_int, check_positive_int, check_seed

__all__ = ["frechet_distance", "feature_statistics", "frechet_from_features", "kernel_inception_distance"]


# -- Fréchet distance ------------------------------------------------------------------------------

def _as_float64(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from e
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has NaN or inf entries")
    return a


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root by eigh (negative rounding-error eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2, *, method: str = "eigh") -> float:
    """Fréchet (2-Wasserstein²) distance between N(mu1, sigma1) and N(mu2, sigma2), float64.

    ``mu`` (d,), ``sigma`` (d, d) symmetric PSD (symmetrised before use). ``method`` "eigh"
    (default, stable: see the module docstring) or "sqrtm" (scipy.linalg.sqrtm of S1 S2, as
    pytorch-fid). Mismatched shapes and non-finite entries raise ValueError. Not clipped at 0:
    FD(x, x) comes out as a rounding-level number (|FD| ~ 1e-8 · tr S, either sign) — the square
    root of the near-zero eigenvalues of a singular covariance amplifies float64 rounding."""
    check_choice(method, ("eigh", "sqrtm"), "method")
    mu1, mu2 = _as_float64(mu1, "mu1"), _as_float64(mu2, "mu2")
    s1, s2 = _as_float64(sigma1, "sigma1"), _as_float64(sigma2, "sigma2")
    if mu1.ndim != 1 or mu2.ndim != 1:
        raise ValueError(f"mu1 and mu2 must be 1-D, got shapes {mu1.shape} and {mu2.shape}")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 have different lengths: {mu1.shape[0]} vs {mu2.shape[0]}")
    d = mu1.shape[0]
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}) to match the means, got {s.shape}")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    diff = mu1 - mu2
    if method == "eigh":
        r1 = _psd_sqrt(s1)
        a = r1 @ s2 @ r1
        lam = np.linalg.eigvalsh((a + a.T) / 2)
        tr_covmean = float(np.sqrt(np.clip(lam, 0.0, None)).sum())
    else:
        import scipy.linalg

        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            off = np.eye(d) * 1e-6
            covmean = scipy.linalg.sqrtm((s1 + off) @ (s2 + off))
        if np.iscomplexobj(covmean):
            if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
                raise FloatingPointError(
                    f"sqrtm(sigma1 @ sigma2) has an imaginary component of size "
                    f"{np.max(np.abs(covmean.imag)):.3g}; use method='eigh'")
            covmean = covmean.real
        tr_covmean = float(np.trace(covmean))
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def _check_features(f, name: str, min_rows: int = 2) -> np.ndarray:
    a = _as_float64(f, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {a.shape}")
    if a.shape[0] < min_rows:
        raise ValueError(f"{name} has {a.shape[0]} rows, need at least {min_rows}")
    return a


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mu (d,), sigma (d, d)) in float64 of features (n, d), n >= 2; sigma with ddof=1 (as
    pytorch-fid / torch-fidelity)."""
    f = _check_features(features, "features")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_from_features(f1, f2, *, method: str = "eigh") -> float:
    """Fréchet distance between the Gaussian fits of two feature sets (n1, d), (n2, d)."""
    a, b = _check_features(f1, "f1"), _check_features(f2, "f2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"f1 and f2 have different feature dimensions: {a.shape[1]} vs {b.shape[1]}")
    return frechet_distance(*feature_statistics(a), *feature_statistics(b), method=method)


# -- KID ------------------------------------------------------------------------------------------

def _polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    """Unbiased MMD² with k(a, b) = (gamma a·b + coef0)^degree (Bińkowski et al. 2018)."""
    m = x.shape[0]
    kxx = (x @ x.T * gamma + coef0) ** degree
    kyy = (y @ y.T * gamma + coef0) ** degree
    kxy = (x @ y.T * gamma + coef0) ** degree
    sxx = kxx.sum() - np.trace(kxx)
    syy = kyy.sum() - np.trace(kyy)
    return float((sxx + syy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m))


def kernel_inception_distance(f1, f2, *, subsets: int = 10, subset_size: int | None = None, degree: int = 3,
                              gamma: float | None = None, coef0: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """KID: the unbiased polynomial-kernel MMD² averaged over random subsets, (mean, std).

    As torch-fidelity's ``kid_features_to_metric`` (same estimator, same subset drawing with
    ``np.random.RandomState(seed)``, std with ddof=0): each of ``subsets`` rounds draws
    ``subset_size`` rows of each feature set without replacement. ``subset_size`` defaults to
    min(1000, n1, n2); ``gamma`` to 1/d. The std is the spread of the per-subset estimates
    (subsets overlap, so it is not a standard error of the mean; it is 0 when ``subset_size``
    equals both set sizes). KID is not scale-free: with the digits features (norms ~10) values
    are O(1)-O(1000), not the ~0.01 of Inception features."""
    a, b = _check_features(f1, "f1"), _check_features(f2, "f2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"f1 and f2 have different feature dimensions: {a.shape[1]} vs {b.shape[1]}")
    subsets = check_positive_int(subsets, "subsets")
    n1, n2 = a.shape[0], b.shape[0]
    if subset_size is None:
        subset_size = min(1000, n1, n2)
    subset_size = check_int(subset_size, "subset_size", minimum=2)
    if subset_size > min(n1, n2):
        raise ValueError(f"subset_size={subset_size} exceeds the number of samples (f1: {n1}, f2: {n2})")
    degree = check_positive_int(degree, "degree")
    gamma = 1.0 / a.shape[1] if gamma is None else check_float(gamma, "gamma", low=0.0, low_open=True)
    coef0 = check_float(coef0, "coef0")
    rng = np.random.RandomState(check_seed(seed))
    mmds = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(n1, subset_size, replace=False)]
        y = b[rng.choice(n2, subset_size, replace=False)]
        mmds[i] = _polynomial_mmd2(x, y, degree, gamma, coef0)
    return float(mmds.mean()), float(mmds.std())
