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
    with pytest.warns(UserWarning, match="dropping the last 2"):
        assert to_inference_data(x[:998], chains=4).posterior["x"].shape == (4, 249, 2)
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
