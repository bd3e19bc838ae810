"""Bayesian models in, InferenceData out: named constrained parameters (:class:`Posterior`),
NumPyro and PyMC models (:func:`from_numpyro`, :func:`from_pymc`), arviz export.

    idata = ff.sample(model, model_args=args, model_kwargs=kwargs, draws=1000, chains=4)
    ff.print_summary(idata); az.loo(idata); ff.loo(idata)   # importance-weighted PSIS-LOO

    post = ff.Posterior(log_joint, params={"mu": (), "tau": "positive", "theta": (8,)},
                        log_likelihood=loglik)       # optional: per-observation log p(y_i | θ)
    post = ff.from_numpyro(model, *args, **kwargs)
    post = ff.from_pymc(pm_model)
    sampler = ff.OneStepSampler(post); sampler.fit()
    idata = sampler.to_inference_data(draws=1000, chains=4, seed=0)   # az.summary, az.plot_pair
    pp = ff.predictive(sampler, draws=1000)           # posterior_predictive group
    idata_nuts = ff.bayes.nuts_inference_data(post)  # the same layout, for az.plot_forest
    ff.bayes.side_by_side(idata, idata_nuts)         # means and sds of both, differences in NUTS sd

NumPyro and PyMC are optional (``pip install 'freeflow[ppl]'``), imported when used.
"""
from .api import build_sampler, predictive, print_summary, sample
from .constraints import CONSTRAINTS, parse_spec
from .inference_data import draws_inference_data, nuts_inference_data, sampler_inference_data, side_by_side
from .loo import loo
from .posterior import Posterior
from .warm import warm_fit, warm_start, with_data


def from_numpyro(model, *args, **kwargs):
    from .ppl_numpyro import from_numpyro as _from_numpyro

    return _from_numpyro(model, *args, **kwargs)


def from_pymc(model=None, **kwargs):
    from .ppl_pymc import from_pymc as _from_pymc

    return _from_pymc(model, **kwargs)


from_numpyro.__doc__ = "A Posterior from a NumPyro model (see :func:`freeflow.bayes.ppl_numpyro.from_numpyro`)."
from_pymc.__doc__ = "A Posterior from a PyMC model (see :func:`freeflow.bayes.ppl_pymc.from_pymc`)."

__all__ = ["CONSTRAINTS", "Posterior", "build_sampler", "draws_inference_data", "from_numpyro", "from_pymc",
           "loo", "nuts_inference_data", "parse_spec", "predictive", "print_summary", "sample",
           "sampler_inference_data", "side_by_side", "warm_fit", "warm_start", "with_data"]
