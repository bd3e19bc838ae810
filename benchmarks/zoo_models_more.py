"""Five more posteriors of the zoo (benchmarks/zoo_models.py registers them), written after the
rest and not tuned on, in further shapes of the public posterior collection the zoo imitates:
an ARMA(1, 1) series (a recursion through its own residuals, bounded coefficients), a two-component
Gaussian mixture with ordered means on 1000 points (overlapping components), a two-state hidden
Markov model (forward algorithm, simplex transition rows, positive ordered means), a linear trend
on raw calendar years (intercept and slope correlated to 1 − 10⁻⁵), and the seeds random-effects
logistic regression (Crowder 1978, the BUGS example: 21 plates, centred effects, a vague gamma
prior on their precision). Data are simulated with fixed seeds, except the seeds counts, typed in
from the published table; ``seeds_twin`` is that model written non-centred (its NUTS reference)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints


# -- ARMA(1, 1) ----------------------------------------------------------------------------------
def arma11(y):
    """y_t = mu + phi y_{t-1} + theta err_{t-1} + err_t, err_t ~ N(0, sigma); |phi|, |theta| < 1."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    phi = numpyro.sample("phi", dist.Uniform(-1.0, 1.0))
    theta = numpyro.sample("theta", dist.Uniform(-1.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))

    def step(err_prev, pair):
        y_prev, y_t = pair
        err = y_t - (mu + phi * y_prev + theta * err_prev)
        return err, err

    err1 = y[0] - (mu + phi * mu)
    _, rest = jax.lax.scan(step, err1, (y[:-1], y[1:]))
    numpyro.sample("err", dist.Normal(0.0, sigma), obs=jnp.concatenate([err1[None], rest]))


@functools.lru_cache(maxsize=None)
def arma_data(seed: int = 20270401, T: int = 200, mu: float = 0.5, phi: float = 0.6, theta: float = 0.7,
              sigma: float = 0.8):
    rng = np.random.default_rng(seed)
    y, e = np.empty(T), sigma * rng.normal(size=T)
    y[0] = mu + e[0]
    for t in range(1, T):
        y[t] = mu + phi * y[t - 1] + theta * e[t - 1] + e[t]
    return (y,)


# -- two-component Gaussian mixture, ordered means ---------------------------------------------------
def gauss_mix(y):
    """y_n ~ theta N(mu_1, sigma_1) + (1 − theta) N(mu_2, sigma_2), mu ordered ~ N(0, 2) (truncated
    to the ordered cone, as Stan's ``ordered[2] mu; mu ~ normal(0, 2)``), sigma ~ HalfNormal(2),
    theta ~ Beta(5, 5)."""
    mu = numpyro.sample("mu", dist.ImproperUniform(constraints.ordered_vector, (), (2,)))
    numpyro.factor("mu_prior", dist.Normal(0.0, 2.0).log_prob(mu).sum())
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0).expand([2]).to_event(1))
    theta = numpyro.sample("theta", dist.Beta(5.0, 5.0))
    lp = jnp.stack([jnp.log(theta) + dist.Normal(mu[0], sigma[0]).log_prob(y),
                    jnp.log1p(-theta) + dist.Normal(mu[1], sigma[1]).log_prob(y)])
    numpyro.factor("y", jax.scipy.special.logsumexp(lp, axis=0).sum())


@functools.lru_cache(maxsize=None)
def gauss_mix_data(seed: int = 20270402, n: int = 1000):
    rng = np.random.default_rng(seed)
    first = rng.random(n) < 0.4
    return (np.where(first, rng.normal(-0.75, 1.0, n), rng.normal(0.75, 1.0, n)),)


# -- two-state hidden Markov model ---------------------------------------------------------------------
def hmm2(y):
    """Two hidden states, transition rows ~ Dirichlet(1, 1), emissions N(mu_k, 1) with mu positive
    and ordered, mu_1 ~ N(3, 1), mu_2 ~ N(10, 1); the states summed out by the forward algorithm."""
    theta = numpyro.sample("theta", dist.Dirichlet(jnp.ones(2)).expand([2]).to_event(1))
    mu = numpyro.sample("mu", dist.ImproperUniform(constraints.positive_ordered_vector, (), (2,)))
    numpyro.factor("mu_prior", dist.Normal(jnp.array([3.0, 10.0]), 1.0).log_prob(mu).sum())
    log_a = jnp.log(theta)                                       # log_a[i, j] = log P(j | i)
    emit = dist.Normal(mu, 1.0).log_prob(y[:, None])              # (T, 2)

    def step(alpha, e):
        alpha = jax.scipy.special.logsumexp(alpha[:, None] + log_a, axis=0) + e
        return alpha, None

    alpha, _ = jax.lax.scan(step, emit[0] - jnp.log(2.0), emit[1:])
    numpyro.factor("y", jax.scipy.special.logsumexp(alpha))


@functools.lru_cache(maxsize=None)
def hmm_data(seed: int = 20270403, T: int = 100):
    rng = np.random.default_rng(seed)
    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    s, y = 0, np.empty(T)
    for t in range(T):
        s = s if t == 0 else rng.choice(2, p=a[s])
        y[t] = rng.normal((3.0, 9.0)[s], 1.0)
    return (y,)


# -- a trend on raw calendar years ------------------------------------------------------------------------
def year_trend(x, y):
    """y ~ N(alpha + beta x, sigma) with x the calendar year (1952–2013, not centred: alpha and beta
    correlated to 1 − 10⁻⁵), alpha ~ N(mean y, 100), beta ~ N(0, 0.1 / 3), sigma ~ HalfNormal(5)."""
    alpha = numpyro.sample("alpha", dist.Normal(float(np.mean(y)), 100.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 0.1 / 3))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    numpyro.sample("y", dist.Normal(alpha + beta * x, sigma), obs=y)


@functools.lru_cache(maxsize=None)
def year_trend_data(seed: int = 20270404):
    rng = np.random.default_rng(seed)
    x = np.arange(1952.0, 2014.0)
    return x, 8.5 + 0.02 * (x - 1952.0) + rng.normal(0.0, 1.1, x.size)


# -- seeds: random-effects logistic regression (Crowder 1978) ------------------------------------------
def seeds(r, n, x1, x2):
    """r_i ~ Binomial(n_i, logit⁻¹(a0 + a1 x1 + a2 x2 + a12 x1 x2 + b_i)), b_i ~ N(0, sigma) centred,
    sigma = 1 / sqrt(tau), tau ~ Gamma(0.001, 0.001), the alphas ~ N(0, 1000)."""
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 1000.0).expand([4]).to_event(1))
    tau = numpyro.sample("tau", dist.Gamma(0.001, 0.001))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0 / jnp.sqrt(tau)).expand([r.shape[0]]).to_event(1))
    eta = alpha[0] + alpha[1] * x1 + alpha[2] * x2 + alpha[3] * x1 * x2 + b
    numpyro.sample("r", dist.Binomial(n, logits=eta), obs=r)


def seeds_twin(r, n, x1, x2):
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 1000.0).expand([4]).to_event(1))
    tau = numpyro.sample("tau", dist.Gamma(0.001, 0.001))
    b_raw = numpyro.sample("b_raw", dist.Normal(0.0, 1.0).expand([r.shape[0]]).to_event(1))
    b = numpyro.deterministic("b", b_raw / jnp.sqrt(tau))
    eta = alpha[0] + alpha[1] * x1 + alpha[2] * x2 + alpha[3] * x1 * x2 + b
    numpyro.sample("r", dist.Binomial(n, logits=eta), obs=r)


@functools.lru_cache(maxsize=None)
def seeds_data():
    """Germinated seeds r of n on 21 plates; x1 the seed variety, x2 the root extract."""
    r = np.array([10, 23, 23, 26, 17, 5, 53, 55, 32, 46, 10, 8, 10, 8, 23, 0, 3, 22, 15, 32, 3], float)
    n = np.array([39, 62, 81, 51, 39, 6, 74, 72, 51, 79, 13, 16, 30, 28, 45, 4, 12, 41, 30, 51, 7], float)
    x1 = np.array([0] * 11 + [1] * 10, float)
    x2 = np.array([0] * 5 + [1] * 6 + [0] * 5 + [1] * 5, float)
    return r, n, x1, x2


def entries() -> dict:
    """name -> (model, args, kwargs, description), for zoo_models.REGISTRY."""
    return {
        "arma11": (arma11, arma_data(), {}, "ARMA(1, 1), 200 points, phi, theta ~ U(-1, 1), sigma ~ HalfCauchy(2.5)"),
        "gauss_mix": (gauss_mix, gauss_mix_data(), {},
                      "two-component Gaussian mixture, 1000 points, ordered means, overlapping components"),
        "hmm2": (hmm2, hmm_data(), {}, "two-state Gaussian HMM, 100 points, forward algorithm, ordered means"),
        "year_trend": (year_trend, year_trend_data(), {},
                       "linear trend on raw calendar years 1952-2013 (intercept, slope correlated 1 - 1e-5)"),
        "seeds": (seeds, seeds_data(), {},
                  "seeds random-effects logistic regression (Crowder 1978), 21 plates, centred, tau ~ Gamma(1e-3, 1e-3)"),
    }


DIMS = {"arma11": 4, "gauss_mix": 5, "hmm2": 4, "year_trend": 3, "seeds": 26}
TWINS = {"seeds": seeds_twin}
DATA = (arma_data, gauss_mix_data, hmm_data, year_trend_data, seeds_data)
