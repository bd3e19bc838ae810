"""device= and dtype=: every public entry point honours them (exercised on the CPU in float64,
the only placement this machine has besides the default), and bad placements are refused
before any work, with errors naming the argument."""
from __future__ import annotations

import math

import pytest
import torch

import freeflow as ff
from freeflow.placement import check_placed_output, resolve_device, resolve_dtype

F64 = torch.float64


class Recorder:
    """A standard normal log-density in d dimensions that records the dtypes and devices it sees."""

    def __init__(self, dim: int = 2):
        self.dim, self.seen = dim, set()

    def __call__(self, x):
        self.seen.add((x.dtype, x.device.type))
        return -0.5 * x.pow(2).sum(-1)


# -- bad input ----------------------------------------------------------------------------------

def test_bad_devices_are_refused_before_the_log_density_is_called(monkeypatch):
    lp = Recorder()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device='cuda'.*not available"):
        ff.OneStepSampler(lp, 2, device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"device='cuda:7'.*2 CUDA device"):
        ff.OneStepSampler(lp, 2, device="cuda:7")
    with pytest.raises(ValueError, match=r"device='gpu0' is not a device"):
        ff.OneStepSampler(lp, 2, device="gpu0")
    with pytest.raises(TypeError, match="device must be"):
        ff.OneStepSampler(lp, 2, device=3.5)
    with pytest.raises(ValueError, match=r"device='cuda:9'"):
        ff.DataFlow(2, device="cuda:9")
    assert lp.seen == set()  # refused before the probe


@pytest.mark.parametrize("dtype, err, match", [
    (torch.int64, ValueError, "dtype must be a floating dtype"),
    (torch.complex64, ValueError, "dtype must be a floating dtype"),
    (torch.float16, ValueError, "only torch.float32 and torch.float64"),
    ("float", ValueError, "'float32' and 'float64'"),
    ("double", ValueError, "'float32' and 'float64'"),
    (64, TypeError, "dtype must be"),
])
def test_bad_dtypes_are_refused(dtype, err, match):
    lp = Recorder()
    with pytest.raises(err, match=match):
        ff.OneStepSampler(lp, 2, dtype=dtype)
    assert lp.seen == set()


def test_dtype_names_and_defaults():
    assert resolve_dtype("float64") is F64 and resolve_dtype("torch.float32") is torch.float32
    assert resolve_dtype(None) is torch.get_default_dtype() is torch.float32
    assert resolve_device(None) == torch.device("cpu") == resolve_device("cpu")


def test_log_density_in_another_dtype_or_device_is_named():
    with pytest.raises(ValueError, match=r"log_density returned torch.float32 for torch.float64 input"):
        ff.OneStepSampler(lambda x: -0.5 * x.float().pow(2).sum(-1), 2, dtype=F64)

    class Target:
        dim = 2

        def log_prob(self, x):
            return -0.5 * x.float().pow(2).sum(-1)

    with pytest.raises(ValueError, match=r"Target.log_prob returned torch.float32"):
        ff.OneStepSampler(Target(), dtype=F64)
    # another device (no second device here: the meta device stands in for one)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="f returned a tensor on meta for input on cpu"):
        check_placed_output(torch.zeros(3, device="meta"), x, "f")
    check_placed_output(torch.zeros(3, dtype=F64), x, "f")  # float64 at float32 input: allowed, as before


# -- float64 end to end ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted64():
    lp = Recorder(2)
    s = ff.OneStepSampler(lp, 2, dtype="float64", seed=0, generator="flow", batch_size=256)
    s.fit(150, progress=False)
    return s, lp


def test_float64_sampler_trains_samples_and_checks_in_float64(fitted64):
    s, lp = fitted64
    assert lp.seen == {(F64, "cpu")}  # probe, training, verdict (Gibbs and MCMC checks) all in float64
    assert all(p.dtype == F64 for p in s.generator.parameters())
    assert all(p.dtype == F64 for p in s.state.ema.module.parameters())
    moments = [v for st in s.state.optimizer.state.values() for k, v in st.items() if k != "step"]
    assert moments and all(m.dtype == F64 for m in moments)
    assert s.sample(64).dtype == F64 and s.sample(8, refine=2).dtype == F64
    x, log_q = s.sample_and_log_prob(500, seed=1)
    assert x.dtype == log_q.dtype == F64
    # exact log q of the flow generator, in float64: the change of variables agrees with its inverse
    _, lw = s.importance_weights(500, seed=1)
    assert lw.dtype == F64
    assert torch.allclose(lw, (-0.5 * x.pow(2).sum(-1)) - log_q, atol=1e-9)
    rel = s.last_reliability
    assert rel is not None and rel.trusted is not None
    assert lp.seen == {(F64, "cpu")}


def test_float64_log_normalizer_of_a_gaussian(fitted64):
    s, _ = fitted64
    # N(0, I) in 2-D: log Z = log 2π; the estimate within 5 standard errors (plus 0.01 for bias)
    for seed in (1, 2, 3):
        log_z, se = s.log_normalizer(4000, seed=seed)
        assert abs(log_z - math.log(2 * math.pi)) < 5 * se + 0.01, (seed, log_z, se)
    summ = s.importance_summary(2000, seed=4)
    assert summ.ess > 0.5


def test_save_and_load_across_dtypes(fitted64, tmp_path):
    s, _ = fitted64
    path = s.save(tmp_path / "s64.pt")
    s32 = ff.OneStepSampler.load(path, s.log_density.log_density, map_location="cpu", dtype=torch.float32)
    assert s32.placement.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in s32.generator.parameters())
    assert s32.sample(20, seed=5).dtype == torch.float32
    for p32, p64 in zip(s32.state.ema.module.parameters(), s.state.ema.module.parameters()):
        assert torch.equal(p32, p64.float())  # the weights, rounded once
    # the same noise through both: equal to float32 rounding (outputs are O(1), 2e-5 ≈ 100 ulp)
    z = torch.randn(200, s.settings["noise_dim"], generator=torch.Generator().manual_seed(5), dtype=F64)
    with torch.no_grad():
        a, b = s.state.ema.module(z), s32.state.ema.module(z.float())
    assert (a - b.double()).abs().max() < 2e-5
    s64 = ff.OneStepSampler.load(path, s.log_density.log_density)  # default: the saved placement
    assert s64.placement.dtype == F64 and torch.equal(s64.sample(50, seed=6), s.sample(50, seed=6))
    s32.fit(s32.steps_done + 3, progress=False, check=False)  # training resumes in the new dtype
    moments = [v for st in s32.state.optimizer.state.values() for k, v in st.items() if k != "step"]
    assert all(m.dtype == torch.float32 for m in moments)
    path32 = s32.save(tmp_path / "s32.pt")
    back = ff.OneStepSampler.load(path32, s.log_density.log_density, dtype="float64")
    assert back.sample(4).dtype == F64
    with pytest.raises(ValueError, match="map_location='cuda:3'"):
        ff.OneStepSampler.load(path32, s.log_density.log_density, map_location="cuda:3")


def test_default_placement_is_unchanged():
    s = ff.OneStepSampler(Recorder(2), 2, seed=0)
    assert s.placement.device == torch.device("cpu") and s.placement.dtype == torch.float32
    assert s.sample(4).dtype == torch.float32


def test_dataflow_float64(tmp_path):
    data = torch.randn(300, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0
    flow = ff.DataFlow(2, dtype=F64, seed=0, batch_size=64)
    flow.fit(data, steps=5)
    assert flow.sample(16).dtype == F64
    assert all(p.dtype == F64 for p in flow.generator.parameters())
    loaded = ff.DataFlow.load(flow.save(tmp_path / "d.pt"), dtype="float32")
    assert loaded.sample(4).dtype == torch.float32
    z = torch.randn(50, flow.noise_dim, generator=torch.Generator().manual_seed(2), dtype=F64)
    with torch.no_grad():
        assert torch.allclose(loaded.state.ema.module(z.float()).double(), flow.state.ema.module(z), atol=1e-4)
    with pytest.raises(ValueError, match="dtype must be a floating dtype"):
        ff.DataFlow(2, dtype=torch.int32)


def test_posterior_float64():
    D = torch.distributions
    post = ff.Posterior(lambda v: D.Normal(1.0, 2.0).log_prob(v["mu"]) + D.HalfNormal(1.0).log_prob(v["s"]),
                        {"mu": "real", "s": "positive"})
    s = ff.OneStepSampler(post, dtype=F64, seed=0, batch_size=128)
    s.fit(20, progress=False, check=False)
    draws = s.sample(32)
    assert draws["mu"].dtype == draws["s"].dtype == F64 and bool((draws["s"] > 0).all())


def test_numpyro_model_through_ff_sample_in_float64():
    pytest.importorskip("numpyro")
    import numpy as np
    import numpyro
    import numpyro.distributions as dist

    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 3.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    y = np.array([0.3, 1.1, 0.7, 1.9])
    idata, s = ff.sample(model, draws=50, chains=2, seed=0, model_kwargs={"y": y}, dtype=F64,
                         steps=40, progress=False, check=False, return_sampler=True)
    assert s.placement.dtype == F64 and s.sample_unconstrained(8).dtype == F64
    assert s.log_density(torch.zeros(3, 1, dtype=F64)).dtype == F64  # the host boundary converts back
    assert idata.posterior["mu"].shape == (2, 50)
