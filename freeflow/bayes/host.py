"""A log-density computed outside torch (JAX, PyTensor) as a differentiable torch function.

The other direction of :mod:`freeflow.compare.reference.bridge`: there blackjax calls torch; here
torch calls a host function ``fn(z: ndarray (n, d) float64, grad: bool) -> (ndarray (n,),
ndarray (n, d) or None)`` that returns log p̃ (and ∇ log p̃ when ``grad``) of every row in one
call.  The forward pass
copies z to float64 numpy, calls it once and keeps the gradient; the backward pass is
``grad_output[:, None] * ∇log p̃`` (valid because row i of the output depends on row i of z
only).  First derivatives only: the saved gradient is a constant, so a second
differentiation (a Hessian) would silently be zero, and is refused instead.

A value of +inf is returned as −inf (outside the support) with a zero gradient: in a PPL's
log-density it is a normalising term that underflowed (e.g. NumPyro's ``TruncatedNormal`` with
its mean far outside the bounds and a small scale: log of a difference of two CDFs that are
both 1), not a density that is infinite, and NUTS rejects such a point too. A user's own torch
log-density that returns +inf is still refused (:func:`freeflow.validation.log_density_and_score`).

A float32 batch may be evaluated in float32 (``fn32``, the same function computed in single
precision: 2-3x faster per row through XLA), where the posterior has measured that this is
accurate enough (:mod:`freeflow.bayes.precision`); rows where it gives a non-finite value or
gradient are evaluated again by ``fn`` in float64.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
import torch

Tensor = torch.Tensor
HostValueAndGrad = Callable[[np.ndarray, bool], tuple[np.ndarray, np.ndarray | None]]

__all__ = ["host_log_density"]


def _mixed(fn32: HostValueAndGrad, fn: HostValueAndGrad, x: np.ndarray, grad: bool):
    """``fn32`` on a float32 batch, and ``fn`` (float64) on its rows that came out non-finite."""
    val, g = fn32(x, grad)
    val = np.array(val, dtype=np.float64)
    g = None if g is None else np.array(g, dtype=np.float64)
    bad = ~np.isfinite(val) if g is None else ~(np.isfinite(val) & np.isfinite(g).all(1))
    if bad.any():
        val[bad], gb = fn(x[bad].astype(np.float64), grad)
        if g is not None:
            g[bad] = gb
    return val, g


def _host_array(z: Tensor, single: bool) -> np.ndarray:
    return z.detach().cpu().to(torch.float32 if single else torch.float64).numpy().copy()


class _HostLogDensity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, fn: HostValueAndGrad, single: bool = False) -> Tensor:
        x = _host_array(z, single)
        val, grad = fn(x, True)
        # copies: JAX (and some PyTensor) outputs are read-only buffers torch cannot wrap
        val, grad = _overflow_outside(np.array(val, dtype=np.float64).reshape(z.shape[0]),
                                      np.array(grad, dtype=np.float64).reshape(z.shape))
        val_t, grad_t = torch.from_numpy(val), torch.from_numpy(grad)
        ctx.save_for_backward(grad_t.to(device=z.device, dtype=z.dtype))
        return val_t.to(device=z.device, dtype=z.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        if torch.is_grad_enabled():
            raise RuntimeError("a PPL model's log-density has first derivatives only "
                               "(create_graph=True / second derivatives are not available)")
        (grad,) = ctx.saved_tensors
        return grad_output[:, None] * grad, None, None


def host_log_density(z: Tensor, fn: HostValueAndGrad, fn32: HostValueAndGrad | None = None) -> Tensor:
    """log p̃(z) (n,) from ``fn`` (see module docstring), differentiable in z (n, d); a float32
    z through ``fn32`` where given (rows it cannot evaluate: ``fn``)."""
    single = fn32 is not None and z.dtype == torch.float32
    if single:
        fn = partial(_mixed, fn32, fn)
    if z.requires_grad:
        return _HostLogDensity.apply(z, fn, single)
    val, _ = fn(_host_array(z, single), False)
    val, _ = _overflow_outside(np.array(val, dtype=np.float64).reshape(z.shape[0]), None)
    return torch.from_numpy(val).to(device=z.device, dtype=z.dtype)


def _overflow_outside(val: np.ndarray, grad: np.ndarray | None):
    """Rows whose value is +inf: −inf with a zero gradient (module docstring)."""
    over = val == np.inf
    if over.any():
        val[over] = -np.inf
        if grad is not None:
            grad[over] = 0.0
    return val, grad
