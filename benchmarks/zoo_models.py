"""A zoo of posteriors written as users write them: NumPyro models with their data, in the
shapes where freeflow failed on a public collection with published ground truth.

    from zoo_models import REGISTRY, get
    model, args, kwargs, description = REGISTRY["eight_schools_centered"]
    post = ff.from_numpyro(model, *args, **kwargs)

Each entry: name -> (model fn, args, kwargs, description).  Data are simulated with fixed
seeds (numpy ``default_rng``) or read from data shipped inside scikit-learn (no download);
building them twice gives the same arrays.  ``DIMS`` holds the unconstrained dimension of each
(checked by tests/test_zoo_models.py).

==========================  ===  ==========================================================
name                        dim  shape
==========================  ===  ==========================================================
random_walk_missing          32  centred Gaussian random walk (30 steps), 10 of 30 obs missing
stochastic_volatility       103  Stan-manual SV, non-centred h_std, phi = 2 Beta(20, 1.5) - 1
gp_cox                      102  log-Gaussian Cox process on 100 cells, non-centred GP (Cholesky)
irt_2pl                     604  2PL item response, 400 students x 100 items, centred hierarchies
lv_bridge                    90  Lotka-Volterra (log scale) latent path, RK4 + process noise, centred
eight_schools_centered       10  centred eight schools
linreg_illcond               26  diabetes (raw units) with squares/interactions, cond(X) ~ 1e7
funnel10                     10  Neal's funnel, v ~ N(0, 3^2), x_i ~ N(0, e^{v/2} sd)
poisson_hier                 22  Poisson counts of 20 groups, centred log-rates (a funnel in tau)
horseshoe_logreg             26  logistic regression with a centred horseshoe prior
robust_regression            11  Student-t regression with unknown degrees of freedom
garch11                       4  GARCH(1,1), beta1 ~ U(0, 1 - alpha1) (zoo_models_ts.py, as below)
garch11_persist               4  GARCH(1,1) on a persistent series (alpha1 + beta1 = 0.95)
ar5                           7  AR(5) regression
radon                        60  varying intercepts, 56 groups of 1-40, centred
radon_funnel                 60  varying intercepts, 56 small groups, small group scale, centred
radon85                      89  varying intercepts, 85 groups of 1-116, centred
radon_slopes                175  varying intercepts and slopes, 85 groups of 1-116, both centred
gp_pois_regr                 13  latent GP with Poisson counts, centred MVN prior
logreg_corr                   8  logistic regression with correlated predictors
logit_hier                   42  binary outcomes, 40 groups of 2-8, centred intercepts
arma11                        4  ARMA(1, 1) (zoo_models_more.py, as below)
gauss_mix                     5  two-component Gaussian mixture, ordered means, 1000 points
hmm2                          4  two-state Gaussian HMM, forward algorithm, ordered means
year_trend                    3  linear trend on raw calendar years (correlation 1 - 1e-5)
seeds                        26  seeds random-effects logistic regression, centred, vague precision
lotka_volterra_ode            8  Lotka-Volterra ODE parameters, lynx-hare data (zoo_models_ode.py)
irt_1pl                     501  Rasch IRT, 400 students x 100 questions (zoo_models_irt.py)
==========================  ===  ==========================================================

``TWINS``: for the centred models, the same posterior written non-centred (deterministic
sites with the centred model's latent names), used by zoo_reference.py when NUTS on the
model as written is unreliable (divergences): the twin's draws mapped to the centred
model's unconstrained coordinates are then the reference.
"""
from __future__ import annotations

import functools
import math

import numpy as np

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan

from zoo_models_glm import (horseshoe_data, horseshoe_logreg, horseshoe_logreg_twin, poisson_data,  # noqa: E402
                            poisson_hier, poisson_hier_twin, robust_data, robust_regression)
import zoo_models_more  # noqa: E402
import zoo_models_ode  # noqa: E402
import zoo_models_irt  # noqa: E402
import zoo_models_ts  # noqa: E402

jax.config.update("jax_enable_x64", True)


# -- 1. latent Gaussian random walk with missing observations ----------------------------------
def random_walk_missing(obs_idx, y_obs, num_steps):
    """x_1 ~ N(0, sigma_w^2), x_t ~ N(x_{t-1}, sigma_w^2); y_t ~ N(x_t, sigma_obs^2) where observed."""
    sigma_w = numpyro.sample("sigma_w", dist.HalfNormal(1.0))
    sigma_obs = numpyro.sample("sigma_obs", dist.HalfNormal(1.0))
    x = numpyro.sample("x", dist.GaussianRandomWalk(scale=sigma_w, num_steps=num_steps))
    numpyro.sample("y", dist.Normal(x[obs_idx], sigma_obs), obs=y_obs)


def random_walk_missing_twin(obs_idx, y_obs, num_steps):
    sigma_w = numpyro.sample("sigma_w", dist.HalfNormal(1.0))
    sigma_obs = numpyro.sample("sigma_obs", dist.HalfNormal(1.0))
    x_std = numpyro.sample("x_std", dist.Normal(0.0, 1.0).expand([num_steps]).to_event(1))
    x = numpyro.deterministic("x", jnp.cumsum(sigma_w * x_std))
    numpyro.sample("y", dist.Normal(x[obs_idx], sigma_obs), obs=y_obs)


@functools.lru_cache(maxsize=None)
def random_walk_data(seed: int = 20270101, num_steps: int = 30, missing: int = 10):
    rng = np.random.default_rng(seed)
    x = np.cumsum(0.3 * rng.normal(size=num_steps))
    obs_idx = np.sort(rng.choice(num_steps, num_steps - missing, replace=False))
    y = x[obs_idx] + 0.4 * rng.normal(size=obs_idx.size)
    return obs_idx, y


# -- 2. stochastic volatility ------------------------------------------------------------------
def stochastic_volatility(y):
    """Stan user's guide SV model (non-centred h_std); phi = 2 Beta(20, 1.5) - 1 (Kim, Shephard
    and Chib's prior), sigma ~ HalfCauchy(5), mu ~ Cauchy(0, 10)."""
    T = y.shape[0]
    mu = numpyro.sample("mu", dist.Cauchy(0.0, 10.0))
    phi_beta = numpyro.sample("phi_beta", dist.Beta(20.0, 1.5))
    phi = numpyro.deterministic("phi", 2.0 * phi_beta - 1.0)
    sigma = numpyro.sample("sigma", dist.HalfCauchy(5.0))
    h_std = numpyro.sample("h_std", dist.Normal(0.0, 1.0).expand([T]).to_event(1))
    h0 = mu + sigma * h_std[0] / jnp.sqrt(1.0 - phi**2)

    def step(h_prev, e):
        h = mu + phi * (h_prev - mu) + sigma * e
        return h, h

    _, rest = jax.lax.scan(step, h0, h_std[1:])
    h = numpyro.deterministic("h", jnp.concatenate([h0[None], rest]))
    numpyro.sample("y", dist.Normal(0.0, jnp.exp(h / 2.0)), obs=y)


@functools.lru_cache(maxsize=None)
def sv_data(seed: int = 20270102, T: int = 100, mu: float = -1.0, phi: float = 0.95, sigma: float = 0.25):
    rng = np.random.default_rng(seed)
    h = np.empty(T)
    h[0] = mu + sigma / math.sqrt(1 - phi**2) * rng.normal()
    for t in range(1, T):
        h[t] = mu + phi * (h[t - 1] - mu) + sigma * rng.normal()
    return np.exp(h / 2) * rng.normal(size=T)


# -- 3. GP-latent Cox process -------------------------------------------------------------------
def gp_cox(x, log_offset, y):
    """Counts per cell y_i ~ Poisson(exp(f_i)), f = log_offset + L eta, L = chol(K(rho, alpha) + 1e-6 I)
    (non-centred, as posteriordb's gp_pois_regr; Cholesky of the kernel per draw)."""
    rho = numpyro.sample("rho", dist.InverseGamma(5.0, 0.5))
    alpha = numpyro.sample("alpha", dist.HalfNormal(1.5))
    eta = numpyro.sample("eta", dist.Normal(0.0, 1.0).expand([x.shape[0]]).to_event(1))
    d = x[:, None] - x[None, :]
    K = alpha**2 * jnp.exp(-0.5 * (d / rho) ** 2) + 1e-6 * jnp.eye(x.shape[0])
    f = numpyro.deterministic("f", log_offset + jnp.linalg.cholesky(K) @ eta)
    numpyro.sample("y", dist.Poisson(jnp.exp(f)), obs=y)


@functools.lru_cache(maxsize=None)
def cox_data(seed: int = 20270103, cells: int = 100, rho: float = 0.1, alpha: float = 0.8, base: float = 3.0):
    rng = np.random.default_rng(seed)
    x = (np.arange(cells) + 0.5) / cells
    K = alpha**2 * np.exp(-0.5 * ((x[:, None] - x[None, :]) / rho) ** 2) + 1e-8 * np.eye(cells)
    f = math.log(base) + np.linalg.cholesky(K) @ rng.normal(size=cells)
    y = rng.poisson(np.exp(f)).astype(np.float64)
    return x, float(np.log(y.mean())), y


# -- 4. 2PL item response -----------------------------------------------------------------------
def irt_2pl(y):
    """posteriordb's irt_2pl: y[i, j] ~ Bernoulli(logit = a_j (theta_i - b_j)); theta ~ N(0, sigma_theta),
    a ~ LogNormal(0, sigma_a), b ~ N(mu_b, sigma_b), scales ~ HalfCauchy(2) (centred)."""
    students, items = y.shape
    sigma_theta = numpyro.sample("sigma_theta", dist.HalfCauchy(2.0))
    with numpyro.plate("students", students):
        theta = numpyro.sample("theta", dist.Normal(0.0, sigma_theta))
    sigma_a = numpyro.sample("sigma_a", dist.HalfCauchy(2.0))
    mu_b = numpyro.sample("mu_b", dist.Normal(0.0, 5.0))
    sigma_b = numpyro.sample("sigma_b", dist.HalfCauchy(2.0))
    with numpyro.plate("items", items):
        a = numpyro.sample("a", dist.LogNormal(0.0, sigma_a))
        b = numpyro.sample("b", dist.Normal(mu_b, sigma_b))
    numpyro.sample("y", dist.Bernoulli(logits=a * (theta[:, None] - b)).to_event(2), obs=y)


@functools.lru_cache(maxsize=None)
def irt_data(seed: int = 20270104, students: int = 400, items: int = 100):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=students)
    a = np.exp(0.3 * rng.normal(size=items))
    b = 0.5 + rng.normal(size=items)
    p = 1 / (1 + np.exp(-a * (theta[:, None] - b)))
    return (rng.uniform(size=p.shape) < p).astype(np.float64)


# -- 5. Lotka-Volterra state-space bridge -------------------------------------------------------
LV_THETA = (1.0, 0.5, 1.0, 0.2)  # alpha, beta, gamma, delta: du = a - b e^v, dv = -g + d e^u (log scale)


def _lv_rk4(z, dt, theta, xp=jnp):
    a, b, g, d = theta

    def f(s):
        return xp.stack([a - b * xp.exp(s[..., 1]), -g + d * xp.exp(s[..., 0])], -1)

    k1 = f(z)
    k2 = f(z + 0.5 * dt * k1)
    k3 = f(z + 0.5 * dt * k2)
    k4 = f(z + dt * k3)
    return z + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def lv_bridge(obs_idx, y_obs, num_steps, dt):
    """Log prey/predator z_t (2,), z_0 ~ N((log 5, log 2), 0.5^2), z_t ~ N(RK4(z_{t-1}, dt),
    sigma_proc^2 dt) (centred, numpyro scan), log counts y ~ N(z_t, sigma_obs^2) at obs_idx."""
    sigma_proc = numpyro.sample("sigma_proc", dist.HalfNormal(0.5))
    sigma_obs = numpyro.sample("sigma_obs", dist.HalfNormal(0.5))
    z0 = numpyro.sample("z0", dist.Normal(jnp.array([math.log(5.0), math.log(2.0)]), 0.5).to_event(1))

    def transition(z_prev, _):
        z = numpyro.sample("z", dist.Normal(_lv_rk4(z_prev, dt, LV_THETA), sigma_proc * math.sqrt(dt)).to_event(1))
        return z, z

    _, zs = scan(transition, z0, None, length=num_steps)
    path = jnp.concatenate([z0[None], zs])
    numpyro.sample("y", dist.Normal(path[obs_idx], sigma_obs).to_event(2), obs=y_obs)


def lv_bridge_twin(obs_idx, y_obs, num_steps, dt):
    sigma_proc = numpyro.sample("sigma_proc", dist.HalfNormal(0.5))
    sigma_obs = numpyro.sample("sigma_obs", dist.HalfNormal(0.5))
    z0 = numpyro.sample("z0", dist.Normal(jnp.array([math.log(5.0), math.log(2.0)]), 0.5).to_event(1))
    eps = numpyro.sample("eps", dist.Normal(0.0, 1.0).expand([num_steps, 2]).to_event(2))

    def step(z_prev, e):
        z = _lv_rk4(z_prev, dt, LV_THETA) + sigma_proc * math.sqrt(dt) * e
        return z, z

    _, zs = jax.lax.scan(step, z0, eps)
    numpyro.deterministic("z", zs)
    path = jnp.concatenate([z0[None], zs])
    numpyro.sample("y", dist.Normal(path[obs_idx], sigma_obs).to_event(2), obs=y_obs)


@functools.lru_cache(maxsize=None)
def lv_data(seed: int = 20270105, num_steps: int = 43, dt: float = 0.25, every: int = 3,
            sigma_proc: float = 0.15, sigma_obs: float = 0.1):
    rng = np.random.default_rng(seed)
    z = np.empty((num_steps + 1, 2))
    z[0] = [math.log(6.0), math.log(1.5)]
    for t in range(1, num_steps + 1):
        z[t] = _lv_rk4(z[t - 1], dt, LV_THETA, np) + sigma_proc * math.sqrt(dt) * rng.normal(size=2)
    obs_idx = np.arange(0, num_steps + 1, every)
    return obs_idx, z[obs_idx] + sigma_obs * rng.normal(size=(obs_idx.size, 2)), num_steps, dt


# -- 6. centred eight schools -------------------------------------------------------------------
EIGHT_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools_centered(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", len(sigma)):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_twin(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", len(sigma)):
        eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * eta)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


# -- 7. ill-conditioned linear regression -------------------------------------------------------
DIABETES_FEATURES = ("age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")  # 'sex' left out (1/2: its square is collinear)
DIABETES_INTERACTIONS = (("bmi", "bp"), ("bmi", "s5"), ("bp", "s5"), ("age", "bmi"), ("age", "bp"), ("s1", "s2"))


@functools.lru_cache(maxsize=None)
def diabetes_design():
    """scikit-learn's diabetes data in raw units (load_diabetes(scaled=False)): intercept, the 9
    non-binary features, their squares and 6 interactions, unscaled: X (442, 25), y (442,)."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes(scaled=False)
    col = {n: d.data[:, i] for i, n in enumerate(d.feature_names)}
    cols = [np.ones(d.data.shape[0])] + [col[n] for n in DIABETES_FEATURES] + [col[n] ** 2 for n in DIABETES_FEATURES]
    cols += [col[a] * col[b] for a, b in DIABETES_INTERACTIONS]
    return np.stack(cols, 1), np.asarray(d.target, dtype=np.float64)


def design_condition_number() -> float:
    return float(np.linalg.cond(diabetes_design()[0]))


def linreg_illcond(X, y):
    beta = numpyro.sample("beta", dist.Normal(0.0, 100.0).expand([X.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(100.0))
    numpyro.sample("y", dist.Normal(X @ beta, sigma), obs=y)


# -- 8. funnel10 ------------------------------------------------------------------------------
def funnel(dim=10):
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2.0)).expand([dim - 1]).to_event(1))


def funnel_exact(n: int, seed: int = 0, dim: int = 10) -> np.ndarray:
    """Exact draws (n, dim) in the model's coordinates (v, x_1..x_{dim-1}) (all real: z = theta)."""
    rng = np.random.default_rng(seed)
    v = 3.0 * rng.normal(size=n)
    return np.concatenate([v[:, None], np.exp(v / 2)[:, None] * rng.normal(size=(n, dim - 1))], 1)


FUNNEL_MOMENTS = {"mean": [0.0] * 10, "sd": [3.0] + [math.exp(9 / 4)] * 9}  # sd x_i = sqrt(E e^v) = e^{9/4}


# -- the registry -------------------------------------------------------------------------------
def _entries():
    obs_idx, y = random_walk_data()
    lv_idx, lv_y, lv_steps, lv_dt = lv_data()
    cx, off, cy = cox_data()
    X, ly = diabetes_design()
    return {
        "random_walk_missing": (random_walk_missing, (obs_idx, y, 30), {},
                                "centred Gaussian random walk, 30 steps, sigma_w, sigma_obs ~ HalfNormal(1), "
                                "10 of 30 observations missing"),
        "stochastic_volatility": (stochastic_volatility, (sv_data(),), {},
                                  "SV, 100 returns, AR(1) log-vol (non-centred h_std), phi = 2 Beta(20,1.5) - 1, "
                                  "sigma ~ HalfCauchy(5), mu ~ Cauchy(0, 10)"),
        "gp_cox": (gp_cox, (cx, off, cy), {},
                   "log-Gaussian Cox process on 100 cells of [0, 1], squared-exponential GP, "
                   "rho ~ InvGamma(5, 0.5), alpha ~ HalfNormal(1.5), non-centred f = offset + chol(K) eta"),
        "irt_2pl": (irt_2pl, (irt_data(),), {},
                    "2PL IRT, 400 students x 100 items, centred theta ~ N(0, sigma_theta), "
                    "a ~ LogNormal(0, sigma_a), b ~ N(mu_b, sigma_b), HalfCauchy(2) scales"),
        "lv_bridge": (lv_bridge, (lv_idx, lv_y, lv_steps, lv_dt), {},
                      "Lotka-Volterra log-state path, 43 RK4 steps of dt = 0.25 with process noise "
                      "(centred, numpyro scan), 15 noisy observation times, sigma_proc, sigma_obs ~ HalfNormal(0.5)"),
        "eight_schools_centered": (eight_schools_centered, (EIGHT_SIGMA,), {"y": EIGHT_Y},
                                   "centred eight schools: theta_j ~ N(mu, tau), tau ~ HalfCauchy(5)"),
        "linreg_illcond": (linreg_illcond, (X, ly), {},
                           "linear regression on raw-unit diabetes features with squares and interactions "
                           f"(unscaled, cond(X) = {np.linalg.cond(X):.2e}), beta ~ N(0, 100^2), sigma ~ HalfNormal(100)"),
        "funnel10": (funnel, (), {"dim": 10}, "Neal's funnel, v ~ N(0, 3^2), x_i ~ N(0, (e^{v/2})^2), 10-D"),
        "poisson_hier": (poisson_hier, poisson_data(), {},
                         "Poisson counts of 20 groups with exposures, centred a_g ~ N(mu, tau), tau ~ HalfNormal(1)"),
        "horseshoe_logreg": (horseshoe_logreg, horseshoe_data(), {},
                             "logistic regression, 100 x 12 design, 3 non-zero, centred horseshoe "
                             "(tau, lambda_j ~ HalfCauchy(1))"),
        "robust_regression": (robust_regression, robust_data(), {},
                              "Student-t regression, 120 x 8, nu ~ Gamma(2, 0.1), sigma ~ HalfNormal(2)"),
        **zoo_models_ts.entries(),
        **zoo_models_more.entries(),
        **zoo_models_ode.entries(),
        **zoo_models_irt.entries(),
    }


REGISTRY = _entries()  # name -> (model, args, kwargs, description)
ORDER = ("random_walk_missing", "stochastic_volatility", "gp_cox", "irt_2pl", "lv_bridge",
         "eight_schools_centered", "linreg_illcond", "funnel10", "poisson_hier", "horseshoe_logreg",
         "robust_regression", *zoo_models_ts.DIMS, *zoo_models_more.DIMS, *zoo_models_ode.DIMS, *zoo_models_irt.DIMS)
DIMS = {"random_walk_missing": 32, "stochastic_volatility": 103, "gp_cox": 102, "irt_2pl": 604,
        "lv_bridge": 90, "eight_schools_centered": 10, "linreg_illcond": 26, "funnel10": 10,
        "poisson_hier": 22, "horseshoe_logreg": 26, "robust_regression": 11, **zoo_models_ts.DIMS,
        **zoo_models_more.DIMS, **zoo_models_ode.DIMS, **zoo_models_irt.DIMS}
TWINS = {"random_walk_missing": random_walk_missing_twin, "lv_bridge": lv_bridge_twin,
         "eight_schools_centered": eight_schools_twin, "poisson_hier": poisson_hier_twin,
         "horseshoe_logreg": horseshoe_logreg_twin, **zoo_models_ts.TWINS, **zoo_models_more.TWINS}


def get(name: str):
    """(model, args, kwargs, description) of a zoo model; a KeyError lists the names."""
    if name not in REGISTRY:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(ORDER)}")
    return REGISTRY[name]


def posterior(name: str, twin: bool = False):
    """ff.from_numpyro of the model as registered (or of its non-centred twin)."""
    import freeflow as ff

    model, args, kwargs, _ = get(name)
    if twin:
        model = TWINS[name]
    return ff.from_numpyro(model, *args, name=f"zoo:{name}{'_twin' if twin else ''}", **kwargs)
