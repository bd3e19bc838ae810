"""The Fisher–Rao (birth–death) reaction term of an f-divergence flow, on mixture weights.

The Wasserstein–Fisher–Rao flow of D_f(p‖q) = ∫ q f(p/q) is

    ∂_t q = −∇·(q V) − q (g − E_q g),        g = δD/δq = f(r) − r f′(r),   r = p/q,

the transport part V = w(r)∇log(p/q) being what the generator regression already does. For a
mixture q = Σ_k π_k q_k the reaction acts on the weights alone: the Fisher–Rao (replicator)
gradient flow of D restricted to the simplex is

    d log π_k / dt = −(G_k − Ḡ),     G_k = E_{q_k}[g(r)],   Ḡ = Σ_k π_k G_k = E_q[g(r)]

(docs/theory.md §7 for the derivation). Because g′(r) = −w(r)/r, every divergence linearises
at r = 1 to g(r) − g(1) ≈ −w(1)(r − 1); dividing by w(1) gives the *reaction rate*

    ρ(r) = −(g(r) − g(1)) / w(1)  ≈  r − 1  near equilibrium,

so one step size serves every divergence. Closed forms (tests check them against the generic
autograd evaluation below):

    kl_qp  log r            kl_pq  r − 1              pearson  (r² − 1)/2
    neyman 1 − 1/r          hellinger 2(√r − 1)        alpha:a  (r^a − 1)/a
    js     2 log((1 + r)/2)  jeffreys (r − 1 + log r)/2

With x_i ~ q and exact responsibilities γ_ik = π_k q_k(x_i)/q(x_i), the Rao–Blackwellised
batch estimates are G_k ≈ Σ_i γ_ik ρ_i / Σ_i γ_ik and Ḡ ≈ mean_i ρ_i. For kl_pq and one unit
step this is the EM update of mixture weights, π_k ← π_k E_{q_k}[r].

All functions are pure; callers run them under ``torch.no_grad()``.
"""
from __future__ import annotations

import torch

from ..divergences import Divergence

Tensor = torch.Tensor

__all__ = ["first_variation", "reaction_rate", "component_rates", "fisher_rao_step", "LOG_R_MIN"]

#: lower clamp of log r̂ inside the reaction (r̂ = 0 would make kl_qp's rate −∞)
LOG_R_MIN = -10.0


def first_variation(divergence: Divergence, log_r: Tensor) -> Tensor:
    """g(r) = f(r) − r f′(r), from the divergence's own f by autograd (float64)."""
    with torch.enable_grad():
        r = log_r.detach().double().exp().requires_grad_(True)
        f = divergence.f(r)
        (df,) = torch.autograd.grad(f.sum(), r)
    return (f - r * df).detach()


def reaction_rate(divergence: Divergence, log_r: Tensor) -> Tensor:
    """ρ(r) = −(g(r) − g(1)) / w(1): the growth rate of mass where p/q = r (≈ r − 1 at r ≈ 1)."""
    lr = log_r.detach().double().clamp_min(LOG_R_MIN)
    one = torch.zeros(1, dtype=torch.float64)
    g1 = first_variation(divergence, one)
    w1 = divergence.weight(one).double()
    return (-(first_variation(divergence, lr) - g1) / w1).to(log_r.dtype)


def component_rates(log_resp: Tensor, rate: Tensor, *, prior: float = 1e-3) -> tuple[Tensor, Tensor, Tensor]:
    """Per-component mean rate G_k = Σ_i γ_ik ρ_i / Σ_i γ_ik and the batch mean Ḡ.

    Args:
        log_resp: log responsibilities (N, K), rows log-sum to 0; or (N, J, K) for J
            independent mixtures (a product mixture: one per coordinate).
        rate: ρ(r̂_i) (N,).
        prior: pseudo-count pulling G_k of a component with no samples to Ḡ (no move).
    Returns:
        (G (…, K), Ḡ (), the batch's component masses Σ_i γ_ik / N (…, K)).
    """
    if log_resp.ndim not in (2, 3) or rate.shape != log_resp.shape[:1]:
        raise ValueError(f"log_resp (N, [J,] K) and rate (N,) do not match: {tuple(log_resp.shape)}, {tuple(rate.shape)}")
    resp = log_resp.exp()
    g_bar = rate.mean()
    count = resp.sum(0)
    r = rate.reshape(-1, *([1] * (resp.ndim - 1)))
    g = (resp * r).sum(0).add(prior * g_bar) / (count + prior)
    return g, g_bar, count / rate.shape[0]


def fisher_rao_step(log_pi: Tensor, g: Tensor, g_bar: Tensor, step_size: float,
                    max_change: float = 1.0) -> Tensor:
    """One explicit step of d log π_k/dt = G_k − Ḡ (rates ρ, i.e. −(g-terms)), renormalised.

    ``max_change`` caps |Δ log π_k| per step (the rate of kl_qp is unbounded at r̂ → 0).
    """
    delta = (step_size * (g - g_bar)).clamp(-max_change, max_change)
    new = log_pi + delta
    return new - torch.logsumexp(new, -1, keepdim=True)
