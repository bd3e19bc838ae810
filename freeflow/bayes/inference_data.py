"""arviz InferenceData for a :class:`~freeflow.Posterior`: freeflow's draws and NUTS's in one layout.

Groups (arviz 0.2x, ``az.from_dict``):

* ``posterior``: one variable per parameter with its constrained values, shape
  (chain, draw, *shape), dims ``<name>_dim_0, <name>_dim_1, ...`` unless the Posterior names
  them (``dims=``, or a PyMC model's dims); then the derived quantities (a PPL model's
  deterministic sites).  freeflow's independent draws are split into ``chains`` pseudo-chains
  of consecutive draws (R-hat ≈ 1 and arviz's ESS ≈ n for i.i.d. draws).
* ``sample_stats``: ``lp`` (log p̃ of the unconstrained draw, the density the sampler saw).
  Where log q is exact (the default mixture/flow generators): ``log_q`` and ``log_weight`` =
  log p̃ − log q (log importance weights, unnormalised), with attributes ``pareto_k``
  (PSIS k̂), ``ess`` (importance ESS = n / (n Σ w̄²) · n), ``ess_fraction``,
  ``log_normalizer`` and its ``log_normalizer_se``.  NUTS references carry ``diverging``.
* ``log_likelihood``: log p(y_i | θ) per observation and draw, (chain, draw, *obs_shape),
  where the Posterior has it (a NumPyro or PyMC model's observed sites; ``ff.Posterior(...,
  log_likelihood=fn)``): ``az.loo`` / ``az.waic`` run on it, and :func:`freeflow.loo` gives
  PSIS-LOO weighted by the draws' importance weights.
* ``posterior_predictive`` (when asked): one y_rep per draw, NumPyro's ``Predictive``, PyMC's
  ``sample_posterior_predictive`` or the Posterior's ``predictive=fn``.
* ``observed_data`` / ``constant_data``: what the Posterior holds (a NumPyro model's observed
  sites and array arguments; a PyMC model's observations and data containers).

``az.summary``, ``az.plot_pair``, ``az.plot_forest([idata_ff, idata_nuts])`` then work
with the model's own names; :func:`side_by_side` tabulates both posteriors' means and sds.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from .. import importance as _iw
from ..interop import _as_numpy, _from_dict, draw_counts
from .posterior import Posterior

__all__ = ["draws_inference_data", "sampler_inference_data", "nuts_inference_data", "side_by_side"]


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
    log_likelihood: bool | None = None,
    posterior_predictive: bool = False,
    seed: int | None = None,
):
    """InferenceData from unconstrained draws ``z`` of shape (chains, draws, posterior.dim).

    ``sample_stats``: extra per-draw arrays of shape (chains, draws); ``lp`` is added.
    ``log_likelihood``: None adds the group where the Posterior has a log-likelihood, True
    requires it (ValueError otherwise), False leaves it out.  ``posterior_predictive``: add
    y_rep draws (seeded by ``seed``)."""
    if not isinstance(posterior, Posterior):
        raise TypeError(f"posterior must be a freeflow.Posterior, got {type(posterior).__name__}")
    z = torch.from_numpy(_as_numpy(z))
    if z.ndim != 3 or z.shape[2] != posterior.dim:
        raise ValueError(f"draws must have shape (chains, draws, {posterior.dim}), got {tuple(z.shape)}")
    chains, per = z.shape[:2]
    flat = z.reshape(-1, posterior.dim)
    keep = _select(posterior, var_names)
    if log_likelihood and not posterior.has_log_likelihood:
        raise ValueError(f"log_likelihood=True, but posterior {posterior.name!r} has no per-observation "
                         "log-likelihood: pass log_likelihood=fn to ff.Posterior, or use a NumPyro/PyMC "
                         "model with observed sites")
    with_ll = posterior.has_log_likelihood if log_likelihood is None else bool(log_likelihood)
    values, lp, ll = {}, [], {}
    with torch.no_grad():
        for part in flat.split(16384):
            vals = posterior.constrain(part)
            for k in keep:
                values.setdefault(k, []).append(vals[k].detach().to(torch.float64))
            lp.append(posterior.log_density(part).detach().to(torch.float64))
            if with_ll:
                for k, v in posterior.pointwise_log_likelihood(part).items():
                    ll.setdefault(k, []).append(v.detach().to(torch.float64))

    def shaped(parts):
        return torch.cat(parts).reshape((chains, per) + tuple(parts[0].shape[1:])).numpy()

    post = {k: shaped(v) for k, v in values.items()}
    stats = {"lp": torch.cat(lp).reshape(chains, per).numpy()}
    for k, v in (sample_stats or {}).items():
        v = _as_numpy(v) if not isinstance(v, np.ndarray) or v.dtype != bool else v
        if v.shape[:2] != (chains, per):
            raise ValueError(f"sample_stats[{k!r}] must have shape ({chains}, {per}, ...), got {v.shape}")
        stats[k] = v
    groups = {"posterior": post, "sample_stats": stats}
    if with_ll:
        groups["log_likelihood"] = {k: shaped(v) for k, v in ll.items()}
    if posterior_predictive:
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        pred = posterior.predict(flat, seed=seed)
        groups["posterior_predictive"] = {k: _as_numpy(v).reshape((chains, per) + tuple(v.shape[1:]))
                                          for k, v in pred.items()}
    observed = (set(posterior.observed_data) | set(groups.get("log_likelihood", {}))
                | set(groups.get("posterior_predictive", {})))
    dims = {k: posterior.dims[k] for k in list(keep) + sorted(observed) if k in posterior.dims}
    coords = {k: v for k, v in posterior.coords.items()}
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


def sampler_inference_data(sampler: Any, draws: int | None = None, chains: int = 4, *, seed: int | None = None,
                           var_names: Sequence[str] | None = None, n: int | None = None,
                           log_likelihood: bool | None = None, posterior_predictive: bool = False):
    """InferenceData of ``draws`` fresh draws per chain (``chains`` pseudo-chains of i.i.d.
    draws) of a :class:`~freeflow.OneStepSampler` built on a Posterior:
    ``sampler.to_inference_data(draws=1000, chains=4, seed=0)``.  ``n`` is the deprecated total.
    The same ``seed`` gives the same InferenceData (draws, and the predictive draws seeded from
    it).  Log importance weights, Pareto k̂ and the importance ESS are in ``sample_stats`` where
    the generator's log q is exact (see module docstring); the fit's verdict in the attrs."""
    posterior = getattr(sampler, "posterior", None)
    if not isinstance(posterior, Posterior):
        raise TypeError("sampler_inference_data needs a OneStepSampler built on a freeflow.Posterior")
    per, chains = draw_counts(draws, chains, n, stacklevel=4)
    if seed is not None:
        from ..validation import check_seed

        check_seed(seed)
    total = per * chains
    exact = sampler.exact_log_q  # declared by the generator registry
    stats, stats_attrs = {}, {}
    if exact:
        x, log_q = sampler.sample_and_log_prob(total, seed=seed)
        with torch.no_grad():
            log_p = _iw.log_density_at(posterior.log_density, x)
        lw = _iw.log_importance_weights(log_p, log_q)
        finite = torch.isfinite(lw)
        log_z, se = _iw.log_normalizer(lw[finite]) if finite.any() else (math.nan, math.nan)
        frac = _iw.reverse_ess(lw[finite]) if finite.any() else 0.0
        stats = {"log_q": _split(log_q.double(), chains), "log_weight": _split(lw, chains)}
        stats_attrs = {"pareto_k": float(_iw.pareto_k(lw[finite])) if finite.sum() > 10 else math.inf,
                       "ess": float(frac * total), "ess_fraction": float(frac),
                       "log_normalizer": float(log_z), "log_normalizer_se": float(se),
                       "log_weight": "log p̃(z) − log q(z), unnormalised, exact log q"}
    else:
        x = sampler.sample_unconstrained(total, seed=seed)
        stats_attrs = {"log_weight": f"unavailable: density={sampler.density_name!r} gives no exact log q"}
    return draws_inference_data(posterior, _split(x, chains), sample_stats=stats, sample_stats_attrs=stats_attrs,
                                attrs=fit_attrs(sampler), var_names=var_names, log_likelihood=log_likelihood,
                                posterior_predictive=posterior_predictive,
                                seed=None if seed is None else seed + 1)


def fit_attrs(sampler: Any) -> dict[str, Any]:
    """What a fit leaves in the InferenceData attrs: library, generator, steps, seconds and the
    reliability verdict (``reliability``: the verdict's text, or "not checked"; ``trusted``: 1,
    0, or -1 for unverified / not checked; ``coordinates``: the model as written or the twin
    training ran in; ``stopped_early``: where a time limit ended training)."""
    attrs = {"inference_library": "freeflow", "generator": sampler.generator_name,
             "steps": int(sampler.steps_done), "training_seconds": float(sampler.training_seconds)}
    rel = getattr(sampler, "last_reliability", None)
    attrs["reliability"] = "not checked (fit(check=False))" if rel is None else str(rel.verdict)
    attrs["trusted"] = -1 if rel is None else {True: 1, False: 0}.get(rel.trusted, -1)
    rep = getattr(sampler, "reparam", None)   # trained in a non-centred twin (freeflow.bayes.reparam)
    attrs["coordinates"] = rep.label if rep is not None else "as written"
    if getattr(sampler, "stop_reason", None):   # fit(time_limit=) ended training early
        attrs["stopped_early"] = str(sampler.stop_reason)
    return attrs


def nuts_inference_data(posterior: Posterior, reference: Any = None, *, var_names: Sequence[str] | None = None,
                        log_likelihood: bool | None = None, posterior_predictive: bool = False,
                        predictive_seed: int = 0, **nuts_kwargs):
    """NUTS draws of ``posterior`` in the same layout as freeflow's (real chains, ``diverging``).

    ``reference``: a :class:`freeflow.compare.reference.Reference` run on ``posterior`` (or on
    ``posterior.log_density``); without one, ``freeflow.compare.reference.nuts(posterior, **nuts_kwargs)``
    is run (JAX-native for a NumPyro model, through the torch bridge otherwise).  The
    ``log_likelihood`` group is added as for freeflow's draws (``az.loo`` of both compare)."""
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
    return draws_inference_data(posterior, draws, sample_stats=stats, attrs=attrs, var_names=var_names,
                                log_likelihood=log_likelihood, posterior_predictive=posterior_predictive,
                                seed=predictive_seed)


def _scalar_labels(da) -> list[str]:
    """arviz-style labels of the scalars of one posterior variable: ``mu``, ``eta[0]``, ``w[feature_a]``."""
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    if not dims:
        return [str(da.name)]
    values = [list(da.coords[d].values) if d in da.coords else list(range(da.sizes[d])) for d in dims]
    return [f"{da.name}[{', '.join(str(values[j][i]) for j, i in enumerate(idx))}]"
            for idx in np.ndindex(*(len(v) for v in values))]


def side_by_side(idata_a: Any, idata_b: Any, *, names: Sequence[str] = ("freeflow", "NUTS"),
                 var_names: Sequence[str] | None = None):
    """A pandas DataFrame comparing two InferenceData of the same model, one row per scalar.

    Columns: ``<a> mean``, ``<a> sd``, ``<b> mean``, ``<b> sd`` (over chains and draws, sd with
    ddof=1), then ``mean diff`` = (mean_a − mean_b) / sd_b and ``sd diff`` = (sd_a − sd_b) / sd_b:
    the differences in units of the second posterior's sd (``idata_b`` is the reference, e.g.
    ``nuts_inference_data``).  ``var_names``: default, the posterior variables both hold, in
    ``idata_a``'s order; the variables must have the same dims and sizes in both."""
    import pandas as pd

    if len(names) != 2:
        raise ValueError(f"names must be two labels, got {names!r}")
    pa, pb = idata_a.posterior, idata_b.posterior
    if var_names is None:
        var_names = [v for v in pa.data_vars if v in pb.data_vars]
        if not var_names:
            raise ValueError("the two InferenceData have no posterior variable in common")
    elif isinstance(var_names, str):
        var_names = [var_names]
    a_name, b_name = (str(n) for n in names)
    rows, index = [], []
    for v in var_names:
        for group, label in ((pa, a_name), (pb, b_name)):
            if v not in group.data_vars:
                raise ValueError(f"variable {v!r} is not in the {label} posterior; it has {list(group.data_vars)}")
        da, db = pa[v], pb[v]
        inner_a = {d: da.sizes[d] for d in da.dims if d not in ("chain", "draw")}
        inner_b = {d: db.sizes[d] for d in db.dims if d not in ("chain", "draw")}
        if inner_a != inner_b:
            raise ValueError(f"variable {v!r} has dims {inner_a} in {a_name} but {inner_b} in {b_name}")
        stats = []
        for x in (da, db):
            arr = x.transpose("chain", "draw", *inner_a).values.astype(np.float64)
            flat = arr.reshape(arr.shape[0] * arr.shape[1], -1)
            stats.append((flat.mean(0), flat.std(0, ddof=1)))
        (ma, sa), (mb, sb) = stats
        for j, label in enumerate(_scalar_labels(da.transpose("chain", "draw", *inner_a))):
            index.append(label)
            rows.append((ma[j], sa[j], mb[j], sb[j], (ma[j] - mb[j]) / sb[j], (sa[j] - sb[j]) / sb[j]))
    cols = [f"{a_name} mean", f"{a_name} sd", f"{b_name} mean", f"{b_name} sd", "mean diff", "sd diff"]
    return pd.DataFrame(rows, index=pd.Index(index, name="scalar"), columns=cols)
