"""Models written as users write them, through ``from_pymc`` / ``from_numpyro``: features of the
modelling languages that change the graph freeflow batches (automatic imputation of missing
observations, ...). Each: the posterior builds, its log-density equals the package's own at
random points, and constrain/unconstrain round-trip."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import freeflow as ff


def _pymc_point(model, post, z_row: np.ndarray) -> dict:
    values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    return {v.name: z_row[post.slices[rv.name]].reshape(post.raw_shapes[rv.name])
            for rv, v in zip(model.free_RVs, values)}


def test_pymc_missing_observations_are_imputed_parameters():
    """An observed array with NaNs: PyMC makes the missing entries a free RV (``y_unobserved``)
    whose distribution depends on the other free RVs, and ``y`` a deterministic joining them
    with the data. freeflow samples the imputed entries as parameters, gives PyMC's log-density
    (1e-10), and ``y`` holds the data where observed and the imputed draws where missing."""
    pm = pytest.importorskip("pymc")
    rng = np.random.default_rng(0)
    y = rng.normal(1.0, 2.0, 12)
    missing = [2, 5, 9]
    y[missing] = np.nan
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 5.0)
        s = pm.HalfNormal("s", 3.0)
        pm.Normal("y", mu, s, observed=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = ff.from_pymc(model)
    assert post.names == ("mu", "s", "y_unobserved") and post.shapes["y_unobserved"] == (3,)
    z = torch.randn(6, post.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lp = post.log_density(z)
    own = model.compile_logp(jacobian=True)
    for i in range(z.shape[0]):
        assert float(lp[i]) == pytest.approx(float(own(_pymc_point(model, post, z[i].numpy()))), abs=1e-10)
    cons = post.constrain(z)
    torch.testing.assert_close(post.unconstrain(cons), z, rtol=1e-9, atol=1e-9)
    observed = np.setdiff1d(np.arange(y.size), missing)
    np.testing.assert_allclose(cons["y"][:, observed].numpy(), np.broadcast_to(y[observed], (6, observed.size)))
    np.testing.assert_allclose(cons["y"][:, missing].numpy(), cons["y_unobserved"].numpy())
