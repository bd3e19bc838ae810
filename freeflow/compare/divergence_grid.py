"""The divergence grid's cells: which divergences, targets and generator settings, the budget,
and the name and sampler settings of each cell (:mod:`freeflow.compare.divergences` runs them).

A *cell* is one training run: a target × a generator setting × a divergence × a seed, with the
same budget in generator evaluations (``steps × batch_size``) for every divergence.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from ..divergences import get_divergence
from ..validation import suggest

__all__ = ["DIVERGENCES", "TARGETS", "GENERATOR_SETTINGS", "FULL", "QUICK", "GridSpec", "parse_target",
           "check_divergence_spec", "cell_settings", "cell_name"]

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


# -- parsing -------------------------------------------------------------------------------------
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
