"""Log-variance divergence and its Wasserstein-gradient-flow velocity (MATH.md §2, *derived*).

    D_LV^ρ(q, p) = Var_{x~ρ}[ log(q/p)(x) ]      (invariant to the normaliser Z of p̃)

for a reference density ρ that is held fixed (stop-gradient) while q moves.  Its first
variation is δD/δq(x) = −2 (ρ/q)(x) c(x) with the centred, Z-free log ratio

    c(x) = log(p̃/q)(x) − E_ρ[ log(p̃/q) ],

and the WGF velocity V = −∇ δD/δq = 2 ∇[(ρ/q) c] is

    V_LV(x) = 2 (ρ/q)(x) · [ β(x) + c(x) ∇log(ρ/q)(x) ],     β = ∇log p̃ − ∇log q.

On-policy ρ = sg(q): ρ/q ≡ 1 and ∇log(ρ/q) ≡ 0, so V_LV = 2β, twice the KL(q‖p) flow.
The *surrogate* keeps the V = w·β form with w_LV = ρ/q and drops the second term:
V = 2 (ρ/q) β.

Estimating with samples of q.  The batch x_i comes from q, not ρ, so every expectation over ρ is
an importance-weighted average over the batch:  E_ρ[f] ≈ Σ_i w̄_i f(x_i) with
w̄_i ∝ ρ(x_i)/q(x_i) self-normalised.  The same weights, as r̂_i = n·w̄_i (mean one over the
batch), estimate the factor (ρ/q)(x_i); they are clipped at ``clip`` because their variance
explodes exactly where q under-covers ρ — which is also where the off-policy flow pushes
hardest.  Both log ρ and log q must be *normalised* log densities on the same scale (a KDE, a
flow and the Gaussians below all are); the self-normalisation then removes any common constant.

References ρ (objects with ``__call__(x, log_q, score_q) -> (log ρ(x), ∇log ρ(x))``,
``update(x)`` after each step, and ``state_dict``/``load_state_dict``):

* ``on_policy``   ρ = sg(q).
* ``gaussian``    ρ = N(μ̂, κ² Σ̂) fitted to the current batch, inflated by κ (default 2): a
  broad proposal that covers the gaps between q's modes.
* ``mixture``     ρ = α sg(q) + (1 − α) N(μ̂, κ² Σ̂).
* ``replay``      ρ = a Gaussian KDE (Scott bandwidth) of a FIFO buffer of past batches,
  optionally mixed with sg(q); it keeps pressure on regions q once covered and has since
  dropped.  Empty buffer: falls back to on-policy.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch

__all__ = [
    "lv_velocity",
    "lv_surrogate_velocity",
    "reference_weights",
    "Reference",
    "OnPolicyReference",
    "GaussianReference",
    "MixtureReference",
    "ReplayReference",
    "REFERENCES",
    "make_reference",
]


# --------------------------------------------------------------------------- pure velocities
def reference_weights(log_rho: torch.Tensor, log_q: torch.Tensor, *, clip: float = 20.0) -> torch.Tensor:
    """r̂_i ≈ (ρ/q)(x_i) for x_i ~ q: n·softmax(log ρ − log q), clipped at ``clip``, mean-one.

    Returned with mean exactly one after clipping, so r̂/n are the self-normalised weights of
    E_ρ[f] ≈ mean_i r̂_i f(x_i).
    """
    if log_rho.shape != log_q.shape or log_rho.ndim != 1:
        raise ValueError(f"log_rho and log_q must be 1-D of equal shape, got {tuple(log_rho.shape)}, {tuple(log_q.shape)}")
    if not clip > 1:
        raise ValueError(f"clip must be > 1, got {clip!r}")
    lr = log_rho - log_q
    if not torch.isfinite(lr).any():
        raise ValueError("log_rho - log_q has no finite entry: the reference gives the batch no weight")
    r = lr.numel() * torch.softmax(torch.nan_to_num(lr, nan=-math.inf), 0)
    r = r.clamp_max(clip)
    return r / r.mean()


def lv_velocity(
    score_p: torch.Tensor,
    score_q: torch.Tensor,
    log_p: torch.Tensor,
    log_q: torch.Tensor,
    log_rho: torch.Tensor,
    score_rho: torch.Tensor,
    *,
    clip: float = 20.0,
) -> torch.Tensor:
    """Derived log-variance flow V_LV = 2 r̂ [β + c ∇log(ρ/q)] at a batch x ~ q (n, d).

    log_p is log p̃ (any normaliser); c_i = ℓ_i − mean_j r̂_j ℓ_j with ℓ = log p̃ − log q.
    """
    r = reference_weights(log_rho, log_q, clip=clip)
    beta = score_p - score_q
    ell = log_p - log_q
    c = ell - (r * ell).mean()
    return 2.0 * r[:, None] * (beta + c[:, None] * (score_rho - score_q))


def lv_surrogate_velocity(
    score_p: torch.Tensor,
    score_q: torch.Tensor,
    log_q: torch.Tensor,
    log_rho: torch.Tensor,
    *,
    clip: float = 20.0,
) -> torch.Tensor:
    """Surrogate in the V = w·β family: V = 2 r̂ β with r̂ ≈ ρ/q self-normalised and clipped."""
    r = reference_weights(log_rho, log_q, clip=clip)
    return 2.0 * r[:, None] * (score_p - score_q)


# --------------------------------------------------------------------------- references
class Reference(Protocol):
    def __call__(
        self, x: torch.Tensor, log_q: torch.Tensor, score_q: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def update(self, x: torch.Tensor) -> None: ...


class _Stateless:
    def update(self, x: torch.Tensor) -> None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


class OnPolicyReference(_Stateless):
    """ρ = sg(q): the LV flow is then exactly 2β."""

    name = "on_policy"

    def __call__(self, x, log_q, score_q):
        return log_q, score_q


def _gaussian_fit(x: torch.Tensor, inflate: float, jitter: float = 1e-4):
    """Mean and Cholesky factor of κ²(Cov(x) + jitter·tr/d·I), in float64."""
    x64 = x.detach().to(torch.float64)
    mu = x64.mean(0)
    xc = x64 - mu
    cov = xc.T @ xc / max(x.shape[0] - 1, 1)
    d = x.shape[1]
    cov = cov + jitter * (cov.trace() / d + 1e-12) * torch.eye(d, dtype=torch.float64)
    return mu, torch.linalg.cholesky(cov * inflate**2)


def _gaussian_log_prob_and_score(x: torch.Tensor, mu: torch.Tensor, L: torch.Tensor):
    x64 = x.detach().to(torch.float64)
    diff = (x64 - mu).T  # (d, n)
    y = torch.linalg.solve_triangular(L, diff, upper=False)  # L⁻¹(x − μ)
    d = x.shape[1]
    log_prob = -0.5 * y.pow(2).sum(0) - L.diagonal().log().sum() - 0.5 * d * math.log(2 * math.pi)
    score = -torch.linalg.solve_triangular(L.T, y, upper=True).T  # −Σ⁻¹(x − μ)
    return log_prob.to(x.dtype), score.to(x.dtype)


class GaussianReference(_Stateless):
    """ρ = N(μ̂, κ² Σ̂) with (μ̂, Σ̂) the batch mean and covariance, κ = ``inflate``."""

    name = "gaussian"

    def __init__(self, inflate: float = 2.0) -> None:
        if not inflate > 0:
            raise ValueError(f"inflate must be > 0, got {inflate!r}")
        self.inflate = inflate

    def __call__(self, x, log_q, score_q):
        mu, L = _gaussian_fit(x, self.inflate)
        return _gaussian_log_prob_and_score(x, mu, L)


def _mix(alpha: float, log_q, score_q, log_g, score_g):
    """log and score of ρ = α q + (1 − α) g; the score is the responsibility-weighted mean."""
    if alpha <= 0:
        return log_g, score_g
    if alpha >= 1:
        return log_q, score_q
    a = torch.stack([math.log(alpha) + log_q, math.log1p(-alpha) + log_g])  # (2, n)
    log_rho = torch.logsumexp(a, 0)
    pi_q = torch.exp(a[0] - log_rho)[:, None]
    return log_rho, pi_q * score_q + (1 - pi_q) * score_g


class MixtureReference(_Stateless):
    """ρ = α sg(q) + (1 − α) N(μ̂, κ² Σ̂): on-policy with a broad safety net."""

    name = "mixture"

    def __init__(self, alpha: float = 0.5, inflate: float = 2.0) -> None:
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.alpha, self.gauss = alpha, GaussianReference(inflate)

    def __call__(self, x, log_q, score_q):
        log_g, score_g = self.gauss(x, log_q, score_q)
        return _mix(self.alpha, log_q, score_q, log_g, score_g)


class ReplayReference:
    """ρ = α sg(q) + (1 − α) KDE(buffer of past batches), FIFO of ``capacity`` points.

    Kernel: Gaussian with per-dimension Scott bandwidth h_k = σ_k M^(−1/(d+4)) times
    ``bandwidth_factor``.  ``update`` pushes each batch (a random ``per_step`` subset) after the
    step, so the buffer holds *past* samples only.
    """

    name = "replay"

    def __init__(self, capacity: int = 4096, *, alpha: float = 0.0, per_step: int = 256,
                 bandwidth_factor: float = 1.0, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {alpha!r}")
        self.capacity, self.alpha, self.per_step = capacity, alpha, per_step
        self.bandwidth_factor = bandwidth_factor
        self.buffer: torch.Tensor | None = None
        self.rng = torch.Generator().manual_seed(seed)

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        if x.shape[0] > self.per_step:
            x = x[torch.randperm(x.shape[0], generator=self.rng)[: self.per_step]]
        buf = x if self.buffer is None else torch.cat([self.buffer, x])
        self.buffer = buf[-self.capacity:].clone()

    def _kde(self, x: torch.Tensor):
        b = self.buffer.to(x.dtype)
        m, d = b.shape
        h = b.std(0).clamp_min(1e-6) * m ** (-1.0 / (d + 4)) * self.bandwidth_factor  # (d,)
        diff = (x[:, None, :] - b[None, :, :]) / h  # (n, m, d)
        logk = -0.5 * diff.pow(2).sum(-1)  # (n, m)
        log_prob = torch.logsumexp(logk, 1) - math.log(m) - h.log().sum() - 0.5 * d * math.log(2 * math.pi)
        soft = torch.softmax(logk, 1)  # (n, m)
        score = ((soft @ b) - x) / h.pow(2)  # mean shift
        return log_prob, score

    def __call__(self, x, log_q, score_q):
        if self.buffer is None:
            return log_q, score_q
        log_g, score_g = self._kde(x.detach())
        return _mix(self.alpha, log_q, score_q, log_g, score_g)

    def state_dict(self) -> dict:
        return {"buffer": None if self.buffer is None else self.buffer.clone(), "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.buffer = None if state["buffer"] is None else state["buffer"].clone()
        self.rng.set_state(state["rng"])


REFERENCES = {
    "on_policy": OnPolicyReference,
    "gaussian": GaussianReference,
    "mixture": MixtureReference,
    "replay": ReplayReference,
}


def make_reference(reference: "str | Reference" = "on_policy", **kwargs) -> "Reference":
    """A reference from its registry name (with constructor kwargs) or an object passed through."""
    if isinstance(reference, str):
        if reference not in REFERENCES:
            raise ValueError(f"reference must be one of {sorted(REFERENCES)}, got {reference!r}")
        return REFERENCES[reference](**kwargs)
    if not callable(reference):
        raise TypeError(f"reference must be a name or a callable reference object, got {type(reference).__name__}")
    return reference
