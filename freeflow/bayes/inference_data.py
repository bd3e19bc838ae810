"""arviz InferenceData for a :class:`~freeflow.Posterior`: freeflow's draws and NUTS's in one layout.

Groups (arviz 0.2x, ``az.from_dict``):

* ``posterior``: one variable per parameter with its constrained values, shape
  (chain, draw, *shape), dims ``<name>_dim_0, <name>_dim_1, ...`` unless the Posterior names
  them (``dims=``, or a PyMC model's dims); then the derived quantities (a PPL model's
  deterministic sites).  freeflow's independent draws are split into ``chains`` pseudo-chains
  of consecutive draws (R-hat ≈ 1 and arviz's ESS ≈ n for i.i.d. draws).
* ``sample_stats``: ``lp`` (log p̃ of the unconstrained draw, the density the sampler saw).
  Where log q is exact (the default mixture/flow generators): ``log_q`` and ``log_weight`` =
  log p̃ − log q (log importance weights, unnormalised), with attributes ``pareto_khat``
  (PSIS k̂), ``ess`` (importance ESS = n / (n Σ w̄²) · n), ``ess_fraction``,
  ``log_normalizer`` and its ``log_normalizer_se``.  NUTS references carry ``diverging``.
* ``observed_data`` / ``constant_data``: what the Posterior holds (a NumPyro model's observed
  sites and array arguments; a PyMC model's observations and data containers).

``az.summary``, ``az.plot_pair``, ``az.plot_forest([idata_ff, idata_nuts])`` then work
with the model's own names.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from .. import importance as _iw
from ..interop import _as_numpy, _from_dict
from .posterior import Posterior

__all__ = ["draws_inference_data", "sampler_inference_data", "nuts_inference_data"]


def _select(posterior: Posterior, var_names: Sequence[str] | None) -> list[str]:
    every = list(posterior.names) + list(posterior.derived_names)
    if var_names is None:
        return every
    if isinstance(var_names, str):
        var_names = [var_names]
    unknown = [v for v in var_names if v not in every]
    if unknown:
        raise ValueError(f"var_names {unknown} are not variables of {posterior.name!r}; "
                         f"its variables are {every}")
    return list(var_names)


def draws_inference_data(
    posterior: Posterior,
    z: Any,
    *,
    sample_stats: dict[str, Any] | None = None,
    sample_stats_attrs: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
    var_names: Sequence[str] | None = None,
):
    """InferenceData from unconstrained draws ``z`` of shape (chains, draws, posterior.dim).

    ``sample_stats``: extra per-draw arrays of shape (chains, draws); ``lp`` is added."""
    if not isinstance(posterior, Posterior):
        raise TypeError(f"posterior must be a freeflow.Posterior, got {type(posterior).__name__}")
    z = torch.from_numpy(_as_numpy(z))
    if z.ndim != 3 or z.shape[2] != posterior.dim:
        raise ValueError(f"draws must have shape (chains, draws, {posterior.dim}), got {tuple(z.shape)}")
    chains, per = z.shape[:2]
    flat = z.reshape(-1, posterior.dim)
    keep = _select(posterior, var_names)
    values, lp = {}, []
    with torch.no_grad():
        for part in flat.split(16384):
            vals = {**posterior.constrain(part), **posterior.derived(part)}
            for k in keep:
                values.setdefault(k, []).append(vals[k].detach().to(torch.float64))
            lp.append(posterior.log_density(part).detach().to(torch.float64))
    post = {k: torch.cat(v).reshape((chains, per) + tuple(v[0].shape[1:])).numpy() for k, v in values.items()}
    stats = {"lp": torch.cat(lp).reshape(chains, per).numpy()}
    for k, v in (sample_stats or {}).items():
        v = _as_numpy(v) if not isinstance(v, np.ndarray) or v.dtype != bool else v
        if v.shape[:2] != (chains, per):
            raise ValueError(f"sample_stats[{k!r}] must have shape ({chains}, {per}, ...), got {v.shape}")
        stats[k] = v
    dims = {k: posterior.dims[k] for k in keep if k in posterior.dims}
    coords = {k: v for k, v in posterior.coords.items()}
    groups = {"posterior": post, "sample_stats": stats}
    if posterior.observed_data:
        groups["observed_data"] = dict(posterior.observed_data)
    if posterior.constant_data:
        groups["constant_data"] = dict(posterior.constant_data)
    with warnings.catch_warnings():
        # arviz warns about data shapes it cannot match to dims ("More chains than draws" etc.)
        warnings.simplefilter("ignore", UserWarning)
        idata = _from_dict(groups, dims=dims or None, coords=coords or None)
    idata.posterior.attrs.update({"posterior": posterior.name, **(attrs or {})})
    if sample_stats_attrs:
        idata.sample_stats.attrs.update(sample_stats_attrs)
    return idata


def _split(x: torch.Tensor, chains: int) -> torch.Tensor:
    per = x.shape[0] // chains
    return x[: per * chains].reshape((chains, per) + tuple(x.shape[1:]))


def sampler_inference_data(sampler: Any, n: int = 4000, chains: int = 4, *, seed: int | None = None,
                           var_names: Sequence[str] | None = None):
    """InferenceData of n fresh draws of a :class:`~freeflow.OneStepSampler` built on a
    Posterior: ``sampler.to_inference_data(n)``.  Log importance weights, Pareto k̂ and the
    importance ESS are included where the generator's log q is exact (see module docstring)."""
    posterior = getattr(sampler, "posterior", None)
    if not isinstance(posterior, Posterior):
        raise TypeError("sampler_inference_data needs a OneStepSampler built on a freeflow.Posterior")
    for name, value in (("n", n), ("chains", chains)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if n < 2 * chains:
        raise ValueError(f"n must hold at least 2 draws per chain (chains={chains}), got n={n}")
    n = (int(n) // chains) * chains
    net = sampler.state.ema.module
    attrs = {"inference_library": "freeflow", "generator": sampler.generator_name,
             "steps": int(sampler.steps_done), "training_seconds": float(sampler.training_seconds)}
    rel = getattr(sampler, "last_reliability", None)
    if rel is not None:
        attrs["reliability"] = str(rel.verdict)
    stats, stats_attrs = {}, {}
    if hasattr(net, "forward_and_log_prob"):
        x, log_q = sampler.sample_and_log_prob(n, seed=seed)
        with torch.no_grad():
            log_p = torch.cat([posterior.log_density(c) for c in x.split(16384)])
        lw = _iw.log_importance_weights(log_p, log_q)
        finite = torch.isfinite(lw)
        log_z, se = _iw.log_normalizer(lw[finite]) if finite.any() else (math.nan, math.nan)
        frac = _iw.reverse_ess(lw[finite]) if finite.any() else 0.0
        stats = {"log_q": _split(log_q.double(), chains), "log_weight": _split(lw, chains)}
        stats_attrs = {"pareto_khat": float(_iw.pareto_khat(lw[finite])) if finite.sum() > 10 else math.inf,
                       "ess": float(frac * n), "ess_fraction": float(frac),
                       "log_normalizer": float(log_z), "log_normalizer_se": float(se),
                       "log_weight": "log p̃(z) − log q(z), unnormalised, exact log q"}
    else:
        x = sampler.sample_unconstrained(n, seed=seed)
        stats_attrs = {"log_weight": f"unavailable: density={sampler.density_name!r} gives no exact log q"}
    return draws_inference_data(posterior, _split(x, chains), sample_stats=stats,
                                sample_stats_attrs=stats_attrs, attrs=attrs, var_names=var_names)


def nuts_inference_data(posterior: Posterior, reference: Any = None, *, var_names: Sequence[str] | None = None,
                        **nuts_kwargs):
    """NUTS draws of ``posterior`` in the same layout as freeflow's (real chains, ``diverging``).

    ``reference``: a :class:`freeflow.compare.reference.Reference` run on ``posterior`` (or on
    ``posterior.log_density``); without one, ``freeflow.compare.reference.nuts(posterior, **nuts_kwargs)``
    is run (JAX-native for a NumPyro model, through the torch bridge otherwise)."""
    if reference is None:
        from ..compare.reference import nuts

        reference = nuts(posterior, **nuts_kwargs)
    elif nuts_kwargs:
        raise TypeError(f"nuts options {sorted(nuts_kwargs)} given together with a finished reference")
    draws = np.asarray(reference.draws, dtype=np.float64)
    if draws.ndim != 3 or draws.shape[2] != posterior.dim:
        raise ValueError(f"reference draws have shape {draws.shape}; posterior {posterior.name!r} "
                         f"has dimension {posterior.dim}")
    stats = {}
    if getattr(reference, "divergent", None) is not None:
        stats["diverging"] = np.asarray(reference.divergent, dtype=bool)
    attrs = {"inference_library": "blackjax NUTS (freeflow.compare.reference)",
             "backend": str(reference.settings.get("backend", "?")) if hasattr(reference, "settings") else "?"}
    return draws_inference_data(posterior, draws, sample_stats=stats, attrs=attrs, var_names=var_names)
