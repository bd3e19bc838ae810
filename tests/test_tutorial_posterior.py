"""docs/tutorial-posterior.md section 1: freeflow and NUTS in one arviz layout (plot_forest of
both, ff.bayes.side_by_side), on a short eight-schools fit and a short NUTS run."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import freeflow as ff

pytest.importorskip("numpyro")
pytest.importorskip("blackjax")
az = pytest.importorskip("arviz")
pd = pytest.importorskip("pandas")

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


@pytest.fixture(scope="module")
def both():
    import numpyro
    import numpyro.distributions as dist

    def eight_schools(sigma, y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("J", len(sigma)):
            eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
            numpyro.sample("y", dist.Normal(mu + tau * eta, sigma), obs=y)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        posterior = ff.from_numpyro(eight_schools, SIGMA, y=Y)
        sampler = ff.OneStepSampler(posterior, seed=0)
        sampler.fit(200, progress=False, check=False)
        idata_ff = sampler.to_inference_data(100)
        idata_nuts = ff.bayes.nuts_inference_data(posterior, chains=2, warmup=100, draws=100, seed=0,
                                                  progress=False)
    finally:
        torch.set_num_threads(threads)
    return posterior, sampler, idata_ff, idata_nuts


def test_same_layout(both):
    _, _, a, b = both
    assert set(a.posterior.data_vars) == set(b.posterior.data_vars) == {"mu", "tau", "eta"}
    for v in ("mu", "tau", "eta"):
        assert a.posterior[v].dims == b.posterior[v].dims
        inner = [d for d in a.posterior[v].dims if d not in ("chain", "draw")]
        assert [a.posterior.sizes[d] for d in inner] == [b.posterior.sizes[d] for d in inner]
    assert a.posterior["eta"].shape[2:] == (8,)
    assert b.posterior.sizes["chain"] == 2 and b.posterior.sizes["draw"] == 100
    assert a.posterior.sizes["chain"] == 4 and a.posterior.sizes["draw"] == 100


def test_plot_forest_of_both(both):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, _, a, b = both
    axes = az.plot_forest([a, b], model_names=["freeflow", "NUTS"], var_names=["mu", "tau", "eta"],
                          combined=True)
    axes = np.ravel(axes)
    assert len(axes) >= 1 and all(isinstance(ax, matplotlib.axes.Axes) for ax in axes)
    labels = " ".join(t.get_text() for t in axes[0].get_yticklabels())
    assert "mu" in labels and "tau" in labels and "eta" in labels
    plt.close("all")
    pair = az.plot_pair(a, var_names=["mu", "tau"])
    assert isinstance(np.ravel(pair)[0], matplotlib.axes.Axes)
    plt.close("all")


def test_side_by_side_table(both):
    _, _, a, b = both
    table = ff.bayes.side_by_side(a, b)
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["freeflow mean", "freeflow sd", "NUTS mean", "NUTS sd", "mean diff", "sd diff"]
    assert len(table) == 1 + 1 + 8
    assert table.index[0] == "mu" and table.index[1] == "tau" and table.index[2].startswith("eta[")
    assert np.isfinite(table.to_numpy()).all()
    assert (table[["freeflow sd", "NUTS sd"]] > 0).all().all()
    # the definitions: differences in units of the second posterior's sd
    mu_a = a.posterior["mu"].values.ravel()
    mu_b = b.posterior["mu"].values.ravel()
    row = table.loc["mu"]
    assert math.isclose(row["freeflow mean"], mu_a.mean(), rel_tol=1e-12)
    assert math.isclose(row["NUTS sd"], mu_b.std(ddof=1), rel_tol=1e-12)
    assert math.isclose(row["mean diff"], (mu_a.mean() - mu_b.mean()) / mu_b.std(ddof=1), rel_tol=1e-9)
    assert math.isclose(row["sd diff"], (mu_a.std(ddof=1) - mu_b.std(ddof=1)) / mu_b.std(ddof=1), rel_tol=1e-9)
    # a subset, custom labels
    sub = ff.bayes.side_by_side(a, b, names=("A", "B"), var_names="tau")
    assert list(sub.index) == ["tau"] and "A mean" in sub.columns
    # an InferenceData against itself: no difference
    same = ff.bayes.side_by_side(a, a)
    assert np.allclose(same[["mean diff", "sd diff"]].to_numpy(), 0.0)


def test_side_by_side_refuses_mismatched_layouts(both):
    _, _, a, b = both
    with pytest.raises(ValueError, match="not in the"):
        ff.bayes.side_by_side(a, b, var_names=["nope"])
    (dim,) = [d for d in b.posterior["eta"].dims if d not in ("chain", "draw")]
    with pytest.raises(ValueError, match="dims"):
        ff.bayes.side_by_side(a, b.isel(**{dim: slice(0, 4)}), var_names=["eta"])


def test_save_load_round_trip(both, tmp_path):
    posterior, sampler, _, _ = both
    path = sampler.save(tmp_path / "eight_schools.pt")
    loaded = ff.OneStepSampler.load(path, posterior)
    assert torch.equal(sampler.sample_unconstrained(50, seed=3), loaded.sample_unconstrained(50, seed=3))
    draws = loaded.sample(100)
    assert set(draws) == {"mu", "tau", "eta"} and tuple(draws["eta"].shape) == (100, 8)
    assert (draws["tau"] > 0).all()
