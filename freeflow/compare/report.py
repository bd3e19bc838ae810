"""The comparison report: one row per method, metrics beside their noise floors (see
:mod:`freeflow.compare.run` for what is measured)."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_write_text, jsonable
from .figures import modes_figure, pair_dims, pairs_figure, save_fig, trace_figure

FLAG_FACTOR = 3.0


# ----------------------------------------------------------------------------- containers
@dataclass
class MethodResult:
    """One compared method: its samples, metric values and costs."""

    name: str
    kind: str                      # "freeflow" | "nuts" | "vi" | "exact" | "samples"
    samples: torch.Tensor          # (n, d) float64, the compared samples
    metrics: dict[str, Any] = field(default_factory=dict)
    costs: dict[str, float | None] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    draws: np.ndarray | None = None  # (chains, draws, d) for NUTS traces

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "n": int(self.samples.shape[0]),
                "metrics": self.metrics, "costs": self.costs, "flags": self.flags,
                "notes": self.notes}


@dataclass
class Report:
    """The comparison: reference description, noise floors, one MethodResult per method."""

    reference: dict[str, Any]
    floors: dict[str, dict]
    methods: list[MethodResult]
    target: dict | None = None
    settings: dict = field(default_factory=dict)
    _reference_samples: torch.Tensor | None = None
    _reference_draws: np.ndarray | None = None
    _mode_info: dict | None = None

    def __getitem__(self, name: str) -> MethodResult:
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(f"no method named {name!r}; methods: {[m.name for m in self.methods]}")

    def to_dict(self) -> dict:
        return {"reference": self.reference, "target": self.target, "floors": self.floors,
                "settings": self.settings, "methods": [m.to_dict() for m in self.methods]}

    # ------------------------------------------------------------------------- table
    def table(self) -> str:
        """A fixed-width text table: quality (with floors) and cost columns, one row per method."""
        has_modes = any("mode_tv" in m.metrics for m in self.methods)
        cols = [("method", 16), ("energy", 17), ("MMD2", 17), ("mean err", 10), ("std err", 10)]
        if has_modes:
            cols += [("mode TV", 8), ("modes", 7)]
        cols += [("train s", 9), ("s/1e4", 9), ("ESS", 9), ("ESS/s", 10)]
        lines = []
        ref = self.reference
        status = "reliable" if ref.get("reliable", True) else "UNRELIABLE: " + "; ".join(ref["reasons"])
        lines.append(f"reference: {ref['name']} ({ref['kind']}, n_ref={ref['n']}) - {status}")
        lines += [f"note reference: {note}" for note in ref.get("notes", [])]
        lines.append("  ".join(f"{c:<{w}}" for c, w in cols))
        for m in self.methods:
            row = [m.name[:16],
                   _with_floor(m.metrics.get("energy_distance"), self.floors.get("energy_distance")),
                   _with_floor(m.metrics.get("mmd"), self.floors.get("mmd")),
                   _fmt(m.metrics.get("mean_err_max")), _fmt(m.metrics.get("std_err_max"))]
            if has_modes:
                row += [_fmt(m.metrics.get("mode_tv")),
                        f"{m.metrics.get('modes_covered', '-')}/{m.metrics.get('num_modes', '-')}"]
            row += [_fmt(m.costs.get("train_s")), _fmt(m.costs.get("s_per_1e4")),
                    _fmt(m.costs.get("ess")), _fmt(m.costs.get("ess_per_s"))]
            lines.append("  ".join(f"{v:<{w}}" for v, (_, w) in zip(row, cols)))
        floor_txt = ", ".join(f"{k} {v['median']:.3g}" for k, v in self.floors.items())
        lines.append(f"noise floors ({self.reference['floor_method']}): {floor_txt}")
        for m in self.methods:
            for f in m.flags:
                lines.append(f"FLAG {m.name}: {f}")
            for note in m.notes:
                lines.append(f"note {m.name}: {note}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    # -------------------------------------------------------------------------- save
    def save(self, out_dir: str | Path, *, figures: bool = True, max_pair_dims: int = 4) -> Path:
        """Write report.md, report.json and PNG figures into ``out_dir`` (atomic writes)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        figs: list[str] = []
        if figures:
            figs = self._figures(out, max_pair_dims)
        atomic_write_text(json.dumps(self.to_dict(), indent=2, default=jsonable) + "\n", out / "report.json")
        md = ["# Sampler comparison", ""]
        if self.target:
            md += [f"Target: `{json.dumps(self.target)}`", ""]
        if not self.reference.get("reliable", True):
            md += ["> **Unreliable reference:** " + "; ".join(self.reference["reasons"]), ""]
        md += ["```", self.table(), "```", "",
               "Columns: energy distance and MMD² with `(x floor)` = value / noise floor; mean/std "
               "errors in reference-std units (max over coordinates); train s = training "
               "(or NUTS warmup) seconds; s/1e4 = seconds per 10⁴ samples after training; ESS and "
               "ESS/s = effective samples and effective samples per second of sampling.", ""]
        md += [f"![{f}]({f})" for f in figs]
        atomic_write_text("\n".join(md) + "\n", out / "report.md")
        return out

    def _figures(self, out: Path, max_pair_dims: int) -> list[str]:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        names = []
        ref = self._reference_samples.numpy()
        d = ref.shape[1]
        dims = pair_dims(self, d, max_pair_dims)
        for m in self.methods:
            fig = pairs_figure(plt, ref, m.samples.numpy(), dims, self.reference["name"], m.name)
            names.append(save_fig(plt, fig, out, f"pairs_{_slug(m.name)}.png"))
        if self._mode_info is not None:
            fig = modes_figure(plt, self._mode_info, self.methods)
            names.append(save_fig(plt, fig, out, "modes.png"))
        traces = [(self.reference["name"], self._reference_draws)] + [
            (m.name, m.draws) for m in self.methods]
        for name, draws in traces:
            if draws is not None:
                fig = trace_figure(plt, draws, dims, name)
                names.append(save_fig(plt, fig, out, f"trace_{_slug(name)}.png"))
        return names


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.3g}" if abs(v) < 1e5 else f"{v:.2e}"
    return str(v)


def _with_floor(v: Any, floor: dict | None) -> str:
    if v is None:
        return "-"
    if not floor or floor["median"] <= 0:
        return _fmt(v)
    return f"{v:.3g} (x{v / floor['median']:.1f})"




def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "method"


