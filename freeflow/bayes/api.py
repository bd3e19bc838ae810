"""One call from a model to an InferenceData: :func:`sample`, :func:`predictive`, :func:`print_summary`.

    idata = ff.sample(eight_schools, model_args=(sigma,), model_kwargs={"y": y},
                      draws=1000, chains=4, seed=0)      # NumPyro model: build, fit, export
    idata = ff.sample(pm_model)                          # a PyMC model
    idata = ff.sample(posterior)                         # an ff.Posterior
    idata = ff.sample(log_density, dim=2)                # a plain log-density on R^d
    ff.print_summary(idata)                              # mean, sd, quantiles, ess, r_hat, verdict
    az.loo(idata); ff.loo(idata)                         # PSIS-LOO, raw and importance-weighted

``draws`` counts draws per chain, as PyMC does; ``chains`` pseudo-chains of i.i.d. draws.  The
fit's verdict lands in ``idata.attrs`` (``reliability``, ``trusted``) and in the posterior's
attrs; log importance weights and Pareto k̂ in ``sample_stats``.  An untrusted fit warns
(:class:`~freeflow.ReliabilityWarning`) as ``fit()`` does.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..interop import draw_counts
from .build import build_sampler, split_options
from .inference_data import fit_attrs, sampler_inference_data

__all__ = ["sample", "predictive", "print_summary", "build_sampler"]


def sample(model: Any, draws: int = 1000, chains: int = 4, seed: int = 0, *, model_args: Sequence = (),
           model_kwargs: dict | None = None, dim: int | None = None, init: Any = None,
           log_likelihood: bool | None = None, posterior_predictive: bool = False,
           return_sampler: bool = False, **options):
    """Build a sampler for ``model``, ``fit()`` it and return an arviz InferenceData.

    Args:
        model: a NumPyro model function (called with ``*model_args, **model_kwargs``), a PyMC
            model, an :class:`~freeflow.Posterior`, a plain log-density ``(n, d) -> (n,)`` with
            ``dim=``, or a :class:`~freeflow.OneStepSampler` (fitted unless already trained).
        draws, chains: draws per chain and number of (pseudo-)chains: draws·chains i.i.d. draws.
        seed: seeds the sampler (initialisation, training) and the exported draws.
        init: a fitted OneStepSampler of the same model on other data: warm start from its
            generator, then check and train only while the check fails (:mod:`freeflow.bayes.warm`;
            fit options ``round_steps``, ``max_steps``, ``steps``, ``progress``).
        log_likelihood, posterior_predictive: the InferenceData groups (see
            ``OneStepSampler.to_inference_data``).
        return_sampler: also return the fitted sampler: ``(idata, sampler)``.
        **options: ``OneStepSampler.fit`` arguments (``steps``, ``progress``, ``checkpoint``,
            ...) go to ``fit``; the rest to the ``OneStepSampler`` constructor (``divergence``,
            ``generator``, settings).
    """
    from ..datafree.sampler import OneStepSampler
    from ..validation import check_seed

    draws, chains = draw_counts(draws, chains)  # before the fit: bad counts fail fast
    check_seed(seed)
    ctor, fit_options = split_options(options, ("round_steps", "max_steps") if init is not None else ())
    if isinstance(model, OneStepSampler):
        if ctor or model_args or model_kwargs or dim is not None or init is not None:
            raise TypeError("model is an already built OneStepSampler: sampler options, model_args, "
                            "model_kwargs, dim and init do not apply")
        sampler = model
        if sampler.steps_done == 0 or fit_options:
            sampler.fit(**fit_options)
    elif init is not None:
        from .warm import warm_fit, warm_start

        if ctor:
            raise TypeError(f"init= warm-starts with the previous sampler's settings; {sorted(ctor)} do not apply")
        sampler = warm_fit(warm_start(init, model, model_args=model_args, model_kwargs=model_kwargs), **fit_options)
    else:
        sampler = build_sampler(model, seed=seed, model_args=model_args, model_kwargs=model_kwargs, dim=dim, **ctor)
        sampler.fit(**fit_options)
    if sampler.posterior is not None:
        idata = sampler_inference_data(sampler, draws, chains, seed=seed, log_likelihood=log_likelihood,
                                       posterior_predictive=posterior_predictive)
    else:
        idata = sampler.to_inference_data(draws, chains, seed=seed, log_likelihood=log_likelihood,
                                          posterior_predictive=posterior_predictive)
        idata.posterior.attrs.update(fit_attrs(sampler))
    idata.attrs.update(fit_attrs(sampler))
    return (idata, sampler) if return_sampler else idata


def predictive(sampler: Any, draws: int | None = None, chains: int = 4, *, seed: int | None = None,
               n: int | None = None):
    """Posterior predictive draws of a fitted sampler built on a model: an InferenceData with
    the groups ``posterior_predictive`` ((chain, draw, *obs_shape), one y_rep per posterior
    draw) and ``observed_data``; the same as ``sampler.to_inference_data(draws, chains,
    seed=seed, posterior_predictive=True)``'s.  NumPyro: ``numpyro.infer.Predictive`` on the
    constrained draws; PyMC: ``pm.sample_posterior_predictive``; ``ff.Posterior``: its
    ``predictive=fn``.  A sampler of a plain log-density has no model: ValueError."""
    import arviz as az

    posterior = getattr(sampler, "posterior", None)
    if posterior is None:
        raise ValueError("sampler: posterior predictive draws need a model (ff.from_numpyro, ff.from_pymc, "
                         "or ff.Posterior(..., predictive=fn)); this sampler samples a plain log_density")
    if not posterior.has_predictive:
        raise ValueError(f"sampler: its posterior {posterior.name!r} cannot draw predictions; pass "
                         "predictive=fn to ff.Posterior (fn(values, generator) -> y_rep (n, *obs_shape))")
    full = sampler_inference_data(sampler, draws, chains, seed=seed, n=n, log_likelihood=False,
                                  posterior_predictive=True)
    return az.InferenceData(**{g: full[g] for g in ("posterior_predictive", "observed_data") if g in full.groups()})


def _verdict_lines(idata: Any) -> list[str]:
    lines = []
    attrs = {**dict(getattr(idata, "attrs", {}) or {}), **dict(idata.posterior.attrs)}
    if "reliability" in attrs:
        lines.append(f"freeflow verdict: {attrs['reliability']}")
    if "sample_stats" in idata.groups():
        st = idata.sample_stats
        khat, ess = st.attrs.get("pareto_k", st.attrs.get("pareto_khat")), st.attrs.get("ess")  # (older files: pareto_khat)
        if khat is not None and ess is not None:
            total = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
            lines.append(f"importance weights: Pareto k̂ = {khat:.2f}, ESS = {ess:.0f} of {total} draws")
        if "diverging" in st:
            lines.append(f"Number of divergences: {int(np.asarray(st['diverging']).sum())}")
    return lines


def print_summary(idata_or_sampler: Any, *, var_names: Sequence[str] | None = None, prob: float = 0.9,
                  draws: int = 1000, chains: int = 4, seed: int = 0, file: Any = None) -> str:
    """Print a NumPyro-style table (mean, sd, median, the central ``prob`` interval, bulk ESS,
    R-hat; arviz's estimates) and freeflow's verdict line; returns the text.

    ``idata_or_sampler``: an InferenceData (freeflow's or any other), or a fitted sampler
    (exported with ``to_inference_data(draws, chains, seed=seed)`` first)."""
    import arviz as az

    if not hasattr(idata_or_sampler, "groups"):
        if not hasattr(idata_or_sampler, "to_inference_data"):
            raise TypeError(f"idata_or_sampler must be an arviz InferenceData or a OneStepSampler, got "
                            f"{type(idata_or_sampler).__name__}")
        idata = idata_or_sampler.to_inference_data(draws, chains, seed=seed, log_likelihood=False)
    else:
        idata = idata_or_sampler
    if not (isinstance(prob, float) and 0 < prob < 1):
        raise ValueError(f"prob must be a float in (0, 1), got {prob!r}")
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    lo_name, hi_name = f"{100 * lo:.1f}%", f"{100 * hi:.1f}%"
    funcs = {"median": np.median, lo_name: lambda x: np.quantile(x, lo), hi_name: lambda x: np.quantile(x, hi)}
    table = az.summary(idata, var_names=var_names, kind="all", stat_funcs=funcs, extend=True)
    table = table[["mean", "sd", "median", lo_name, hi_name, "ess_bulk", "r_hat"]].rename(
        columns={"ess_bulk": "n_eff"})
    def fmt(digits):
        return lambda v: f"{v:.{digits}f}" if math.isfinite(v) else "nan"

    text = table.to_string(formatters={c: fmt(0 if c == "n_eff" else 2) for c in table.columns})
    out = "\n".join([text, "", *_verdict_lines(idata)]) + "\n"
    print(out, file=file if file is not None else None, end="")
    return out
