"""Compare divergence weightings on mixture benchmarks (issue 11; docs/divergences.md).

    study = ff.compare_divergences(out="runs/div", quick=True)      # or: freeflow compare-divergences
    study.final()          # one row per target × generator × divergence × seed, last checkpoint

A *cell* is one training run: a target × a generator setting × a divergence × a seed. Every
cell gets the same budget, counted in **generator evaluations** (``steps × batch_size``, the
same for every divergence; wall seconds are recorded beside it). Along training, at
``checkpoints`` evenly spaced steps, the EMA generator is evaluated on fresh samples
(:func:`evaluate`): per-mode mass, mass TV, entropic mode coverage, the soft under-coverage U
(docs/theory.md §8), energy distance against its noise floor, and log Ẑ error (log q is exact
for the generators used here). Samples are assigned to the mode of highest responsibility
(nearest centre for equal widths); where modes overlap (imbalanced2 at separation 2) even exact
samples give a mass TV above zero: ``mass_tv_floor`` is the median over three exact draws.

Generator settings: ``"default"`` is what a new user gets (mixture generator in d ≤ 3, product
mixture above, each with its Fisher–Rao step on the weights and births); ``"transport"`` is the
same generator with the reaction and births switched off, so that only the drift's weighting
moves mass between modes.

Each finished cell is written to ``out/cells/<cell>.json`` atomically; a rerun with
``resume=True`` skips finished cells (same settings) and continues a killed grid where it
stopped. The tidy table (``table.csv``/``table.json``) is rebuilt from the cell files.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..divergences import get_divergence
from ..io import atomic_save_npy, atomic_write_json, atomic_write_text
from ..metrics import energy_distance, under_coverage
from ..train.trainer import Callback
from ..validation import check_int, check_positive_int, suggest

__all__ = ["compare_divergences", "DivergenceStudy", "GridSpec", "DIVERGENCES", "TARGETS", "GENERATOR_SETTINGS",
           "QUICK", "FULL", "evaluate", "mode_floor", "region_masses", "parse_target", "cell_settings"]

#: every registered divergence (alpha at a few a), the log-variance flow with each reference, auto
DIVERGENCES = ("kl_qp", "kl_pq", "pearson", "neyman", "hellinger", "js", "jeffreys", "alpha:0.5",
               "alpha:1.5", "alpha:-1", "lv:on_policy", "lv:gaussian", "lv:mixture", "lv:replay", "auto")
#: imbalanced2 swept over separation (d = 2) and over dimension (separation 6)
TARGETS = ("ring8", "gmm40",
           "imbalanced2:separation=2", "imbalanced2:separation=4", "imbalanced2:separation=6",
           "imbalanced2:separation=8", "imbalanced2:separation=6,dim=5", "imbalanced2:separation=6,dim=10",
           "imbalanced2:separation=6,dim=20", "unequal_widths", "manywell32")
#: generator setting -> OneStepSampler settings
GENERATOR_SETTINGS = {"default": {}, "transport": {"generator": "flow"}}
#: the grid's default budget (steps × batch_size generator evaluations per cell)
FULL = {"seeds": (0, 1, 2), "steps": 400, "batch_size": 512, "checkpoints": 4, "eval_samples": 2000}
#: the small grid of ``quick=True``: every divergence, target and generator, one seed, short runs
QUICK = {"seeds": (0,), "steps": 50, "batch_size": 128, "checkpoints": 2, "eval_samples": 500}
_LV_REFERENCES = ("on_policy", "gaussian", "mixture", "replay")


@dataclass(frozen=True)
class GridSpec:
    """The grid and its budget (see the module docstring)."""

    divergences: tuple[str, ...] = DIVERGENCES
    targets: tuple[str, ...] = TARGETS
    generators: tuple[str, ...] = ("default", "transport")
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 400
    batch_size: int = 512
    checkpoints: int = 4
    eval_samples: int = 2000

    def cells(self) -> list[dict]:
        """Every cell, seed-major: a grid stopped early holds whole seeds."""
        return [{"target": t, "generator": g, "divergence": d, "seed": s, "steps": self.steps,
                 "batch_size": self.batch_size, "checkpoints": self.checkpoints,
                 "eval_samples": self.eval_samples}
                for s in self.seeds for t in self.targets for g in self.generators for d in self.divergences]

    def checkpoint_steps(self) -> list[int]:
        k = min(self.checkpoints, self.steps)
        return sorted({int(round(self.steps * (i + 1) / k)) for i in range(k)})


# ---------------------------------------------------------------------------------- parsing
_TARGET_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_]+)(?::(?P<args>.*))?$")


def parse_target(spec: str):
    """``"imbalanced2:separation=6,dim=5"`` -> the target (numbers parsed as int or float)."""
    from targets import available_targets, get_target

    if not isinstance(spec, str) or not _TARGET_SPEC.match(spec.strip()):
        raise ValueError(f"target spec must look like 'name' or 'name:key=value,...', got {spec!r}")
    m = _TARGET_SPEC.match(spec.strip())
    name, kwargs = m["name"], {}
    if name not in available_targets():
        raise ValueError(f"unknown target {name!r}{suggest(name, available_targets())}; "
                         f"valid: {', '.join(available_targets())}")
    for part in filter(None, (m["args"] or "").split(",")):
        if "=" not in part:
            raise ValueError(f"target {spec!r}: {part!r} is not key=value")
        key, value = (s.strip() for s in part.split("=", 1))
        try:
            kwargs[key] = int(value) if re.fullmatch(r"[-+]?\d+", value) else float(value)
        except ValueError:
            raise ValueError(f"target {spec!r}: cannot read {key}={value!r} as a number") from None
    return get_target(name, **kwargs)


def check_divergence_spec(spec: str) -> str:
    """A grid divergence: a registered f-divergence, ``lv:<reference>`` or ``auto``."""
    if not isinstance(spec, str):
        raise TypeError(f"divergences: each entry must be a name, got {type(spec).__name__}")
    if spec == "auto":
        return spec
    if spec.startswith("lv:") or spec == "lv":
        ref = spec[3:] if spec.startswith("lv:") else "on_policy"
        if ref not in _LV_REFERENCES:
            raise ValueError(f"divergences: unknown log-variance reference {ref!r}{suggest(ref, _LV_REFERENCES)}; "
                             f"valid: {', '.join('lv:' + r for r in _LV_REFERENCES)}")
        return "lv:" + ref
    try:
        get_divergence(spec)
    except ValueError as e:
        raise ValueError(f"divergences: {e}; also 'lv:<reference>' and 'auto'") from None
    return spec


def cell_settings(cell: dict) -> dict:
    """OneStepSampler keyword arguments of a cell."""
    div = cell["divergence"]
    kw = {"seed": int(cell["seed"]), "batch_size": int(cell["batch_size"]),
          **GENERATOR_SETTINGS[cell["generator"]]}
    if div.startswith("lv:"):
        kw.update(divergence="lv", lv_reference=div[3:])
    else:
        kw["divergence"] = div
    return kw


def cell_name(cell: dict) -> str:
    """A file-safe, unique name of a cell (readable prefix + hash of its settings)."""
    key = json.dumps(cell, sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{cell['target']}_{cell['generator']}_{cell['divergence']}_s{cell['seed']}")
    return f"{slug.strip('-')}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


# --------------------------------------------------------------------------------- metrics
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


# ------------------------------------------------------------------------------------ grid
@dataclass
class DivergenceStudy:
    """The grid's results: ``rows`` (one per cell × checkpoint) and where they were written."""

    spec: GridSpec
    rows: list[dict] = field(default_factory=list)
    out: Path | None = None
    computed: int = 0
    reused: int = 0
    floors: dict = field(default_factory=dict)

    def final(self) -> list[dict]:
        """The last checkpoint of each cell."""
        last: dict = {}
        for r in self.rows:
            key = (r["target"], r["generator"], r["divergence"], r["seed"])
            if key not in last or r.get("step", -1) >= last[key].get("step", -1):
                last[key] = r
        return list(last.values())

    def summary(self, metric: str = "mass_tv") -> list[dict]:
        """Median over seeds of ``metric`` at the last checkpoint, per target × generator × divergence."""
        groups: dict = {}
        for r in self.final():
            if metric in r and r[metric] is not None:
                groups.setdefault((r["target"], r["generator"], r["divergence"]), []).append(r[metric])
        return [{"target": t, "generator": g, "divergence": d, metric: float(np.median(v)), "seeds": len(v)}
                for (t, g, d), v in groups.items()]


COLUMNS = ("target", "dim", "generator", "divergence", "seed", "step", "evaluations", "train_seconds",
           "mass_tv", "emc", "under_coverage", "min_mass_ratio", "masses", "energy_distance",
           "energy_floor", "mass_tv_floor", "log_z_error", "nonfinite", "divergence_now", "error")


def _table_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()})
    return buf.getvalue()


def _check_out(out) -> Path:
    """Create the output folder and prove it is writable, before any training."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / "cells").mkdir(exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"out: cannot write to the output folder {str(path)!r} ({e.strerror or e})") from None
    return path


def _noise_floor(target, n: int, n_ref: int, seeds=(0, 1, 2)) -> float:
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


def _progress(total: int, enabled: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc="cells", unit="cell", disable=not enabled, dynamic_ncols=True)


def run_cell(cell: dict, target, reference, floor: float, checkpoint_steps: Sequence[int]) -> dict:
    """Train one cell and evaluate it along training; failures are recorded, not raised."""
    from ..datafree.sampler import OneStepSampler
    from ..reliability import ReliabilityWarning

    base = {"target": cell["target"], "dim": target.dim, "generator": cell["generator"],
            "divergence": cell["divergence"], "seed": cell["seed"]}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReliabilityWarning)
            sampler = OneStepSampler(target, **cell_settings(cell))
            rec = _Recorder(sampler, target, reference, checkpoint_steps, cell["eval_samples"], cell["batch_size"])
            sampler.fit(cell["steps"], progress=False, check=False, callbacks=[rec])
    except (FloatingPointError, RuntimeError, ValueError) as e:
        return {"config": cell, "rows": [{**base, "error": f"{type(e).__name__}: {e}"[:300]}],
                "seconds": time.perf_counter() - t0, "samples": None}
    rows = [{**base, **r, "energy_floor": floor} for r in rec.rows]
    sched = getattr(sampler.drift, "schedule", None)
    if sched is not None:
        for r in rows:
            r["switched_at"] = sched.switched_at
    x = rec.last_x[:1000, :2].float().numpy() if rec.last_x is not None else None
    return {"config": cell, "rows": rows, "seconds": time.perf_counter() - t0, "samples": x}


def compare_divergences(
    divergences: Iterable[str] | None = None,
    targets: Iterable[str] | None = None,
    *,
    generators: Iterable[str] = ("default", "transport"),
    seeds: Iterable[int] | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    checkpoints: int | None = None,
    eval_samples: int | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    quick: bool = False,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
) -> DivergenceStudy:
    """Train every divergence × target × generator × seed cell and measure it along training.

    Args:
        divergences: names (default :data:`DIVERGENCES`): registered f-divergences
            (``alpha:<a>`` included), ``lv:<reference>``, ``auto``.
        targets: target specs ``name`` or ``name:key=value,...`` (default :data:`TARGETS`).
        generators: settings of :data:`GENERATOR_SETTINGS`.
        seeds, steps, batch_size, checkpoints, eval_samples: the budget (equal generator
            evaluations, steps × batch_size, for every cell); defaults :data:`FULL`
            (3 seeds × 400 steps × 512), or :data:`QUICK` with ``quick=True``.
        out: folder for the cell files, ``table.csv``/``table.json``, ``samples/``; None keeps
            everything in memory.
        resume: reuse finished cells found in ``out`` (same settings). Without it, an ``out``
            that already holds cells is refused, so nothing is overwritten by accident.
        shard: (i, n) runs only cells i, i + n, i + 2n, ... (n processes on one ``out`` with
            ``resume=True``; a last run over all shards with ``resume=True`` assembles the table).
    Returns:
        a :class:`DivergenceStudy`.
    """
    q = QUICK if quick else FULL
    divs = tuple(check_divergence_spec(d) for d in (DIVERGENCES if divergences is None else list(divergences)))
    tgts = tuple(TARGETS if targets is None else list(targets))
    gens = tuple(generators)
    seed_list = tuple(q["seeds"] if seeds is None else list(seeds))
    for name, values in (("divergences", divs), ("targets", tgts), ("generators", gens), ("seeds", seed_list)):
        if not values:
            raise ValueError(f"{name}: the list is empty; give at least one")
    for g in gens:
        if g not in GENERATOR_SETTINGS:
            raise ValueError(f"generators: unknown setting {g!r}{suggest(g, GENERATOR_SETTINGS)}; "
                             f"valid: {', '.join(GENERATOR_SETTINGS)}")
    seed_list = tuple(check_int(s, "seeds", minimum=0) for s in seed_list)
    spec = GridSpec(divs, tgts, gens, seed_list,
                    steps=check_positive_int(q["steps"] if steps is None else steps, "steps"),
                    batch_size=check_int(q["batch_size"] if batch_size is None else batch_size,
                                         "batch_size", minimum=2),
                    checkpoints=check_positive_int(q["checkpoints"] if checkpoints is None else checkpoints,
                                                   "checkpoints"),
                    eval_samples=check_int(q["eval_samples"] if eval_samples is None else eval_samples,
                                           "eval_samples", minimum=100))
    target_objs = {t: parse_target(t) for t in tgts}  # unknown names fail here, before training
    path = _check_out(out) if out is not None else None
    cells = spec.cells()
    if shard is not None:
        i, n = shard
        n = check_positive_int(n, "shard")
        if not (isinstance(i, int) and 0 <= i < n):
            raise ValueError(f"shard: index must lie in [0, {n}), got {i!r}")
        cells = cells[i::n]
    if path is not None and not resume:
        existing = list((path / "cells").glob("*.json"))
        if existing:
            raise ValueError(f"out: {str(path)!r} already holds {len(existing)} finished cells; pass "
                             "resume=True (--resume) to continue that grid, or choose another folder")
    study = DivergenceStudy(spec, out=path)
    refs, floors = {}, {}
    bar = _progress(len(cells), progress)
    ck_steps = spec.checkpoint_steps()
    for cell in cells:
        name = cell_name(cell)
        f = path / "cells" / f"{name}.json" if path is not None else None
        result = None
        if f is not None and resume and f.exists():
            try:
                result = json.loads(f.read_text())
                if result.get("config") != cell:
                    result = None
            except (OSError, json.JSONDecodeError):
                result = None  # a damaged cell file is recomputed
            if result is not None:
                study.reused += 1
        if result is None:
            t = target_objs[cell["target"]]
            if cell["target"] not in refs:
                g = torch.Generator().manual_seed(1234)
                refs[cell["target"]] = t.sample(spec.eval_samples, g)
                floors[cell["target"]] = _noise_floor(t, spec.eval_samples, spec.eval_samples)
            if bar is not None:
                bar.set_postfix_str(f"{cell['target']} {cell['generator']} {cell['divergence']} s{cell['seed']}")
            result = run_cell(cell, t, refs[cell["target"]], floors[cell["target"]], ck_steps)
            samples = result.pop("samples")
            if path is not None:
                if samples is not None:
                    atomic_save_npy(samples, path / "samples" / f"{name}.npy")
                atomic_write_json(result, f)
            study.computed += 1
        study.rows.extend(result["rows"])
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    study.floors = floors
    tv_floor = {t: mode_floor(target_objs[t], spec.eval_samples) for t in tgts}
    for r in study.rows:
        r["mass_tv_floor"] = tv_floor[r["target"]]
    if path is not None and shard is None:
        write_table(study)
    return study


def write_table(study: DivergenceStudy) -> None:
    """table.csv and table.json (rows in grid order) and the grid's spec, atomically."""
    path = study.out
    atomic_write_text(_table_csv(study.rows), path / "table.csv")
    atomic_write_json({"spec": asdict(study.spec), "budget": "generator evaluations = steps × batch_size "
                       "(equal for every cell); train_seconds recorded beside it",
                       "rows": study.rows}, path / "table.json")


def cell_samples(out: str | os.PathLike, cell: dict) -> np.ndarray | None:
    """The final samples (first two coordinates, ≤ 1000) saved for a cell, if any."""
    f = Path(out) / "samples" / f"{cell_name(cell)}.npy"
    return np.load(f) if f.exists() else None
