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
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

Tensor = torch.Tensor
HostValueAndGrad = Callable[[np.ndarray, bool], tuple[np.ndarray, np.ndarray | None]]

__all__ = ["host_log_density"]


class _HostLogDensity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, fn: HostValueAndGrad) -> Tensor:
        x = z.detach().cpu().to(torch.float64).numpy().copy()
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
        return grad_output[:, None] * grad, None


def host_log_density(z: Tensor, fn: HostValueAndGrad) -> Tensor:
    """log p̃(z) (n,) from ``fn`` (see module docstring), differentiable in z (n, d)."""
    if z.requires_grad:
        return _HostLogDensity.apply(z, fn)
    val, _ = fn(z.detach().cpu().to(torch.float64).numpy().copy(), False)
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
