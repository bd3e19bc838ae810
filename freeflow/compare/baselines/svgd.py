"""``SVGDBaseline``: Stein variational gradient descent (Liu & Wang 2016), a fixed set of
interacting particles moved by a kernelised Stein direction under the same kind of
wall-clock budget; ``sample(n)`` returns n of its particles (see its docstring).
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from ...validation import check_float, check_int, check_log_density, check_seed
from .common import _check_budget, _loc_scale_from_target, _unwrap_target

Tensor = torch.Tensor


class SVGDBaseline:
    """Stein variational gradient descent (Liu & Wang 2016) on a fixed set of particles.

    n particles x_1..x_n move along the kernelised Stein direction, the steepest descent of
    KL(q‖p) in the unit ball of an RBF reproducing-kernel Hilbert space:

        φ(x) = (1/n) Σ_j [ k(x_j, x) ∇log p̃(x_j) + ∇_{x_j} k(x_j, x) ],
        k(x, y) = exp(−‖x − y‖² / h),   h = med² / log(n + 1),

    med the median pairwise distance of the current particles (recomputed every step, as in
    the reference implementation; from the first 1000 particles when n > 1000), or a fixed
    ``bandwidth`` h.  In matrix form,
    φ = (K G + (2/h)(X ⊙ K1 − K X)) / n, G_j = ∇log p̃(x_j) by autograd; the first term pulls
    particles towards high density, the second repels them from each other.  Kernels come
    from ``torch.cdist`` on the particle set: O(n²) memory (n = 4000: a 64 MB float32 matrix)
    and O(n² d) time per step.  The update is x ← x + ε φ(x), taken by ``torch.optim.Adam``
    on the particle tensor with gradient −φ (the reference code uses AdaGrad with momentum;
    both rescale ε per coordinate).  Particles start from N(loc, scale²), loc/scale from the
    target's ``plot_range`` as for :class:`VIBaseline` (a third of the half-range).

    There is no generator: ``sample(n)`` returns n of the trained particles (a random
    permutation fixed at the end of each ``fit``), so n may not exceed ``n_particles``.  The
    particles are an interacting set, not independent draws: an ESS equal to the particle
    count is optimistic, and with few particles in high dimension SVGD is known to
    underestimate the variance.  A non-finite φ (e.g. a log-density gradient that overflows)
    stops training with ``FloatingPointError`` naming the step; the particles keep their
    last finite state.

    Args:
        log_density: torch (n, d) -> (n,) unnormalised log-density, differentiable by
            autograd, or a Target (``log_prob``, ``dim``, ``plot_range``).
        dim: dimension (from the target when omitted).
        n_particles: number of particles (>= 2).
        loc, scale: mean and std of the initial particles (default: from the target).
        bandwidth: fixed kernel bandwidth h (> 0), or None for the median heuristic.
        dtype: particle dtype (torch.float32 or torch.float64).
        seed: seeds the initial particles and the final permutation.
    """

    name = "SVGD"
    kind = "svgd"

    def __init__(
        self,
        log_density: Callable[[Tensor], Tensor] | Any,
        dim: int | None = None,
        *,
        n_particles: int = 1000,
        loc: Tensor | float | None = None,
        scale: Tensor | float | None = None,
        bandwidth: float | None = None,
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> None:
        target, log_density, dim = _unwrap_target(log_density, dim)
        check_int(dim, "dim", minimum=1)
        check_int(n_particles, "n_particles (the kernel needs pairs)", minimum=2)
        check_float(bandwidth, "bandwidth (None: median heuristic)", low=0.0, low_open=True, allow_none=True)
        check_seed(seed)
        check_log_density(log_density, dim)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        self.log_density, self.dim, self.seed, self.dtype = log_density, dim, seed, dtype
        self.n_particles, self.bandwidth = n_particles, bandwidth
        t_loc, t_scale = _loc_scale_from_target(target, dim)
        loc_t = t_loc if loc is None else torch.as_tensor(loc, dtype=torch.float64).expand(dim).clone()
        scale_t = t_scale if scale is None else torch.as_tensor(scale, dtype=torch.float64).expand(dim).clone()
        if not (torch.isfinite(scale_t).all() and (scale_t > 0).all()):
            raise ValueError("scale must be finite and > 0")
        if not torch.isfinite(loc_t).all():
            raise ValueError("loc must be finite")
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n_particles, dim, generator=g, dtype=torch.float64)
        self.particles = (loc_t.double() + scale_t.double() * z).to(dtype)
        self._perm = torch.randperm(n_particles, generator=g)
        self.settings = {"n_particles": n_particles, "kernel": "rbf",
                         "bandwidth": "median" if bandwidth is None else float(bandwidth),
                         "optimizer": "adam", "lr": None, "dtype": str(dtype).replace("torch.", ""),
                         "seed": seed}
        self.history: list[dict] = []
        self.train_seconds = 0.0
        self.steps_done = 0

    def _bandwidth(self, sq: Tensor) -> Tensor:
        """h = med²/log(n+1) from the squared distances ``sq`` (n, n)."""
        if self.bandwidth is not None:
            return torch.tensor(float(self.bandwidth), dtype=sq.dtype)
        m = min(sq.shape[0], 1000)
        iu = torch.triu_indices(m, m, offset=1)
        med2 = sq[:m, :m][iu[0], iu[1]].median()
        return (med2 / math.log(sq.shape[0] + 1)).clamp_min(torch.finfo(sq.dtype).tiny ** 0.5)

    def stein_direction(self, x: Tensor | None = None) -> tuple[Tensor, dict]:
        """φ at the particles ``x`` (default: the current ones), and {h, n_bad_grad}."""
        x = (self.particles if x is None else x).detach().requires_grad_(True)
        with torch.enable_grad():
            lp = self.log_density(x)
            (grad,) = torch.autograd.grad(lp.sum(), x)
        x = x.detach()
        grad = grad.to(x.dtype)
        n = x.shape[0]
        sq = torch.cdist(x, x).pow_(2)
        h = self._bandwidth(sq)
        k = sq.div_(-h).exp_()  # in place: one (n, n) buffer
        phi = (k @ grad + (2.0 / h) * (x * k.sum(1, keepdim=True) - k @ x)) / n
        return phi, {"h": float(h), "n_bad_grad": int((~torch.isfinite(grad).all(1)).sum())}

    def fit(
        self,
        time_budget_s: float | None = None,
        *,
        max_steps: int | None = None,
        lr: float = 0.05,
        progress: bool = False,
    ) -> list[dict]:
        """Move the particles until ``time_budget_s`` seconds (of this call) or ``max_steps`` steps.

        A fresh Adam state each call.  Raises ``FloatingPointError`` at a non-finite φ.
        """
        _check_budget(time_budget_s, max_steps)
        check_float(lr, "lr", low=0.0, low_open=True)
        self.settings["lr"] = float(lr)
        x = self.particles.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        t0 = time.perf_counter()
        hist: list[dict] = []
        step = 0
        try:
            while True:
                elapsed = time.perf_counter() - t0
                if (time_budget_s is not None and elapsed >= time_budget_s) or (
                        max_steps is not None and step >= max_steps):
                    break
                phi, info = self.stein_direction(x)
                if not torch.isfinite(phi).all():
                    raise FloatingPointError(
                        f"SVGD step {self.steps_done + step}: non-finite Stein direction φ "
                        f"({int((~torch.isfinite(phi)).sum())} entries; log-density gradient "
                        f"non-finite at {info['n_bad_grad']} of {x.shape[0]} particles, bandwidth "
                        f"h = {info['h']:.3g}); particles keep their last finite state")
                x.grad = -phi
                opt.step()
                rec = {"step": self.steps_done + step, "time": elapsed, "h": info["h"],
                       "phi_rms": float(phi.pow(2).mean().sqrt())}
                hist.append(rec)
                step += 1
                if progress and step % 200 == 0:
                    print(f"SVGD step {self.steps_done + step}: |φ| rms {rec['phi_rms']:.4g}, h {rec['h']:.4g}")
        finally:
            self.particles = x.detach().clone()
            self.train_seconds += time.perf_counter() - t0
            self.steps_done += step
            self.history.extend(hist)
            g = torch.Generator().manual_seed(self.seed + 1 + self.steps_done)
            self._perm = torch.randperm(self.n_particles, generator=g)
        return hist

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """The first n particles of the permutation fixed at the end of training, (n, d).

        Not fresh draws: repeated calls return the same particles.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if n > self.n_particles:
            raise ValueError(f"n = {n} exceeds the {self.n_particles} SVGD particles "
                             f"(SVGD has a fixed particle set: train with n_particles >= n)")
        return self.particles[self._perm[:n]].clone()

    @property
    def final_phi_rms(self) -> float:
        """RMS of φ over the last 100 steps (→ 0 at a fixed point of the particle system)."""
        vals = [h["phi_rms"] for h in self.history[-100:]]
        return float(sum(vals) / len(vals)) if vals else math.nan


def fit_svgd(log_density, dim: int | None = None, *, time_budget_s: float, **kwargs) -> SVGDBaseline:
    """Build an :class:`SVGDBaseline` and move its particles for ``time_budget_s`` seconds.

    ``n_particles``, ``loc``, ``scale``, ``bandwidth``, ``dtype``, ``seed`` go to the
    constructor; ``max_steps``, ``lr``, ``progress`` to :meth:`SVGDBaseline.fit`.
    """
    fit_keys = {"max_steps", "lr", "progress"}
    fit_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in fit_keys}
    svgd = SVGDBaseline(log_density, dim, **kwargs)
    svgd.fit(time_budget_s, **fit_kw)
    return svgd
