"""The posterior zoo of benchmarks/zoo_models.py: every model reads through ff.from_numpyro with
its stated dimension and a finite log-density at a prior draw and at z = 0; the data are
deterministic; the ill-conditioned design is ill-conditioned."""
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numpyro")
pytest.importorskip("sklearn")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import zoo_models as zm  # noqa: E402


#: models whose prior cannot be drawn (ImproperUniform on an ordered vector) or whose prior draw
#: is degenerate (tau ~ Gamma(0.001, 0.001) underflows to 0): a uniform draw in (-2, 2) on the
#: unconstrained scale instead
NO_PRIOR_DRAW = {"gauss_mix", "hmm2", "seeds"}


@pytest.mark.parametrize("name", zm.ORDER)
def test_model_dim_and_finite_log_density(name):
    """ff.from_numpyro's log-density (its JAX form, forward only: one compilation) is finite at
    a prior draw (seed 0; NO_PRIOR_DRAW: a uniform one) and at z = 0, and the dimension is the
    stated one."""
    import jax
    from numpyro import handlers
    from numpyro.distributions import biject_to
    from numpyro.infer import init_to_uniform

    post = zm.posterior(name)
    assert post.dim == zm.DIMS[name]
    model, args, kwargs, description = zm.REGISTRY[name]
    assert isinstance(description, str) and description
    seeded = handlers.seed(model, rng_seed=0)
    if name in NO_PRIOR_DRAW:  # improper (ordered) priors, or a prior draw that underflows
        seeded = handlers.substitute(seeded, substitute_fn=init_to_uniform)
    trace = handlers.trace(seeded).get_trace(*args, **kwargs)
    z_prior = np.concatenate([np.ravel(biject_to(trace[k]["fn"].support).inv(trace[k]["value"]))
                              for k in post.names])
    assert z_prior.shape == (post.dim,)
    lp = np.asarray(jax.jit(jax.vmap(post.log_prob_jax))(np.stack([z_prior, np.zeros(post.dim)])))
    assert lp.shape == (2,) and np.isfinite(lp).all(), (name, lp)


def test_data_deterministic_and_design_ill_conditioned():
    for fn in (zm.random_walk_data, zm.sv_data, zm.cox_data, zm.irt_data, zm.lv_data, zm.poisson_data,
               zm.horseshoe_data, zm.robust_data, *zm.zoo_models_ts.DATA,
               *zm.zoo_models_more.DATA, *zm.zoo_models_ode.DATA, *zm.zoo_models_irt.DATA):
        a, b = fn.__wrapped__(), fn.__wrapped__()
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    X, y = zm.diabetes_design()
    assert X.shape == (442, 25) and y.shape == (442,)
    assert zm.design_condition_number() >= 1e5
    obs_idx, _ = zm.random_walk_data()
    assert obs_idx.size == 20  # 10 of 30 missing


def test_random_walk_exact_reference_is_the_model():
    """benchmarks/zoo_exact.py's quadrature is the model's own posterior: at random (log σ_w,
    log σ_obs, x), log p̃(z) − log N(x; m(a, b), P(a, b)) − log p(a, b | y) is one constant (to
    1e-8), so the conditional Gaussian of x and the grid's marginal of the scales factorise the
    NumPyro model exactly; and the exact draws agree with the quadrature's moments (log σ_obs:
    mean within 0.1 sd and sd within 10 % from 4000 draws of its heavy e^b left tail; x within
    0.1 sd and 5 %)."""
    import jax
    from scipy.stats import multivariate_normal

    import zoo_exact as ze

    post = zm.posterior("random_walk_missing")
    assert post.coordinate_names()[:3] == ["sigma_w", "sigma_obs", "x[0]"]
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(5):
        a, b = rng.uniform(-2.0, 0.5), rng.uniform(-4.0, 0.5)
        mean, cov = ze.rw_conditional(a, b)
        x = rng.multivariate_normal(mean, cov)
        z = np.concatenate([[a, b], x])
        lp = float(jax.jit(post.log_prob_jax)(z))
        diffs.append(lp - multivariate_normal(mean, cov).logpdf(x) - float(ze.rw_log_marginal(a, b)))
    assert np.ptp(diffs) < 1e-8, diffs
    q = ze.rw_quadrature()
    d = ze.rw_exact(4000, seed=1)
    lb = np.log(d["sigma_obs"])
    m, s = q["log_sigma_obs"]
    assert abs(lb.mean() - m) < 0.1 * s and abs(lb.std() / s - 1) < 0.1
    assert (np.abs(d["x"].mean(0) - q["x"][0]) / q["x"][1]).max() < 0.1
    assert np.abs(d["x"].std(0) / q["x"][1] - 1).max() < 0.05
