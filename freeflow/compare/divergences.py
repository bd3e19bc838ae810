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
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..io import atomic_save_npy, atomic_write_json, atomic_write_text
from ..validation import check_int, check_positive_int, suggest
from .divergence_cells import energy_floor, evaluate, mode_floor, mode_metrics, region_masses, run_cell
from .divergence_grid import (DIVERGENCES, FULL, GENERATOR_SETTINGS, QUICK, TARGETS, GridSpec, cell_name,
                              cell_settings, check_divergence_spec, parse_target)

__all__ = ["compare_divergences", "DivergenceStudy", "GridSpec", "DIVERGENCES", "TARGETS", "GENERATOR_SETTINGS",
           "QUICK", "FULL", "evaluate", "mode_floor", "region_masses", "parse_target", "cell_settings",
           # (defined in .divergence_grid / .divergence_cells, re-exported here)
           "cell_name", "check_divergence_spec", "mode_metrics", "run_cell", "write_table", "cell_samples"]


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


def _progress(total: int, enabled: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc="cells", unit="cell", disable=not enabled, dynamic_ncols=True)


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
                floors[cell["target"]] = energy_floor(t, spec.eval_samples, spec.eval_samples)
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
