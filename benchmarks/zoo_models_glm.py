"""Three more posteriors of the zoo (benchmarks/zoo_models.py registers them), written as users
write them: a hierarchical Poisson model with centred group effects, a logistic regression with
a centred horseshoe prior, and a Student-t regression with unknown degrees of freedom. Data are
simulated with fixed seeds; ``*_twin`` is the same posterior written non-centred (the NUTS
reference runs on it where the model as written diverges)."""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist


# -- 9.-11. a hierarchical Poisson model, a horseshoe regression, a robust regression ------------
def poisson_hier(exposure, y):
    """Counts of 20 groups with exposures, centred log-rates a_g ~ N(mu, tau) (a funnel in tau)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    with numpyro.plate("g", len(y)):
        a = numpyro.sample("a", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Poisson(exposure * jnp.exp(a)), obs=y)


def poisson_hier_twin(exposure, y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    with numpyro.plate("g", len(y)):
        a_std = numpyro.sample("a_std", dist.Normal(0.0, 1.0))
        a = numpyro.deterministic("a", mu + tau * a_std)
        numpyro.sample("y", dist.Poisson(exposure * jnp.exp(a)), obs=y)


@functools.lru_cache(maxsize=None)
def poisson_data(seed: int = 20270106, groups: int = 20):
    rng = np.random.default_rng(seed)
    exposure = rng.uniform(0.5, 3.0, size=groups)
    return exposure, rng.poisson(exposure * np.exp(rng.normal(0.2, 0.3, size=groups))).astype(float)


def horseshoe_logreg(X, y):
    """Logistic regression with a (centred) horseshoe prior: beta_j ~ N(0, (tau lambda_j)^2)."""
    tau = numpyro.sample("tau", dist.HalfCauchy(1.0))
    lam = numpyro.sample("lam", dist.HalfCauchy(1.0).expand([X.shape[1]]))
    beta = numpyro.sample("beta", dist.Normal(0.0, tau * lam))
    b0 = numpyro.sample("b0", dist.Normal(0.0, 5.0))
    numpyro.sample("y", dist.Bernoulli(logits=b0 + X @ beta), obs=y)


def horseshoe_logreg_twin(X, y):
    tau = numpyro.sample("tau", dist.HalfCauchy(1.0))
    lam = numpyro.sample("lam", dist.HalfCauchy(1.0).expand([X.shape[1]]))
    beta_std = numpyro.sample("beta_std", dist.Normal(0.0, 1.0).expand([X.shape[1]]))
    beta = numpyro.deterministic("beta", tau * lam * beta_std)
    b0 = numpyro.sample("b0", dist.Normal(0.0, 5.0))
    numpyro.sample("y", dist.Bernoulli(logits=b0 + X @ beta), obs=y)


@functools.lru_cache(maxsize=None)
def horseshoe_data(seed: int = 20270107, n: int = 100, p: int = 12):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    beta = np.zeros(p)
    beta[:3] = [2.0, -1.5, 1.0]
    return X, (rng.uniform(size=n) < 1 / (1 + np.exp(-(0.3 + X @ beta)))).astype(float)


def robust_regression(X, y):
    """Student-t regression with unknown degrees of freedom nu ~ Gamma(2, 0.1)."""
    beta = numpyro.sample("beta", dist.Normal(0.0, 5.0).expand([X.shape[1]]))
    b0 = numpyro.sample("b0", dist.Normal(0.0, 5.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    nu = numpyro.sample("nu", dist.Gamma(2.0, 0.1))
    numpyro.sample("y", dist.StudentT(nu, b0 + X @ beta, sigma), obs=y)


@functools.lru_cache(maxsize=None)
def robust_data(seed: int = 20270108, n: int = 120, p: int = 8):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    return X, X @ rng.normal(size=p) + 0.7 * rng.standard_t(3, size=n)
