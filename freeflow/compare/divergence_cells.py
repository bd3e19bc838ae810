"""One cell of the divergence grid, trained and scored (:mod:`freeflow.compare.divergences`).

Along training, at the checkpoint steps, the EMA generator is evaluated on fresh samples
(:func:`evaluate`): per-mode mass, mass TV, entropic mode coverage, the soft under-coverage U
(docs/theory.md §8), energy distance against its noise floor, and log Ẑ error (log q is exact
for the generators used here). Samples are assigned to the mode of highest responsibility
(nearest centre for equal widths); where modes overlap even exact samples give a mass TV above
zero: :func:`mode_floor` is the median over three exact draws.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Sequence

import numpy as np
import torch

from ..metrics import energy_distance, under_coverage
from ..train.trainer import Callback
from .divergence_grid import cell_settings

__all__ = ["region_masses", "mode_metrics", "evaluate", "mode_floor", "energy_floor", "run_cell"]


def region_masses(target, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """Mode masses of samples as (J, K) groups with their true weights (J, K).

    Mixtures: one group of K modes (``target.assign_modes``). Many-Well: one group of two wells
    per pair (x₁ ≶ 0), truth (1 − 0.8443, 0.8443). None for targets without modes."""
    if hasattr(target, "positive_fraction"):
        f = target.positive_fraction(x).numpy()
        p = float(target.p_positive)
        return np.stack([1 - f, f], 1), np.tile([1 - p, p], (len(f), 1))
    if target.mode_centers is None:
        return None
    k = target.mode_centers.shape[0]
    lab = target.assign_modes(x)
    q = torch.bincount(lab, minlength=k).double().numpy() / len(lab)
    return q[None], target.mode_weights.double().numpy()[None]


def mode_metrics(q: np.ndarray, p: np.ndarray) -> dict:
    """mass TV, entropic mode coverage, soft under-coverage U and the smallest q_k/p_k, each the
    mean over groups (the smallest ratio: over all)."""
    tv = 0.5 * np.abs(q - p).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(q > 0, q * np.log(q), 0.0).sum(1)
    k = q.shape[1]
    return {"mass_tv": float(tv.mean()), "emc": float((h / math.log(k)).mean()) if k > 1 else 1.0,
            "under_coverage": float(np.mean([under_coverage(qj, pj) for qj, pj in zip(q, p)])),
            "min_mass_ratio": float((q / p).min())}


def evaluate(sampler, target, reference: torch.Tensor, *, n: int, seed: int = 777) -> tuple[dict, torch.Tensor]:
    """Metrics of the sampler's EMA generator from n fresh samples (module docstring)."""
    from ..importance import log_normalizer

    with torch.no_grad():
        x, log_q = sampler.sample_and_log_prob(n, seed=seed)
        log_p = target.log_prob(x)
    finite = torch.isfinite(x).all(1)
    out: dict = {"nonfinite": int((~finite).sum())}
    x_ok = x[finite].double()
    reg = region_masses(target, x_ok)
    if reg is not None:
        out.update(mode_metrics(*reg))
        out["masses"] = [round(float(v), 5) for v in reg[0].mean(0)]  # (Many-Well: mean over pairs)
    out["energy_distance"] = float(energy_distance(x_ok, reference))
    lw = (log_p.double() - log_q.double())[finite]
    if getattr(target, "log_Z", None) is not None and lw.numel():
        out["log_z_error"] = float(log_normalizer(lw)[0] - float(target.log_Z))
    return out, x_ok


class _Recorder(Callback):
    """Evaluates the sampler at the checkpoint steps."""

    def __init__(self, sampler, target, reference, steps: Sequence[int], n: int, batch_size: int):
        self.sampler, self.target, self.reference = sampler, target, reference
        self.steps, self.n, self.batch_size = set(steps), n, batch_size
        self.rows: list[dict] = []
        self.last_x = None

    def on_step_end(self, trainer, state, info) -> None:
        if state.step not in self.steps:
            return
        row, x = evaluate(self.sampler, self.target, self.reference, n=self.n)
        row.update(step=state.step, evaluations=state.step * self.batch_size,
                   train_seconds=round(state.elapsed, 3))
        if "divergence" in info:
            row["divergence_now"] = info["divergence"]
        self.rows.append(row)
        self.last_x = x


def energy_floor(target, n: int, n_ref: int, seeds=(0, 1, 2)) -> float:
    """Median energy distance between two independent exact draws of sizes (n, n_ref)."""
    vals = []
    for s in seeds:
        g = torch.Generator().manual_seed(10_000 + s)
        vals.append(energy_distance(target.sample(n, g), target.sample(n_ref, g)))
    return float(np.median(vals))


def mode_floor(target, n: int, seeds=(0, 1, 2)) -> float | None:
    """Median mass TV of n exact samples (sampling noise, and for overlapping modes the bias of
    assigning each sample to one mode): the value below which a mass TV says nothing."""
    if not target.has_exact_sampler:
        return None
    vals = []
    for s in seeds:
        x = target.sample(n, torch.Generator().manual_seed(20_000 + s))
        reg = region_masses(target, x)
        if reg is None:
            return None
        vals.append(mode_metrics(*reg)["mass_tv"])
    return float(np.median(vals))


def run_cell(cell: dict, target, reference, floor: float, checkpoint_steps: Sequence[int]) -> dict:
    """Train one cell and evaluate it along training; failures are recorded, not raised: an
    exception as the cell's only row, a fit that stopped early (a step kept failing,
    ``sampler.state.failure``) as a last row with the step and the reason after the checkpoints
    it reached."""
    from ..datafree.sampler import OneStepSampler
    from ..reliability import ReliabilityWarning
    from ..train import TrainingStoppedWarning

    base = {"target": cell["target"], "dim": target.dim, "generator": cell["generator"],
            "divergence": cell["divergence"], "seed": cell["seed"]}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReliabilityWarning)
            warnings.simplefilter("ignore", TrainingStoppedWarning)  # (recorded in the rows instead)
            sampler = OneStepSampler(target, **cell_settings(cell))
            rec = _Recorder(sampler, target, reference, checkpoint_steps, cell["eval_samples"], cell["batch_size"])
            sampler.fit(cell["steps"], progress=False, check=False, callbacks=[rec])
    except (FloatingPointError, RuntimeError, ValueError) as e:
        return {"config": cell, "rows": [{**base, "error": f"{type(e).__name__}: {e}"[:300]}],
                "seconds": time.perf_counter() - t0, "samples": None}
    rows = [{**base, **r, "energy_floor": floor} for r in rec.rows]
    if sampler.state.failure is not None:
        rows.append({**base, "step": sampler.steps_done, "error": f"TrainingStopped: {sampler.state.failure}"[:300]})
    sched = getattr(sampler.drift, "schedule", None)
    if sched is not None:
        for r in rows:
            r["switched_at"] = sched.switched_at
    x = rec.last_x[:1000, :2].float().numpy() if rec.last_x is not None else None
    return {"config": cell, "rows": rows, "seconds": time.perf_counter() - t0, "samples": x}
