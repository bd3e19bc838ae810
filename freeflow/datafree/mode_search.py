"""The Gaussian stage's search (:mod:`freeflow.datafree.gaussian_stage`): L-BFGS on −log p̃ and
the curvature at a point from central differences of the gradient (2d rows in one batched
call, so NumPyro/PyMC log-densities work too); every row is counted."""
from __future__ import annotations

import torch

Tensor = torch.Tensor

__all__ = ["_Counter", "_lbfgs_path", "_hessian", "_diag_scale", "_laplace"]


class _Counter:
    """Wraps log p̃, counting rows; called in float64 where the log-density computes in it
    (torch promotes float32 constants), in the sampler's dtype otherwise."""

    def __init__(self, log_density, dim: int):
        self.f, self.rows, self.dtype = log_density, 0, torch.get_default_dtype()
        try:
            out = log_density(torch.zeros(2, dim, dtype=torch.float64))
            if isinstance(out, Tensor) and out.dtype == torch.float64 and out.shape == (2,):
                self.dtype = torch.float64
        except Exception:  # a float32-only log-density
            pass

    def __call__(self, x: Tensor) -> Tensor:
        self.rows += x.shape[0]
        return self.f(x.to(self.dtype)).double()

    def value_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            xg = x.detach().to(self.dtype).requires_grad_(True)
            lp = self.f(xg)
            self.rows += x.shape[0]
            (g,) = torch.autograd.grad(lp.sum(), xg)
        return lp.detach().double(), g.double()


def _lbfgs_path(f: _Counter, dim: int, max_iter: int, history: int = 10, start: Tensor | None = None) -> list[Tensor]:
    """L-BFGS iterates on −log p̃ from the origin or ``start`` (two-loop recursion, backtracking
    Armijo line search; a step to a non-finite log p̃ counts as a failed trial)."""
    x = torch.zeros(dim, dtype=torch.float64) if start is None else start.detach().double().clone()
    lp, g = (t[0] for t in f.value_and_grad(x[None]))
    if not (torch.isfinite(lp) and torch.isfinite(g).all()):
        where = "the origin" if start is None else "its start"
        raise FloatingPointError(f"the MAP search starts at {where}, where log p̃ or its gradient is not finite")
    path, s_hist, y_hist = [x], [], []
    for _ in range(max_iter):
        q = -g                                   # gradient of −log p̃
        alphas = []
        for s_k, y_k in reversed(list(zip(s_hist, y_hist))):
            a = float(s_k @ q) / float(y_k @ s_k)
            alphas.append(a)
            q = q - a * y_k
        gamma = float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1]) if s_hist else \
            1.0 / max(float(g.norm()), 1.0)
        r = gamma * q
        for (s_k, y_k), a in zip(zip(s_hist, y_hist), reversed(alphas)):
            r = r + s_k * (a - float(y_k @ r) / float(y_k @ s_k))
        direction = -r                           # ascent direction of log p̃
        slope = float(g @ direction)
        if slope <= 0:                           # not an ascent direction: restart from steepest ascent
            s_hist, y_hist = [], []
            direction, slope = g / max(float(g.norm()), 1.0), float(g @ g) / max(float(g.norm()), 1.0)
        t, moved = 1.0, False
        for _ in range(30):
            x_new = x + t * direction
            lp_new, g_new = (v[0] for v in f.value_and_grad(x_new[None]))
            if torch.isfinite(lp_new) and torch.isfinite(g_new).all() and float(lp_new) >= float(lp) + 1e-4 * t * slope:
                moved = True
                break
            t *= 0.5
        if not moved:
            break
        s_k, y_k = x_new - x, g - g_new      # y for −log p̃
        if float(s_k @ y_k) > 1e-12 * float(y_k @ y_k):
            s_hist, y_hist = (s_hist + [s_k])[-history:], (y_hist + [y_k])[-history:]
        converged = float(lp_new - lp) < 1e-9 * (1 + abs(float(lp)))
        x, lp, g = x_new, lp_new, g_new
        path.append(x)
        if converged or float(g.abs().max()) < 1e-8:
            break
    return path


def _hessian(f: _Counter, x: Tensor, h: float = 1e-2) -> Tensor:
    """∇²log p̃(x) (d, d) from central differences of ∇log p̃ (2d rows in one call)."""
    d = x.shape[0]
    eye = torch.eye(d, dtype=torch.float64) * h
    _, g = f.value_and_grad(torch.cat([x + eye, x - eye]))
    return (g[:d] - g[d:]) / (2 * h)                                   # row j: ∂∇/∂x_j


def _diag_scale(f: _Counter, x: Tensor, h: float = 1e-2) -> Tensor:
    """σ_j = (−H_jj)^{-1/2} from central differences of ∇log p̃ (2d rows in one call)."""
    hjj = -_hessian(f, x, h).diagonal()
    hjj = torch.where(torch.isfinite(hjj) & (hjj > 0), hjj, torch.ones_like(hjj))
    return hjj.clamp(1e-6, 1e10).rsqrt()


def _laplace(f: _Counter, x: Tensor) -> Tensor | None:
    """The Cholesky factor of (−∇²log p̃(x))⁻¹ at the path's end (the Laplace approximation's
    covariance), or None where the finite-difference Hessian is not finite or −H not positive
    definite (a saddle, a funnel's neck, a flat direction)."""
    hess = _hessian(f, x)
    if not bool(torch.isfinite(hess).all()):
        return None
    prec_chol, info = torch.linalg.cholesky_ex(-(hess + hess.T) / 2)
    if int(info) != 0:
        return None
    eye = torch.eye(x.shape[0], dtype=torch.float64)
    inv_t = torch.linalg.solve_triangular(prec_chol, eye, upper=False).T        # L⁻ᵀ: Σ = L⁻ᵀL⁻¹
    chol, info = torch.linalg.cholesky_ex(inv_t @ inv_t.T)
    return chol if int(info) == 0 and bool(torch.isfinite(chol).all()) else None
