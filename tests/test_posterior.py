"""freeflow.Posterior: constraint transforms, log-Jacobians, fits of known densities,
the sampler and arviz export with named parameters, and bad input."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch.distributions import constraints

import freeflow as ff
from freeflow.bayes.constraints import parse_spec

D = torch.distributions

# spec -> the torch constraint its values must satisfy
SPECS = {
    "real": ((), constraints.real),
    "real_vec": ((4,), constraints.real),
    "positive": (("positive", 3), constraints.positive),
    "unit_interval": (("unit_interval", (2, 2)), constraints.unit_interval),
    "interval": (("interval", -1.0, 2.5, 3), constraints.interval(-1.0, 2.5)),
    "greater_than": (("greater_than", 2.0), constraints.greater_than(2.0)),
    "less_than": (("less_than", -1.0, 2), constraints.less_than(-1.0)),
    "simplex": (("simplex", 4), constraints.simplex),
    "simplex_batch": (("simplex", (2, 3)), constraints.simplex),
    "corr_cholesky": (("corr_cholesky", 3), constraints.corr_cholesky),
    "lower_cholesky": (("lower_cholesky", 3), constraints.lower_cholesky),
    "constraint_object": ((constraints.positive, (2,)), constraints.positive),
}


def _free_coordinates(label: str, x: torch.Tensor) -> torch.Tensor:
    """The coordinates in which densities on the support are taken (module docstring of
    freeflow.bayes.constraints), flattened: all entries, the first K-1 of a simplex, the
    strictly lower triangle of a correlation Cholesky factor, the lower triangle of L."""
    if label == "simplex":
        return x[..., :-1].reshape(-1)
    if label not in ("corr_cholesky", "lower_cholesky"):
        return x.reshape(-1)
    k = x.shape[-1]
    if label == "corr_cholesky":
        i, j = torch.tril_indices(k, k, offset=-1)
        return x[..., i, j].reshape(-1)
    i, j = torch.tril_indices(k, k)
    return x[..., i, j].reshape(-1)


@pytest.mark.parametrize("key", sorted(SPECS))
def test_transform_support_round_trip_and_log_jacobian(key):
    spec, support = SPECS[key]
    b = parse_spec("p", spec)
    g = torch.Generator().manual_seed(0)
    u = 2.0 * torch.randn(64, b.size, generator=g, dtype=torch.float64)
    x, ladj = b.constrain(u)
    assert x.shape == (64,) + b.shape and ladj.shape == (64,)
    # inside the support (event constraints are checked on their event dims)
    assert bool(support.check(x).all())
    torch.testing.assert_close(b.unconstrain(x), u, rtol=1e-8, atol=1e-8)
    # log|det J| against autograd, in the free coordinates; tolerance: float64 round-off
    for i in range(4):
        def f(ui):
            xi, _ = b.constrain(ui[None])
            return _free_coordinates(b.label, xi[0])
        jac = torch.autograd.functional.jacobian(f, u[i])
        assert jac.shape[0] == jac.shape[1] == b.size  # square in the free coordinates
        expected = torch.linalg.slogdet(jac)[1]
        assert float(ladj[i]) == pytest.approx(float(expected), abs=1e-9)


def _integral(post: ff.Posterior, lo: float, hi: float, m: int) -> float:
    """∫ exp(log_density) over [lo, hi]^dim by the trapezoid rule on m points per axis."""
    t = torch.linspace(lo, hi, m, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(*[t] * post.dim, indexing="ij"), -1).reshape(-1, post.dim)
    with torch.no_grad():
        dens = post.log_density(grid).exp().reshape((m,) * post.dim)
    for _ in range(post.dim):
        dens = torch.trapezoid(dens, t, dim=0)
    return float(dens)


@pytest.mark.parametrize("case", ["gamma", "beta", "interval", "dirichlet3", "lkj2", "lkj3"])
def test_normalised_density_integrates_to_one(case):
    """A normalised log_joint pushed to the unconstrained space stays normalised: a check of
    the log-Jacobian's volume convention (simplex, LKJ) against the densities' own.
    Tolerance 2e-3: trapezoid error on the grid plus the truncated tails (computed < 1e-4)."""
    # validate_args=False: torch's support check rejects float32 factors (row norms 1 ± 1e-7)
    lkj = lambda k: lambda v: D.LKJCholesky(k, 1.5, validate_args=False).log_prob(v["L"])  # noqa: E731
    make, lo, hi, m = {
        "gamma": (lambda: ff.Posterior(lambda v: D.Gamma(3.0, 2.0).log_prob(v["x"]), {"x": "positive"}), -12, 6, 2001),
        "beta": (lambda: ff.Posterior(lambda v: D.Beta(2.0, 5.0).log_prob(v["x"]), {"x": "unit_interval"}), -20, 12, 2001),
        "interval": (lambda: ff.Posterior(lambda v: D.Uniform(-1.0, 3.0).log_prob(v["x"]), {"x": ("interval", -1, 3)}),
                     -30, 30, 4001),
        "dirichlet3": (lambda: ff.Posterior(lambda v: D.Dirichlet(torch.tensor([2.0, 3.0, 1.5], dtype=torch.float64))
                                    .log_prob(v["p"]), {"p": ("simplex", 3)}), -15, 15, 601),
        "lkj2": (lambda: ff.Posterior(lkj(2), {"L": ("corr_cholesky", 2)}), -10, 10, 2001),
        "lkj3": (lambda: ff.Posterior(lkj(3), {"L": ("corr_cholesky", 3)}), -8, 8, 121),
    }[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the uniform is flat: no gradient
        post = make()
    assert _integral(post, lo, hi, m) == pytest.approx(1.0, abs=2e-3)


def test_posterior_layout_and_log_density():
    y = torch.tensor([1.0, -2.0, 0.5])

    def log_joint(v):
        return (D.Normal(0, 5).log_prob(v["mu"]) + D.HalfCauchy(2.0).log_prob(v["tau"])
                + D.Normal(v["mu"][:, None], v["tau"][:, None]).log_prob(v["theta"]).sum(-1)
                + D.Normal(v["theta"], 1.0).log_prob(y).sum(-1)
                + D.LKJCholesky(3, 2.0).log_prob(v["L"]))

    params = {"mu": (), "tau": "positive", "theta": (3,), "L": ("corr_cholesky", 3)}
    post = ff.Posterior(log_joint, params)
    assert post.names == ("mu", "tau", "theta", "L")
    assert post.shapes == {"mu": (), "tau": (), "theta": (3,), "L": (3, 3)}
    assert post.dim == 1 + 1 + 3 + 3
    assert post.dims["theta"] == ["theta_dim_0"] and post.dims["L"] == ["L_dim_0", "L_dim_1"]
    z = torch.randn(2, 5, post.dim, dtype=torch.float64)          # any leading batch shape
    v = post.constrain(z)
    assert v["theta"].shape == (2, 5, 3) and v["L"].shape == (2, 5, 3, 3)
    torch.testing.assert_close(post.unconstrain(v), z)
    # log p̃_z = log_joint(T z) + Σ log|det J| (blocks summed, batch preserved)
    flat = z.reshape(-1, post.dim)
    vf = post.constrain(flat)
    ladj = sum(parse_spec(k, params[k]).constrain(flat[:, post.slices[k]])[1] for k in post.names)
    torch.testing.assert_close(post.log_density(z).reshape(-1), log_joint(vf) + ladj)
    # differentiable, dtype kept
    zg = torch.randn(4, post.dim, requires_grad=True)
    out = post.log_density(zg)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert torch.isfinite(zg.grad).all()


@pytest.mark.parametrize("case", ["gamma", "beta"])
def test_fit_of_known_distribution(case, seed):
    """Gamma(3, 2) through "positive", Beta(2, 5) through "unit_interval": mean and variance of
    100k draws after a short fit (200 steps).  Tolerances: 2% of the mean, 5% of the variance
    (Monte Carlo error of 100k draws: 0.2% and 0.6%; measured fit error < 0.5% and 1%)."""
    dist, spec = {"gamma": (D.Gamma(3.0, 2.0), "positive"), "beta": (D.Beta(2.0, 5.0), "unit_interval")}[case]
    post = ff.Posterior(lambda v: dist.log_prob(v["x"]), {"x": spec})
    s = ff.OneStepSampler(post, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ff.ReliabilityWarning)
        s.fit(200, progress=False, check=False)
    x = s.sample(100_000, seed=seed + 7)["x"].double()
    assert bool(((x > 0) & ((x < 1) if case == "beta" else True)).all())
    assert float(x.mean()) == pytest.approx(float(dist.mean), rel=0.02)
    assert float(x.var()) == pytest.approx(float(dist.variance), rel=0.05)


# ------------------------------------------------------------------ sampler + arviz -----------
@pytest.fixture(scope="module")
def fitted():
    y = torch.tensor([1.0, -0.5, 2.0])
    N = D.Normal

    def log_joint(v):
        return (N(0, 3).log_prob(v["mu"]) + D.HalfNormal(2.0).log_prob(v["tau"])
                + N(v["mu"][:, None], v["tau"][:, None]).log_prob(v["theta"]).sum(-1)
                + N(v["theta"], 1.0).log_prob(y).sum(-1))

    post = ff.Posterior(log_joint, {"mu": (), "tau": "positive", "theta": (3,)}, name="toy",
                        observed_data={"y": y.numpy()}, constant_data={"sigma": np.ones(3)})
    s = ff.OneStepSampler(post, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ff.ReliabilityWarning)
        s.fit(150, progress=False)
    return post, s


def test_sampler_returns_named_constrained_draws(fitted, tmp_path):
    post, s = fitted
    assert s.dim == post.dim == 5 and s.posterior is post
    draws = s.sample(1000, seed=1)
    assert set(draws) == {"mu", "tau", "theta"} and draws["theta"].shape == (1000, 3)
    assert bool((draws["tau"] > 0).all())
    z = s.sample_unconstrained(1000, seed=1)
    torch.testing.assert_close(post.constrain(z)["theta"], draws["theta"])
    assert s.last_reliability is not None and s.importance_summary(2000, seed=3).n == 2000
    path = s.save(tmp_path / "toy.pt")
    s2 = ff.OneStepSampler.load(path, post)
    torch.testing.assert_close(s2.sample(10, seed=4)["theta"], s.sample(10, seed=4)["theta"])
    other = ff.Posterior(lambda v: D.Normal(0, 1).log_prob(v["a"]).sum(-1), {"a": (5,)}, name="other")
    with pytest.raises(ValueError, match="trained on target"):
        ff.OneStepSampler.load(path, other)
    with pytest.raises(ValueError, match="dim=4 does not match"):
        ff.OneStepSampler(post, 4)


def test_inference_data_groups_names_dims(fitted):
    az = pytest.importorskip("arviz")
    post, s = fitted
    idata = s.to_inference_data(500, chains=4)
    assert set(idata.groups()) >= {"posterior", "sample_stats", "observed_data", "constant_data"}
    p = idata.posterior
    assert set(p.data_vars) == {"mu", "tau", "theta"}
    assert p["theta"].dims == ("chain", "draw", "theta_dim_0") and p["mu"].dims == ("chain", "draw")
    assert p.sizes["chain"] == 4 and p.sizes["draw"] == 500
    st = idata.sample_stats
    assert {"lp", "log_weight", "log_q"} <= set(st.data_vars)
    assert st["log_weight"].shape == (4, 500)
    # log_weight = lp − log_q exactly; k̂ and ESS as attributes
    np.testing.assert_allclose(st["log_weight"].values, st["lp"].values - st["log_q"].values, rtol=1e-5, atol=1e-4)
    assert 0 < st.attrs["ess"] <= 2000 and math.isfinite(st.attrs["pareto_k"])
    np.testing.assert_array_equal(idata.observed_data["y"].values, [1.0, -0.5, 2.0])
    summary = az.summary(idata)
    assert list(summary.index) == ["mu", "tau", "theta[0]", "theta[1]", "theta[2]"]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    az.plot_pair(idata)
    plt.close("all")


def test_nuts_layout_matches_freeflow(fitted):
    """A NUTS Reference (here a stand-in holding draws, to keep the test fast) in the same
    layout: the same variables and dims, real chains, diverging; plot_forest of both runs."""
    az = pytest.importorskip("arviz")
    from types import SimpleNamespace

    post, s = fitted
    z = s.sample_unconstrained(4 * 300, seed=8).double().reshape(4, 300, post.dim).numpy()
    ref = SimpleNamespace(draws=z, divergent=np.zeros((4, 300), bool), settings={"backend": "test"})
    idata_nuts = ff.bayes.nuts_inference_data(post, ref)
    idata_ff = s.to_inference_data(300)
    assert set(idata_nuts.posterior.data_vars) == set(idata_ff.posterior.data_vars)
    assert idata_nuts.posterior["theta"].dims == idata_ff.posterior["theta"].dims
    assert idata_nuts.sample_stats["diverging"].dtype == bool
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    az.plot_forest([idata_ff, idata_nuts], model_names=["freeflow", "NUTS"])
    plt.close("all")
    both = az.summary(idata_ff)[["mean", "sd"]].join(az.summary(idata_nuts)[["mean", "sd"]].add_suffix("_nuts"))
    assert len(both) == 5


def test_user_dims_and_var_names(fitted):
    post, s = fitted
    p2 = ff.Posterior(post.log_joint, {"mu": (), "tau": "positive", "theta": (3,)},
                      dims={"theta": ["school"]}, coords={"school": ["a", "b", "c"]})
    z = s.sample_unconstrained(400, seed=2).reshape(2, 200, 5)
    idata = ff.bayes.draws_inference_data(p2, z, var_names=["theta"])
    assert set(idata.posterior.data_vars) == {"theta"}
    assert idata.posterior["theta"].dims == ("chain", "draw", "school")
    assert list(idata.posterior["school"].values) == ["a", "b", "c"]


# ------------------------------------------------------------------------ bad input ----------
def _normal(v):
    return D.Normal(0, 1).log_prob(v["a"])


def test_unknown_constraint_lists_valid_ones():
    with pytest.raises(ValueError, match=r"parameter 'a': unknown constraint 'postive'.*'positive'.*'simplex'"):
        ff.Posterior(_normal, {"a": "postive"})
    with pytest.raises(ValueError, match=r"parameter 'a': unknown constraint 'ordered'"):
        ff.Posterior(_normal, {"a": ("ordered", 3)})


@pytest.mark.parametrize("spec", [(0,), (3, -1), (2.5,), ("positive", (0,)), ("positive", "x"), ("simplex", 1),
                                  ("corr_cholesky", (2, 3))])
def test_bad_shape_names_the_parameter(spec):
    with pytest.raises(ValueError, match=r"parameter 'a'"):
        ff.Posterior(_normal, {"a": spec})


def test_event_constraints_need_a_size():
    with pytest.raises(ValueError, match=r"parameter 'p': 'simplex' needs its arguments, e.g. \('simplex', K\)"):
        ff.Posterior(_normal, {"p": "simplex"})
    with pytest.raises(ValueError, match=r"parameter 'a': interval needs lo < hi"):
        ff.Posterior(_normal, {"a": ("interval", 2, 1)})


def test_log_joint_wrong_shape():
    with pytest.raises(ValueError, match=r"one value per draw, shape \(4,\).*got \(\).*sum over the draws"):
        ff.Posterior(lambda v: D.Normal(0, 1).log_prob(v["a"]).sum(), {"a": (3,)})
    with pytest.raises(ValueError, match=r"one value per draw, shape \(4,\).*got \(4, 3\)"):
        ff.Posterior(lambda v: D.Normal(0, 1).log_prob(v["a"]), {"a": (3,)})


def test_log_joint_rejects_a_parameter_name():
    with pytest.raises(ValueError, match=r"log_joint looked up 'sigma', which is not a parameter.*\['mu', 'tau'\]"):
        ff.Posterior(lambda v: D.Normal(v["mu"], v["sigma"]).log_prob(torch.zeros(())),
                     {"mu": (), "tau": "positive"})
    with pytest.warns(UserWarning, match=r"does not depend on parameter\(s\) \['tau'\]"):
        ff.Posterior(lambda v: D.Normal(0, 1).log_prob(v["mu"]), {"mu": (), "tau": "positive"})


def test_log_joint_without_autograd_and_bad_z():
    with pytest.warns(UserWarning, match=r"\['a'\] through autograd.*\.numpy\(\)"):
        ff.Posterior(lambda v: torch.as_tensor(v["a"].detach().numpy()), {"a": ()})
    post = ff.Posterior(_normal, {"a": ()})
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 1\)"):
        post.log_density(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"missing \['a'\], unknown \['b'\]"):
        post.unconstrain({"b": torch.zeros(3)})


def test_inference_data_without_exact_log_q_and_compare(fitted):
    """density="kde" gives no exact log q: no log_weight, and the attrs say why; compare()
    takes a Posterior's sampler (its unconstrained draws)."""
    post, s = fitted
    kde = ff.OneStepSampler(post, density="kde", seed=0)   # untrained: the layout is what is tested
    idata = kde.to_inference_data(100)
    assert "log_weight" not in idata.sample_stats and "lp" in idata.sample_stats
    assert "unavailable" in idata.sample_stats.attrs["log_weight"]
    report = ff.compare(s, s.sample_unconstrained(600, seed=11), n=300)
    assert report is not None


# ------------------------------------------ log_likelihood, deterministics, predictive ------
Y3 = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)


def _pieces_posterior(**extra):
    """mu ~ N(0, 3), y_i ~ N(mu, s) with s ~ HalfNormal(2): the three optional pieces."""
    def log_lik(v):                                               # (n, 3)
        return D.Normal(v["mu"][:, None], v["s"][:, None]).log_prob(Y3.to(v["mu"]))

    def log_joint(v):
        return N_(0, 3).log_prob(v["mu"]) + D.HalfNormal(2.0).log_prob(v["s"]) + log_lik(v).sum(-1)

    kw = dict(log_likelihood=log_lik,
              deterministics=lambda v: {"precision": v["s"] ** -2, "shifted": v["mu"][:, None] + Y3.to(v["mu"])},
              predictive=lambda v, g: v["mu"][:, None] + v["s"][:, None] * torch.randn(
                  v["mu"].shape[0], 3, generator=g, dtype=v["mu"].dtype),
              observed_data={"y": Y3.numpy()})
    kw.update(extra)
    return ff.Posterior(log_joint, {"mu": (), "s": "positive"}, **kw)


N_ = D.Normal


def test_posterior_pieces_values_and_groups():
    """log_likelihood (one value per observation) in the InferenceData equals the closed form at
    the exported draws; deterministics in constrain(), sample() and the posterior group;
    predictive draws ~ N(mu, s²) (standardised residuals over 2 × 500 × 3: mean within 0.1,
    sd within 0.08 of 1, over 4 se) and reproducible for a seed."""
    post = _pieces_posterior()
    assert post.derived_names == ("precision", "shifted") and post.has_log_likelihood and post.has_predictive
    z = torch.randn(7, post.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v = post.constrain(z)
    assert set(v) == {"mu", "s", "precision", "shifted"} and v["shifted"].shape == (7, 3)
    torch.testing.assert_close(v["precision"], v["s"] ** -2)
    assert set(post.constrain(z, deterministics=False)) == {"mu", "s"}
    torch.testing.assert_close(post.unconstrain(v), z)               # deterministic sites ignored
    s = ff.OneStepSampler(post, seed=0)                               # untrained: layout only
    assert set(s.sample(5, seed=1)) == {"mu", "s", "precision", "shifted"}
    idata = s.to_inference_data(draws=500, chains=2, seed=2, posterior_predictive=True)
    p = idata.posterior
    assert p["shifted"].dims == ("chain", "draw", "shifted_dim_0") and p["precision"].shape == (2, 500)
    ll = idata.log_likelihood["y"]
    assert ll.dims == ("chain", "draw", "y_dim_0") and ll.shape == (2, 500, 3)
    mu, sd = p["mu"].values[..., None], p["s"].values[..., None]
    closed = -0.5 * np.log(2 * np.pi * sd**2) - 0.5 * ((Y3.numpy() - mu) / sd) ** 2
    np.testing.assert_allclose(ll.values, closed, rtol=1e-9, atol=1e-9)
    r = ((idata.posterior_predictive["y"].values - mu) / sd).ravel()
    assert abs(r.mean()) < 0.1 and abs(r.std() - 1) < 0.08
    again = ff.predictive(s, 500, 2, seed=2).posterior_predictive["y"].values
    np.testing.assert_array_equal(again, idata.posterior_predictive["y"].values)


def test_posterior_pieces_bad_input():
    with pytest.raises(TypeError, match="log_likelihood must be callable"):
        _pieces_posterior(log_likelihood=3)
    with pytest.raises(TypeError, match="predictive must be callable"):
        _pieces_posterior(predictive="no")
    with pytest.raises(ValueError, match=r"log_likelihood must return one value per observation.*summ?ed|sum over"):
        _pieces_posterior(log_likelihood=lambda v: N_(v["mu"], 1.0).log_prob(torch.zeros(()).to(v["mu"])))
    with pytest.raises(ValueError, match="deterministics returns \\['mu'\\], which are parameter names"):
        _pieces_posterior(deterministics=lambda v: {"mu": v["mu"]})
    with pytest.raises(ValueError, match="deterministics must return one row per draw"):
        _pieces_posterior(deterministics=lambda v: {"m": v["mu"].mean()})
    # LOO / log_likelihood group asked of a Posterior without a likelihood term: names the argument
    post = _pieces_posterior(log_likelihood=None, predictive=None)
    s = ff.OneStepSampler(post, seed=0)
    with pytest.raises(ValueError, match="pass log_likelihood=fn to ff.Posterior"):
        post.pointwise_log_likelihood(torch.zeros(2, post.dim))
    with pytest.raises(ValueError, match="log_likelihood=True"):
        s.to_inference_data(10, log_likelihood=True)
    idata = s.to_inference_data(10)
    assert "log_likelihood" not in idata.groups()
    with pytest.raises(ValueError, match="log_likelihood group"):
        ff.loo(idata)
    with pytest.raises(ValueError, match="predictive=fn"):
        ff.predictive(s, 10)
    with pytest.raises(ValueError, match="predictive=fn"):
        s.to_inference_data(10, posterior_predictive=True)
    plain = ff.OneStepSampler(lambda x: -0.5 * (x**2).sum(-1), dim=2, seed=0)
    with pytest.raises(ValueError, match="sampler: posterior predictive draws need a model"):
        ff.predictive(plain, 10)
