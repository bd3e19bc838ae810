"""The Gaussian stage: a full-covariance Gaussian fitted to p̃ before the generator trains.

Posteriors are often strongly coupled (a random walk's states along the chain, regression
coefficients of a collinear design) and badly scaled (condition numbers of 10⁵), and a
per-coordinate generator started at N(0, I) must learn all of that by transport. The stage
finds a Gaussian N(μ, LLᵀ) close to p̃ first, and the generator then trains in its *frame*

    x = μ + L u,        log p̃_u(u) = log p̃(μ + L u) + log|det L|,

where the target is near N(0, I): every setting measured at unit scale (the annealing path,
the component spread, the learning rates) is right again, and the drift is preconditioned
(V_u = Lᵀ V_x). Importance weights are unchanged by the change of variables.

Four steps, each cheap next to training (its log-density evaluations are counted):

1. **Path** (Pathfinder's idea, Zhang et al. 2022): L-BFGS on −log p̃ from the origin, at most
   ``max_iter`` iterations; a funnel's or a centred hierarchy's mode lies in the neck, so the
   end of the path is not always the best place, and every path point is a candidate. The
   origin's path can also end in a poor local optimum (an ODE model's parameters), so
   ``starts`` more paths run from random points in [−2, 2]^d (as Stan and NumPyro initialise
   NUTS); one of their ends replaces the candidate only when it is better by ``BASIN_MARGIN`` nats.
2. **Diagonal Gaussians along the path**: at ≤ ``candidates`` points x_k, σ_k = H_jj^{-1/2} from
   central differences of the gradient (2d rows of log p̃ in one batched call, no second
   derivatives needed, so NumPyro/PyMC log-densities work too); the candidate with the largest
   ELBO (``draws`` draws) wins.
3. **Full-rank Gaussian VI** from the winner: ``vi_steps`` Adam steps on the reparameterised
   ELBO over (m, L) in the winner's diagonal frame, x = μ₀ + σ₀ ⊙ (m + L ε), ``draws`` draws a
   step; draws with a non-finite log p̃ are left out of the mean. The KL(q‖p)-optimal
   Gaussian does not collapse into a funnel's neck as a Laplace approximation at the mode does,
   but VI started in the neck stays there (a local optimum), so a second run starts from the
   origin at unit scale: ADVI (Kucukelbir et al. 2017: Adam on the mean too) for
   ``origin_factor``·``vi_steps`` steps, then the VI above for ``vi_steps`` steps in the diagonal
   frame of ADVI's result. From unit scale the Newton step on the mean overshoots every
   coordinate whose posterior is narrower than the current q, and its clamped steps wander (on
   centred varying intercepts over 56 groups 500 of them reached the bulk on 3 of 5 seeds); Adam's
   steps are bounded by its learning rate, and the Newton steps from its result make the fit
   precise (``benchmarks/gaussian_stage_starts.py``).
4. **Laplace candidate**: N(x_end, (−H)⁻¹) at the path's end, with the full Hessian from the
   same 2d rows of central differences, where −H is positive definite. The final frame is the
   VI run from the path unless another candidate's ELBO (VI from the origin, the diagonal path
   point, Laplace; ``draws``·8 common draws) is higher by more than a nat. A candidate whose
   draws reach log p̃ more than max(100, 10 d) above the best point of the L-BFGS path is left
   out: no Gaussian's draws climb that far above a mode the path found, but a log-density's
   numerical garbage does (a NumPyro model at a bound evaluated to 10⁵⁶ there). In a latent
   Gaussian field of 1600 coordinates (the pines Cox process) 500 VI steps of 32 draws stay
   far from the posterior (ELBO −1891, the diagonal point's 299 won), while the Laplace
   Gaussian is close to it.

The stage only sets a frame; the generator still carries the non-Gaussian shape (skew, heavy
tails, several modes). Its covariance is inflated by ``inflate`` (default 1.2) so that the
frame is never narrower than the target where VI is mode-seeking.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..importance import log_density_at
from ..placement import noise_generator
from ..validation import check_positive_int
from .frame import Frame, FrameLogDensity
from .mode_search import _Counter, _diag_scale, _laplace, _lbfgs_path  # (benchmarks use them from here)

Tensor = torch.Tensor

__all__ = ["GaussianFit", "fit_gaussian", "badly_scaled", "stage_for_sampler", "Frame", "FrameLogDensity"]

# in d ≤ 3 the stage runs (gaussian_stage="auto") only where p̃ is badly scaled at its mode
SCALE_RANGE = (1e-2, 1e2)     # every Laplace sd inside this range, and
MAX_CONDITION = 1e3           # the Laplace covariance's condition number below this: unit scale is fine
STARTS = 4                    # L-BFGS paths from random points beside the origin's (_other_basins)
BASIN_MARGIN = 10.0           # nats of ELBO by which another path's end must beat the origin path's


@dataclass
class GaussianFit:
    """N(loc, chol cholᵀ) and how it was found."""

    loc: Tensor            # (d,) float64
    chol: Tensor           # (d, d) float64, lower triangular, positive diagonal
    elbo: float            # of the final Gaussian (before inflation), ``draws``·8 draws
    evaluations: int       # rows passed to log p̃ (values and gradients)
    seconds: float
    path_length: int       # L-BFGS iterations run
    note: str = ""
    #: the largest ELBO (with its constant, less 3 standard errors) of the stage's candidates on the
    #: common draws: a lower bound on log Z, which the verdict holds a trained q's estimate of it against
    elbo_bound: float = -math.inf


def _path_top(f: _Counter, path: list[Tensor]) -> float:
    """The largest finite log p̃ along the L-BFGS path (its iterates ascend, so its end)."""
    lp = log_density_at(f, path[-1][None])
    return float(lp[0]) if bool(torch.isfinite(lp).all()) else -math.inf


def _elbo(f: _Counter, loc: Tensor, chol: Tensor, eps: Tensor, top: float = math.inf, *,
          low: list | None = None) -> float:
    """The ELBO up to a constant on common draws (non-finite log p̃ counts as −10³⁰); −inf
    when a draw's log p̃ exceeds ``top`` (numerical garbage: see the module docstring).
    ``low``: a list to which the estimate minus 3 standard errors is appended (a conservative
    lower bound: the estimate's noise grows as √d where q ≈ p)."""
    x = loc + eps @ chol.T
    lp = log_density_at(f, x)
    if bool((lp[torch.isfinite(lp)] > top).any()):
        lp = torch.full_like(lp, -math.inf)
    else:
        lp = torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -1e30))
    e = float(lp.mean() + chol.diagonal().abs().log().sum())
    if low is not None:
        se = float(lp.std()) / math.sqrt(lp.numel()) if math.isfinite(e) and lp.numel() > 1 else math.inf
        low.append(e - 3 * se)
    return e


def fit_gaussian(log_density, dim: int, *, max_iter: int = 100, candidates: int = 8, draws: int = 32,
                 vi_steps: int = 500, lr: float = 0.1, inflate: float = 1.2, seed: int = 0,
                 origin_factor: int = 2, starts: int = STARTS) -> GaussianFit:
    """The Gaussian stage (see the module docstring). Raises FloatingPointError when the MAP
    search cannot start (log p̃ not finite at the origin)."""
    for name, v in (("max_iter", max_iter), ("candidates", candidates), ("draws", draws), ("vi_steps", vi_steps),
                    ("origin_factor", origin_factor)):
        check_positive_int(v, name)
    if not isinstance(starts, int) or isinstance(starts, bool) or starts < 0:
        raise ValueError(f"starts must be a non-negative int, got {starts!r}")
    t0 = time.perf_counter()
    f = _Counter(log_density, dim)
    g = noise_generator(seed)
    path = _lbfgs_path(f, dim, max_iter)
    idx = sorted({round(i * (len(path) - 1) / max(candidates - 1, 1)) for i in range(candidates)})
    eps = torch.randn(draws, dim, generator=g, dtype=torch.float64)
    best = None
    for i in idx:
        sd = _diag_scale(f, path[i])
        e = _elbo(f, path[i], torch.diag(sd), eps)
        if best is None or e > best[0]:
            best = (e, path[i], sd)
    path, best, found, others = _other_basins(f, dim, max_iter, starts, path, best, eps, seed)
    _, mu0, sd0 = best
    # two VI runs: from the best path point, and from the origin at unit scale (ADVI, then the
    # Newton-step VI in ADVI's frame); the path can end in a funnel's neck, a poor local optimum
    eps_cmp = torch.randn(draws * 8, dim, generator=g, dtype=torch.float64)
    zero, one = torch.zeros(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64)
    top = _path_top(f, path) + max(100.0, 10.0 * dim)
    runs, lows = [], []
    loc, chol = _vi(f, mu0, sd0, vi_steps, draws, lr, g)
    runs.append((_elbo(f, loc, chol, eps_cmp, top, low=lows), loc, chol, "full-rank VI from the best L-BFGS path point"))
    loc, chol = _vi(f, zero, one, origin_factor * vi_steps, draws, lr, g, mean_step="adam")
    loc, chol = _vi(f, loc, chol.pow(2).sum(1).sqrt(), vi_steps, draws, lr, g)     # polished in its frame
    runs.append((_elbo(f, loc, chol, eps_cmp, top, low=lows), loc, chol,
                 "full-rank VI from the origin (ADVI, then VI in its frame)"))
    runs.append((_elbo(f, mu0, torch.diag(sd0), eps_cmp, top, low=lows), mu0, torch.diag(sd0), "diagonal path point"))
    lap = _laplace(f, path[-1])
    if lap is not None:   # a latent Gaussian field in hundreds of dimensions: VI has too few steps
        runs.append((_elbo(f, path[-1], lap, eps_cmp, top, low=lows), path[-1], lap, "Laplace at the path's end"))
    # the path run is the more precise where both found the same bulk (a well-conditioned
    # start): another run replaces it only when its ELBO is higher by more than a nat
    elbo = [r[0] if math.isfinite(r[0]) else -math.inf for r in runs]
    best_i = 0 if elbo[0] >= max(elbo[1:]) - 1.0 else max(range(1, len(runs)), key=lambda i: elbo[i])
    final, loc, chol, note = runs[best_i]
    loc, chol, widened = _scan_widen(f, loc.detach(), chol.detach())
    if widened:
        note += f"; widened along {widened} coordinate(s) whose conditional is broader than the Gaussian's"
    if found:
        note += f"; {found}"
    for point, sd in others:   # other basins the random starts found: they bound log Z too
        _elbo(f, point, torch.diag(sd), eps_cmp, top, low=lows)
    bound = max(lows) + 0.5 * dim * (1.0 + math.log(2 * math.pi))
    return GaussianFit(loc, inflate * chol, final, f.rows, time.perf_counter() - t0, len(path) - 1, note, bound)


def _other_basins(f: _Counter, dim: int, max_iter: int, starts: int, path: list[Tensor], best: tuple,
                  eps: Tensor, seed: int) -> tuple[list[Tensor], tuple, str, list]:
    """L-BFGS again from ``starts`` random points (uniform on [−2, 2]^d, Stan's and NumPyro's
    initialisation; points where log p̃ is not finite are skipped): a path from the origin can end
    in a poor local optimum (an ODE model's parameters: a Lotka–Volterra fit 40 nats below the
    posterior's mode, where 4 of 6 random starts reached the mode). A path's end replaces the
    best candidate only when its diagonal Gaussian's ELBO is higher by more than ``BASIN_MARGIN``
    nats, so a unimodal posterior keeps the origin path's fit exactly. Returns (the winning path,
    its candidate (elbo, point, sd), a note or "", the (point, sd) of the other ends elsewhere
    whose ELBO came within 2 nats of the best: the verdict's bound on log Z includes them)."""
    if starts == 0:
        return path, best, "", []
    g = noise_generator(seed + 7919)   # its own stream: the stage's other draws are unchanged
    tries = torch.rand(4 * starts, dim, generator=g, dtype=torch.float64) * 4 - 2
    ok = torch.isfinite(log_density_at(f, tries))
    won, kept, ends = None, 0, []
    for x0 in tries[ok][:starts]:
        try:
            other = _lbfgs_path(f, dim, max_iter, start=x0)
        except FloatingPointError:
            continue
        kept += 1
        sd = _diag_scale(f, other[-1])
        e = _elbo(f, other[-1], torch.diag(sd), eps)
        if not math.isfinite(e):
            continue
        ends.append((e, other[-1], sd))
        if e > best[0] + BASIN_MARGIN:
            best, path, won = (e, other[-1], sd), other, e
    elsewhere = [(x, sd) for e, x, sd in ends if e > best[0] - 2.0 and float((x - best[1]).abs().max()) > 1e-6 *
                 (1.0 + float(best[1].abs().max()))]
    if won is None:
        return path, best, "", elsewhere
    return path, best, f"a random start's L-BFGS path found a better basin (ELBO {won:.1f}; {kept} starts)", elsewhere


def badly_scaled(log_density, dim: int, *, max_iter: int = 100) -> str:
    """Why p̃ is too badly scaled for the unit-scale generator ("" if it is not): at the end of
    the L-BFGS path, the Laplace covariance (−∇²log p̃)⁻¹ has a condition number above
    ``MAX_CONDITION`` or an sd outside ``SCALE_RANGE`` (a regression on raw years: condition
    6.5·10¹⁰). "" too where the search cannot start or the Hessian there is not negative definite
    (nothing to measure: a mixture's saddle, a flat direction). Costs the path and 2d rows, so
    the sampler asks it in low dimension only, where the stage is otherwise skipped (2-D mixtures
    at unit scale train as they always did)."""
    f = _Counter(log_density, dim)
    try:
        chol = _laplace(f, _lbfgs_path(f, dim, max_iter)[-1])
    except Exception:   # nothing to measure (non-finite at the origin, a row refused): training decides
        return ""
    if chol is None:
        return ""
    eig = torch.linalg.eigvalsh(chol @ chol.T)
    sd = (chol @ chol.T).diagonal().sqrt()
    cond = float(eig[-1] / eig[0]) if float(eig[0]) > 0 else math.inf
    if cond > MAX_CONDITION:
        return f"the Laplace covariance at the mode has condition number {cond:.2g} > {MAX_CONDITION:g}"
    lo, hi = SCALE_RANGE
    if float(sd.min()) < lo or float(sd.max()) > hi:
        return f"Laplace sds at the mode span {float(sd.min()):.2g}–{float(sd.max()):.2g}, outside [{lo:g}, {hi:g}]"
    return ""


def stage_for_sampler(log_density, dim: int, *, mode: str, seed: int) -> tuple[GaussianFit | None, dict]:
    """The sampler's stage (``gaussian_stage`` "auto" or "on", an exact generator): (the fit or
    None, the summary the sampler keeps as ``gaussian_fit``). "auto" in d ≤ 3 fits only where
    :func:`badly_scaled` says why; a search that cannot start is noted ("auto") or raised ("on")."""
    why = ""
    if mode == "auto" and dim <= 3:
        why = badly_scaled(log_density, dim)
        if not why:
            return None, {"used": False, "reason": f"d = {dim} ≤ 3 and p̃ is not badly scaled at its mode"}
    try:
        fit = fit_gaussian(log_density, dim, seed=seed)
    except FloatingPointError as e:
        if mode == "on":
            raise FloatingPointError(f"gaussian_stage='on': {e}") from e
        return None, {"used": False, "reason": str(e)}
    note = fit.note + (f"; run in d = {dim} because {why}" if why else "")
    return fit, {"used": True, "elbo": fit.elbo, "elbo_bound": fit.elbo_bound, "evaluations": fit.evaluations,
                 "seconds": fit.seconds, "path_length": fit.path_length, "note": note}


def _vi(f: _Counter, mu0: Tensor, sd0: Tensor, steps: int, draws: int, lr: float,
        g: torch.Generator, *, mean_step: str = "newton") -> tuple[Tensor, Tensor]:
    """Full-rank Gaussian VI in the diagonal frame x = μ₀ + σ₀ ⊙ (m + L ε): Adam on L; on m
    natural-gradient steps (``mean_step="newton"``: m += η C_u E[∇_u log p̃], Newton's step on a
    Gaussian, at most one frame unit per coordinate) or Adam (``"adam"``: ADVI); draws with a
    non-finite log p̃ are left out. Returns (loc, chol)."""
    dim = mu0.shape[0]
    adam_mean = mean_step == "adam"
    m = torch.zeros(dim, dtype=torch.float64, requires_grad=adam_mean)
    low = torch.zeros(dim, dim, dtype=torch.float64, requires_grad=True)
    log_diag = torch.zeros(dim, dtype=torch.float64, requires_grad=True)
    tril = torch.tril(torch.ones(dim, dim, dtype=torch.float64), -1)
    opt = torch.optim.Adam([low, log_diag] + ([m] if adam_mean else []), lr=lr)
    for k in range(steps):
        decay = 0.5 * (1 + math.cos(math.pi * k / steps))
        for group in opt.param_groups:
            group["lr"] = lr * decay
        e = torch.randn(draws, dim, generator=g, dtype=torch.float64)
        chol_u = low * tril + torch.diag(log_diag.exp())
        u = m + e @ chol_u.T
        lp, grad = f.value_and_grad((mu0 + sd0 * u).detach())
        ok = torch.isfinite(lp) & torch.isfinite(grad).all(1)
        if int(ok.sum()) < max(2, draws // 4):
            break
        # d ELBO/du = ∇log p̃(x) ⊙ σ₀ (chain rule by hand: log p̃ may not support double backward)
        g_u = grad[ok] * sd0
        surrogate = (g_u * u[ok]).sum(1).mean() + log_diag.sum()
        opt.zero_grad()
        (-surrogate).backward()
        if not adam_mean:
            with torch.no_grad():
                m += (0.5 * decay * (chol_u @ (chol_u.T @ g_u.mean(0)))).clamp(-1.0, 1.0)
        opt.step()
    with torch.no_grad():
        chol_u = low * tril + torch.diag(log_diag.exp())
        return mu0 + sd0 * m.detach(), sd0[:, None] * chol_u


def _scan_widen(f: _Counter, loc: Tensor, chol: Tensor, *, width: float = 20.0, grid: int = 128,
                ratio: float = 1.5) -> tuple[Tensor, Tensor, int]:
    """Widen the frame where p̃ is not locally Gaussian: along each coordinate j, p̃'s
    conditional at the Gaussian's mean is tabulated over ±``width`` conditional sds
    (σ_j = (Σ⁻¹)_jj^{-1/2}; d·``grid`` rows, no gradients). Where its sd s_j exceeds ``ratio``·σ_j
    — a second well, a heavy tail the Gaussian (mode-seeking VI) does not see — row j of the
    marginal sd is scaled by s_j/σ_j, loc_j moves to the conditional mean, and j is decoupled
    from the other coordinates (row and column j of Σ' zero off the diagonal), so that the frame
    spans all of it and keeps the product structure the per-coordinate generators rely on: a
    linear correlation fitted at one well says nothing of the others, and a frame that mixes a
    double-well coordinate into its neighbours spreads its two modes over all of them (Many Well
    128: importance ESS 0.001 with the mixing frame, 0.3 without the stage). The other
    coordinates keep their block of Σ, so Σ' stays positive definite. Returns (loc, chol, widened)."""
    d = loc.shape[0]
    prec_diag = torch.cholesky_inverse(chol).diagonal()
    sig = prec_diag.rsqrt()                                                     # (d,)
    t = torch.linspace(-width, width, grid, dtype=torch.float64)
    pts = loc.expand(d, grid, d).clone()                                       # (d, grid, d)
    idx = torch.arange(d)
    pts[idx, :, idx] = loc[:, None] + t[None, :] * sig[:, None]
    lp = log_density_at(f, pts.reshape(d * grid, d)).reshape(d, grid)
    ok = torch.isfinite(lp).any(1)
    pmf = torch.softmax(torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -torch.inf)), 1)
    pmf = torch.where(ok[:, None], pmf, torch.zeros_like(pmf))
    m = (pmf * t).sum(1)
    s = ((pmf * t.pow(2)).sum(1) - m.pow(2)).clamp_min(0).sqrt()             # in σ_j units
    wide = ok & (s > ratio)
    if not bool(wide.any()):
        return loc, chol, 0
    return loc + torch.where(wide, m * sig, torch.zeros_like(m)), _decouple(chol, wide, s), int(wide.sum())


def _decouple(chol: Tensor, wide: Tensor, scale: Tensor) -> Tensor:
    """The Cholesky factor of Σ' (``_scan_widen``): Σ'_jj = scale_j² Σ_jj and Σ'_jk = 0 (k ≠ j)
    for the coordinates ``wide``; the others' block of Σ = L Lᵀ unchanged."""
    cov = chol @ chol.T
    keep = ~wide
    out = torch.diag(torch.where(wide, scale.pow(2) * cov.diagonal(), torch.zeros_like(scale)))
    out[keep[:, None] & keep[None, :]] = cov[keep[:, None] & keep[None, :]]
    return torch.linalg.cholesky(out)
