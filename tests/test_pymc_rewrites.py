"""The exact simplifications of a PyMC graph before JAX compiles it (freeflow.bayes.pymc_rewrites):
parameter checks that cannot fail become ¬isnan, a switch between one unary op becomes the op of
a switch; values (NaN, ±inf, underflow included) and gradients are unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pm = pytest.importorskip("pymc")
jax = pytest.importorskip("jax")
pt = pytest.importorskip("pytensor.tensor")

from pytensor.compile.mode import JAX  # noqa: E402
from pytensor.graph.fg import FunctionGraph  # noqa: E402
from pytensor.link.jax.dispatch import jax_funcify  # noqa: E402
from pytensor.scalar import basic as ps  # noqa: E402
from pytensor.scalar.math import Sigmoid, Softplus  # noqa: E402
from pytensor.tensor.elemwise import Elemwise  # noqa: E402

import freeflow as ff  # noqa: E402
from freeflow.bayes.pymc_rewrites import simplify_for_jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
POINTS = np.array([-np.inf, -800.0, -30.0, -1.0, 0.0, 2.0, 40.0, 800.0, np.inf, np.nan])


def _compiled(inputs, outputs, rewrite: bool, fusion: bool = True):
    """(jax function, the graph's elementwise scalar op types) of ``outputs``."""
    fg = FunctionGraph(inputs=inputs, outputs=outputs, clone=True)
    query = JAX.provided_optimizer if fusion else JAX.provided_optimizer.excluding("fusion")
    simplify_for_jax(fg, query, simplify=rewrite)
    ops = [type(n.op.scalar_op) for n in fg.apply_nodes if isinstance(n.op, Elemwise)]
    return jax_funcify(fg), ops


def test_bound_checks_that_cannot_fail_become_isnan():
    x = pt.dvector("x")
    checks = [pt.ge(pt.sigmoid(x), 0), pt.le(pt.sigmoid(x), 1), pt.ge(pt.exp(x), 0), pt.ge(pt.softplus(x), 0)]
    fn, ops = _compiled([x], checks, rewrite=True, fusion=False)
    assert not {Sigmoid, ps.Exp, Softplus} & set(ops), ops
    expected = ~np.isnan(POINTS)
    for got in fn(POINTS):
        np.testing.assert_array_equal(np.asarray(got), expected)
    # the same answers as the graph as written, fused or not
    ref, _ = _compiled([x], checks, rewrite=False)
    for got, want in zip(_compiled([x], checks, rewrite=True)[0](POINTS), ref(POINTS)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_checks_that_can_fail_are_left_alone():
    x = pt.dvector("x")
    checks = [pt.gt(pt.exp(x), 0), pt.ge(pt.sigmoid(x), 0.5), pt.le(pt.exp(x), 1), pt.ge(pt.tanh(x), 0)]
    fn, ops = _compiled([x], checks, rewrite=True, fusion=False)
    assert ops.count(ps.Exp) >= 1 and Sigmoid in ops and ps.Tanh in ops
    ref, _ = _compiled([x], checks, rewrite=False)
    for got, want in zip(fn(POINTS), ref(POINTS)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert not bool(np.asarray(fn(POINTS)[0])[1])      # exp(-800) underflows to 0: "> 0" fails there


def test_switch_between_one_op_is_the_op_of_a_switch():
    a, b = pt.dvector("a"), pt.dvector("b")
    c = pt.lvector("c")
    out = pt.sum(pt.switch(c, -pt.softplus(-a), -pt.softplus(b)) * pt.arange(1, 11))
    fn, ops = _compiled([c, a, b], [out], rewrite=True, fusion=False)
    assert ops.count(Softplus) == 1, ops
    ref, _ = _compiled([c, a, b], [out], rewrite=False)
    rng = np.random.default_rng(0)
    for seed in range(3):
        cv = rng.integers(0, 2, size=10)
        av, bv = rng.normal(size=10) * 5, rng.normal(size=10) * 5
        bv[cv == 1] = np.nan    # NaN where the other branch is selected changes nothing
        av[cv == 0] = np.inf
        np.testing.assert_array_equal(np.asarray(fn(cv, av, bv)[0]), np.asarray(ref(cv, av, bv)[0]))
        av, bv = rng.normal(size=10) * 5, rng.normal(size=10) * 5
        g_new = jax.grad(lambda p, q: fn(cv, p, q)[0], argnums=(0, 1))(av, bv)
        g_ref = jax.grad(lambda p, q: ref(cv, p, q)[0], argnums=(0, 1))(av, bv)
        for gn, gr in zip(g_new, g_ref):
            np.testing.assert_allclose(np.asarray(gn), np.asarray(gr), rtol=1e-14, atol=0)


def test_bernoulli_and_poisson_models_equal_pymcs_own():
    """A Bernoulli-logit and a Poisson log-link likelihood (the rewritten forms) through the JAX
    route equal PyMC's one-point log p̃ and gradient (float64, 3 seeds × 5 points)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 2))
    yb = (rng.random(30) < 0.4).astype(int)
    yc = rng.poisson(2.0, size=30)
    with pm.Model() as model:
        w = pm.Normal("w", 0.0, 1.0, shape=2)
        s = pm.HalfNormal("s", 1.0)
        pm.Bernoulli("yb", logit_p=X @ w, observed=yb)
        pm.Poisson("yc", mu=pm.math.exp(0.5 + s * (X @ w)), observed=yc)
    post = ff.from_pymc(model, backend="jax")
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    for seed in (0, 1, 2):
        z = torch.randn(5, post.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        zg = z.clone().requires_grad_(True)
        lp = post.log_density(zg)
        (g,) = torch.autograd.grad(lp.sum(), zg)
        points = [{model.rvs_to_values[rv].name: row[post.slices[rv.name]].reshape(post.raw_shapes[rv.name])
                   for rv in model.free_RVs} for row in z.numpy()]
        np.testing.assert_allclose(lp.detach().numpy(), [float(logp(p)) for p in points], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(g.numpy(), np.stack([dlogp(p) for p in points]), rtol=1e-9, atol=1e-10)
