"""Nine more posteriors of the zoo (benchmarks/zoo_models.py registers them), in shapes of the
public posterior collection the zoo imitates, written as users write them: GARCH(1,1) volatility
(a support that depends on another parameter), an AR(5) regression, a varying-intercept
hierarchical regression of the radon kind (centred; groups of 1–40 observations), the same with
small groups and a small group scale (a funnel), varying intercepts over 85 groups of 1–116 and
varying intercepts and slopes over the same groups (both centred), a latent Gaussian process with Poisson counts
(centred, MVN prior), and a logistic regression with correlated predictors. Data are simulated
with fixed seeds; ``radon_funnel_twin`` is the funnel written non-centred (its NUTS reference)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist


# -- 12., 13. GARCH(1,1) ------------------------------------------------------------------------
def garch11(y, sigma1):
    """y_t ~ N(mu, sigma_t), sigma_t² = alpha0 + alpha1 (y_{t−1} − mu)² + beta1 sigma_{t−1}²,
    alpha1 ~ U(0, 1), beta1 ~ U(0, 1 − alpha1) (stationarity as a dependent bound)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    alpha0 = numpyro.sample("alpha0", dist.HalfNormal(5.0))
    alpha1 = numpyro.sample("alpha1", dist.Uniform(0.0, 1.0))
    beta1 = numpyro.sample("beta1", dist.Uniform(0.0, 1.0 - alpha1))

    def step(sig_prev, y_prev):
        s = jnp.sqrt(alpha0 + alpha1 * (y_prev - mu) ** 2 + beta1 * sig_prev ** 2)
        return s, s

    first = jnp.asarray(sigma1, dtype=jnp.float64) + 0.0 * mu
    _, rest = jax.lax.scan(step, first, y[:-1])
    numpyro.sample("y", dist.Normal(mu, jnp.concatenate([first[None], rest])), obs=y)


@functools.lru_cache(maxsize=None)
def garch_data(seed: int = 20270201, T: int = 100, mu: float = 0.5, a0: float = 0.2, a1: float = 0.3,
               b1: float = 0.5):
    rng = np.random.default_rng(seed)
    y, s = np.empty(T), np.empty(T)
    s[0] = np.sqrt(a0 / (1 - a1 - b1))
    y[0] = mu + s[0] * rng.normal()
    for t in range(1, T):
        s[t] = np.sqrt(a0 + a1 * (y[t - 1] - mu) ** 2 + b1 * s[t - 1] ** 2)
        y[t] = mu + s[t] * rng.normal()
    return y, float(s[0])


def garch_persist_data():
    """A persistent series (alpha1 + beta1 = 0.95): beta1 against its moving upper bound."""
    return garch_data(seed=20270206, T=100, mu=0.0, a0=0.05, a1=0.1, b1=0.85)


# -- 14. AR(5) ---------------------------------------------------------------------------------------
def ar_k(y, K):
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([K]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    T = y.shape[0]
    lags = jnp.stack([y[K - k - 1:T - k - 1] for k in range(K)], axis=1)  # column k: y_{t−k−1}
    numpyro.sample("y", dist.Normal(alpha + lags @ beta, sigma), obs=y[K:])


@functools.lru_cache(maxsize=None)
def ar_data(seed: int = 20270202, T: int = 200, K: int = 5):
    rng = np.random.default_rng(seed)
    beta = np.array([0.5, -0.25, 0.15, 0.1, -0.1])
    y = np.zeros(T + 50)
    for t in range(K, T + 50):
        y[t] = 0.3 + beta @ y[t - K:t][::-1] + 0.7 * rng.normal()
    return y[50:], K


# -- 15., 16. varying intercepts (centred) ----------------------------------------------------------
def radon(x, g, G, y):
    """y_i ~ N(a_{g_i} + beta x_i, sigma_y), a_j ~ N(mu_a, sigma_a) (centred)."""
    mu_a = numpyro.sample("mu_a", dist.Normal(0.0, 10.0))
    sigma_a = numpyro.sample("sigma_a", dist.HalfNormal(10.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0))
    sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(1.0))
    a = numpyro.sample("a", dist.Normal(mu_a, sigma_a).expand([G]).to_event(1))
    numpyro.sample("y", dist.Normal(a[g] + beta * x, sigma_y), obs=y)


def radon_twin(x, g, G, y):
    mu_a = numpyro.sample("mu_a", dist.Normal(0.0, 10.0))
    sigma_a = numpyro.sample("sigma_a", dist.HalfNormal(10.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0))
    sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(1.0))
    a_raw = numpyro.sample("a_raw", dist.Normal(0.0, 1.0).expand([G]).to_event(1))
    a = numpyro.deterministic("a", mu_a + sigma_a * a_raw)
    numpyro.sample("y", dist.Normal(a[g] + beta * x, sigma_y), obs=y)


@functools.lru_cache(maxsize=None)
def radon_data(seed: int = 20270203, G: int = 56):
    """56 groups of 1–40 observations (eight with 1 or 2), a binary predictor."""
    rng = np.random.default_rng(seed)
    sizes = np.minimum(np.concatenate([[1, 1, 1, 2, 2, 2, 1, 2], rng.geometric(0.15, size=G - 8)]), 40)
    g = np.repeat(np.arange(G), sizes)
    x = rng.binomial(1, 0.7, size=g.size).astype(float)
    y = (1.3 + 0.3 * rng.normal(size=G))[g] - 0.6 * x + 0.75 * rng.normal(size=g.size)
    return x, g, G, y


@functools.lru_cache(maxsize=None)
def radon_funnel_data(seed: int = 20270207, G: int = 56):
    """Small groups (1–12, most 1–2) and a small group scale: sigma_a's posterior reaches 0."""
    rng = np.random.default_rng(seed)
    sizes = np.minimum(rng.geometric(0.45, size=G), 12)
    g = np.repeat(np.arange(G), sizes)
    x = rng.binomial(1, 0.7, size=g.size).astype(float)
    y = (1.3 + 0.15 * rng.normal(size=G))[g] - 0.6 * x + 1.0 * rng.normal(size=g.size)
    return x, g, G, y


def radon_slopes(x, g, G, y):
    """Varying intercepts and slopes, both centred (posteriordb's radon_variable_intercept_slope_centered
    shape): y_i ~ N(a_{g_i} + b_{g_i} x_i, sigma_y), a_j ~ N(mu_a, sigma_a), b_j ~ N(mu_b, sigma_b)."""
    mu_a = numpyro.sample("mu_a", dist.Normal(0.0, 10.0))
    sigma_a = numpyro.sample("sigma_a", dist.HalfNormal(10.0))
    mu_b = numpyro.sample("mu_b", dist.Normal(0.0, 10.0))
    sigma_b = numpyro.sample("sigma_b", dist.HalfNormal(10.0))
    sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(1.0))
    a = numpyro.sample("a", dist.Normal(mu_a, sigma_a).expand([G]).to_event(1))
    b = numpyro.sample("b", dist.Normal(mu_b, sigma_b).expand([G]).to_event(1))
    numpyro.sample("y", dist.Normal(a[g] + b[g] * x, sigma_y), obs=y)


def radon_slopes_twin(x, g, G, y):
    mu_a = numpyro.sample("mu_a", dist.Normal(0.0, 10.0))
    sigma_a = numpyro.sample("sigma_a", dist.HalfNormal(10.0))
    mu_b = numpyro.sample("mu_b", dist.Normal(0.0, 10.0))
    sigma_b = numpyro.sample("sigma_b", dist.HalfNormal(10.0))
    sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(1.0))
    a_raw = numpyro.sample("a_raw", dist.Normal(0.0, 1.0).expand([G]).to_event(1))
    b_raw = numpyro.sample("b_raw", dist.Normal(0.0, 1.0).expand([G]).to_event(1))
    a = numpyro.deterministic("a", mu_a + sigma_a * a_raw)
    b = numpyro.deterministic("b", mu_b + sigma_b * b_raw)
    numpyro.sample("y", dist.Normal(a[g] + b[g] * x, sigma_y), obs=y)


@functools.lru_cache(maxsize=None)
def radon_slopes_data(seed: int = 20270208, G: int = 85):
    """85 groups of 1–116 (Minnesota's county sizes' shape: many of 1–5, a few large), a binary
    predictor (present in 80 %): a group whose x are all equal says nothing of its slope."""
    rng = np.random.default_rng(seed)
    sizes = np.minimum(np.concatenate([[116, 1, 1, 1, 2, 2, 3], rng.geometric(0.12, size=G - 7)]), 116)
    g = np.repeat(np.arange(G), sizes)
    x = rng.binomial(1, 0.8, size=g.size).astype(float)
    y = (1.5 + 0.3 * rng.normal(size=G))[g] + (-0.7 + 0.2 * rng.normal(size=G))[g] * x + 0.75 * rng.normal(size=g.size)
    return x, g, G, y


# -- 17. a latent GP with Poisson counts (centred) -----------------------------------------------
def gp_pois_regr(x, k):
    rho = numpyro.sample("rho", dist.Gamma(25.0, 4.0))
    alpha = numpyro.sample("alpha", dist.HalfNormal(2.0))
    d = x[:, None] - x[None, :]
    K = alpha ** 2 * jnp.exp(-0.5 * (d / rho) ** 2) + 1e-4 * jnp.eye(x.shape[0])
    f = numpyro.sample("f", dist.MultivariateNormal(jnp.zeros(x.shape[0]), covariance_matrix=K))
    numpyro.sample("k", dist.Poisson(jnp.exp(f)), obs=k)


@functools.lru_cache(maxsize=None)
def gp_pois_data(seed: int = 20270204):
    rng = np.random.default_rng(seed)
    x = np.arange(-10.0, 10.1, 2.0)  # 11 points
    f = 2.8 + 1.2 * np.sin(x / 3.0) + 0.3 * np.cos(x / 1.7)
    return x, rng.poisson(np.exp(f)).astype(float)


# -- 18. logistic regression, correlated predictors -----------------------------------------------
def logreg_corr(X, y):
    b0 = numpyro.sample("b0", dist.Normal(0.0, 2.5))
    b = numpyro.sample("b", dist.Normal(0.0, 2.5).expand([X.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=b0 + X @ b), obs=y)


@functools.lru_cache(maxsize=None)
def logreg_corr_data(seed: int = 20270205, n: int = 300, p: int = 7, rho: float = 0.7):
    rng = np.random.default_rng(seed)
    C = rho ** np.abs(np.subtract.outer(np.arange(p), np.arange(p)))
    X = rng.normal(size=(n, p)) @ np.linalg.cholesky(C).T
    beta = np.array([1.0, -0.8, 0.0, 0.5, 0.5, -0.3, 0.0])
    y = rng.binomial(1, 1 / (1 + np.exp(-(-0.4 + X @ beta)))).astype(float)
    return X, y


def logit_hier(g, G, y):
    """Binary outcomes in G small groups: y_i ~ Bernoulli(logit⁻¹(a_{g_i})), centred
    a_j ~ N(mu, tau), mu ~ N(0, 2), tau ~ HalfNormal(1) (written after the non-centred twins)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    a = numpyro.sample("a", dist.Normal(mu, tau).expand([G]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=a[g]), obs=y)


def logit_hier_twin(g, G, y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    a_raw = numpyro.sample("a_raw", dist.Normal(0.0, 1.0).expand([G]).to_event(1))
    a = numpyro.deterministic("a", mu + tau * a_raw)
    numpyro.sample("y", dist.Bernoulli(logits=a[g]), obs=y)


@functools.lru_cache(maxsize=None)
def logit_hier_data(seed: int = 20270301, G: int = 40):
    """40 groups of 2–8 binary outcomes, mu = −0.5, tau = 0.4."""
    rng = np.random.default_rng(seed)
    n = rng.integers(2, 9, size=G)
    g = np.repeat(np.arange(G), n)
    a = -0.5 + 0.4 * rng.normal(size=G)
    y = rng.binomial(1, 1 / (1 + np.exp(-a[g]))).astype(float)
    return g, G, y


def entries() -> dict:
    """name -> (model, args, kwargs, description), for zoo_models.REGISTRY."""
    return {
        "garch11": (garch11, garch_data(), {},
                    "GARCH(1,1), 100 returns, alpha1 ~ U(0, 1), beta1 ~ U(0, 1 - alpha1)"),
        "garch11_persist": (garch11, garch_persist_data(), {},
                            "GARCH(1,1) on a persistent series (alpha1 + beta1 = 0.95)"),
        "ar5": (ar_k, ar_data(), {}, "AR(5) regression, 200 points, sigma ~ HalfCauchy(2.5)"),
        "radon": (radon, radon_data(), {},
                  "varying intercepts, 56 groups of 1-40, centred a_j ~ N(mu_a, sigma_a)"),
        "radon_funnel": (radon, radon_funnel_data(), {},
                         "varying intercepts, 56 small groups, small sigma_a (a funnel), centred"),
        "radon85": (radon, radon_slopes_data(), {},
                    "varying intercepts, 85 groups of 1-116 (radon_slopes' data), centred"),
        "radon_slopes": (radon_slopes, radon_slopes_data(), {},
                         "varying intercepts and slopes, 85 groups of 1-116, both centred"),
        "gp_pois_regr": (gp_pois_regr, gp_pois_data(), {},
                         "latent GP (11 points, rho ~ Gamma(25, 4), alpha ~ HalfNormal(2)), Poisson counts, centred MVN"),
        "logreg_corr": (logreg_corr, logreg_corr_data(), {},
                        "logistic regression, 300 x 7, predictors correlated 0.7^|i-j|"),
        "logit_hier": (logit_hier, logit_hier_data(), {},
                       "binary outcomes, 40 groups of 2-8, centred a_j ~ N(mu, tau), tau ~ HalfNormal(1)"),
    }


DIMS = {"garch11": 4, "garch11_persist": 4, "ar5": 7, "radon": 60, "radon_funnel": 60, "radon85": 89,
        "radon_slopes": 175, "gp_pois_regr": 13, "logreg_corr": 8, "logit_hier": 42}
TWINS = {"radon_funnel": radon_twin, "radon85": radon_twin, "radon_slopes": radon_slopes_twin,
         "logit_hier": logit_hier_twin}
DATA = (garch_data, ar_data, radon_data, radon_funnel_data, radon_slopes_data, gp_pois_data, logreg_corr_data,
        logit_hier_data)
