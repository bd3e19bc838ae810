"""Dilation moves: a log-scale coordinate and the spread of the others, moved together.

A hierarchical scale and the coordinates it scales form a funnel (centred eight schools: log τ
and the θ's about μ; a random walk: its log innovation scale and the increments). Along the
funnel a move of one coordinate alone must be tiny (shrinking log τ with the θ's spread is
improbable; shrinking the θ's with τ large is too), so a kernel of single-coordinate and
gradient moves walks into the neck only over hundreds of steps. The dilation move goes along
the funnel in one step, the direction a non-centred parameterisation makes straight:

    δ = s_j ξ, ξ ~ N(0, 1);   x′_j = x_j + δ;   x′_S = m + e^{γδ} (x_S − m),

with S the other coordinates, m = mean(x_S) (one number per chain, unchanged by the move) and
γ ∈ {½, 1} (a scale e^{γ x_j}: 1 for log τ, ½ for Neal's funnel's v) drawn with the move,
independently of the state. For fixed γ the map is a bijection whose inverse is the move with
−δ, and |det ∂x′/∂x| = e^{γδ(|S| − 1)} (the mean direction of S is kept, the |S| − 1
deviations scaled), so the move accepted with probability

    min(1, p̃(x′)/p̃(x) · e^{γδ(|S| − 1)})

leaves p invariant, for any p: where x_j is not a scale the move is merely rejected more
often and its step s_j adapts down.

The common mean m is right for a centred hierarchy, whose θ's shrink onto one μ; not where a
scale pins coordinates to different centres (a random walk's observed states shrink onto their
own data points as the observation scale goes to 0). :func:`build_ensemble_dilation_kernel`
learns the frame from the other chains instead: each coordinate's centre and log-spread as
functions of x_j, moved along with x_j. :func:`freeflow.mcmc.refine` alternates the two frames.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..importance import LOG_DENSITY_CHUNK, log_density_at
from ..validation import check_choice

__all__ = ["build_dilation_kernel", "build_ensemble_dilation_kernel", "build_dilation_kernels", "default_dilations",
           "GAMMAS", "DILATION_FRAMES"]

#: the exponents γ a move draws from (x_j = log scale: 1; x_j = log variance: ½)
GAMMAS = (0.5, 1.0)


#: the frames a dilation move can scale the other coordinates in: about each chain's own mean
#: (:func:`build_dilation_kernel`), or about centres and spreads learnt from the other chains
#: (:func:`build_ensemble_dilation_kernel`)
DILATION_FRAMES = ("chain", "ensemble")


def build_dilation_kernels(logdensity_fn, frames, *, chunk_size: int = LOG_DENSITY_CHUNK) -> list:
    """One dilation kernel per name in ``frames`` (each of :data:`DILATION_FRAMES`)."""
    if isinstance(frames, str) or not len(frames):
        raise ValueError(f"dilation_frames must be a non-empty sequence of {DILATION_FRAMES}, got {frames!r}")
    for f in frames:
        check_choice(f, DILATION_FRAMES, "dilation_frames")
    build = {"chain": build_dilation_kernel, "ensemble": build_ensemble_dilation_kernel}
    return [build[f](logdensity_fn, chunk_size=chunk_size) for f in frames]


def default_dilations(d: int) -> int:
    """Dilation moves per step where a caller asks for the default: min(d, 10), none below 3-D
    (with fewer than two other coordinates there is no spread to scale)."""
    return min(d, 10) if d >= 3 else 0


def _finite_log_density(logdensity_fn, chunk_size: int):
    """log p̃ in chunks, with every non-finite value (+inf too: outside the support) as −inf."""
    def log_density(x: Tensor) -> Tensor:
        lp = log_density_at(logdensity_fn, x, chunk_size)
        return torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -math.inf))
    return log_density


def _metropolis(generator: torch.Generator, x: Tensor, lp: Tensor, xn: Tensor, lpn: Tensor,
                log_jacobian: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each row moves to ``xn`` with probability min(1, p̃(x′)/p̃(x) · |det|) (never to a
    non-finite point): (x, lp, the mean acceptance probability)."""
    log_ratio = lpn.double() - lp.double() + log_jacobian
    good = torch.isfinite(log_ratio) & torch.isfinite(xn).all(1)
    log_ratio = torch.where(good, log_ratio, torch.full_like(log_ratio, -math.inf))
    accept = torch.log(torch.rand(len(x), generator=generator, dtype=torch.float64, device=x.device)) < log_ratio
    return torch.where(accept[:, None], xn, x), torch.where(accept, lpn, lp), log_ratio.clamp(max=0).exp().mean()


def build_dilation_kernel(logdensity_fn, *, chunk_size: int = LOG_DENSITY_CHUNK):
    """``kernel(generator, x, lp, coordinates, step) -> (x, lp, acceptance (k,))``: one
    dilation move per coordinate j in ``coordinates`` (every chain at once), steps ``step`` (d,)."""
    log_density = _finite_log_density(logdensity_fn, chunk_size)

    def kernel(generator: torch.Generator, x: Tensor, lp: Tensor, coordinates, step: Tensor):
        n, d = x.shape
        acc = []
        for j in coordinates:
            gamma = GAMMAS[int(torch.randint(len(GAMMAS), (1,), generator=generator, device=generator.device))]
            delta = step[j].to(x) * torch.randn(n, generator=generator, dtype=x.dtype, device=x.device)
            others = torch.ones(d, dtype=torch.bool, device=x.device)
            others[j] = False
            xs = x[:, others]
            m = xs.mean(1, keepdim=True)
            xn = x.clone()
            xn[:, others] = m + torch.exp(gamma * delta)[:, None] * (xs - m)
            xn[:, j] = x[:, j] + delta
            x, lp, a = _metropolis(generator, x, lp, xn, log_density(xn).to(x.dtype), gamma * delta.double() * (d - 2))
            acc.append(a)
        return x, lp, (torch.stack(acc) if acc else torch.zeros(0, dtype=torch.float64))

    return kernel



def _slope(v: Tensor, t: Tensor, lo: int, slope_max: float) -> Tensor:
    """The slope of the rows ``v`` between knots lo and lo + 1 of ``t``, clipped to ±slope_max."""
    return ((v[lo + 1] - v[lo]) / (t[lo + 1] - t[lo]).clamp_min(1e-12)).clamp(-slope_max, slope_max)


class _Frame:
    """Each other coordinate's conditional centre α_k(x_j) and log-spread λ_k(x_j), k ≠ j, learnt
    from an ensemble (rows ``xs``) cut into ``bins`` groups by the quantiles of x_j: piecewise
    linear between the groups' medians of x_j. Beyond them α stays at its end value and λ goes on
    with its end segment's slope (clipped to ±``slope_max``): the frame reaches into a tail the
    ensemble has not yet filled (a random walk's observed states: their spread keeps shrinking with
    the observation scale, their centre settles on the data)."""

    def __init__(self, xs: Tensor, j: int, others: Tensor, bins: int, slope_max: float) -> None:
        xj, xo = xs[:, j].double(), xs[:, others].double()
        groups = torch.tensor_split(torch.argsort(xj), bins)
        self.t = torch.stack([xj[g].median() for g in groups])                          # (B,)
        self.a = torch.stack([xo[g].mean(0) for g in groups])                           # (B, |S|)
        self.lam = torch.stack([xo[g].std(0).clamp_min(1e-12).log() for g in groups])  # (B, |S|)
        self.lam_lo = _slope(self.lam, self.t, 0, slope_max)
        self.lam_hi = _slope(self.lam, self.t, bins - 2, slope_max)

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (m,) -> (α (m, |S|), λ (m, |S|))."""
        t = self.t
        xc = x.clamp(t[0], t[-1])
        i = torch.searchsorted(t, xc.contiguous()).clamp(1, len(t) - 1)
        w = ((xc - t[i - 1]) / (t[i] - t[i - 1]).clamp_min(1e-12))[:, None]
        below, above = (x - t[0]).clamp(max=0)[:, None], (x - t[-1]).clamp(min=0)[:, None]
        return (self.a[i - 1] + w * (self.a[i] - self.a[i - 1]),
                self.lam[i - 1] + w * (self.lam[i] - self.lam[i - 1]) + below * self.lam_lo + above * self.lam_hi)


def build_ensemble_dilation_kernel(logdensity_fn, *, chunk_size: int = LOG_DENSITY_CHUNK, slope_max: float = 2.0,
                                   bins: int = 8):
    """The dilation move with its frame learnt from the other chains (same call as
    :func:`build_dilation_kernel`). The chains are split in two halves; each half moves in turn,
    its frame (:class:`_Frame`: each other coordinate's centre α_k and log-spread λ_k as functions
    of x_j) fitted to the other half's current states, so each half's move, given the other half,
    is a fixed Metropolis–Hastings kernel and the chains' joint law p^⊗n stays invariant:

        x′_j = x_j + δ,   x′_k = α_k(x′_j) + e^{λ_k(x′_j) − λ_k(x_j)} (x_k − α_k(x_j)),

    a bijection (its inverse is the move with −δ) with log|det ∂x′/∂x| = Σ_k λ_k(x′_j) − λ_k(x_j).
    Where a scale x_j sets the width of coordinates that are not centred on a common mean (the 20
    observed states of a random walk, pinned to their data as the observation scale shrinks), the
    frame follows them, and the move goes along that funnel in one step."""
    log_density = _finite_log_density(logdensity_fn, chunk_size)

    def kernel(generator: torch.Generator, x: Tensor, lp: Tensor, coordinates, step: Tensor):
        n, d = x.shape
        idx = torch.arange(n, device=x.device)
        halves = (idx % 2 == 0, idx % 2 == 1)
        x, lp = x.clone(), lp.clone()   # (the caller's tensors stay as they were; the moves write in place)
        acc = []
        for j in coordinates:
            others = torch.ones(d, dtype=torch.bool, device=x.device)
            others[j] = False
            rates = []
            for move, frame_rows in (halves, halves[::-1]):
                m_frame = int(frame_rows.sum())
                if m_frame < 16 or not bool(move.any()):
                    continue
                frame = _Frame(x[frame_rows], j, others, max(2, min(bins, m_frame // 64)), slope_max)
                xm = x[move]
                m = xm.shape[0]
                delta = step[j].double() * torch.randn(m, generator=generator, dtype=torch.float64, device=x.device)
                xj = xm[:, j].double()
                a0, l0 = frame(xj)
                a1, l1 = frame(xj + delta)
                xn = xm.clone()
                xn[:, j] = (xj + delta).to(x.dtype)
                xn[:, others] = (a1 + torch.exp(l1 - l0) * (xm[:, others].double() - a0)).to(x.dtype)
                xm, lpm, a = _metropolis(generator, xm, lp[move], xn, log_density(xn).to(x.dtype), (l1 - l0).sum(1))
                x[move], lp[move] = xm, lpm
                rates.append(a)
            acc.append(torch.stack(rates).mean() if rates else torch.zeros((), dtype=torch.float64))
        return x, lp, (torch.stack(acc) if acc else torch.zeros(0, dtype=torch.float64))

    return kernel
