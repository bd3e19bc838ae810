"""Figures of a comparison report: pair plots, mode masses, NUTS traces (PNG, written atomically)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write_bytes


def save_fig(plt, fig, out: Path, fname: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(buf.getvalue(), out / fname)
    return fname


def pair_dims(report, d: int, k: int) -> list[int]:
    """The coordinates to plot: the k with the largest mean error over methods (all if d <= k)."""
    if d <= k:
        return list(range(d))
    err = np.zeros(d)
    for m in report.methods:
        if "mean_err" in m.metrics:
            err = np.maximum(err, np.asarray(m.metrics["mean_err"]))
    return sorted(np.argsort(-err)[:k].tolist())


def pairs_figure(plt, ref: np.ndarray, x: np.ndarray, dims: list[int], ref_name: str, name: str):
    k = len(dims)
    fig, axes = plt.subplots(k, k, figsize=(2.4 * k, 2.4 * k), squeeze=False)
    rng = np.random.default_rng(0)
    r = ref[rng.permutation(ref.shape[0])[:2000]]
    s = x[rng.permutation(x.shape[0])[:2000]]
    for i, di in enumerate(dims):
        for j, dj in enumerate(dims):
            ax = axes[i, j]
            if i == j:
                lo = min(np.quantile(r[:, di], 0.001), np.quantile(s[:, di], 0.001))
                hi = max(np.quantile(r[:, di], 0.999), np.quantile(s[:, di], 0.999))
                bins = np.linspace(lo, hi, 40)
                ax.hist(r[:, di], bins=bins, density=True, color="0.6", alpha=0.7, label=ref_name)
                ax.hist(s[:, di], bins=bins, density=True, histtype="step", color="C0", lw=1.5, label=name)
            elif i > j:
                ax.scatter(r[:, dj], r[:, di], s=2, color="0.6", alpha=0.4)
                ax.scatter(s[:, dj], s[:, di], s=2, color="C0", alpha=0.4)
            else:
                ax.axis("off")
            if i == k - 1:
                ax.set_xlabel(f"x{dj}")
            if j == 0 and i > 0:
                ax.set_ylabel(f"x{di}")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{name} (blue) vs {ref_name} (grey)")
    return fig


def modes_figure(plt, mode_info: dict, methods: list):
    w = np.asarray(torch.as_tensor(mode_info["weights"]).double())
    k = w.shape[0]
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.25 * k * (len(methods) + 1))), 3))
    width = 0.8 / (len(methods) + 1)
    idx = np.arange(k)
    ax.bar(idx, w, width, color="0.5", label="true weight")
    for i, m in enumerate(methods):
        if "mode_masses" in m.metrics:
            ax.bar(idx + (i + 1) * width, m.metrics["mode_masses"], width, label=m.name)
    ax.set_xlabel("mode")
    ax.set_ylabel("mass")
    ax.legend(fontsize=7)
    return fig


def trace_figure(plt, draws: np.ndarray, dims: list[int], name: str):
    k = len(dims)
    fig, axes = plt.subplots(k, 1, figsize=(8, 1.6 * k), squeeze=False, sharex=True)
    for i, di in enumerate(dims):
        for c in range(draws.shape[0]):
            axes[i, 0].plot(draws[c, :, di], lw=0.4, alpha=0.8)
        axes[i, 0].set_ylabel(f"x{di}")
    axes[-1, 0].set_xlabel("draw")
    fig.suptitle(f"{name}: traces per chain")
    return fig
