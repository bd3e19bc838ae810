"""PyMC forms of zoo posteriors (``benchmarks/zoo_models.py``), written as a PyMC user writes
them: the same priors, likelihoods, data and parameter order as the NumPyro models, so the
same references (``benchmarks/results/zoo_reference/``) judge them.
``python benchmarks/posteriors_zoo.py --route pymc --models eight_schools_centered ...``"""
from __future__ import annotations

import numpy as np

import zoo_models as zm
from zoo_models_glm import poisson_data

__all__ = ["MODELS", "build"]


def eight_schools_centered():
    import pymc as pm

    sigma, y = zm.EIGHT_SIGMA, zm.EIGHT_Y
    with pm.Model(coords={"school": list(range(len(y)))}) as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        tau = pm.HalfCauchy("tau", 5.0)
        theta = pm.Normal("theta", mu, tau, dims="school")
        pm.Normal("y", theta, sigma, observed=y, dims="school")
    return model


def funnel10():
    import pymc as pm

    with pm.Model() as model:
        v = pm.Normal("v", 0.0, 3.0)
        pm.Normal("x", 0.0, pm.math.exp(v / 2.0), shape=9)
    return model


def poisson_hier():
    import pymc as pm

    exposure, y = poisson_data()
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 2.0)
        tau = pm.HalfNormal("tau", 1.0)
        a = pm.Normal("a", mu, tau, shape=len(y))
        pm.Poisson("y", np.asarray(exposure) * pm.math.exp(a), observed=y)
    return model


def irt_1pl():
    import pymc as pm
    from zoo_models_irt import irt_1pl_data

    (y,) = irt_1pl_data()
    with pm.Model() as model:
        delta = pm.Normal("mean_ability", 0.75, 1.0)
        ability = pm.Normal("ability", 0.0, 1.0, shape=y.shape[0])
        difficulty = pm.Normal("difficulty", 0.0, 1.0, shape=y.shape[1])
        pm.Bernoulli("y", logit_p=delta + ability[:, None] - difficulty[None, :], observed=y)
    return model


MODELS = {"eight_schools_centered": eight_schools_centered, "funnel10": funnel10, "poisson_hier": poisson_hier,
          "irt_1pl": irt_1pl}


def build(name: str):
    if name not in MODELS:
        raise ValueError(f"no PyMC form of {name!r}; the PyMC forms: {', '.join(MODELS)}")
    return MODELS[name]()
