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

import math
import time
from typing import Any, Sequence

import numpy as np
import torch

from ..validation import check_positive_int, check_seed
from .report import FLAG_FACTOR, MethodResult, Report


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
        baseline), a NUTS :class:`~freeflow.compare.reference.Reference`, a tensor/array (n, d) of
        samples, or a list/tuple/dict of these (a dict gives the names).
    reference : exact samples (tensor/array), a NUTS Reference, or a Target with an exact
        sampler (then ``n_ref`` exact samples are drawn).
    n : samples drawn from each sampler (tensors and NUTS draws are cut / thinned to n).
    target : the Target, for exact noise floors, mode masses and target diagnostics.
    names : a name per method.
    """
    from .. import metrics as M

    n = check_positive_int(n, "n")
    if n < 10:
        raise ValueError(f"n must be >= 10, got {n}")
    if n_ref is not None:
        check_positive_int(n_ref, "n_ref")
    check_seed(seed)
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
                "(freeflow.compare.reference.nuts(target)) as the reference")
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


