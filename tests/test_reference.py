"""NUTS reference, torch->JAX bridge and draw cache (freeflow.compare.reference).

Statistical tolerances are stated next to each check; the NUTS runs are small (2 chains,
300 warmup, 500 draws) and share compiled programs (the memo in nuts.py), so the file runs in
well under a minute on an idle 2-core machine.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

jax = pytest.importorskip("jax")
pytest.importorskip("blackjax")
pytest.importorskip("arviz")

from freeflow.compare.reference import BridgeError, Reference, TorchBridge, nuts, validate_log_density  # noqa: E402
from freeflow.compare.reference.cache import DrawCache  # noqa: E402
from freeflow.compare.reference.nuts import _reliability_reasons  # noqa: E402

# A correlated 3-D Gaussian: the closed form the NUTS draws are checked against.
MU = np.array([1.0, -2.0, 0.5])
COV = np.array([[1.0, 0.8, 0.2], [0.8, 1.5, -0.3], [0.2, -0.3, 0.5]])
_PREC = torch.tensor(np.linalg.inv(COV))
_MU_T = torch.tensor(MU)


def gauss_log_density(x: torch.Tensor) -> torch.Tensor:
    d = x - _MU_T.to(x.dtype)
    return -0.5 * ((d @ _PREC.to(x.dtype)) * d).sum(-1)


def wiggly_log_density(x: torch.Tensor) -> torch.Tensor:
    """Non-Gaussian, non-separable: exercises the gradient beyond a linear map."""
    return -0.25 * (x**4).sum(-1) + torch.sin(x[:, 0] * x[:, 1]) - torch.logsumexp(x, dim=-1)


SMALL = dict(chains=2, warmup=300, draws=500, progress=False)


@pytest.fixture(scope="module")
def gauss_ref():
    return nuts(gauss_log_density, 3, seed=0, **SMALL)


@pytest.fixture(scope="module")
def schools_ref(tmp_path_factory):
    """(target, reference, cache_dir): NUTS through the target's JAX log-density, cached."""
    posteriors = pytest.importorskip("targets.posteriors")  # needs the targets registry
    target = posteriors.EightSchoolsNonCentred()
    cache_dir = tmp_path_factory.mktemp("nuts_cache")
    return target, nuts(target, seed=0, cache_dir=cache_dir, **SMALL), cache_dir


# ---------------------------------------------------------------- bridge -----------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bridge_value_and_grad_equal_torch(seed):
    jnp = pytest.importorskip("jax.numpy")
    bridge = TorchBridge(wiggly_log_density, 4)
    x = np.random.default_rng(seed).normal(size=(5, 4)) * 1.5
    v, g = jax.jit(jax.vmap(jax.value_and_grad(bridge.logdensity_fn)))(jnp.asarray(x))
    xt = torch.tensor(x, requires_grad=True)
    lp = wiggly_log_density(xt)
    (gt,) = torch.autograd.grad(lp.sum(), xt)
    assert v.dtype == jnp.float64 and g.shape == (5, 4)
    # Same float64 arithmetic on the same inputs: equal to the last bit (allow 1 ulp-ish).
    np.testing.assert_allclose(np.array(v), lp.detach().numpy(), rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(np.array(g), gt.numpy(), rtol=1e-15, atol=1e-15)
    # Unbatched value without gradient (primal path), and one batched torch call per vmap.
    calls = bridge.n_calls
    val0 = bridge.logdensity_fn(jnp.asarray(x[0]))
    np.testing.assert_allclose(float(val0), float(lp[0].detach()), rtol=1e-15)
    jax.vmap(jax.grad(bridge.logdensity_fn))(jnp.asarray(x))
    assert bridge.n_calls == calls + 2


def test_bridge_reports_errors_raised_inside_jax():
    jnp = pytest.importorskip("jax.numpy")

    def breaks_far_out(x):
        if (x.abs() > 10).any():
            raise RuntimeError("out of range")
        return -(x**2).sum(-1)

    bridge = TorchBridge(breaks_far_out, 2)
    out = jax.jit(jax.value_and_grad(bridge.logdensity_fn))(jnp.array([20.0, 0.0]))
    assert np.isnan(float(out[0]))
    with pytest.raises(BridgeError, match="log_density raised RuntimeError: out of range"):
        bridge.raise_if_failed()


@pytest.mark.parametrize(
    "fn, err, match",
    [
        (lambda x: x.sum(), ValueError, r"shape \(4,\)"),
        (lambda x: (x**2).sum(-1, keepdim=True), ValueError, r"shape \(4,\)"),
        (lambda x: (x.float() ** 2).sum(-1), TypeError, "dtype"),
        (lambda x: 1 / 0, ValueError, "log_density raised ZeroDivisionError"),
        (lambda x: torch.full((x.shape[0],), float("nan"), dtype=x.dtype), ValueError, "not finite"),
        (lambda x: torch.from_numpy(-(x.detach().numpy() ** 2).sum(-1)), ValueError, "not differentiable"),
        (lambda x: -((x - x.mean(0)) ** 2).sum(-1), ValueError, "row-independent"),
        (lambda x: [0.0] * x.shape[0], TypeError, "must return a torch.Tensor"),
    ],
)
def test_validate_rejects_bad_log_density(fn, err, match):
    with pytest.raises(err, match=match):
        validate_log_density(fn, 3)


def test_nuts_bad_input_fails_before_sampling():
    with pytest.raises(ValueError, match="log_density"):
        nuts(lambda x: x.sum(), 3, **SMALL)
    with pytest.raises(ValueError, match="dim"):
        nuts(gauss_log_density, None, **SMALL)
    with pytest.raises(ValueError, match="chains"):
        nuts(gauss_log_density, 3, chains=0, warmup=10, draws=10, progress=False)
    with pytest.raises(ValueError, match="init"):
        nuts(gauss_log_density, 3, init=np.zeros((5, 3)), **SMALL)
    with pytest.raises(ValueError, match="cache_key"):
        nuts(gauss_log_density, 3, cache_dir="/tmp/never", **SMALL)


# ---------------------------------------------------------------- NUTS -------------------
def test_nuts_correlated_gaussian_moments(gauss_ref):
    ref = gauss_ref
    assert isinstance(ref, Reference)
    assert ref.draws.shape == (2, 500, 3) and ref.draws.dtype == np.float64
    x = ref.draws.reshape(-1, 3)
    sd = np.sqrt(np.diag(COV))
    ess = ref.ess_bulk
    assert ess > 200, ref.summary()
    # Mean: Monte Carlo sd of the mean is sd/sqrt(ESS) (<= 0.07 sd at ESS 200); allow 4 of them.
    np.testing.assert_array_less(np.abs(x.mean(0) - MU) / sd, 4 / np.sqrt(ess))
    # Variances: relative Monte Carlo error ~ sqrt(2/ESS) (0.1 at ESS 200); allow 3.5 of them.
    cov = np.cov(x.T)
    np.testing.assert_array_less(np.abs(np.diag(cov) / np.diag(COV) - 1), 3.5 * np.sqrt(2 / ess))
    # Correlations: error ~ (1 - rho^2)/sqrt(ESS) <= 0.07; allow 0.2.
    corr = cov / np.outer(np.sqrt(np.diag(cov)), np.sqrt(np.diag(cov)))
    true_corr = COV / np.outer(sd, sd)
    np.testing.assert_array_less(np.abs(corr - true_corr), 0.2)
    assert ref.divergences == 0
    assert ref.rhat < 1.05  # 1.01 is the reliability bar; a 2x500 run sits near it by noise
    assert ref.diagnostics["grad_evals_sampling"] >= 1000
    t = ref.samples()
    assert t.dtype == torch.float32 and t.shape == (1000, 3)
    assert ref.samples(100).shape == (100, 3)


def test_reliability_flags():
    ok = {"divergences": 0, "rhat_max": 1.002, "ess_bulk_min": 900.0, "ess_tail_min": 800.0}
    th = {"max_rhat": 1.01, "max_divergence_fraction": 1e-3, "min_ess_per_chain": 100.0}
    assert _reliability_reasons(ok, 4, 8000, th) == []
    bad = dict(ok, divergences=40, rhat_max=1.05)
    reasons = _reliability_reasons(bad, 4, 8000, th)
    assert any("divergent" in r for r in reasons) and any("R-hat" in r for r in reasons)
    assert _reliability_reasons(dict(ok, rhat_max=float("nan")), 4, 8000, th)
    assert _reliability_reasons(dict(ok, ess_bulk_min=50.0), 4, 8000, th)


# ---------------------------------------------------------------- cache ------------------
def test_cache_reuse_recompute_and_damage(schools_ref):
    target, ref, cache_dir = schools_ref
    again = nuts(target, seed=0, cache_dir=cache_dir, **SMALL)
    assert again.from_cache and not ref.from_cache
    np.testing.assert_array_equal(again.draws, ref.draws)
    assert again.diagnostics["rhat_max"] == pytest.approx(ref.diagnostics["rhat_max"])
    assert again.reliable == ref.reliable

    # A changed setting (fewer draws) is a different key: recomputed, not reused.
    short_settings = dict(SMALL, draws=250)
    short = nuts(target, seed=0, cache_dir=cache_dir, **short_settings)
    assert not short.from_cache and short.draws.shape == (2, 250, 10)
    assert len(list(cache_dir.glob("*.npz"))) == 2 and len(list(cache_dir.glob("*.json"))) == 2

    # Damage the short run's draws file: detected by its checksum and recomputed.
    for npz in cache_dir.glob("*.npz"):
        if np.load(npz)["draws"].shape[1] == 250:
            npz.write_bytes(npz.read_bytes()[:100])
    redo = nuts(target, seed=0, cache_dir=cache_dir, **short_settings)
    assert not redo.from_cache
    np.testing.assert_array_equal(redo.draws, short.draws)  # same seed, same draws
    assert nuts(target, seed=0, cache_dir=cache_dir, **short_settings).from_cache


def test_draw_cache_detects_mismatch_and_corruption(tmp_path):
    cache = DrawCache(tmp_path, "unit")
    settings = {"chains": 2, "draws": 3}
    arrays = {"draws": np.arange(12.0).reshape(2, 3, 2)}
    cache.save("k", settings, arrays, {"timings": {"total_s": 1.0}})
    hit = cache.load("k", settings, expected_shape=(2, 3, 2))
    assert hit is not None and np.array_equal(hit[0]["draws"], arrays["draws"])
    assert cache.load("k", {"chains": 2, "draws": 4}) is None
    assert cache.load("k", settings, expected_shape=(2, 4, 2)) is None
    npz, meta = cache.paths(__import__("freeflow.compare.reference.cache", fromlist=["cache_key"]).cache_key("k", settings))
    # Settings stored beside the draws are compared, not just the file name.
    text = meta.read_text().replace('"draws": 3', '"draws": 5')
    meta.write_text(text)
    assert cache.load("k", settings) is None and "settings" in cache.last_miss_reason
    cache.save("k", settings, arrays, {})
    meta.write_text("{not json")
    assert cache.load("k", settings) is None and "unreadable" in cache.last_miss_reason
    cache.save("k", settings, arrays, {})
    npz.write_bytes(b"")
    assert cache.load("k", settings) is None and "checksum" in cache.last_miss_reason
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries


# ---------------------------------------------------------------- eight schools ----------
def _eight_schools():
    posteriors = pytest.importorskip("targets.posteriors")  # needs the targets registry
    return posteriors.EightSchoolsCentred(), posteriors.EightSchoolsNonCentred()


@pytest.mark.parametrize("seed", [0, 1])
def test_eight_schools_log_z_and_sampler_by_prior_importance_sampling(seed):
    """Independent check of log_Z, the density's normalisation and the exact sampler:
    importance sampling from the prior (mu ~ N(0,5²), tau ~ HalfCauchy(5), eta ~ N(0,1))."""
    import math

    centred, noncentred = _eight_schools()
    g = torch.Generator().manual_seed(seed)
    n = 200_000
    mu = 5 * torch.randn(n, generator=g, dtype=torch.float64)
    tau = 5 * torch.tan(math.pi / 2 * torch.rand(n, generator=g, dtype=torch.float64))
    eta = torch.randn(n, 8, generator=g, dtype=torch.float64)
    x = torch.cat([mu[:, None], tau.log()[:, None], eta], 1)
    log_prior = (-0.5 * (mu / 5) ** 2 - math.log(5) - 0.5 * math.log(2 * math.pi)
                 + math.log(2 / (math.pi * 5)) - torch.log1p((tau / 5) ** 2) + x[:, 1]
                 + (-0.5 * eta**2 - 0.5 * math.log(2 * math.pi)).sum(1))
    log_w = noncentred.log_prob(x) - log_prior
    log_z = float(torch.logsumexp(log_w, 0) - math.log(n))
    w = torch.softmax(log_w, 0)
    ess = float(1 / (w**2).sum())
    assert ess > 20_000
    # Relative error of the IS evidence ~ 1/sqrt(ESS) <= 0.007: allow 0.03 in log Z.
    assert log_z == pytest.approx(noncentred.log_Z, abs=0.03)
    assert centred.log_Z == pytest.approx(noncentred.log_Z, abs=1e-12)
    # Exact sampler vs importance-weighted posterior moments (both Monte Carlo: stated 5 sigma).
    exact = noncentred.to_school_effects(noncentred.sample(100_000, g).double())
    for k, v in [(0, mu), (1, torch.log(tau))]:
        is_mean = float((w * v).sum())
        sd = float(exact[:, k].std()) if k == 0 else float(torch.log(exact[:, 1]).std())
        ex_mean = float(exact[:, 0].mean()) if k == 0 else float(torch.log(exact[:, 1]).mean())
        assert abs(is_mean - ex_mean) < 5 * sd * (1 / math.sqrt(ess) + 1 / math.sqrt(100_000))


def test_eight_schools_parameterisations_agree():
    centred, noncentred = _eight_schools()
    jnp = pytest.importorskip("jax.numpy")
    from freeflow.compare.reference.bridge import enable_x64

    enable_x64()
    x = noncentred.sample(50, torch.Generator().manual_seed(3)).double()
    tau = x[:, 1].exp()
    xc = torch.cat([x[:, :2], x[:, :1] + tau[:, None] * x[:, 2:]], 1)
    # Change of variables eta -> theta = mu + tau eta has log-Jacobian 8 s.
    torch.testing.assert_close(centred.log_prob(xc) + 8 * x[:, 1], noncentred.log_prob(x),
                               rtol=1e-12, atol=1e-9)
    for t, pts in [(centred, xc), (noncentred, x)]:
        jax_vals = np.array([float(t.log_prob_jax(jnp.asarray(p.numpy()))) for p in pts[:5]])
        np.testing.assert_allclose(jax_vals, t.log_prob(pts[:5]).numpy(), rtol=1e-12)
        assert t.config() == {"name": t.name} and t.dim == 10


def test_nuts_on_target_with_jax_log_density_matches_exact(schools_ref):
    """The Target path (log_prob_jax, no bridge) on non-centred eight schools vs exact draws."""
    noncentred, ref, _ = schools_ref
    assert ref.settings["backend"] == "jax" and ref.draws.shape == (2, 500, 10)
    exact = noncentred.sample(50_000, torch.Generator().manual_seed(0)).double().numpy()
    x = ref.draws.reshape(-1, 10)
    sd = exact.std(0)
    # Mean error in posterior sd: MC error 1/sqrt(ESS) with ESS >= 200 -> allow 0.3.
    np.testing.assert_array_less(np.abs(x.mean(0) - exact.mean(0)) / sd, 0.3)
    np.testing.assert_array_less(np.abs(x.std(0) / sd - 1), 0.25)


def test_draw_cache_requires_named_arrays(tmp_path):
    cache = DrawCache(tmp_path, "unit")
    cache.save("k", {"a": 1}, {"draws": np.zeros((1, 2, 1))}, {})
    assert cache.load("k", {"a": 1}, required=("divergent",)) is None
    assert "missing" in cache.last_miss_reason
    assert cache.load("k", {"a": 1}) is not None


def test_atomic_write_keeps_usual_permissions(tmp_path):
    import os
    import stat

    from freeflow.io import atomic_write_text

    atomic_write_text("{}", tmp_path / "a.json")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~mask


def test_default_starts_are_redrawn_where_the_gradient_is_not_finite():
    """Stan's default starts (uniform on [-2, 2]^d), retried from shrinking boxes where log p̃
    or its gradient is not finite: a density finite only on |x_j| < 0.3 (from [-2, 2]^5 a
    start lands there with probability 0.15^5 ≈ 1e-4) gets finite starts, and the ones that
    were finite are kept as drawn."""
    from freeflow.compare.reference.nuts import _finite_default_starts, _initial_positions

    def vg(x):
        inside = (np.abs(x) < 0.3).all(1)
        val = np.where(inside, -0.5 * (x ** 2).sum(1), np.nan)
        return val, np.where(inside[:, None], -x, np.nan)

    x0 = _initial_positions(None, 6, 5, seed=3)
    x0[0] = 0.1  # a start that is already finite stays
    x = _finite_default_starts(x0, 3, vg)
    assert np.isfinite(vg(x)[0]).all() and np.isfinite(vg(x)[1]).all()
    np.testing.assert_array_equal(x[0], x0[0])


def test_nuts_on_a_model_whose_gradient_overflows_at_the_default_starts():
    """A logistic regression with 30 large-scale features: at w ~ U(-2, 2)^30 its logits reach
    |Xw| ~ 100, where this log-density's gradient is NaN (1/(1 − σ) overflows); the default
    starts shrink until finite and NUTS runs. 4 chains × 100 draws: no chain is stuck (each
    chain's mean within 1 pooled posterior sd of the others', per coordinate; a chain mean of
    100 draws is ~0.1-0.3 sd from the truth)."""
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.normal(size=(200, 30)) * 3.0)
    y = torch.tensor((rng.uniform(size=200) < 0.5).astype(np.float64))

    def log_density(w):
        p = torch.sigmoid(w @ X.to(w).T)                   # naive, as a user may write it
        return (y * torch.log(p) + (1 - y) * torch.log1p(-p)).sum(-1) - 0.5 * (w ** 2).sum(-1)

    with torch.enable_grad():
        w0 = torch.tensor(np.random.default_rng(0).uniform(-2, 2, size=(4, 30)), requires_grad=True)
        (g,) = torch.autograd.grad(log_density(w0).sum(), w0)
    assert not torch.isfinite(g).all()                    # the full box fails
    ref = nuts(log_density, 30, chains=4, warmup=150, draws=100, seed=0, progress=False)
    draws = np.asarray(ref.draws)
    assert draws.shape == (4, 100, 30) and np.isfinite(draws).all()
    m, sd = draws.mean(1), draws.reshape(-1, 30).std(0)
    assert (np.abs(m - m.mean(0)) < sd).all()
