"""Fused no-grad forward pass of a RealNVP layer stack (``build_flow(kind="realnvp")``).

The stack alternates normflows' ``MaskedAffineFlow(b, t, s)`` and ``AffineConstFlow``. Layer by
layer it computes, exactly as normflows does,

    z' = b·z + (1 − b)·(z·e^{s(b·z)} + t(b·z)),   log|det| = Σ_j (1 − b_j) s_j(b·z),
    z' = z·e^{c} + u,                             log|det| = Σ_j c_j,

with s, t ``nf.nets.MLP``s (Linear / LeakyReLU(α) / … / Linear, s ending in tanh · scale).
:func:`fused_flow_forward` evaluates the same arithmetic with fewer, cheaper kernels:

* x is held as two contiguous column blocks, the current mask's 0s and 1s (split again only
  when a mask is neither the previous one nor its complement: build_flow's masks come in
  complementary pairs): the mask products become a choice of block, the first layers read
  only the conditioning block, the last layers produce only the transformed outputs
  (normflows computes all d and multiplies half by 0), and z_t ← z_t·e^{scale} + t is in place;
* float32 on the CPU: oneDNN's linear with bias and ReLU fused into the GEMM
  (``torch.ops.mkldnn._linear_pointwise``, as torch.compile uses; probed once, else the path
  below), one call per layer of s and of t;
* otherwise (float64, GPU, no oneDNN): the first layers of s and t share one ``addmm`` with
  weights ``[W₁ˢ; W₁ᵗ]``, the hidden layers read its column halves, outputs go to scratch
  buffers reused across layers and calls (no page faults from fresh multi-MB tensors);
* ReLU (α = 0) instead of ``leaky_relu(·, 0)``, in place, and no isfinite/where passes.

The weights are read from the modules at every call (nothing derived from them is cached:
training and the EMA change them). Values agree with the normflows loop up to float rounding
(GEMM blocking and summation order: ~1e-7 relative per layer in float32, ~1e-15 in float64,
amplified by the flow's own conditioning exactly as the loop's own rounding error is).

Non-finite values: normflows maps ±inf in s, t to NaN, ``leaky_relu(−inf, 0)`` is NaN while
``relu(−inf)`` is 0, and 0·inf is NaN in the mask products. Rather than replaying these rules,
the fused pass certifies that none can occur: from max|z| on each coupling's input and the
rows' L1 norms of the weights it bounds every partial sum of every layer, and if any bound is
not finite and far below the dtype's maximum (non-finite or huge input, huge weights) the
whole batch is recomputed by the normflows loop (:func:`reference_flow_forward`). One host
sync per call decides it.
"""
from __future__ import annotations

import threading

import normflows as nf
import torch
from torch import nn

Tensor = torch.Tensor

__all__ = ["fused_flow_forward", "reference_flow_forward", "supports_fused", "flow_forward", "flow_inverse",
           "lean_step", "clear_workspace"]

# Scratch memory for the hidden activations, kept between calls on the CPU (per thread): a fresh
# multi-megabyte tensor per layer costs page faults comparable to the matmul itself. Only
# intermediate values live here (never weights, never a returned tensor); at most
# _WORKSPACE_MAX elements per buffer are kept.
_local = threading.local()
_WORKSPACE_MAX = 1 << 24


def clear_workspace() -> None:
    """Free this thread's cached scratch buffers."""
    _local.buffers = {}


def _scratch(name: str, n: int, cols: int, like: Tensor) -> Tensor:
    """A contiguous (n, cols) scratch tensor (contents undefined) of ``like``'s dtype/device."""
    size = n * cols
    if like.device.type != "cpu" or size > _WORKSPACE_MAX:
        return like.new_empty((n, cols))
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    key = (name, like.dtype)
    buf = buffers.get(key)
    if buf is None or buf.numel() < size:
        buf = buffers[key] = like.new_empty(size)
    return buf[:size].view(n, cols)


def _start(y: Tensor, log_det: Tensor | None) -> Tensor:
    if log_det is None:
        return torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
    return log_det.expand(y.shape[0])


def reference_flow_forward(layers, y: Tensor, log_det: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The plain loop: y through each layer, and ``log_det`` (scalar or (n,); default 0) plus the
    layers' log-determinants, summed in layer order (n,)."""
    log_det = _start(y, log_det)
    for layer in layers:
        y, ld = layer(y)
        log_det = log_det + ld
    return y, log_det


# -- structure ---------------------------------------------------------------------------------
def _mlp_parts(mlp: nn.Module, *, squash: bool):
    """(linears, slopes, out_scale) of an ``nf.nets.MLP``, or None if not of the supported form:
    Linear (LeakyReLU Linear)* and, if ``squash``, then Tanh and optionally ConstScaleLayer."""
    if not isinstance(mlp, nf.nets.MLP):
        return None
    mods = list(mlp.net)
    linears, slopes, i = [], [], 0
    while i < len(mods) and isinstance(mods[i], nn.Linear):
        linears.append(mods[i])
        i += 1
        if i < len(mods) and type(mods[i]) is nn.LeakyReLU:
            slopes.append(float(mods[i].negative_slope))
            i += 1
        else:
            break
    if len(linears) != len(slopes) + 1 or len(linears) < 2:
        return None
    scale = None
    if squash:
        if i >= len(mods) or type(mods[i]) is not nn.Tanh:
            return None
        i += 1
        if i < len(mods) and isinstance(mods[i], nf.utils.ConstScaleLayer):
            scale = mods[i].scale
            i += 1
    return (linears, slopes, scale) if i == len(mods) else None


def _coupling_parts(layer: nn.Module):
    if type(layer) is not nf.flows.MaskedAffineFlow:
        return None
    s, t = _mlp_parts(layer.s, squash=True), _mlp_parts(layer.t, squash=False)
    if s is None or t is None or len(s[0]) != len(t[0]):
        return None
    b = layer.b.reshape(-1)
    if not bool(((b == 0) | (b == 1)).all()):
        return None
    return s, t, b


def supports_fused(layers) -> bool:
    """True when every layer is a supported MaskedAffineFlow or a 1-D AffineConstFlow."""
    layers = list(layers)
    if not layers:
        return False
    for layer in layers:
        if type(layer) is nf.flows.AffineConstFlow:
            if layer.s.dim() != 2 or layer.s.shape[0] != 1:
                return False
        elif _coupling_parts(layer) is None:
            return False
    return True


def _split(b: Tensor) -> tuple[Tensor, Tensor]:
    """(transformed, conditioning) coordinate indices of a mask (b = 0, b = 1), on the CPU."""
    b = b.reshape(-1).to("cpu")
    return torch.nonzero(b == 0).flatten(), torch.nonzero(b == 1).flatten()


def _absmax(*xs: Tensor) -> Tensor:
    """max |x| over the tensors (NaN if any NaN)."""
    return torch.stack([torch.maximum(-lo, hi) for lo, hi in (torch.aminmax(x) for x in xs)]).amax()


_dnn_state = {"ok": None}


def _use_dnn(x: Tensor) -> bool:
    """oneDNN's fused linear (+ bias + ReLU in the GEMM epilogue) for float32 on the CPU."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    if _dnn_state["ok"] is None:
        try:
            a = torch.randn(8, 3)
            w, b = torch.randn(4, 3), torch.randn(4)
            r = torch.ops.mkldnn._linear_pointwise(a, w, b, "relu", [None], "")
            _dnn_state["ok"] = bool(torch.backends.mkldnn.is_available()) and torch.allclose(
                r, torch.relu(torch.addmm(b, a, w.T)), rtol=1e-5, atol=1e-6)
        except Exception:  # noqa: BLE001 - absent or changed private op: the addmm path
            _dnn_state["ok"] = False
    return _dnn_state["ok"]


def _linear(x: Tensor, w: Tensor, b: Tensor, slope: float | None, tag: str, dnn: bool) -> Tensor:
    """act(x wᵀ + b) (no activation for ``slope`` None; LeakyReLU(slope) otherwise)."""
    if dnn:
        fused = slope == 0.0
        h = torch.ops.mkldnn._linear_pointwise(x, w.contiguous(), b, "relu" if fused else "none", [None], "")
    else:
        fused = False
        h = torch.addmm(b, x, w.T, out=_scratch(tag, x.shape[0], w.shape[0], x))
    if slope is not None and not fused:
        _act_(h, slope)
    return h


def _act_(h: Tensor, slope: float) -> Tensor:
    return h.relu_() if slope == 0.0 else torch.nn.functional.leaky_relu_(h, slope)


def _l1(w: Tensor) -> Tensor:
    """Largest row L1 norm (bounds |W x| by it · max|x|)."""
    return w.abs().sum(1).amax() if w.numel() else w.new_zeros(())


# -- the fused pass ------------------------------------------------------------------------------
def fused_flow_forward(layers, y: Tensor, log_det: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Same as :func:`reference_flow_forward` for a supported stack (see the module docstring),
    under ``torch.no_grad()``. ``y`` (n, d) and ``log_det`` are not modified."""
    start = log_det
    layers = list(layers)
    couplings = [_coupling_parts(layer) for layer in layers]
    if y.ndim != 2 or y.shape[0] == 0 or any(c is not None and c[2].numel() != y.shape[1] for c in couplings):
        return reference_flow_forward(layers, y, start)
    n, d = y.shape
    limit = torch.finfo(y.dtype).max * 1e-6  # far below overflow, whatever the rounding
    # x is held as column blocks [(indices, contiguous (n, k) tensor)], split by the current
    # coupling's mask; consecutive couplings with complementary masks (build_flow's pairs) keep
    # the split, another mask regroups. The blocks are new tensors, updated in place.
    blocks: list | None = None
    log_det = _start(y, start).clone()
    ok = torch.ones((), dtype=torch.bool, device=y.device)
    for layer, parts in zip(layers, couplings):
        if parts is None:  # AffineConstFlow: x·e^c + u
            if blocks is None:
                blocks = [(torch.arange(d, device=y.device), y.clone())]
            c, u = layer.s.reshape(-1), layer.t.reshape(-1)
            for ix, blk in blocks:
                blk.mul_(c[ix].exp()).add_(u[ix])
            log_det.add_(layer.s.sum())
            continue
        it, ic = _split(parts[2])
        if len(it) == 0 or len(ic) == 0:  # a mask of all 0s or 1s: let the loop do it
            return reference_flow_forward(layers, y, start)
        it, ic = it.to(y.device), ic.to(y.device)
        cur = None
        if blocks is not None and len(blocks) == 2:
            for w in (0, 1):
                if blocks[w][0].shape == it.shape and bool((blocks[w][0] == it).all()):
                    cur = w
        if cur is None:  # (re)split the coordinates by this mask
            full = y if blocks is None else _assemble(blocks, y)
            blocks = [(it, full.index_select(1, it)), (ic, full.index_select(1, ic))]
            cur = 0
        (pt, xt), (pc, xc) = blocks[cur], blocks[1 - cur]  # transformed (b = 0), conditioning
        (sl, s_slopes, s_scale), (tl, t_slopes, _), _b = parts
        m_in = _absmax(xc, xt)  # NaN / inf for such input: then the loop decides
        ok = ok & (m_in < limit)
        dnn = _use_dnn(xc)
        w1s, w1t = sl[0].weight[:, pc], tl[0].weight[:, pc]  # b·z: only the conditioning columns
        if dnn:  # oneDNN: two contiguous outputs (it copies strided inputs, so no shared matmul)
            hs = _linear(xc, w1s, sl[0].bias, s_slopes[0], "h1s", dnn)
            ht = _linear(xc, w1t, tl[0].bias, t_slopes[0], "h1t", dnn)
            bs = m_in * _l1(w1s) + sl[0].bias.abs().amax()
            bt = m_in * _l1(w1t) + tl[0].bias.abs().amax()
        else:  # first layers of s and t: one matmul [W₁ˢ; W₁ᵗ], hidden layers on its column halves
            w1, b1 = torch.cat([w1s, w1t]), torch.cat([sl[0].bias, tl[0].bias])
            width = w1s.shape[0]
            same = s_slopes[0] == t_slopes[0]
            h = _linear(xc, w1, b1, s_slopes[0] if same else None, "h1", dnn)
            if not same:
                _act_(h[:, :width], s_slopes[0])
                _act_(h[:, width:], t_slopes[0])
            hs, ht = h[:, :width], h[:, width:]
            bs = bt = m_in * _l1(w1) + b1.abs().amax()
        ok = ok & (bs < limit) & (bt < limit)
        last = len(sl) - 1
        for k in range(1, len(sl)):
            ws, bias_s, wt, bias_t = sl[k].weight, sl[k].bias, tl[k].weight, tl[k].bias
            # bounds over all rows: normflows evaluates every output, then multiplies by 1 - b
            bs = bs * _l1(ws) + bias_s.abs().amax()
            bt = bt * _l1(wt) + bias_t.abs().amax()
            ok = ok & (bs < limit) & (bt < limit)
            if k == last:  # only the transformed outputs are needed
                ws, bias_s, wt, bias_t = ws[pt], bias_s[pt], wt[pt], bias_t[pt]
            tag = "out" if k == last else ("a" if k % 2 else "b")  # alternate scratch buffers
            hs = _linear(hs, ws, bias_s, None if k == last else s_slopes[k], tag + "s", dnn)
            ht = _linear(ht, wt, bias_t, None if k == last else t_slopes[k], tag + "t", dnn)
        scale = hs.tanh_()
        e_max = 1.0
        if s_scale is not None:
            scale.mul_(s_scale)
            e_max = s_scale.abs().to(y.dtype).exp()
        log_det.add_(scale.sum(1))
        xt.mul_(scale.exp_()).add_(ht)  # z_t · e^{scale} + t, in place on the transformed block
        ok = ok & (m_in * e_max + bt < limit)  # the new x stays far from overflow
    if not bool(ok):
        return reference_flow_forward(layers, y, start)
    return (y.clone() if blocks is None else _assemble(blocks, y)), log_det


def _assemble(blocks, like: Tensor) -> Tensor:
    x = torch.empty_like(like)
    for ix, blk in blocks:
        x.index_copy_(1, ix, blk)
    return x


ENABLED = True  # set False to always take the normflows loop (benchmarks, debugging)


def flow_forward(layers, y: Tensor, log_det: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The fused pass when gradients are off and the stack is supported, else the layer loop
    (:func:`lean_step` per layer)."""
    if ENABLED and not torch.is_grad_enabled() and supports_fused(layers):
        return fused_flow_forward(layers, y, log_det)
    log_det = _start(y, log_det)
    for layer in layers:
        y, ld = lean_step(layer, y)
        log_det = log_det + ld
    return y, log_det


def flow_inverse(layers, x: Tensor, log_det: Tensor) -> tuple[Tensor, Tensor]:
    """x back through the layers in reverse order (:func:`lean_step` with ``inverse``), with
    ``log_det`` (n,) plus the inverse log-determinants."""
    for layer in reversed(layers):
        x, ld = lean_step(layer, x, inverse=True)
        log_det = log_det + ld
    return x, log_det


def lean_step(layer: nn.Module, z: Tensor, inverse: bool = False) -> tuple[Tensor, Tensor]:
    """One layer's forward (or inverse) pass with graph. A ``MaskedAffineFlow`` is computed as
    normflows does it but without its two ``isfinite``/``where`` passes, which map a non-finite
    s or t to NaN: for finite s and t they are the identity (same values, same gradients, bit
    for bit), and a non-finite s or t gives a non-finite output here too (±inf or NaN rather
    than NaN), which the trainer refuses alike. Any other layer: its own method."""
    if ENABLED and type(layer) is nf.flows.MaskedAffineFlow:
        b = layer.b
        z_masked = b * z
        scale, trans = layer.s(z_masked), layer.t(z_masked)
        if inverse:
            z_ = z_masked + (1 - b) * (z - trans) * torch.exp(-scale)
            return z_, -torch.sum((1 - b) * scale, dim=list(range(1, b.dim())))
        z_ = z_masked + (1 - b) * (z * torch.exp(scale) + trans)
        return z_, torch.sum((1 - b) * scale, dim=list(range(1, b.dim())))
    return layer.inverse(z) if inverse else layer(z)
