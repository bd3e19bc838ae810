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


@pytest.mark.parametrize("name", zm.ORDER)
def test_model_dim_and_finite_log_density(name):
    """ff.from_numpyro's log-density (its JAX form, forward only: one compilation) is finite at
    a prior draw (seed 0) and at z = 0, and the dimension is the stated one."""
    import jax
    from numpyro import handlers
    from numpyro.distributions import biject_to

    post = zm.posterior(name)
    assert post.dim == zm.DIMS[name]
    model, args, kwargs, description = zm.REGISTRY[name]
    assert isinstance(description, str) and description
    trace = handlers.trace(handlers.seed(model, rng_seed=0)).get_trace(*args, **kwargs)
    z_prior = np.concatenate([np.ravel(biject_to(trace[k]["fn"].support).inv(trace[k]["value"]))
                              for k in post.names])
    assert z_prior.shape == (post.dim,)
    lp = np.asarray(jax.jit(jax.vmap(post.log_prob_jax))(np.stack([z_prior, np.zeros(post.dim)])))
    assert lp.shape == (2,) and np.isfinite(lp).all(), (name, lp)


def test_data_deterministic_and_design_ill_conditioned():
    for fn in (zm.random_walk_data, zm.sv_data, zm.cox_data, zm.irt_data, zm.lv_data):
        a, b = fn.__wrapped__(), fn.__wrapped__()
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    X, y = zm.diabetes_design()
    assert X.shape == (442, 25) and y.shape == (442,)
    assert zm.design_condition_number() >= 1e5
    obs_idx, _ = zm.random_walk_data()
    assert obs_idx.size == 20  # 10 of 30 missing
