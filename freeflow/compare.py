"""Side-by-side comparison of samplers against a reference: one report, same metrics for all.

    report = compare(sampler, ref)                       # one method
    report = compare([sampler, vi, nuts_ref], exact, target=t, names=["freeflow", "VI", "NUTS"])
    print(report.table()); report.save("runs/logreg")     # report.md, report.json, PNG figures

What is compared.  Every method's samples x (n of them) against the reference draws
(``n_ref``), with ``freeflow.metrics``:

* energy distance and Gaussian MMD² (one median-heuristic bandwidth, computed on the
  reference, shared by all methods), each beside its **noise floor**: the same metric
  between two independent draws of the reference distribution of the same sizes (n, n_ref).
  With an exact sampler (a Target that has one) the floor uses fresh exact draws (3 seeds).
  With NUTS or a plain tensor the floor splits the reference into two halves (by chains for
  NUTS) and rescales to sizes (n, n_ref): V-statistics ED and MMD² have expectation
  ≈ c·(1/n + 1/m) between equal distributions, moment errors ≈ c·sqrt(1/n + 1/m).
* per-coordinate mean and std errors in reference-std units (max over coordinates);
* for targets with modes: per-mode masses, their total variation to the true weights, the
  number of modes covered and the entropic mode coverage (EMC).

A metric is flagged when it exceeds ``flag_factor`` (3) times the largest floor value.

Costs.  ``train_s``: training seconds (freeflow, VI) or warmup seconds (NUTS);
``s_per_1e4``: seconds to draw 10⁴ samples after training; ``ess``: effective samples —
for NUTS the arviz min bulk/tail ESS of all its draws, for independent samplers the sample
count; ``ess_per_s``: effective samples per second of sampling after training (NUTS: its
ESS over its sampling time, warmup excluded).  When a method exposes
``sample_and_log_prob`` and a target is given, the importance-sampling ESS fraction
(Σw)²/(nΣw²) is reported too (``is_ess_frac``).  Mode-mass floors are the total variation
of n draws from the true weights (multinomial noise), whatever the reference.

Reference choice.  When the target has an exact sampler, exact samples are the reference:
NUTS is biased on Neal's funnel and visits only a few modes of gmm40.  An unreliable NUTS
reference (divergences, R-hat > 1.01, low ESS) is flagged at the top of the report.
"""
from __future__ import annotations

import io
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .reference.cache import atomic_write_bytes, atomic_write_text

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
        atomic_write_text(out / "report.json",
                          json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n")
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
        atomic_write_text(out / "report.md", "\n".join(md) + "\n")
        return out

    def _figures(self, out: Path, max_pair_dims: int) -> list[str]:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        names = []
        ref = self._reference_samples.numpy()
        d = ref.shape[1]
        dims = _pair_dims(self, d, max_pair_dims)
        for m in self.methods:
            fig = _pairs_figure(plt, ref, m.samples.numpy(), dims, self.reference["name"], m.name)
            names.append(_save_fig(plt, fig, out, f"pairs_{_slug(m.name)}.png"))
        if self._mode_info is not None:
            fig = _modes_figure(plt, self._mode_info, self.methods)
            names.append(_save_fig(plt, fig, out, "modes.png"))
        traces = [(self.reference["name"], self._reference_draws)] + [
            (m.name, m.draws) for m in self.methods]
        for name, draws in traces:
            if draws is not None:
                fig = _trace_figure(plt, draws, dims, name)
                names.append(_save_fig(plt, fig, out, f"trace_{_slug(name)}.png"))
        return names


# ----------------------------------------------------------------------------- compare
def compare(
    sampler_or_samples: Any,
    reference: Any,
    *,
    n: int = 4000,
    target: Any = None,
    names: Sequence[str] | str | None = None,
    n_ref: int | None = None,
    seed: int = 0,
    floor_seeds: Sequence[int] = (0, 1, 2),
    flag_factor: float = FLAG_FACTOR,
) -> Report:
    """Compare one method or a list of methods with ``reference`` (see module docstring).

    sampler_or_samples : a sampler (anything with ``.sample(n)``, e.g. OneStepSampler, a VI or SVGD
        baseline), a NUTS :class:`~freeflow.reference.Reference`, a tensor/array (n, d) of
        samples, or a list/tuple/dict of these (a dict gives the names).
    reference : exact samples (tensor/array), a NUTS Reference, or a Target with an exact
        sampler (then ``n_ref`` exact samples are drawn).
    n : samples drawn from each sampler (tensors and NUTS draws are cut / thinned to n).
    target : the Target, for exact noise floors, mode masses and target diagnostics.
    names : a name per method.
    """
    from . import metrics as M

    n = _check_pos_int("n", n)
    if n < 10:
        raise ValueError(f"n must be >= 10, got {n}")
    if target is None and _looks_like_target(reference):
        target = reference
    methods_in, method_names = _method_list(sampler_or_samples, names)
    rinfo, ref_x, ref_draws = _reference(reference, target, n_ref or n, seed)
    d = ref_x.shape[1]
    n_r = ref_x.shape[0]
    bandwidth = M.median_bandwidth(ref_x)
    exact_fn = _exact_sampler(target)
    mode_info = None
    if target is not None and getattr(target, "mode_centers", None) is not None:
        mode_info = {"centers": target.mode_centers, "weights": target.mode_weights}

    def metric_set(x: torch.Tensor, other: torch.Tensor, modes: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "energy_distance": M.energy_distance(x, other),
            "mmd": M.mmd(x, other, bandwidth=bandwidth),
        }
        me = M.moment_errors(x, other)
        out.update({k: me[k] for k in ("mean_err_max", "std_err_max", "mean_err", "std_err")})
        if modes and mode_info is not None:
            rep = M.mode_report(x, mode_info["centers"], mode_info["weights"],
                                labels=target.assign_modes(x))
            out.update({"mode_tv": rep["tv"], "modes_covered": rep["modes_covered"],
                        "num_modes": rep["num_modes"], "emc": rep["emc"], "mode_masses": rep["masses"]})
        return out

    # -- noise floors ------------------------------------------------------------------
    floor_keys = ["energy_distance", "mmd", "mean_err_max", "std_err_max"]
    floor_vals: dict[str, list[float]] = {k: [] for k in floor_keys}
    if exact_fn is not None and rinfo["kind"] == "exact":
        rinfo["floor_method"] = f"exact draws of sizes ({n}, {n_r}), seeds {list(floor_seeds)}"
        for s in floor_seeds:
            g = torch.Generator().manual_seed(10_000 + int(s))
            ms = metric_set(exact_fn(n, g), exact_fn(n_r, g), modes=False)
            for k in floor_keys:
                floor_vals[k].append(float(ms[k]))
    else:
        halves = _reference_halves(ref_x, ref_draws)
        rinfo["floor_method"] = (f"{len(halves)} split(s) of the reference into halves, rescaled to "
                                 f"sizes ({n}, {n_r})")
        for a, b in halves:
            ms = metric_set(a, b, modes=False)
            v_scale = (1 / n + 1 / n_r) / (1 / a.shape[0] + 1 / b.shape[0])
            for k in floor_keys:
                scale = v_scale if k in ("energy_distance", "mmd") else math.sqrt(v_scale)
                floor_vals[k].append(float(ms[k]) * scale)
    if mode_info is not None:  # multinomial noise of n draws from the true weights
        w = torch.as_tensor(mode_info["weights"]).double()
        floor_vals["mode_tv"] = []
        for s in floor_seeds:
            g = torch.Generator().manual_seed(30_000 + int(s))
            counts = torch.bincount(torch.multinomial(w, n, replacement=True, generator=g),
                                    minlength=w.shape[0]).double()
            floor_vals["mode_tv"].append(float(0.5 * (counts / n - w).abs().sum()))
    floors = {k: {"median": float(np.median(v)), "max": float(np.max(v)), "values": v}
              for k, v in floor_vals.items() if v}

    # -- methods -------------------------------------------------------------------------
    results = []
    for obj, name in zip(methods_in, method_names):
        res = _run_method(obj, name, n, target, seed)
        if obj is reference:  # its own draws are the reference: quality is trivially perfect
            res.notes.append("this method is the reference: quality columns left empty")
            results.append(res)
            continue
        res.metrics.update(metric_set(res.samples, ref_x))
        if target is not None and callable(getattr(target, "diagnostics", None)):
            try:
                res.metrics["target_diagnostics"] = target.diagnostics(res.samples)
            except Exception as e:  # noqa: BLE001 - diagnostics are optional extras
                res.notes.append(f"target.diagnostics failed: {type(e).__name__}: {e}")
        for k in ("energy_distance", "mmd", "mean_err_max", "std_err_max", "mode_tv"):
            if k in res.metrics and k in floors:
                limit = flag_factor * floors[k]["max"]
                if res.metrics[k] > limit:
                    res.flags.append(
                        f"{k} = {res.metrics[k]:.4g} exceeds {flag_factor:g} x noise floor "
                        f"({floors[k]['max']:.4g})")
        results.append(res)

    target_cfg = target.config() if target is not None and callable(getattr(target, "config", None)) else None
    return Report(
        reference=rinfo, floors=floors, methods=results, target=target_cfg,
        settings={"n": n, "n_ref": n_r, "dim": d, "seed": seed, "bandwidth": bandwidth,
                  "flag_factor": flag_factor},
        _reference_samples=ref_x, _reference_draws=ref_draws, _mode_info=mode_info,
    )


# ----------------------------------------------------------------------------- internals
def _check_pos_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


def _looks_like_target(obj: Any) -> bool:
    return callable(getattr(obj, "log_prob", None)) and hasattr(obj, "dim") and callable(
        getattr(obj, "config", None))


def _is_reference(obj: Any) -> bool:
    return hasattr(obj, "draws") and hasattr(obj, "diagnostics") and hasattr(obj, "timings")


def _exact_sampler(target: Any):
    if target is None or not getattr(target, "has_exact_sampler", False):
        return None
    return lambda k, g: target.sample(k, g).to(torch.float64)


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().to(torch.float64)
    else:
        t = torch.from_numpy(np.array(x, dtype=np.float64))  # copy: JAX arrays are read-only
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {tuple(t.shape)}")
    return t


def _method_list(obj: Any, names: Sequence[str] | str | None) -> tuple[list, list[str]]:
    if isinstance(obj, dict):
        items, default = list(obj.values()), [str(k) for k in obj]
    elif isinstance(obj, (list, tuple)):
        items, default = list(obj), [None] * len(obj)
    else:
        items, default = [obj], [None]
    if not items:
        raise ValueError("sampler_or_samples is empty")
    if names is not None:
        names = [names] if isinstance(names, str) else list(names)
        if len(names) != len(items):
            raise ValueError(f"names must have one entry per method ({len(items)}), got {len(names)}")
    else:
        names = [d or _default_name(o, i) for i, (o, d) in enumerate(zip(items, default))]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be distinct, got {names}")
    return items, list(names)


def _default_name(obj: Any, i: int) -> str:
    if _is_reference(obj):
        return getattr(obj, "name", "NUTS")
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return f"samples{i}"
    return getattr(obj, "name", None) or type(obj).__name__


def _reference(reference: Any, target: Any, n_ref: int, seed: int):
    """(info dict, reference samples (n_ref', d) float64, NUTS draws or None)."""
    if _is_reference(reference):
        draws = np.asarray(reference.draws, dtype=np.float64)
        total = draws.shape[0] * draws.shape[1]
        x = reference.samples(min(n_ref, total)).to(torch.float64) if n_ref < total else \
            torch.from_numpy(draws.reshape(-1, draws.shape[2]).copy())
        info = {"name": getattr(reference, "name", "NUTS"), "kind": "nuts", "n": int(x.shape[0]),
                "reliable": bool(reference.reliable), "reasons": list(reference.reasons),
                "summary": reference.summary()}
        if target is not None and getattr(target, "has_exact_sampler", False):
            info["notes"] = ["the target has an exact sampler: prefer exact samples as the "
                             "reference (NUTS can be biased or miss modes)"]
        return info, x, draws
    if _looks_like_target(reference) or (reference is None and target is not None):
        t = reference if reference is not None else target
        if not getattr(t, "has_exact_sampler", False):
            raise ValueError(
                f"reference: target {getattr(t, 'name', t)!r} has no exact sampler; pass NUTS draws "
                "(freeflow.reference.nuts(target)) as the reference")
        g = torch.Generator().manual_seed(20_000 + int(seed))
        x = t.sample(n_ref, g).to(torch.float64)
        return {"name": "exact", "kind": "exact", "n": int(x.shape[0]), "reliable": True,
                "reasons": []}, x, None
    if isinstance(reference, (torch.Tensor, np.ndarray)) or hasattr(reference, "__array__"):
        x = _as_tensor(reference, "reference")
        if not torch.isfinite(x).all():
            raise ValueError("reference contains non-finite values")
        kind = "exact" if target is not None and getattr(target, "has_exact_sampler", False) else "samples"
        return {"name": "reference samples", "kind": kind, "n": int(x.shape[0]), "reliable": True,
                "reasons": []}, x, None
    raise TypeError(
        f"reference must be samples (tensor/array), a NUTS Reference or a Target, got "
        f"{type(reference).__name__}")


def _reference_halves(x: torch.Tensor, draws: np.ndarray | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if draws is not None and draws.shape[0] >= 2:
        c = draws.shape[0]
        t = torch.from_numpy(draws.copy())
        flat = lambda idx: t[idx].reshape(-1, t.shape[2])  # noqa: E731
        splits = [(flat(list(range(0, c, 2))), flat(list(range(1, c, 2))))]
        if c >= 4:
            splits.append((flat(list(range(c // 2))), flat(list(range(c // 2, c)))))
        # thin to at most len(x) points per half, keeping the chains' order
        out = []
        for a, b in splits:
            k = min(a.shape[0], max(x.shape[0] // 2, 2))
            ia = torch.linspace(0, a.shape[0] - 1, k).round().long()
            ib = torch.linspace(0, b.shape[0] - 1, k).round().long()
            out.append((a[ia], b[ib]))
        return out
    h = x.shape[0] // 2
    if h < 5:
        raise ValueError("reference must hold at least 10 samples")
    return [(x[:h], x[h : 2 * h]), (x[0::2][:h], x[1::2][:h])]


def _time_sample(obj: Any, n: int) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    with torch.no_grad():
        # a Posterior's sampler: the unconstrained draws (sample() gives named parameters)
        x = getattr(obj, "sample_unconstrained", obj.sample)(n)
    dt = time.perf_counter() - t0
    if isinstance(x, tuple):  # (samples, log_q) samplers
        x = x[0]
    return _as_tensor(x, "samples"), dt


def _run_method(obj: Any, name: str, n: int, target: Any, seed: int) -> MethodResult:
    if _is_reference(obj):
        draws = np.asarray(obj.draws, dtype=np.float64)
        total = draws.shape[0] * draws.shape[1]
        x = obj.samples(min(n, total)).to(torch.float64)
        ess = min(float(obj.ess_bulk), float(obj.ess_tail))
        samp_s = float(obj.timings.get("sampling_s", float("nan")))
        costs = {"train_s": float(obj.timings.get("warmup_s", float("nan"))),
                 "s_per_1e4": samp_s / total * 1e4, "ess": ess,
                 "ess_per_s": ess / samp_s if samp_s > 0 else None,
                 "seconds_per_effective_sample": samp_s / ess if ess > 0 else None}
        res = MethodResult(name, "nuts", x, costs=costs, draws=draws)
        res.notes.append(f"{total} draws; ESS = min bulk/tail ESS over coordinates (arviz); "
                         f"ESS/s over the {samp_s:.1f} s of sampling after warmup")
        if not obj.reliable:
            res.flags.append("unreliable NUTS run: " + "; ".join(obj.reasons))
        return res
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        x = _as_tensor(obj, name)
        if x.shape[0] < n:
            raise ValueError(f"method {name!r} has {x.shape[0]} samples, fewer than n={n}")
        return MethodResult(name, "samples", x[:n], costs={"train_s": None, "s_per_1e4": None,
                                                             "ess": float(n), "ess_per_s": None})
    if not callable(getattr(obj, "sample", None)):
        raise TypeError(f"method {name!r}: expected a sampler with .sample(n), a NUTS Reference or "
                        f"samples, got {type(obj).__name__}")
    torch.manual_seed(seed)
    x, dt = _time_sample(obj, n)
    if x.shape[0] != n:
        raise ValueError(f"method {name!r}: sample({n}) returned {x.shape[0]} rows")
    n_bad = int((~torch.isfinite(x).all(1)).sum())
    kind = getattr(obj, "kind", None) or ("freeflow" if type(obj).__name__ == "OneStepSampler" else "sampler")
    res = MethodResult(name, kind, x)
    if n_bad:
        res.flags.append(f"{n_bad} of {n} samples are non-finite (dropped before the metrics)")
        res.samples = x[torch.isfinite(x).all(1)]
    train_s = _train_seconds(obj)
    res.costs = {"train_s": train_s, "s_per_1e4": dt / n * 1e4, "ess": float(res.samples.shape[0]),
                 "ess_per_s": res.samples.shape[0] / dt if dt > 0 else None,
                 "seconds_per_effective_sample": dt / max(res.samples.shape[0], 1)}
    if kind == "svgd":
        res.notes.append("SVGD particles are an interacting set, not independent draws; "
                         "ESS = particle count is optimistic (and sample time is just indexing)")
    else:
        res.notes.append("independent samples: ESS = sample count")
    if target is not None and callable(getattr(obj, "sample_and_log_prob", None)):
        try:
            with torch.no_grad():
                xs, log_q = obj.sample_and_log_prob(n)
                log_w = target.log_prob(xs.double()) - log_q.double()
            log_w = log_w[torch.isfinite(log_w)]
            w = torch.softmax(log_w, 0)
            res.costs["is_ess_frac"] = float(1.0 / (w**2).sum()) / n
            res.notes.append(f"importance-sampling ESS / n = {res.costs['is_ess_frac']:.3f}")
        except Exception as e:  # noqa: BLE001 - optional extra
            res.notes.append(f"importance weights unavailable: {type(e).__name__}: {e}")
    return res


def _train_seconds(obj: Any) -> float | None:
    for attr in ("train_seconds", "training_seconds", "fit_seconds"):
        v = getattr(obj, attr, None)
        if isinstance(v, (int, float)):
            return float(v)
    return None


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


def _jsonable(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "method"


def _save_fig(plt, fig, out: Path, fname: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(out / fname, buf.getvalue())
    return fname


def _pair_dims(report: Report, d: int, k: int) -> list[int]:
    """The coordinates to plot: the k with the largest mean error over methods (all if d <= k)."""
    if d <= k:
        return list(range(d))
    err = np.zeros(d)
    for m in report.methods:
        if "mean_err" in m.metrics:
            err = np.maximum(err, np.asarray(m.metrics["mean_err"]))
    return sorted(np.argsort(-err)[:k].tolist())


def _pairs_figure(plt, ref: np.ndarray, x: np.ndarray, dims: list[int], ref_name: str, name: str):
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


def _modes_figure(plt, mode_info: dict, methods: list[MethodResult]):
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


def _trace_figure(plt, draws: np.ndarray, dims: list[int], name: str):
    k = len(dims)
    fig, axes = plt.subplots(k, 1, figsize=(8, 1.6 * k), squeeze=False, sharex=True)
    for i, di in enumerate(dims):
        for c in range(draws.shape[0]):
            axes[i, 0].plot(draws[c, :, di], lw=0.4, alpha=0.8)
        axes[i, 0].set_ylabel(f"x{di}")
    axes[-1, 0].set_xlabel("draw")
    fig.suptitle(f"{name}: traces per chain")
    return fig
