"""Preconditioned HMC (MALA with one leapfrog step) on n chains at once, blackjax style.

One kernel moves n chains at once (rows of an (n, d) tensor). With a preconditioner
x = m + S u (S the Cholesky factor of a covariance Σ = S Sᵀ, or a diagonal), the chain is HMC
on u with an identity mass matrix, i.e. HMC on x with inverse mass matrix Σ:

    r ~ N(0, I_d),   H(x, r) = −log p̃(x) + ½|r|²,
    leapfrog (step ε, L = num_integration_steps):  r ← r + ½ε Sᵀ∇log p̃(x);  x ← x + ε S r;
                                                    r ← r + ½ε Sᵀ∇log p̃(x)
    accept with probability min(1, exp(H(x, r) − H(x′, r′))).

L = 1 is MALA (x′ = x + ½ε² Σ∇log p̃ + ε S ξ); it may take a local step ε·s(x)
(:func:`local_scale`), accepted with the full Metropolis–Hastings ratio. A proposal whose
log p̃ or gradient is not finite anywhere on its trajectory (NaN, ±inf: outside the support)
is rejected; no NaN comes out. :func:`build_coordinate_kernel` adds Metropolis-within-Gibbs
moves of single coordinates.

One global step size is adapted during a warm-up (Robbins–Monro on log ε towards a target mean
acceptance over the chains, gain 2/√t), then frozen at the mean log ε of the warm-up's second
half; the preconditioner is the starting draws' covariance, estimated again half-way through
the warm-up. Every kernel with fixed ε and S is p-invariant; the warm-up's ε and S depend on
all chains only through averages over them.

Pieces, as in blackjax: :class:`HMCState` (position, log p̃, gradient), :func:`init`,
:func:`build_kernel` → ``kernel(generator, state, step_size) -> (state, HMCInfo)``, and the
loop :func:`run_chains` apart. log p̃ and its gradient are evaluated in chunks of
:data:`freeflow.importance.LOG_DENSITY_CHUNK` rows (:func:`freeflow.validation.log_density_and_score`
per chunk); ``grad_evals`` counts the rows passed to log p̃ with a gradient, ``density_evals``
those without.
"""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..importance import LOG_DENSITY_CHUNK
from ..validation import check_float, check_int, check_positive_int, check_seed, log_density_and_score
from .dilation import build_dilation_kernels

__all__ = ["HMCState", "HMCInfo", "Preconditioner", "Chains", "value_and_grad", "preconditioner", "init",
           "build_kernel", "run_chains", "local_scale", "build_coordinate_kernel",
           "CoordinateInfo", "default_target_acceptance", "MAX_DENSE_DIM"]

LogDensity = Callable[[Tensor], Tensor]

#: dense preconditioner up to this dimension (and when n ≥ 2d draws), diagonal above
MAX_DENSE_DIM = 256


class HMCState(NamedTuple):
    position: Tensor         # (n, d)
    logdensity: Tensor       # (n,)  log p̃ at position
    logdensity_grad: Tensor  # (n, d) ∇log p̃ at position


class HMCInfo(NamedTuple):
    acceptance_rate: Tensor  # (n,) min(1, exp(−ΔH)); 0 for a non-finite proposal
    is_accepted: Tensor      # (n,) bool
    num_grad_evals: int      # rows passed to log p̃ in this step (n · L)


class Preconditioner(NamedTuple):
    """x = mean + S u; ``scale`` is S: lower-triangular (d, d) or a diagonal (d,)."""
    mean: Tensor
    scale: Tensor

    def apply(self, u: Tensor) -> Tensor:
        """S u for rows u (n, d)."""
        return u @ self.scale.T if self.scale.ndim == 2 else u * self.scale

    def apply_transpose(self, g: Tensor) -> Tensor:
        """Sᵀ g for rows g (n, d)."""
        return g @ self.scale if self.scale.ndim == 2 else g * self.scale


def default_target_acceptance(num_integration_steps: int) -> float:
    """0.574 for MALA (Roberts & Rosenthal's optimal scaling), 0.65 for HMC."""
    return 0.574 if num_integration_steps == 1 else 0.65


def value_and_grad(logdensity_fn: LogDensity, x: Tensor, *, chunk_size: int = LOG_DENSITY_CHUNK,
                   name: str = "log_density") -> tuple[Tensor, Tensor]:
    """log p̃(x) (n,) and ∇log p̃(x) (n, d) in chunks; rows with NaN/±inf log p̃ or a non-finite
    gradient come back as (−inf, 0)."""
    def fn(c: Tensor) -> Tensor:
        out = logdensity_fn(c)
        if isinstance(out, Tensor) and out.is_floating_point():  # +inf: outside the support too
            out = out.masked_fill(out == math.inf, math.nan)
        return out

    parts = [log_density_and_score(fn, c, name=name, max_bad_fraction=1.0) for c in x.split(chunk_size)]
    lp = torch.cat([p[0] for p in parts]).to(x.dtype)
    grad = torch.cat([p[1] for p in parts]).to(x.dtype)
    return lp, grad


def preconditioner(x: Tensor, *, max_dense_dim: int = MAX_DENSE_DIM) -> Preconditioner:
    """Mean and Cholesky factor of the draws' covariance, shrunk as Stan does
    (Σ ← n/(n+5) Σ + 10⁻³·5/(n+5) diag Σ); the diagonal when d > ``max_dense_dim``, n < 2d or
    the Cholesky fails. Zero or non-finite variances become 1."""
    x = x.detach().double()
    n, d = x.shape
    mean = x.mean(0)
    var = x.var(0) if n > 1 else torch.ones(d, dtype=torch.float64)
    var = torch.where(torch.isfinite(var) & (var > 0), var, torch.ones_like(var))
    if d <= max_dense_dim and n >= 2 * d and d > 1:
        xc = x - mean
        cov = xc.T @ xc / (n - 1)
        cov = n / (n + 5) * cov + 1e-3 * 5 / (n + 5) * torch.diag(var)
        chol, info = torch.linalg.cholesky_ex(cov)
        if int(info) == 0 and bool(torch.isfinite(chol).all()):
            return Preconditioner(mean, chol)
    return Preconditioner(mean, var.sqrt())


def init(position: Tensor, logdensity_fn: LogDensity, *, chunk_size: int = LOG_DENSITY_CHUNK) -> HMCState:
    lp, grad = value_and_grad(logdensity_fn, position, chunk_size=chunk_size)
    return HMCState(position, lp, grad)


def local_scale(grad_u: Tensor) -> Tensor:
    """s(x) = √(2 / (1 + |Sᵀ∇log p̃(x)|²/d)) (n,): ≈ 1 where the whitened target is locally
    standard (|Sᵀ∇|² ≈ d), ≈ √(2d)/|Sᵀ∇| where it is locally much narrower (a funnel's neck),
    at most √2 (near a mode)."""
    d = grad_u.shape[1]
    return torch.sqrt(2.0 / (1.0 + grad_u.double().pow(2).sum(1) / d)).clamp_min(1e-8)


def build_kernel(logdensity_fn: LogDensity, num_integration_steps: int = 1, precond: Preconditioner | None = None,
                 *, local_step_size: bool = False, chunk_size: int = LOG_DENSITY_CHUNK):
    """``kernel(generator, state, step_size) -> (state, info)``: one HMC transition of every chain
    (leapfrog with ``num_integration_steps`` steps; 1 = MALA). ``step_size``: a float or (n,).

    ``local_step_size`` (MALA only): the step at x is ε·s(x) (:func:`local_scale`), a proposal
    N(x + ½h Σ∇log p̃(x), h Σ), h = (ε s(x))², accepted with the Metropolis–Hastings ratio
    p̃(x′)q(x | x′)/(p̃(x)q(x′ | x)): still p-invariant, and it takes small steps where the
    target is locally narrow, which a single ε cannot."""
    num_integration_steps = check_positive_int(num_integration_steps, "num_integration_steps")
    if local_step_size and num_integration_steps != 1:
        raise ValueError("local_step_size needs num_integration_steps=1 (MALA): a leapfrog trajectory "
                         f"with a position-dependent step is not reversible; got {num_integration_steps}")

    def kernel(generator: torch.Generator, state: HMCState, step_size) -> tuple[HMCState, HMCInfo]:
        x, lp, grad = state
        n, d = x.shape
        eps = torch.as_tensor(step_size, dtype=torch.float64, device=x.device).reshape(-1, 1)  # (1 or n, 1)
        pre = precond if precond is not None else Preconditioner(torch.zeros(d, dtype=x.dtype, device=x.device),
                                                                 torch.ones(d, dtype=x.dtype, device=x.device))
        pre = Preconditioner(pre.mean.to(x), pre.scale.to(x))
        xi = torch.randn(n, d, generator=generator, dtype=x.dtype, device=x.device)
        if local_step_size:
            xn, lpn, gn, log_ratio, ok = _local_mala(logdensity_fn, pre, x, lp, grad, xi, eps, chunk_size)
        else:
            xn, lpn, gn, log_ratio, ok = _leapfrog(logdensity_fn, pre, x, lp, grad, xi, eps.to(x.dtype),
                                                   num_integration_steps, chunk_size)
        log_ratio = torch.where(ok & torch.isfinite(log_ratio), log_ratio, torch.full_like(log_ratio, -math.inf))
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=x.device)
        accept = torch.log(u) < log_ratio
        new = HMCState(torch.where(accept[:, None], xn, x), torch.where(accept, lpn, lp),
                       torch.where(accept[:, None], gn, grad))
        return new, HMCInfo(log_ratio.clamp(max=0).exp(), accept, n * num_integration_steps)

    return kernel


def _leapfrog(logdensity_fn, pre, x, lp, grad, r, eps, num_steps, chunk_size):
    """L leapfrog steps from (x, r); returns the proposal, its log p̃ and gradient, H(x, r) − H(x′, r′)
    and whether every point of the trajectory was finite."""
    h0 = -lp.double() + 0.5 * r.double().pow(2).sum(1)
    ok = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    xn, gn = x, grad
    r = r + 0.5 * eps * pre.apply_transpose(gn)
    for i in range(num_steps):
        xn = xn + eps * pre.apply(r)
        ok &= torch.isfinite(xn).all(1) & torch.isfinite(r).all(1)
        xn = torch.where(ok[:, None], xn, x)                      # an overflowed row stays put (rejected)
        lpn, gn = value_and_grad(logdensity_fn, xn, chunk_size=chunk_size)
        ok &= torch.isfinite(lpn)
        r = r + (eps if i < num_steps - 1 else 0.5 * eps) * pre.apply_transpose(gn)
    h1 = -lpn.double() + 0.5 * r.double().pow(2).sum(1)
    return xn, lpn, gn, h0 - h1, ok


def _local_mala(logdensity_fn, pre, x, lp, grad, xi, eps, chunk_size):
    """MALA with the step ε·s(x) (whitened coordinates u: u′ = u + ½h g_u + √h ξ, g_u = Sᵀ∇log p̃);
    log ratio = log p̃(x′) − log p̃(x) + log q(x | x′) − log q(x′ | x)."""
    d = x.shape[1]
    gu = pre.apply_transpose(grad).double()
    e0 = eps * local_scale(gu)[:, None]                                                # (n, 1)
    step_u = e0 * (0.5 * e0 * gu + xi.double())                                      # u′ − u
    xn = x + pre.apply(step_u.to(x.dtype))
    ok = torch.isfinite(xn).all(1)
    xn = torch.where(ok[:, None], xn, x)
    lpn, gn = value_and_grad(logdensity_fn, xn, chunk_size=chunk_size)
    ok &= torch.isfinite(lpn)
    gun = pre.apply_transpose(gn).double()
    e1 = eps * local_scale(gun)[:, None]
    rev = -step_u - 0.5 * e1 ** 2 * gun                                              # u − u′ − ½h′ g_u′
    log_q_fwd = -d * e0[:, 0].log() - 0.5 * xi.double().pow(2).sum(1)
    log_q_rev = -d * e1[:, 0].log() - 0.5 * rev.pow(2).sum(1) / e1[:, 0] ** 2
    return xn, lpn, gn, lpn.double() - lp.double() + log_q_rev - log_q_fwd, ok


class CoordinateInfo(NamedTuple):
    acceptance_rate: Tensor  # (k,) mean acceptance probability of each updated coordinate
    num_density_evals: int   # rows passed to log p̃ without a gradient (n · k)
    num_grad_evals: int      # rows passed with a gradient (n: the gradient at the end)


def build_coordinate_kernel(logdensity_fn: LogDensity, *, chunk_size: int = LOG_DENSITY_CHUNK):
    """``kernel(generator, state, coordinates, coordinate_step) -> (state, CoordinateInfo)``:
    Metropolis within Gibbs. For each j in ``coordinates`` in turn, every chain proposes
    x′_j = x_j + δ_j ξ (the other coordinates fixed) and accepts with min(1, p̃(x′)/p̃(x)); each
    update is p-invariant, and so their composition. The gradient is recomputed once at the end.
    It moves along directions where a joint step must be tiny (a funnel's v given its x's)."""
    def log_density(x: Tensor) -> Tensor:
        with torch.no_grad():
            lp = torch.cat([logdensity_fn(c) for c in x.split(chunk_size)])
        return torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -math.inf))

    def kernel(generator: torch.Generator, state: HMCState, coordinates, coordinate_step: Tensor):
        x, lp = state.position, state.logdensity
        n = x.shape[0]
        acc = []
        for j in coordinates:
            xn = x.clone()
            xn[:, j] += coordinate_step[j].to(x) * torch.randn(n, generator=generator, dtype=x.dtype, device=x.device)
            lpn = log_density(xn).to(x.dtype)
            log_ratio = lpn.double() - lp.double()
            good = torch.isfinite(log_ratio) & torch.isfinite(xn[:, j])
            log_ratio = torch.where(good, log_ratio, torch.full_like(log_ratio, -math.inf))
            accept = torch.log(torch.rand(n, generator=generator, dtype=torch.float64, device=x.device)) < log_ratio
            x = torch.where(accept[:, None], xn, x)
            lp = torch.where(accept, lpn, lp)
            acc.append(log_ratio.clamp(max=0).exp().mean())
        if len(coordinates):
            state = init(x, logdensity_fn, chunk_size=chunk_size)
        return state, CoordinateInfo(torch.stack(acc) if acc else torch.zeros(0, dtype=torch.float64),
                                     n * len(coordinates), n if len(coordinates) else 0)

    return kernel


class Chains(NamedTuple):
    state: HMCState           # after the last step
    draws: Tensor | None      # (kept steps, n, d) when asked for
    logdensity_draws: Tensor | None  # (kept steps, n)
    step_size: float          # the frozen step size
    acceptance: float         # mean acceptance probability over the kept steps (warm-up if none kept)
    grad_evals: int           # rows passed to log p̃ with a gradient, initial evaluation included
    density_evals: int        # rows passed to log p̃ without a gradient (coordinate updates)
    seconds: float
    steps_run: int            # warm-up included; fewer than asked where ``stop`` ended the run


def _initial_step_size(d: int, num_integration_steps: int) -> float:
    # optimal scalings on a standard Gaussian: MALA ε ≈ 1.65 d^(−1/6), HMC ε ∝ d^(−1/4)
    return 1.65 * d ** (-1 / 6) if num_integration_steps == 1 else 1.2 * d ** (-1 / 4)


def run_chains(logdensity_fn: LogDensity, x0: Tensor, steps: int, *, warmup: int = 0, num_integration_steps: int = 1,
               target_acceptance: float | None = None, step_size: float | None = None,
               precond: Preconditioner | None = None, local_step_size: bool = False, coordinates_per_step: int = 0,
               dilations_per_step: int = 0, seed: int = 0, keep_draws: bool = False,
               chunk_size: int = LOG_DENSITY_CHUNK, progress: str | None = None, stop=None,
               dilation_frames: tuple = ("chain",)) -> Chains:
    """``warmup`` adapted steps then ``steps`` steps at the frozen step sizes, from the rows of
    ``x0`` (one chain per row). Rows outside the support (log p̃ not finite) stay where they are.

    A step is one HMC/MALA transition, then (``coordinates_per_step`` = k > 0) Metropolis-within-
    Gibbs updates of k coordinates drawn at random without replacement (independently of the
    state), with per-coordinate steps δ_j adapted in the warm-up towards acceptance 0.44 (from
    2.4 × the conditional sd 1/√(Σ⁻¹)_jj of the preconditioner's covariance).

    ``dilations_per_step`` = k′ > 0 adds, before those, dilation moves
    (:mod:`freeflow.mcmc.dilation`) for k′ coordinates drawn at random, each with its step
    adapted in the warm-up towards acceptance 0.44 (from 0.2); with several ``dilation_frames``
    the steps take them in turn, each with its own step sizes.

    Without ``precond``, the preconditioner is the draws' (:func:`preconditioner`), estimated
    again from the chains half-way through a warm-up of 10 steps or more (the adaptation of ε
    and δ restarts there). ``progress``: a description to show a progress bar over the steps
    under (None: none). ``stop``: called as ``stop(t, state)`` after step t (1, 2, …); True ends
    the run there (each step is p-invariant, so the chains may end at any step)."""
    t0 = time.perf_counter()
    steps = check_int(steps, "steps", minimum=0)
    warmup = check_int(warmup, "warmup", minimum=0)
    num_integration_steps = check_positive_int(num_integration_steps, "num_integration_steps")
    target = check_float(default_target_acceptance(num_integration_steps) if target_acceptance is None
                         else target_acceptance, "target_acceptance", low=0.0, high=1.0, low_open=True, high_open=True)
    gen = torch.Generator(device=x0.device).manual_seed(check_seed(seed))
    n, d = x0.shape
    k = check_int(coordinates_per_step, "coordinates_per_step", minimum=0, maximum=d)
    refit_at = warmup // 2 if precond is None and warmup >= 10 else -1
    if precond is None:
        precond = preconditioner(x0)
    kernel = build_kernel(logdensity_fn, num_integration_steps, precond, local_step_size=local_step_size,
                          chunk_size=chunk_size)
    coord_kernel = build_coordinate_kernel(logdensity_fn, chunk_size=chunk_size)
    kd = check_int(dilations_per_step, "dilations_per_step", minimum=0, maximum=d)
    dilaters = build_dilation_kernels(logdensity_fn, dilation_frames, chunk_size=chunk_size)
    log_dils = [torch.full((d,), math.log(0.2), dtype=torch.float64, device=x0.device) for _ in dilaters]
    dil_histories: list = [[] for _ in dilaters]
    state = init(x0, logdensity_fn, chunk_size=chunk_size)
    evals, density_evals = n, 0
    log_eps = math.log(check_float(step_size, "step_size", low=0.0, low_open=True) if step_size is not None
                       else _initial_step_size(d, num_integration_steps))
    log_delta = torch.log(2.4 * _conditional_sd(precond))                              # (d,)
    history, delta_history, acc = [], [], []
    draws, lps, kept_acc = [], [], []
    t_adapt = 0
    bar = _bar(progress, warmup + steps, n)
    for t in range(warmup + steps):
        if bar is not None:
            bar.update(1)
        adapting = t < warmup
        if t == refit_at:                                        # the covariance of the warmed-up chains
            precond = preconditioner(state.position)
            kernel = build_kernel(logdensity_fn, num_integration_steps, precond, local_step_size=local_step_size,
                                  chunk_size=chunk_size)
            history, delta_history, t_adapt = [], [], 0
            log_delta = torch.log(2.4 * _conditional_sd(precond))
        state, info = kernel(gen, state, math.exp(log_eps))
        evals += info.num_grad_evals
        a = float(info.acceptance_rate.mean())
        (acc if adapting else kept_acc).append(a)
        if kd:
            dcoords = torch.randperm(d, generator=gen, device=gen.device)[:kd].tolist()
            f = t % len(dilaters)
            log_dil, dil_history = log_dils[f], dil_histories[f]
            xd, lpd, dacc = dilaters[f](gen, state.position, state.logdensity, dcoords, log_dil.exp())
            density_evals += n * kd
            grad = state.logdensity_grad
            moved = (xd != state.position).any(1) if not k else None
            if moved is not None and bool(moved.any()):   # the gradient where a dilation moved a chain
                lpd, grad = lpd.clone(), grad.clone()
                lpd[moved], grad[moved] = value_and_grad(logdensity_fn, xd[moved], chunk_size=chunk_size)
                evals += int(moved.sum())
            state = HMCState(xd, lpd, grad)   # (coordinate moves next recompute every gradient)
            if adapting:
                log_dil[dcoords] += 2.0 / math.sqrt(t_adapt + 1) * (dacc - 0.44)
                dil_history.append(log_dil.clone())
                if t >= warmup - len(dilaters):
                    log_dils[f] = torch.stack(dil_history[len(dil_history) // 2:]).mean(0)
        if k:
            coords = torch.randperm(d, generator=gen, device=gen.device)[:k].tolist()
            state, cinfo = coord_kernel(gen, state, coords, log_delta.exp())
            evals += cinfo.num_grad_evals
            density_evals += cinfo.num_density_evals
        if adapting:
            t_adapt += 1
            gain = 2.0 / math.sqrt(t_adapt)
            log_eps += gain * (a - target)
            history.append(log_eps)
            if k:
                log_delta[coords] += gain * (cinfo.acceptance_rate - 0.44)
                delta_history.append(log_delta.clone())
            if t == warmup - 1:                                  # freeze: the mean over the second half
                log_eps = float(np.mean(history[len(history) // 2:]))
                if k:
                    log_delta = torch.stack(delta_history[len(delta_history) // 2:]).mean(0)
        elif keep_draws:
            draws.append(state.position)
            lps.append(state.logdensity)
        if stop is not None and stop(t + 1, state):
            break
    if bar is not None:
        bar.close()
    acceptance = float(np.mean(kept_acc or acc)) if (kept_acc or acc) else math.nan
    return Chains(state, torch.stack(draws) if keep_draws and draws else None,
                  torch.stack(lps) if keep_draws and lps else None, math.exp(log_eps), acceptance, evals,
                  density_evals, time.perf_counter() - t0, t + 1 if warmup + steps else 0)


def _conditional_sd(precond: Preconditioner) -> Tensor:
    """1/√(Σ⁻¹)_jj for Σ = S Sᵀ: the sd of x_j given the other coordinates under N(·, Σ)."""
    scale = precond.scale.double()
    if scale.ndim == 1:
        return scale.abs()
    inv = torch.linalg.solve_triangular(scale, torch.eye(len(scale), dtype=torch.float64), upper=False)
    return 1.0 / inv.pow(2).sum(0).sqrt()


def _bar(desc: str | None, total: int, chains: int):
    """A tqdm bar over a run's steps (run_chains closes it), or None without a description."""
    if desc is None:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, postfix=f"{chains} chains")
