"""Bayesian logistic regression on scikit-learn's breast-cancer data (MATH.md §4), on its
wine data (``logreg_wine``: class 0 against the rest, the same model in 14-D) and on its digits
(``logreg_digits``: 4 against 9 on the 8×8 pixels, 59-D).

These designs are our own (data that ships with scikit-learn, no download); they are not the
field's German-credit / Ionosphere / Sonar posteriors, so published numbers do not apply.

Data: ``sklearn.datasets.load_breast_cancer`` (shipped with scikit-learn, no download), 569
rows, 30 features standardised to mean 0 / std 1 (population std, ddof = 0), with an intercept
column of ones prepended: design X (569, 31), labels y ∈ {0, 1}.  Weights w ∈ R^31 (w_0 is the
intercept) with prior N(0, prior_scale² I):

    log p̃(w) = Σ_i [ y_i η_i - softplus(η_i) ] + Σ_j log N(w_j; 0, prior_scale²),   η = X w,

softplus(η) = max(η, 0) + log1p(exp(-|η|)) (stable, exact in float64).  log_Z (the evidence)
is unknown; no exact sampler (NUTS is a valid reference).  ``map_estimate`` and
``laplace_std`` come from Newton's method at construction; ``plot_range`` is MAP ± 5 Laplace std.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .base import Target, check_positive
from .registry import register_target


@functools.lru_cache(maxsize=1)
def breast_cancer_design() -> tuple[np.ndarray, np.ndarray]:
    """(X, y): standardised features with an intercept column first (float64), labels (float64).

    Cached; the arrays are marked read-only."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    feats = np.asarray(data.data, dtype=np.float64)
    feats = (feats - feats.mean(0)) / feats.std(0)
    X = np.concatenate([np.ones((feats.shape[0], 1)), feats], axis=1)
    y = np.asarray(data.target, dtype=np.float64)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


@functools.lru_cache(maxsize=1)
def wine_design() -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of ``sklearn.datasets.load_wine`` as a binary problem: class 0 against the other
    two (59 of 178 rows positive); 13 features standardised (ddof = 0), intercept column first,
    X (178, 14).  Cached; read-only arrays."""
    from sklearn.datasets import load_wine

    data = load_wine()
    feats = np.asarray(data.data, dtype=np.float64)
    feats = (feats - feats.mean(0)) / feats.std(0)
    X = np.concatenate([np.ones((feats.shape[0], 1)), feats], axis=1)
    y = (np.asarray(data.target) == 0).astype(np.float64)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


@functools.lru_cache(maxsize=1)
def digits_design() -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of ``sklearn.datasets.load_digits``: the 361 images of a 4 or a 9 (y = 1 for 9);
    the 58 pixels not constant on these rows, standardised (ddof = 0), intercept column first,
    X (361, 59).  Cached; read-only arrays."""
    from sklearn.datasets import load_digits

    data = load_digits()
    rows = (data.target == 4) | (data.target == 9)
    feats = np.asarray(data.data[rows], dtype=np.float64)
    feats = feats[:, feats.std(0) > 0]
    feats = (feats - feats.mean(0)) / feats.std(0)
    X = np.concatenate([np.ones((feats.shape[0], 1)), feats], axis=1)
    y = (np.asarray(data.target[rows]) == 9).astype(np.float64)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def _softplus(eta: torch.Tensor) -> torch.Tensor:
    return eta.clamp_min(0) + torch.log1p(torch.exp(-eta.abs()))


@register_target("logreg_breast_cancer")
class LogisticRegression(Target):
    name = "logreg_breast_cancer"
    has_exact_sampler = False
    log_Z = None

    design = staticmethod(breast_cancer_design)

    def __init__(self, prior_scale: float = 1.0) -> None:
        prior_scale = check_positive("prior_scale", prior_scale)
        super().__init__(prior_scale=prior_scale)
        self.prior_scale = prior_scale
        X, y = self.design()
        self._X_np, self._y_np = X, y
        self.X = torch.tensor(X)              # (N, dim) float64; cast to x's dtype per call
        self.y = torch.tensor(y)              # (N,)
        self.dim = X.shape[1]
        self.num_data = X.shape[0]
        self.map_estimate, self.laplace_std = self._laplace()
        self.plot_range = [(float(m - 5 * s), float(m + 5 * s))
                           for m, s in zip(self.map_estimate, self.laplace_std)]

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        X, y = self.X.to(x), self.y.to(x)
        eta = x @ X.T                                                     # (..., N)
        loglik = (y * eta - _softplus(eta)).sum(-1)                       # (...)
        logprior = (-0.5 * (x / self.prior_scale).pow(2).sum(-1)
                    - self.dim * (math.log(self.prior_scale) + 0.5 * math.log(2 * math.pi)))
        return loglik + logprior

    def log_prob_jax(self, x):
        import jax
        import jax.numpy as jnp

        X = jnp.asarray(self._X_np, dtype=x.dtype)
        y = jnp.asarray(self._y_np, dtype=x.dtype)
        eta = X @ x
        loglik = jnp.sum(y * eta - jax.nn.softplus(eta))
        return loglik + (-0.5 * jnp.sum((x / self.prior_scale) ** 2)
                         - self.dim * (math.log(self.prior_scale) + 0.5 * math.log(2 * math.pi)))

    def _laplace(self, iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """MAP by Newton's method (the log posterior is strictly concave) and the Laplace std."""
        X, y = self._X_np, self._y_np
        prec = 1.0 / self.prior_scale**2
        w = np.zeros(self.dim)
        for _ in range(iters):
            p = 1.0 / (1.0 + np.exp(-(X @ w)))
            grad = X.T @ (y - p) - prec * w
            hess = -(X.T * (p * (1 - p))) @ X - prec * np.eye(self.dim)
            step = np.linalg.solve(hess, grad)
            w = w - step
            if np.max(np.abs(step)) < 1e-12:
                break
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        hess = -(X.T * (p * (1 - p))) @ X - prec * np.eye(self.dim)
        return w, np.sqrt(np.diag(np.linalg.inv(-hess)))


@register_target("logreg_wine")
class WineLogisticRegression(LogisticRegression):
    """The same model on ``wine_design()`` (class 0 vs rest, 14-D): w ~ N(0, prior_scale² I)."""

    name = "logreg_wine"
    design = staticmethod(wine_design)


@register_target("logreg_digits")
class DigitsLogisticRegression(LogisticRegression):
    """The same model on ``digits_design()`` (4 vs 9 on 58 pixels, 59-D): w ~ N(0, prior_scale² I)."""

    name = "logreg_digits"
    design = staticmethod(digits_design)
