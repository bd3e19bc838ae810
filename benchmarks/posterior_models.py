"""The posteriors of ``posterior_cost.py``, each written three ways: a NumPyro model, a
hand-written :class:`freeflow.Posterior` (torch) and a PyMC model, with the same parameter
names, shapes and priors (so their draws compare name by name).

* ``logreg_breast_cancer`` (31-D) and ``logreg_wine`` (14-D): w ~ N(0, I), y ~ Bernoulli(logit = X w)
  on the designs of :mod:`targets.logreg` (standardised features, intercept first).
* ``eight_schools`` (10-D, non-centred): mu ~ N(0, 5²), tau ~ HalfCauchy(5), eta_j ~ N(0, 1),
  y_j ~ N(mu + tau eta_j, sigma_j²).
* ``hier_logreg`` (56-D): a hierarchical logistic regression on data simulated with a fixed
  seed: J = 12 groups, K = 4 coefficients (intercept + 3 covariates), 40 rows per group;
  mu ~ N(0, I_K), tau ~ HalfNormal(1)^K, z_j ~ N(0, I_K), beta_j = mu + tau ⊙ z_j (non-centred),
  y_i ~ Bernoulli(logit = x_i · beta_{g_i}).  Parameters mu (4), tau (4), z (12, 4).

Held out (``VALIDATION``; built after the flow's coupling masks were changed for hier_logreg,
and never run while choosing them): ``val_hier_linreg`` (79-D), a hierarchical linear
regression on data simulated with a fixed seed: K = 3 coefficients, J = 24 groups of 8 rows,
mu ~ N(0, I_K), tau ~ HalfNormal(1)^K, z ~ N(0, I) shaped (K, J) (coefficient-major, another
layout than hier_logreg's), beta_kj = mu_k + tau_k z_kj, sigma ~ HalfNormal(1),
y_i ~ N(x_i · beta_{·, g_i}, sigma²).  Parameters mu (3), tau (3), z (3, 24), sigma.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import freeflow as ff  # noqa: E402
from targets.logreg import breast_cancer_design, wine_design  # noqa: E402
from targets.posteriors import SIGMA, Y  # noqa: E402

D = torch.distributions
MODELS = ("logreg_breast_cancer", "logreg_wine", "eight_schools", "hier_logreg")
VALIDATION = ("val_hier_linreg",)


@functools.lru_cache(maxsize=1)
def hier_logreg_data(seed: int = 20261203, groups: int = 12, coefs: int = 4, per_group: int = 40):
    """(X (N, K), g (N,) group index, y (N,)) simulated from the model with fixed true values."""
    rng = np.random.default_rng(seed)
    mu = np.array([-0.5, 1.0, -1.0, 0.5])[:coefs]
    tau = np.array([0.5, 0.8, 0.3, 1.0])[:coefs]
    beta = mu + tau * rng.normal(size=(groups, coefs))
    g = np.repeat(np.arange(groups), per_group)
    X = np.concatenate([np.ones((g.size, 1)), rng.normal(size=(g.size, coefs - 1))], 1)
    p = 1.0 / (1.0 + np.exp(-(X * beta[g]).sum(1)))
    y = (rng.uniform(size=g.size) < p).astype(np.float64)
    return X, g, y


@functools.lru_cache(maxsize=1)
def val_hier_linreg_data(seed: int = 20261204, groups: int = 24, coefs: int = 3, per_group: int = 8):
    """(X (N, K), g (N,), y (N,)) simulated from the model with fixed true values."""
    rng = np.random.default_rng(seed)
    mu = np.array([1.0, -0.5, 0.3])[:coefs]
    tau = np.array([0.7, 0.2, 1.2])[:coefs]
    beta = mu[:, None] + tau[:, None] * rng.normal(size=(coefs, groups))          # (K, J)
    g = np.repeat(np.arange(groups), per_group)
    X = np.concatenate([np.ones((g.size, 1)), rng.normal(size=(g.size, coefs - 1))], 1)
    y = (X * beta[:, g].T).sum(1) + 0.8 * rng.normal(size=g.size)
    return X, g, y


def data(name: str) -> dict:
    if name == "logreg_breast_cancer":
        X, y = breast_cancer_design()
        return {"X": np.array(X), "y": np.array(y)}
    if name == "logreg_wine":
        X, y = wine_design()
        return {"X": np.array(X), "y": np.array(y)}
    if name == "eight_schools":
        return {"sigma": np.array(SIGMA), "y": np.array(Y)}
    if name == "hier_logreg":
        X, g, y = hier_logreg_data()
        return {"X": X, "g": g, "y": y, "groups": int(g.max()) + 1}
    if name == "val_hier_linreg":
        X, g, y = val_hier_linreg_data()
        return {"X": X, "g": g, "y": y, "groups": int(g.max()) + 1}
    raise ValueError(f"unknown model {name!r}; models: {MODELS + VALIDATION}")


# ----------------------------------------------------------------------------- NumPyro ------
def numpyro_posterior(name: str) -> ff.Posterior:
    import numpyro
    import numpyro.distributions as dist

    d = data(name)
    if name.startswith("logreg"):
        def logreg(X, y=None):
            w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
            numpyro.sample("y", dist.Bernoulli(logits=X @ w), obs=y)

        return ff.from_numpyro(logreg, d["X"], y=d["y"], name=f"numpyro:{name}")
    if name == "eight_schools":
        def eight_schools(sigma, y=None):
            mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
            tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
            with numpyro.plate("J", len(sigma)):
                eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
                numpyro.sample("y", dist.Normal(mu + tau * eta, sigma), obs=y)

        return ff.from_numpyro(eight_schools, d["sigma"], y=d["y"], name=f"numpyro:{name}")

    if name == "val_hier_linreg":
        def val_hier_linreg(X, g, groups, y=None):
            k = X.shape[1]
            mu = numpyro.sample("mu", dist.Normal(0.0, 1.0).expand([k]).to_event(1))
            tau = numpyro.sample("tau", dist.HalfNormal(1.0).expand([k]).to_event(1))
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([k, groups]).to_event(2))
            sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
            beta = mu[:, None] + tau[:, None] * z                                   # (K, J)
            numpyro.sample("y", dist.Normal((X * beta[:, g].T).sum(-1), sigma), obs=y)

        return ff.from_numpyro(val_hier_linreg, d["X"], d["g"], d["groups"], y=d["y"], name=f"numpyro:{name}")

    def hier_logreg(X, g, groups, y=None):
        k = X.shape[1]
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0).expand([k]).to_event(1))
        tau = numpyro.sample("tau", dist.HalfNormal(1.0).expand([k]).to_event(1))
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([groups, k]).to_event(2))
        beta = mu + tau * z
        numpyro.sample("y", dist.Bernoulli(logits=(X * beta[g]).sum(-1)), obs=y)

    return ff.from_numpyro(hier_logreg, d["X"], d["g"], d["groups"], y=d["y"], name=f"numpyro:{name}")


# ------------------------------------------------------------------------------ Posterior ----
def _bernoulli_logit(eta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ_i y_i η_i − softplus(η_i) over the last axis."""
    return (y * eta - torch.nn.functional.softplus(eta)).sum(-1)


def torch_posterior(name: str) -> ff.Posterior:
    d = {k: (torch.as_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in data(name).items()}
    if name.startswith("logreg"):
        X, y = d["X"], d["y"]

        def log_joint(v):
            w = v["w"]                                                  # (n, D)
            return D.Normal(0.0, 1.0).log_prob(w).sum(-1) + _bernoulli_logit(w @ X.to(w).T, y.to(w))

        return ff.Posterior(log_joint, {"w": (X.shape[1],)}, name=f"torch:{name}",
                            observed_data={"y": data(name)["y"]})
    if name == "eight_schools":
        sigma, y = d["sigma"], d["y"]

        def log_joint(v):
            mu, tau, eta = v["mu"], v["tau"], v["eta"]                  # (n,), (n,), (n, 8)
            theta = mu[:, None] + tau[:, None] * eta
            return (D.Normal(0.0, 5.0).log_prob(mu) + D.HalfCauchy(5.0).log_prob(tau)
                    + D.Normal(0.0, 1.0).log_prob(eta).sum(-1)
                    + D.Normal(theta, sigma.to(theta)).log_prob(y.to(theta)).sum(-1))

        return ff.Posterior(log_joint, {"mu": (), "tau": "positive", "eta": (len(SIGMA),)},
                            name=f"torch:{name}", observed_data={"y": np.array(Y)})
    X, g, y, groups = d["X"], d["g"], d["y"], d["groups"]
    k = X.shape[1]
    if name == "val_hier_linreg":
        def log_joint_lin(v):
            mu, tau, z, sigma = v["mu"], v["tau"], v["z"], v["sigma"]            # (n,K) (n,K) (n,K,J) (n,)
            beta = mu[:, :, None] + tau[:, :, None] * z                         # (n, K, J)
            mean = (X.to(z).T[None] * beta[:, :, g]).sum(1)                     # (n, N)
            return (D.Normal(0.0, 1.0).log_prob(mu).sum(-1) + D.HalfNormal(1.0).log_prob(tau).sum(-1)
                    + D.Normal(0.0, 1.0).log_prob(z).sum((-1, -2)) + D.HalfNormal(1.0).log_prob(sigma)
                    + D.Normal(mean, sigma[:, None]).log_prob(y.to(z)).sum(-1))

        return ff.Posterior(log_joint_lin, {"mu": (k,), "tau": ("positive", k), "z": (k, groups),
                                            "sigma": "positive"},
                            name=f"torch:{name}", observed_data={"y": data(name)["y"]})

    def log_joint(v):
        mu, tau, z = v["mu"], v["tau"], v["z"]                          # (n, K), (n, K), (n, J, K)
        beta = mu[:, None, :] + tau[:, None, :] * z                     # (n, J, K)
        eta = (X.to(z) * beta[:, g]).sum(-1)                            # (n, N)
        return (D.Normal(0.0, 1.0).log_prob(mu).sum(-1) + D.HalfNormal(1.0).log_prob(tau).sum(-1)
                + D.Normal(0.0, 1.0).log_prob(z).sum((-1, -2)) + _bernoulli_logit(eta, y.to(z)))

    return ff.Posterior(log_joint, {"mu": (k,), "tau": ("positive", k), "z": (groups, k)},
                        name=f"torch:{name}", observed_data={"y": data(name)["y"]})


# ----------------------------------------------------------------------------------- PyMC ----
def pymc_posterior(name: str) -> ff.Posterior:
    import pymc as pm

    d = data(name)
    with pm.Model(name="") as model:
        if name.startswith("logreg"):
            w = pm.Normal("w", 0.0, 1.0, shape=d["X"].shape[1])
            pm.Bernoulli("y", logit_p=pm.math.dot(d["X"], w), observed=d["y"])
        elif name == "eight_schools":
            mu = pm.Normal("mu", 0.0, 5.0)
            tau = pm.HalfCauchy("tau", 5.0)
            eta = pm.Normal("eta", 0.0, 1.0, shape=len(SIGMA))
            pm.Normal("y", mu + tau * eta, d["sigma"], observed=d["y"])
        elif name == "val_hier_linreg":
            k, groups = d["X"].shape[1], d["groups"]
            mu = pm.Normal("mu", 0.0, 1.0, shape=k)
            tau = pm.HalfNormal("tau", 1.0, shape=k)
            z = pm.Normal("z", 0.0, 1.0, shape=(k, groups))
            sigma = pm.HalfNormal("sigma", 1.0)
            beta = mu[:, None] + tau[:, None] * z
            pm.Normal("y", (d["X"] * beta[:, d["g"]].T).sum(-1), sigma, observed=d["y"])
        else:
            k, groups = d["X"].shape[1], d["groups"]
            mu = pm.Normal("mu", 0.0, 1.0, shape=k)
            tau = pm.HalfNormal("tau", 1.0, shape=k)
            z = pm.Normal("z", 0.0, 1.0, shape=(groups, k))
            beta = mu + tau * z
            pm.Bernoulli("y", logit_p=(d["X"] * beta[d["g"]]).sum(-1), observed=d["y"])
    return ff.from_pymc(model, name=f"pymc:{name}")


ROUTES = {"numpyro": numpyro_posterior, "posterior": torch_posterior, "pymc": pymc_posterior}
