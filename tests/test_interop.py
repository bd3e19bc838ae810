"""arviz interop: freeflow samples as InferenceData (freeflow.interop)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

az = pytest.importorskip("arviz")

from freeflow import interop  # noqa: E402
from freeflow.interop import diagnostics, draws_to_inference_data, to_inference_data  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iid_samples_summary_has_rhat_one_and_full_ess(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4000, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([0.0, 1.0, -1.0])
    idata = to_inference_data(x, chains=4)
    s = az.summary(idata)
    assert list(s.index) == ["x[0]", "x[1]", "x[2]"]
    # i.i.d. draws: R-hat within 0.01 of 1 and bulk ESS near n (arviz's estimate is noisy:
    # allow 0.6 n .. 1.6 n); the mean agrees with numpy's.
    assert np.all(np.abs(s["r_hat"].to_numpy() - 1) < 0.01)
    assert np.all(s["ess_bulk"].to_numpy() > 0.6 * 4000)
    assert np.all(s["ess_bulk"].to_numpy() < 1.6 * 4000)
    np.testing.assert_allclose(s["mean"].to_numpy(), x.double().mean(0).numpy(), atol=1e-3)
    d = diagnostics(x.double().numpy().reshape(4, 1000, 3))
    assert d["rhat_max"] < 1.01 and d["ess_bulk_min"] > 0.6 * 4000


def test_var_names_layout_and_inputs():
    x = np.random.default_rng(0).normal(size=(1000, 2))
    idata = to_inference_data(x, chains=2, var_names=["alpha", "beta"])
    post = idata.posterior
    assert set(post.data_vars) == {"alpha", "beta"}
    assert post["alpha"].shape == (2, 500)
    np.testing.assert_array_equal(post["beta"].values.reshape(-1), x[:, 1])  # chain-major order
    assert to_inference_data(x[:, 0], chains=4).posterior["x"].shape == (4, 250, 1)
    with pytest.raises(ValueError, match=r"n=998 draws, not a multiple of chains=4"):
        to_inference_data(x[:998], chains=4)  # a remainder is refused, never dropped silently
    with pytest.raises(ValueError, match="var_names"):
        to_inference_data(x, var_names=["a"])
    with pytest.raises(ValueError, match="chains"):
        to_inference_data(x, chains=0)
    with pytest.raises(ValueError, match="non-finite"):
        to_inference_data(np.full((8, 2), np.nan), chains=2)
    with pytest.raises(ValueError, match="shape"):
        to_inference_data(np.zeros((2, 3, 4)))


def test_sample_stats_and_arviz_functions_work():
    draws = np.random.default_rng(1).normal(size=(2, 300, 2))
    div = np.zeros((2, 300), dtype=bool)
    div[0, 5] = True
    idata = draws_to_inference_data(draws, sample_stats={"diverging": div})
    assert int(idata.sample_stats["diverging"].sum()) == 1
    assert float(az.rhat(idata)["x"].max()) < 1.05
    assert az.hdi(idata) is not None


def test_arviz_1x_call_form(monkeypatch):
    """arviz 1.x takes {group: {var: array}} as the first argument: the guard must use it."""
    seen = {}

    def from_dict_1x(data, *, name=None, sample_dims=None, coords=None, dims=None):
        seen["data"], seen["dims"] = data, dims
        return "datatree"

    monkeypatch.setattr(az, "from_dict", from_dict_1x)
    out = to_inference_data(np.zeros((8, 2)), chains=2)
    assert out == "datatree"
    assert set(seen["data"]) == {"posterior"} and seen["data"]["posterior"]["x"].shape == (2, 4, 2)
    assert seen["dims"] == {"x": ["x_dim_0"]}


def test_values_reads_dataset_and_arrays():
    ds = az.rhat(draws_to_inference_data(np.random.default_rng(2).normal(size=(2, 100, 3))))
    assert interop._values(ds).shape == (3,)
    assert interop._values(np.ones((2, 2))).shape == (4,)


# ------------------------------------------------------- draws per chain (sampler export) ----
@pytest.fixture(scope="module")
def plain_sampler():
    import freeflow as ff

    s = ff.OneStepSampler(lambda x: -0.5 * (x**2).sum(-1), dim=2, seed=0)
    s.fit(20, progress=False, check=False)
    return s


def test_draw_counts_rules():
    assert interop.draw_counts(250, 4) == (250, 4)
    assert interop.draw_counts(None, 2) == (1000, 2)  # default: 1000 per chain
    with pytest.warns(DeprecationWarning, match="n= .* deprecated"):
        assert interop.draw_counts(None, 4, 4000) == (1000, 4)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=r"n=4001 is not a multiple of chains=4"):
        interop.draw_counts(None, 4, 4001)
    with pytest.raises(TypeError, match="draws= .* or the deprecated n="):
        interop.draw_counts(100, 4, 400)
    for bad, exc in ((0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError), ("10", TypeError)):
        with pytest.raises(exc, match="draws"):
            interop.draw_counts(bad, 4)
        with pytest.raises(exc, match="chains"):
            interop.draw_counts(10, bad)


def test_plain_sampler_draws_per_chain_and_seed(plain_sampler):
    s = plain_sampler
    idata = s.to_inference_data(draws=30, chains=3, seed=5)
    assert idata.posterior["x"].shape == (3, 30, 2)  # draws counted per chain
    again = s.to_inference_data(30, 3, seed=5)
    np.testing.assert_array_equal(idata.posterior["x"].values, again.posterior["x"].values)
    other = s.to_inference_data(30, 3, seed=6)
    assert not np.array_equal(idata.posterior["x"].values, other.posterior["x"].values)
    # the draws are sampler.sample(draws * chains, seed), chain-major
    np.testing.assert_allclose(idata.posterior["x"].values.reshape(90, 2),
                               s.sample(90, seed=5).double().numpy(), rtol=0, atol=0)
    with pytest.warns(DeprecationWarning):
        assert s.to_inference_data(n=40, chains=4).posterior["x"].shape == (4, 10, 2)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="not a multiple of chains"):
        s.to_inference_data(n=42, chains=4)
    with pytest.raises(ValueError, match="log_likelihood"):
        s.to_inference_data(10, log_likelihood=True)
    with pytest.raises(ValueError, match="posterior_predictive"):
        s.to_inference_data(10, posterior_predictive=True)
