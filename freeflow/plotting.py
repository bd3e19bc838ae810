"""Figures people would rather look at than read: samples over density contours, pairwise
marginals, training curves. Matplotlib with the Agg backend; files are written atomically."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .io import atomic_write

__all__ = ["plot_samples_2d", "plot_pairwise", "plot_history", "plot_samples"]


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def _save(fig, path) -> Path:
    plt = _mpl()
    suffix = Path(path).suffix.lstrip(".") or "png"
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format=suffix))
    plt.close(fig)
    return out


def _range(x: np.ndarray, given, pad: float = 0.05):
    if given is not None:
        lo, hi = given
        return float(lo), float(hi)
    lo, hi = np.quantile(x, [0.002, 0.998])
    span = hi - lo or 1.0
    return lo - pad * span, hi + pad * span


def plot_samples_2d(
    samples,
    path: str | os.PathLike,
    *,
    log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None,
    plot_range: Sequence | None = None,
    title: str | None = None,
    max_points: int = 20_000,
) -> Path:
    """Scatter 2-D samples over the contours of exp(log_prob) (when given)."""
    plt = _mpl()
    x = _np(samples)[:max_points]
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"samples must have shape (n, 2), got {x.shape}")
    if plot_range is not None and np.ndim(plot_range) == 1:
        plot_range = [plot_range, plot_range]
    xr = _range(x[:, 0], None if plot_range is None else plot_range[0])
    yr = _range(x[:, 1], None if plot_range is None else plot_range[1])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if log_prob is not None:
        gx, gy = np.meshgrid(np.linspace(*xr, 200), np.linspace(*yr, 200))
        grid = torch.tensor(np.stack([gx.ravel(), gy.ravel()], -1), dtype=torch.float32)
        with torch.no_grad():
            lp = log_prob(grid).double().numpy().reshape(gx.shape)
        dens = np.exp(lp - lp.max())
        ax.contourf(gx, gy, dens, levels=12, cmap="Blues", alpha=0.8)
    ax.scatter(x[:, 0], x[:, 1], s=1.5, c="crimson", alpha=0.35, linewidths=0, label="samples")
    ax.set_xlim(*xr)
    ax.set_ylim(*yr)
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(title or f"{len(x)} samples")
    return _save(fig, path)


def plot_pairwise(
    samples,
    path: str | os.PathLike,
    *,
    reference=None,
    dims: Sequence[int] | None = None,
    max_dims: int = 5,
    labels: tuple[str, str] = ("freeflow", "reference"),
    title: str | None = None,
    max_points: int = 5000,
) -> Path:
    """Corner plot: 1-D histograms on the diagonal, 2-D scatter below, reference overlaid."""
    plt = _mpl()
    x = _np(samples)
    y = None if reference is None else _np(reference)
    dims = list(dims) if dims is not None else list(range(min(x.shape[1], max_dims)))
    k = len(dims)
    fig, axes = plt.subplots(k, k, figsize=(2.2 * k + 1, 2.2 * k + 1), squeeze=False)
    for i, di in enumerate(dims):
        for j, dj in enumerate(dims):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                both = x[:, di] if y is None else np.concatenate([x[:, di], y[:, di]])
                bins = np.linspace(*_range(both, None), 50)
                ax.hist(x[:, di], bins=bins, density=True, alpha=0.6, color="crimson", label=labels[0])
                if y is not None:
                    ax.hist(y[:, di], bins=bins, density=True, histtype="step", color="k", label=labels[1])
                ax.set_yticks([])
            else:
                if y is not None:
                    ax.scatter(y[:max_points, dj], y[:max_points, di], s=1, c="k", alpha=0.2, linewidths=0)
                ax.scatter(x[:max_points, dj], x[:max_points, di], s=1, c="crimson", alpha=0.25, linewidths=0)
            if i == k - 1:
                ax.set_xlabel(f"x{dj}")
            if j == 0 and i > 0:
                ax.set_ylabel(f"x{di}")
    if y is not None:
        axes[0, 0].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_samples(samples, path, *, log_prob=None, plot_range=None, reference=None, title=None) -> Path:
    """2-D: samples over contours; higher: pairwise marginals (against a reference if given)."""
    d = _np(samples).shape[1]
    if d == 2:
        return plot_samples_2d(samples, path, log_prob=log_prob, plot_range=plot_range, title=title)
    return plot_pairwise(samples, path, reference=reference, title=title)


def plot_history(history: Sequence[dict], path: str | os.PathLike, keys: Sequence[str] = ("ess_fraction", "beta", "grad_norm", "lr")) -> Path:
    """Training diagnostics against the step."""
    plt = _mpl()
    keys = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in history)]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.2 * max(len(keys), 1), 2.8), squeeze=False)
    steps = [r.get("step") for r in history]
    for ax, key in zip(axes[0], keys):
        ax.plot(steps, [r.get(key) for r in history], lw=0.8)
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    return _save(fig, path)
