"""Figures and the median summary of a divergence grid (:mod:`freeflow.compare.divergences`).

    write_figures(study)   # -> [paths]: summary.json and figures/*.png in study.out

* ``tv_vs_steps_<generator>.png``, ``coverage_vs_steps_<generator>.png``: mass TV and entropic
  mode coverage against training steps, one panel per target, one line per divergence (median
  over seeds);
* ``heatmap_tv_<generator>.png``: final mass TV, target × divergence (median over seeds);
* ``final_samples_<generator>.png``: the last samples of seed 0 on the 2-D targets, a row per
  divergence.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np

from ..io import atomic_write, atomic_write_json

__all__ = ["write_figures", "medians", "SUMMARY_METRICS"]

SUMMARY_METRICS = ("mass_tv", "emc", "under_coverage", "min_mass_ratio", "energy_distance", "log_z_error")


def medians(rows: list[dict], metrics=SUMMARY_METRICS) -> list[dict]:
    """Median (and min/max) over seeds of each metric at each step, per target × generator × divergence."""
    groups: dict = {}
    for r in rows:
        if "error" in r and r.get("error"):
            key = (r["target"], r["generator"], r["divergence"], None)
            groups.setdefault(key, []).append(r)
            continue
        groups.setdefault((r["target"], r["generator"], r["divergence"], r["step"]), []).append(r)
    out = []
    for (t, g, d, step), rs in groups.items():
        row = {"target": t, "generator": g, "divergence": d, "step": step, "seeds": sorted(r["seed"] for r in rs)}
        if step is None:
            row["errors"] = len(rs)
        for m in metrics:
            v = [r[m] for r in rs if r.get(m) is not None and np.isfinite(r[m])]
            if v:
                row[m] = float(np.median(v))
                row[m + "_range"] = [float(np.min(v)), float(np.max(v))]
        for k in ("energy_floor", "mass_tv_floor"):
            if rs and rs[0].get(k) is not None:
                row[k] = rs[0][k]
        out.append(row)
    return out


def _save(fig, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _colors(names):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab20")
    return {n: cmap(i % 20) for i, n in enumerate(names)}


def _curves(spec, med, generator, metric, ylabel, path, log=False):
    import matplotlib.pyplot as plt

    tg = list(spec.targets)
    ncol = min(4, len(tg))
    nrow = math.ceil(len(tg) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), squeeze=False)
    col = _colors(spec.divergences)
    for ax, t in zip(axes.ravel(), tg):
        for d in spec.divergences:
            pts = sorted((r["step"], r[metric]) for r in med if r["target"] == t and r["generator"] == generator
                         and r["divergence"] == d and r["step"] is not None and metric in r)
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, color=col[d], label=d, lw=2.2 if d == "auto" else 1.2)
        ax.set_title(t, fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        if log:
            ax.set_yscale("log")
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(tg):]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.04))
    fig.suptitle(f"{ylabel} along training, generator '{generator}' (median over seeds)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _heatmap(spec, med, generator, metric, path):
    import matplotlib.pyplot as plt

    last = {}
    for r in med:
        if r["generator"] == generator and r["step"] is not None and metric in r:
            k = (r["target"], r["divergence"])
            if k not in last or r["step"] > last[k][0]:
                last[k] = (r["step"], r[metric])
    a = np.full((len(spec.targets), len(spec.divergences)), np.nan)
    for i, t in enumerate(spec.targets):
        for j, d in enumerate(spec.divergences):
            if (t, d) in last:
                a[i, j] = last[(t, d)][1]
    fig, ax = plt.subplots(figsize=(0.62 * len(spec.divergences) + 3, 0.42 * len(spec.targets) + 1.5))
    im = ax.imshow(a, cmap="viridis_r", aspect="auto", vmin=0, vmax=np.nanmax(a) if np.isfinite(a).any() else 1)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            if np.isfinite(a[i, j]):
                ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if a[i, j] > 0.5 * np.nanmax(a) else "black")
    ax.set_xticks(range(len(spec.divergences)), spec.divergences, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(spec.targets)), spec.targets, fontsize=7)
    fig.colorbar(im, ax=ax, label=f"final {metric} (median over seeds)")
    ax.set_title(f"final {metric}, generator '{generator}'", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _samples(study, generator, path):
    import matplotlib.pyplot as plt

    cd = importlib.import_module("freeflow.compare.divergences")
    spec = study.spec
    two_d = [t for t in spec.targets if cd.parse_target(t).dim == 2]
    if not two_d:
        return None
    seed = spec.seeds[0]
    nr, nc = len(spec.divergences), len(two_d)
    fig, axes = plt.subplots(nr, nc, figsize=(1.6 * nc, 1.6 * nr), squeeze=False)
    for j, t in enumerate(two_d):
        tgt = cd.parse_target(t)
        ref = tgt.sample(1000).numpy()
        for i, d in enumerate(spec.divergences):
            ax = axes[i, j]
            cell = {"target": t, "generator": generator, "divergence": d, "seed": seed, "steps": spec.steps,
                    "batch_size": spec.batch_size, "checkpoints": spec.checkpoints, "eval_samples": spec.eval_samples}
            x = cd.cell_samples(study.out, cell)
            ax.scatter(ref[:, 0], ref[:, 1], s=0.3, c="0.8")
            if x is not None:
                ax.scatter(x[:, 0], x[:, 1], s=0.3, c="C3")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(t.replace("imbalanced2:", "imb2 "), fontsize=6)
            if j == 0:
                ax.set_ylabel(d, fontsize=6)
    fig.suptitle(f"final samples (red) over exact ones (grey), generator '{generator}', seed {seed}", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def write_figures(study) -> list[Path]:
    """summary.json and the figures of the module docstring, in study.out (figures/)."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(study.out)
    med = medians(study.rows)
    paths = [atomic_write_json({"budget": "steps × batch_size generator evaluations per cell",
                                "spec": {k: list(v) if isinstance(v, tuple) else v
                                         for k, v in vars(study.spec).items()},
                                "medians": med}, out / "summary.json")]
    figs = out / "figures"
    for g in study.spec.generators:
        paths.append(_curves(study.spec, med, g, "mass_tv", "mass TV", figs / f"tv_vs_steps_{g}.png", log=True))
        paths.append(_curves(study.spec, med, g, "emc", "mode coverage (EMC)", figs / f"coverage_vs_steps_{g}.png"))
        paths.append(_heatmap(study.spec, med, g, "mass_tv", figs / f"heatmap_tv_{g}.png"))
        p = _samples(study, g, figs / f"final_samples_{g}.png")
        if p is not None:
            paths.append(p)
    return paths
