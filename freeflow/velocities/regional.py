"""One-step regional response of a drift (docs/theory.md §8), by quadrature and as measured.

Soft regions are the responsibilities a_k(x) = p_k N_k(x) / p(x) of a Gaussian-mixture target
(a partition of unity); the mass q holds in region k is q_k = ∫ a_k q. Under one step of the
continuity equation ∂_t q = −∇·(q V),

    dq_k/dt = ∫ q V·∇a_k = E_q[V·∇a_k],          dU/dt = −Σ_k s′_τ(1 − q_k/p_k) dq_k/dt,

with U the soft under-coverage of :func:`freeflow.metrics.under_coverage`. V is RMS-normalised
under q (V / sqrt(E_q|V|²)), as the library normalises every batch, so divergences are compared
at equal transport cost per step. The Fisher–Rao reaction of a mixture generator (§7) changes
q_k in place instead: dq_k/dt = E_q[a_k (ρ(r) − E_q ρ)].

:func:`quadrature_response` evaluates these integrals on a 1-D grid from exact densities;
:func:`measured_response` draws batches x ~ q, computes the drift with the library's own code
(:func:`~freeflow.velocities.fdiv.fdiv_velocity` on self-normalised ratios, as training does at
β = 1, unclipped), moves the batch by η V̂ and reports Δq_k/η ± its Monte-Carlo standard error.
All functions are pure (float64, no state).
"""
from __future__ import annotations

import math
import torch

from ..divergences import Divergence, get_divergence
from .common import rms_normalize
from .fdiv import fdiv_velocity, log_ratio_snis
from .fisher_rao import reaction_rate

Tensor = torch.Tensor

__all__ = ["GaussianMixture1D", "responsibilities", "drift_weight", "quadrature_response",
           "measured_response", "mobility_elasticity", "example"]


class GaussianMixture1D:
    """A normalised 1-D Gaussian mixture: ``log_prob``, ``score``, ``sample``, ``components``."""

    def __init__(self, means, stds, weights):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.stds = torch.as_tensor(stds, dtype=torch.float64)
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        if not (self.means.shape == self.stds.shape == self.weights.shape) or self.means.ndim != 1:
            raise ValueError("means, stds and weights must be 1-D of equal length")
        if abs(float(self.weights.sum()) - 1) > 1e-9 or not bool((self.stds > 0).all()):
            raise ValueError("weights must sum to 1 and stds be > 0")

    def components(self, x: Tensor) -> Tensor:
        """log w_k + log N(x; μ_k, σ_k²), (n, K)."""
        z = (x[:, None] - self.means) / self.stds
        return self.weights.log() - 0.5 * z * z - self.stds.log() - 0.5 * math.log(2 * math.pi)

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self.components(x), 1)

    def score(self, x: Tensor) -> Tensor:
        g = torch.softmax(self.components(x), 1)
        return (g * (self.means - x[:, None]) / self.stds**2).sum(1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return self.means[k] + self.stds[k] * torch.randn(n, generator=generator, dtype=torch.float64)


def responsibilities(target: GaussianMixture1D, x: Tensor) -> tuple[Tensor, Tensor]:
    """a_k(x) (n, K) and its derivative da_k/dx (n, K): a_k' = a_k (s_k − s) with s_k the
    component score and s = Σ a_j s_j the mixture score."""
    a = torch.softmax(target.components(x), 1)
    s_k = (target.means - x[:, None]) / target.stds**2
    return a, a * (s_k - (a * s_k).sum(1, keepdim=True))


def drift_weight(divergence: Divergence | str, log_r: Tensor, *, log_rho_over_q: Tensor | None = None) -> Tensor:
    """w(r) of an f-divergence, or (``divergence="lv"``) the log-variance surrogate's ρ/q."""
    if divergence == "lv":
        if log_rho_over_q is None:
            raise ValueError("divergence='lv' needs log_rho_over_q")
        return log_rho_over_q.exp()
    return get_divergence(divergence).weight(log_r)


def _finish(a: Tensor, da: Tensor, v: Tensor, weight: Tensor, p_k: Tensor, q_k: Tensor, region: int,
            rate: Tensor | None, tau: float) -> dict:
    """Expectations under q given as ``weight`` (quadrature weights q(x)Δx, or 1/n for samples)."""
    energy = (weight * v * v).sum()
    dq = (weight[:, None] * v[:, None] * da).sum(0)                      # (K,) with V as given
    hinge_slope = (1 - q_k / p_k).div(tau).clamp(0, 1)
    b = 4 * a[:, region] * (1 - a[:, region])                          # boundary band of the region
    out = {"dq_dt": dq.tolist(), "dU_dt": float(-(hinge_slope * dq).sum()),
           "energy_inside": float((weight * a[:, region] * (1 - b) * v * v).sum() / energy),
           "energy_boundary": float((weight * b * v * v).sum() / energy),
           "energy_share": float((weight * a[:, region] * v * v).sum() / energy),
           "q_masses": q_k.tolist()}
    if rate is not None:
        out["reaction_dq_dt"] = (weight[:, None] * a * (rate - (weight * rate).sum())[:, None]).sum(0).tolist()
    return out


def quadrature_response(p: GaussianMixture1D, q: GaussianMixture1D, divergence: str, *,
                        region: int = 1, tau: float = 0.1, grid: Tensor | None = None,
                        rho: GaussianMixture1D | None = None, regions=None, weights=None) -> dict:
    """dq_k/dt, dU/dt, the kinetic-energy split and the reaction response by quadrature.

    ``divergence``: a registered name, or ``"lv"`` (the log-variance surrogate w = ρ/q with
    reference ``rho``). ``region``: the region whose energy split is reported. ``dq_dt`` uses
    the RMS-normalised V; ``flux`` the unnormalised one, ``rms`` the normaliser sqrt(E_q|V|²).
    ``regions``: x ↦ (a (n, K), da/dx (n, K)) instead of p's responsibilities, with
    ``weights`` (K,) their target masses (for closed-form checks)."""
    if grid is None:
        lo = float(torch.cat([p.means - 8 * p.stds, q.means - 8 * q.stds]).min())
        hi = float(torch.cat([p.means + 8 * p.stds, q.means + 8 * q.stds]).max())
        grid = torch.linspace(lo, hi, 40_001, dtype=torch.float64)
    x = grid
    dx = float(x[1] - x[0])
    log_q = q.log_prob(x)
    log_r = p.log_prob(x) - log_q
    w = drift_weight(divergence, log_r, log_rho_over_q=None if rho is None else rho.log_prob(x) - log_q)
    v = w * (p.score(x) - q.score(x))
    qw = log_q.exp() * dx
    a, da = responsibilities(p, x) if regions is None else regions(x)
    p_k = p.weights if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    q_k = (qw[:, None] * a).sum(0)
    rate = None if divergence == "lv" else reaction_rate(get_divergence(divergence), log_r)
    flux = (qw[:, None] * v[:, None] * da).sum(0)
    rms = (qw * v * v).sum().sqrt()
    out = _finish(a, da, v / rms, qw, p_k, q_k, region, rate, tau)
    out["flux"], out["rms"] = flux.tolist(), float(rms)
    return out


def measured_response(p: GaussianMixture1D, q: GaussianMixture1D, divergence: str, *, n: int = 4096,
                      batches: int = 40, eta: float = 1e-3, seed: int = 0, region: int = 1, tau: float = 0.1,
                      rho: GaussianMixture1D | None = None) -> dict:
    """Δq_k/η of one explicit drift step x → x + η V̂ on batches x ~ q, with the library's drift
    (self-normalised r̂ from log p̃ − log q, RMS normalisation over the batch); mean ± standard
    error over ``batches`` independent batches, and the same for dU/dt and the reaction."""
    g = torch.Generator().manual_seed(seed)
    per_batch: list[Tensor] = []
    react: list[Tensor] = []
    for _ in range(batches):
        x = q.sample(n, g)
        log_q = q.log_prob(x)
        score_p, score_q = p.score(x)[:, None], q.score(x)[:, None]
        log_r = log_ratio_snis(p.log_prob(x), log_q)
        if divergence == "lv":
            r = torch.softmax(rho.log_prob(x) - log_q, 0) * n
            v = rms_normalize(r[:, None] * (score_p - score_q))[:, 0]
        else:
            div = get_divergence(divergence)
            v = fdiv_velocity(score_p, score_q, log_r, div)[:, 0]
            rate = reaction_rate(div, log_r)
            a0 = responsibilities(p, x)[0]
            react.append((a0 * (rate - rate.mean())[:, None]).mean(0))
        a0 = responsibilities(p, x)[0]
        a1 = responsibilities(p, x + eta * v)[0]
        per_batch.append((a1 - a0).mean(0) / eta)
    d = torch.stack(per_batch)                                           # (B, K)
    q_k = torch.as_tensor(quadrature_response(p, q, "kl_qp")["q_masses"], dtype=torch.float64)
    slope = (1 - q_k / p.weights).div(tau).clamp(0, 1)
    du = -(d * slope).sum(1)
    se = lambda t: (t.std(0, unbiased=True) / math.sqrt(t.shape[0]))  # noqa: E731
    out = {"dq_dt": d.mean(0).tolist(), "dq_dt_se": se(d).tolist(), "dU_dt": float(du.mean()),
           "dU_dt_se": float(se(du)), "n": n, "batches": batches, "eta": eta}
    if react:
        rr = torch.stack(react)
        out["reaction_dq_dt"], out["reaction_dq_dt_se"] = rr.mean(0).tolist(), se(rr).tolist()
    return out


def mobility_elasticity(divergence: str, log_r: Tensor) -> Tensor:
    """d log m / d log q at fixed p for the mobility m = q·w(p/q): 1 − ε_w(r), ε_w = d log w/d log r
    (by autograd of the divergence's own log w)."""
    div = get_divergence(divergence)
    with torch.enable_grad():
        lr = log_r.detach().double().clone().requires_grad_(True)
        (eps,) = torch.autograd.grad((div.log_weight(lr) + 0.0 * lr).sum(), lr)  # (+0·lr: w constant)
    return 1.0 - eps.detach()


def example(compression: float = 1 / 3, minor_std: float = 0.5):
    """The 1-D example of docs/theory.md §8: p = 0.7 N(−1.5, 0.5²) + 0.3 N(1.5, 0.5²); q holds
    ``compression`` × 0.3 in the right mode (std ``minor_std``); the log-variance reference
    ρ = ½ N(−1.5, 0.5²) + ½ N(1.5, 0.5²). Returns (p, q, ρ)."""
    c = 0.3 * compression
    return (GaussianMixture1D([-1.5, 1.5], [0.5, 0.5], [0.7, 0.3]),
            GaussianMixture1D([-1.5, 1.5], [0.5, minor_std], [1 - c, c]),
            GaussianMixture1D([-1.5, 1.5], [0.5, 0.5], [0.5, 0.5]))

