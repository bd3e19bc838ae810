"""Targets with exact draws for the MCMC check's tests and calibration
(tests/test_mcmc.py, benchmarks/mcmc_check_calibration.py). Each builder returns a
:class:`Case`: ``log_density`` (float32 or float64 in, same dtype out) and ``sample(n, seed)``."""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch


class Case(NamedTuple):
    name: str
    dim: int
    log_density: Callable[[torch.Tensor], torch.Tensor]
    sample: Callable[[int, int], torch.Tensor]  # (n, seed) -> (n, dim) float32 draws of p
    mean: torch.Tensor | None = None
    cov: torch.Tensor | None = None


def correlated_gaussian(d: int, seed: int = 0) -> Case:
    """N(μ, Σ): Σ = D C D, C a random correlation-ish matrix, D scales from 0.1 to 10."""
    g = torch.Generator().manual_seed(1000 + seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    c = a @ a.T / d + 0.2 * torch.eye(d, dtype=torch.float64)
    s = torch.logspace(-1, 1, d, dtype=torch.float64)[torch.randperm(d, generator=g)] if d > 1 else torch.ones(1)
    cov = c * s[:, None] * s[None, :]
    mu = 3 * torch.randn(d, generator=g, dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    prec = torch.cholesky_inverse(chol)

    def log_density(x):
        z = x.double() - mu
        return (-0.5 * ((z @ prec) * z).sum(1)).to(x.dtype)

    def sample(n, seed):
        gg = torch.Generator().manual_seed(seed)
        return (mu + torch.randn(n, d, generator=gg, dtype=torch.float64) @ chol.T).float()

    return Case(f"gauss{d}", d, log_density, sample, mu, cov)


def mixture(d: int = 4) -> Case:
    """½ N(−2·1, I) + ½ N(2·1, 0.5² I) in d dimensions (exact draws)."""
    m = torch.full((d,), 2.0, dtype=torch.float64)

    def log_density(x):
        z = x.double()
        a = -0.5 * (z + m).pow(2).sum(1)
        b = -0.5 * (z - m).pow(2).sum(1) / 0.25 - d * math.log(0.5)
        return (torch.logaddexp(a, b) - math.log(2)).to(x.dtype)

    def sample(n, seed):
        gg = torch.Generator().manual_seed(seed)
        k = torch.rand(n, 1, generator=gg, dtype=torch.float64) < 0.5
        z = torch.randn(n, d, generator=gg, dtype=torch.float64)
        return torch.where(k, -m + z, m + 0.5 * z).float()

    return Case(f"mixture{d}", d, log_density, sample)


def funnel(d: int = 10, scale: float = 3.0) -> Case:
    """Neal's funnel: v ~ N(0, scale²), x_i | v ~ N(0, e^v), i = 1..d−1 (exact draws)."""
    def log_density(x):
        v, rest = x[:, 0], x[:, 1:]
        return -0.5 * (v / scale) ** 2 - 0.5 * rest.pow(2).sum(1) * torch.exp(-v) - 0.5 * (d - 1) * v

    def sample(n, seed):
        gg = torch.Generator().manual_seed(seed)
        z = torch.randn(n, d, generator=gg, dtype=torch.float64)
        v = scale * z[:, :1]
        return torch.cat([v, torch.exp(0.5 * v) * z[:, 1:]], 1).float()

    return Case(f"funnel{d}", d, log_density, sample)


def random_walk(t_obs: int = 30, *, sigma: float = 0.3, tau: float = 0.4, data_seed: int = 7) -> Case:
    """Latent Gaussian random walk with noisy observations and unknown scales, (2 + t_obs)-D:

        log σ ~ N(−1, 1), log τ ~ N(−1, 1), x_1 ~ N(0, 1), x_t = x_{t−1} + σ ε_t, y_t = x_t + τ η_t,

    position (log σ, log τ, x_1, …, x_T); data simulated with σ = 0.3, τ = 0.4. ``sample``: exact
    draws up to a fine grid on the two scales (:func:`_random_walk_exact`)."""
    g = torch.Generator().manual_seed(data_seed)
    xs = torch.cumsum(torch.cat([torch.randn(1, generator=g, dtype=torch.float64),
                                 sigma * torch.randn(t_obs - 1, generator=g, dtype=torch.float64)]), 0)
    y = xs + tau * torch.randn(t_obs, generator=g, dtype=torch.float64)

    def log_density(p):
        z = p.double()
        ls, lt, x = z[:, 0], z[:, 1], z[:, 2:]
        lp = -0.5 * (ls + 1) ** 2 - 0.5 * (lt + 1) ** 2 - 0.5 * x[:, 0] ** 2
        dx = x[:, 1:] - x[:, :-1]
        lp = lp - 0.5 * dx.pow(2).sum(1) * torch.exp(-2 * ls) - (t_obs - 1) * ls
        lp = lp - 0.5 * (y - x).pow(2).sum(1) * torch.exp(-2 * lt) - t_obs * lt
        return lp.to(p.dtype)

    def sample(n, seed):
        return _random_walk_exact(y, n, seed)

    return Case(f"random_walk{2 + t_obs}", 2 + t_obs, log_density, sample)


def _kalman(y, s2, t2):
    """Filtered means/variances (T, m) and log p(y | σ, τ) (m,) for the model of random_walk."""
    m, p, ll, ms, ps = torch.zeros_like(s2), torch.ones_like(s2), torch.zeros_like(s2), [], []
    for t in range(len(y)):
        if t > 0:
            p = p + s2
        s = p + t2
        ll = ll - 0.5 * (torch.log(2 * math.pi * s) + (y[t] - m) ** 2 / s)
        k = p / s
        m, p = m + k * (y[t] - m), p * (1 - k)
        ms.append(m)
        ps.append(p)
    return torch.stack(ms), torch.stack(ps), ll


def _random_walk_exact(y, n: int, seed: int, grid: int = 500) -> torch.Tensor:
    """Exact draws up to a 500² grid on (log σ, log τ) (cells 0.01 wide, ~0.03 posterior sd):
    the scales' marginal from the Kalman likelihood on the grid, a cell drawn and jittered
    uniformly inside, then the latents by forward filtering, backward sampling."""
    gg = torch.Generator().manual_seed(seed)
    ls_ax = torch.linspace(-3.5, 1.5, grid, dtype=torch.float64)
    lt_ax = torch.linspace(-3.5, 1.5, grid, dtype=torch.float64)
    ls, lt = torch.meshgrid(ls_ax, lt_ax, indexing="ij")
    ls, lt = ls.flatten(), lt.flatten()
    _, _, ll = _kalman(y, torch.exp(2 * ls), torch.exp(2 * lt))
    logpost = ll - 0.5 * (ls + 1) ** 2 - 0.5 * (lt + 1) ** 2
    cell = torch.multinomial(torch.softmax(logpost, 0), n, replacement=True, generator=gg)
    h = float(ls_ax[1] - ls_ax[0])
    ls = ls[cell] + h * (torch.rand(n, generator=gg, dtype=torch.float64) - 0.5)
    lt = lt[cell] + h * (torch.rand(n, generator=gg, dtype=torch.float64) - 0.5)
    s2, t2 = torch.exp(2 * ls), torch.exp(2 * lt)
    ms, ps, _ = _kalman(y, s2, t2)
    x = [ms[-1] + ps[-1].sqrt() * torch.randn(n, generator=gg, dtype=torch.float64)]
    for t in range(len(y) - 2, -1, -1):
        j = ps[t] / (ps[t] + s2)
        mean, var = ms[t] + j * (x[-1] - ms[t]), ps[t] * (1 - j)
        x.append(mean + var.sqrt() * torch.randn(n, generator=gg, dtype=torch.float64))
    return torch.cat([ls[:, None], lt[:, None], torch.stack(x[::-1], 1)], 1).float()


_ES_Y = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
_ES_SIGMA = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)


def eight_schools_centred() -> Case:
    """Centred eight schools in its unconstrained coordinates (μ, log τ, θ₁..θ₈): μ ~ N(0, 5²),
    τ ~ HalfCauchy(5), θ_j ~ N(μ, τ²), y_j ~ N(θ_j, σ_j²) (Rubin's data): a funnel between log τ
    and the θ's spread about μ. ``sample(n, seed, narrow=1.0)``: exact draws (log τ from its
    marginal on a 8001-point grid, jittered in its cell; then μ | τ and θ | μ, τ, Gaussian);
    ``narrow`` < 1 shrinks log τ about its mean before drawing the rest (a q that misses the
    neck, exact given τ)."""
    y, sig = torch.tensor(_ES_Y, dtype=torch.float64), torch.tensor(_ES_SIGMA, dtype=torch.float64)
    grid = torch.linspace(-15.0, 6.0, 8001, dtype=torch.float64)
    t2 = torch.exp(2 * grid)[:, None]
    var = sig ** 2 + t2                                     # y | τ ~ N(0, diag(var) + 25·11ᵀ)
    prec_mu = (1 / var).sum(1) + 1 / 25.0
    quad = (y ** 2 / var).sum(1) - (y / var).sum(1) ** 2 / prec_mu
    log_marg = -0.5 * quad - 0.5 * torch.log(var).sum(1) - 0.5 * torch.log(25.0 * prec_mu)
    log_post = log_marg + math.log(2 / (math.pi * 5)) - torch.log1p(torch.exp(2 * grid) / 25) + grid

    def log_density(x):
        z = x.double()
        mu, lt, th = z[:, 0], z[:, 1], z[:, 2:]
        tau = torch.exp(lt)
        lp = (-mu ** 2 / 50 - torch.log1p(tau ** 2 / 25) + lt
              - 0.5 * (((th - mu[:, None]) / tau[:, None]) ** 2).sum(1) - 8 * lt
              - 0.5 * (((y - th) / sig) ** 2).sum(1))
        return lp.to(x.dtype)

    def sample(n, seed, narrow: float = 1.0):
        gg = torch.Generator().manual_seed(seed)
        h = float(grid[1] - grid[0])
        lt = grid[torch.multinomial(torch.softmax(log_post, 0), n, replacement=True, generator=gg)]
        lt = lt + h * (torch.rand(n, generator=gg, dtype=torch.float64) - 0.5)
        if narrow != 1.0:
            m = float((torch.softmax(log_post, 0) * grid).sum())
            lt = m + narrow * (lt - m)
        tt = torch.exp(2 * lt)[:, None]
        v = sig ** 2 + tt
        pm = (1 / v).sum(1) + 1 / 25.0
        mu = (y / v).sum(1) / pm + torch.randn(n, generator=gg, dtype=torch.float64) / pm.sqrt()
        pt = 1 / sig ** 2 + 1 / tt
        th = (y / sig ** 2 + mu[:, None] / tt) / pt + torch.randn(n, 8, generator=gg, dtype=torch.float64) / pt.sqrt()
        return torch.cat([mu[:, None], lt[:, None], th], 1).float()

    return Case("eight_schools_centred", 10, log_density, sample)
