"""The fused no-grad RealNVP pass (freeflow.generators.fast_flow) against the normflows loop."""
import copy

import normflows as nf
import pytest
import torch

import freeflow.generators.fast_flow as fast_flow
from freeflow.density.flow import build_flow
from freeflow.generators.fast_flow import (flow_forward, fused_flow_forward, reference_flow_forward,
                                           supports_fused)
from freeflow.generators.mixture import MixtureGenerator, ProductMixtureGenerator


def _perturb(module, seed, scale=0.05):
    """normflows zero-initialises the last layers (identity couplings): move every weight.
    (Much larger moves make the float32 flow itself ill-conditioned: then the loop's own error
    against float64 exceeds 1e-5, see test_float32_error_is_the_loops_own.)"""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _flow(dim, hidden=64, layers=4, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    flow = torch.nn.ModuleList(build_flow(dim, layers=layers, hidden=hidden, kind="realnvp", for_sampling=True))
    return _perturb(flow, seed).to(dtype)


@pytest.fixture(params=["onednn", "addmm"])
def path(request, monkeypatch):
    """Both float32 CPU paths: oneDNN's fused linear where available, and the addmm one."""
    if request.param == "addmm":
        monkeypatch.setitem(fast_flow._dnn_state, "ok", False)
    return request.param


def _close(a, b, rtol, atol=None):
    torch.testing.assert_close(a, b, rtol=rtol, atol=rtol if atol is None else atol, equal_nan=True)


@pytest.mark.parametrize("dim,hidden,layers", [(10, 64, 4), (31, 64, 4), (2, 8, 3), (7, 16, 1)])
def test_fused_matches_loop_float32(dim, hidden, layers, seed, path):
    flow = _flow(dim, hidden, layers, seed)
    assert supports_fused(flow)
    y = 1.5 * torch.randn(4096, dim, generator=torch.Generator().manual_seed(seed + 10))
    y0 = y.clone()
    start = torch.tensor(0.3)
    with torch.no_grad():
        x_ref, ld_ref = reference_flow_forward(flow, y, start)
        x, ld = fused_flow_forward(flow, y, start)
    assert torch.equal(y, y0)  # input untouched
    assert (x_ref - y).abs().max() > 0.1 and (ld_ref - start).abs().max() > 0.1  # not the identity
    _close(x, x_ref, 1e-5)
    _close(ld, ld_ref, 1e-5)


def test_float32_error_is_the_loops_own(path):
    """With large weights (an ill-conditioned flow) float32 rounding is amplified in either
    implementation alike: measured against float64, the fused pass is as accurate as the loop."""
    flow = _perturb(_flow(10, seed=4), 5, 0.3)
    y = torch.randn(4096, 10, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        exact = reference_flow_forward(copy.deepcopy(flow).double(), y.double())
        ref, out = reference_flow_forward(flow, y), fused_flow_forward(flow, y)
    for k in range(2):
        scale = exact[k].abs().max()
        err_ref = float((ref[k].double() - exact[k]).abs().max() / scale)
        err_out = float((out[k].double() - exact[k]).abs().max() / scale)
        assert err_out <= 10 * err_ref + 1e-6, (k, err_out, err_ref)


@pytest.mark.parametrize("dim", [10, 31, 56])
def test_fused_matches_loop_float64(dim, seed):
    flow = _flow(dim, seed=seed, dtype=torch.float64)
    y = torch.randn(2048, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        x_ref, ld_ref = reference_flow_forward(flow, y)
        x, ld = fused_flow_forward(flow, y)
    _close(x, x_ref, 1e-10)
    _close(ld, ld_ref, 1e-10)


@pytest.mark.parametrize("masks", ["build_flow", "parity", "one_per_layer"])
def test_fused_path_really_runs(masks, monkeypatch):
    """No silent fallback to the loop for finite input, whatever the mask pattern (build_flow's
    complementary pairs, fixed parity masks, or a new random mask at every layer)."""
    flow = _flow(12, hidden=16, layers=4)
    gen = torch.Generator().manual_seed(5)
    for i, layer in enumerate(flow[::2]):
        if masks == "parity":
            layer.b.copy_(torch.tensor([float((j + i) % 2) for j in range(12)]))
        elif masks == "one_per_layer":
            layer.b.copy_((torch.randperm(12, generator=gen) < 6).float())
    loops = []
    real = fast_flow.reference_flow_forward
    monkeypatch.setattr(fast_flow, "reference_flow_forward", lambda *a: loops.append(1) or real(*a))
    y = torch.randn(1000, 12)
    with torch.no_grad():
        x, ld = fused_flow_forward(flow, y)
        x_ref, ld_ref = real(flow, y)
    assert not loops
    _close(x, x_ref, 1e-5)
    _close(ld, ld_ref, 1e-5)


def test_leaky_slope_and_single_row(path):
    """A nonzero LeakyReLU slope (not what build_flow makes, still supported) and n = 1."""
    torch.manual_seed(0)
    dim, layers = 6, []
    for i in range(2):
        mask = torch.tensor([(j + i) % 2 for j in range(dim)], dtype=torch.float32)
        s = nf.nets.MLP([dim, 16, 16, dim], leaky=0.2, init_zeros=True, output_fn="tanh", output_scale=2.0)
        t = nf.nets.MLP([dim, 16, 16, dim], leaky=0.2, init_zeros=True)
        layers += [nf.flows.MaskedAffineFlow(mask, t, s), nf.flows.AffineConstFlow((dim,))]
    flow = _perturb(torch.nn.ModuleList(layers), 1, 0.3)
    for n in (1, 513):
        y = torch.randn(n, dim)
        with torch.no_grad():
            ref, out = reference_flow_forward(flow, y), fused_flow_forward(flow, y)
        _close(out[0], ref[0], 1e-5)
        _close(out[1], ref[1], 1e-5)


def test_parameters_are_read_at_every_call(path):
    """Nothing stale: after a parameter update (a training step, the EMA) the next call sees it."""
    flow = _flow(10, seed=3)
    y = torch.randn(256, 10)
    with torch.no_grad():
        before = fused_flow_forward(flow, y)
        for p in flow.parameters():
            p.mul_(0.5)
        after, ref = fused_flow_forward(flow, y), reference_flow_forward(flow, y)
    assert not torch.allclose(before[0], after[0])
    _close(after[0], ref[0], 1e-5)
    _close(after[1], ref[1], 1e-5)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "huge", "huge_weights"])
def test_non_finite_as_before(bad, path, monkeypatch):
    """NaN / inf / overflowing input (or weights): the exact normflows result (via the loop)."""
    flow = _flow(10, seed=1)
    loops = []
    real = fast_flow.reference_flow_forward
    monkeypatch.setattr(fast_flow, "reference_flow_forward", lambda *a: loops.append(1) or real(*a))
    y = torch.randn(64, 10)
    if bad == "huge_weights":
        with torch.no_grad():
            flow[0].s.net[0].weight[3, 1] = 3e37
    else:
        y[5, 2] = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "huge": 1e36}[bad]
        y[9, 3] = {"nan": float("nan"), "inf": float("-inf"), "-inf": float("-inf"), "huge": -1e37}[bad]
    with torch.no_grad():
        x_ref, ld_ref = real(flow, y)
        x, ld = fused_flow_forward(flow, y)
    assert loops == [1]  # the bound check sent the batch to the loop
    if bad in ("nan", "inf", "-inf"):
        assert not bool(torch.isfinite(x_ref).all() and torch.isfinite(ld_ref).all())
    assert torch.equal(torch.isnan(x), torch.isnan(x_ref)) and torch.equal(torch.isnan(ld), torch.isnan(ld_ref))
    _close(x, x_ref, 1e-5)
    _close(ld, ld_ref, 1e-5)


# -- the generators ------------------------------------------------------------------------------
def _generators(seed, dtype=torch.float32):
    torch.manual_seed(seed)
    mix = MixtureGenerator(10, 5, init_scale=torch.rand(10) + 0.5, init_loc=torch.randn(10), spread=2.0,
                           flow_layers=4, flow_hidden=64, flow_kind="realnvp")
    prod = ProductMixtureGenerator(10, 3, flow_layers=4, flow_hidden=64, flow_kind="realnvp",
                                   init_loc=torch.randn(10))
    with torch.no_grad():
        mix.lower.normal_(0, 0.3)
        mix.logits.normal_(0, 1.0)
        prod.logits.normal_(0, 1.0)
    for g in (mix, prod):
        _perturb(g.flow, seed)
    return [mix.to(dtype), prod.to(dtype)]


def _count_fused(monkeypatch):
    calls = []
    real = fast_flow.fused_flow_forward

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fast_flow, "fused_flow_forward", counting)
    return calls


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_generators_fused_equals_loop(dtype, tol, seed, monkeypatch):
    calls = _count_fused(monkeypatch)
    for g in _generators(seed, dtype):
        z = torch.randn(3000, g.noise_dim, dtype=dtype, generator=torch.Generator().manual_seed(seed))
        with torch.enable_grad():  # grad on: the normflows loop
            x_ref = g(z).detach()
            xr, lq_ref = (t.detach() for t in g.forward_and_log_prob(z))
        assert not calls
        with torch.no_grad():
            x = g(z)
            x2, lq = g.forward_and_log_prob(z)
        assert len(calls) == 2
        calls.clear()
        _close(x, x_ref, tol)
        _close(x2, xr, tol)
        _close(lq, lq_ref, tol)
        if dtype == torch.float64:  # log q from the inverse pass agrees with the forward one
            with torch.no_grad():
                _close(g.log_prob(x2), lq, 1e-8)


def test_grad_enabled_uses_loop_and_gradients_flow(monkeypatch):
    calls = _count_fused(monkeypatch)
    g = _generators(0)[1]
    z = torch.randn(256, g.noise_dim)
    x, lq = g.forward_and_log_prob(z)
    (x.square().sum() + lq.sum()).backward()
    assert not calls
    grads = [p.grad for p in g.flow.parameters()]
    assert all(gr is not None for gr in grads) and any(float(gr.abs().sum()) > 0 for gr in grads)


def test_spline_flow_falls_back(monkeypatch):
    calls = _count_fused(monkeypatch)
    torch.manual_seed(0)
    g = ProductMixtureGenerator(4, 3, flow_layers=2, flow_hidden=8, flow_kind="spline")
    _perturb(g.flow, 0, 0.05)
    assert not supports_fused(g.flow)
    z = torch.randn(128, g.noise_dim)
    with torch.no_grad():
        x, lq = g.forward_and_log_prob(z)
        y0 = g._base_sample(z)
        y, ld = reference_flow_forward(g.flow, y0, g.log_scale.sum())
    assert not calls
    assert torch.equal(x, g.loc + g.log_scale.exp() * y)
    assert torch.equal(lq, g._base_log_prob(y0) - ld)


def test_generator_non_finite_noise_as_before():
    for g in _generators(2):
        z = torch.randn(32, g.noise_dim)
        z[3, 0], z[7, 1] = float("nan"), float("inf")
        with torch.enable_grad():
            ref = [t.detach() for t in g.forward_and_log_prob(z)]
        with torch.no_grad():
            out = g.forward_and_log_prob(z)
        for a, b in zip(out, ref):
            assert torch.equal(torch.isnan(a), torch.isnan(b))
            _close(a, b, 1e-5)


def test_flow_forward_dispatch_and_empty():
    flow = _flow(4, hidden=8, layers=2)
    y = torch.randn(0, 4)
    with torch.no_grad():
        x, ld = flow_forward(flow, y)
    assert x.shape == (0, 4) and ld.shape == (0,)
    assert not supports_fused(torch.nn.ModuleList())
    copy.deepcopy(flow)  # the fused pass keeps no state on the modules


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("inverse", [False, True])
def test_lean_step_is_normflows_bit_for_bit(dtype, inverse):
    """The training path's coupling pass without normflows' isfinite/where passes: the same
    values and the same parameter and input gradients, exactly, on finite input."""
    flow = _flow(6, hidden=16, layers=4, seed=3, dtype=dtype)
    out = []
    for lean in (True, False):
        flow.zero_grad(set_to_none=True)
        y = torch.randn(64, 6, generator=torch.Generator().manual_seed(1), dtype=dtype).requires_grad_(True)
        h, ld = y, torch.zeros(64, dtype=dtype)
        for layer in (reversed(flow) if inverse else flow):
            h, d = fast_flow.lean_step(layer, h, inverse) if lean else (layer.inverse(h) if inverse else layer(h))
            ld = ld + d
        (h.square().sum() + ld.sum()).backward()
        out.append([h.detach(), ld.detach(), y.grad, *[p.grad for p in flow.parameters()]])
    assert all(torch.equal(a, b) for a, b in zip(*out))


def test_lean_step_non_finite_stays_non_finite():
    flow = _flow(4, hidden=8, layers=2, seed=1)
    y = torch.randn(8, 4)
    y[2, 0], y[5, 3] = float("inf"), float("nan")
    for inverse in (False, True):
        h = y
        for layer in (reversed(flow) if inverse else flow):
            h, _ = fast_flow.lean_step(layer, h, inverse)
        ref = y
        for layer in (reversed(flow) if inverse else flow):
            ref, _ = layer.inverse(ref) if inverse else layer(ref)
        assert torch.equal(torch.isfinite(h).all(1), torch.isfinite(ref).all(1))
        assert not torch.isfinite(h[[2, 5]]).all(1).any()


def test_all_finite_and_finite_rows():
    from freeflow.validation import all_finite, finite_rows

    x = torch.randn(5, 3) * 1e30           # large but finite: x·0 cannot overflow
    assert all_finite(x, torch.zeros(0), torch.tensor(2.0)) and bool(finite_rows(x).all())
    for bad in (float("inf"), -float("inf"), float("nan")):
        y = x.clone()
        y[1, 2] = bad
        assert not all_finite(torch.ones(2), y)
        assert finite_rows(y).tolist() == [True, False, True, True, True]
