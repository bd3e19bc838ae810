"""Variational (critic) estimators of a divergence between data p and generator q, and the
critic's gradient field as a data-mode velocity.

Conventions: ``p`` is the data (what we move toward), ``q`` the generator (what moves).  Every
bound is a function of a critic ``h: R^d → R`` evaluated on data points (``h_p``) and on
generated points (``h_q``), and every one is maximised over ``h``:

=========  ==========================================================  ====================  ======================
name       bound (≤ the divergence)                                    divergence            optimal critic
=========  ==========================================================  ====================  ======================
kl_dv      E_p[h] − log E_q[e^h]            (Donsker–Varadhan)         KL(p‖q)               log(p/q) + c
kl_nwj     E_p[h] − E_q[e^(h−1)]            (Nguyen–Wainwright–Jordan) KL(p‖q)               1 + log(p/q)
chi2       E_p[T] − E_q[T + T²/4]           (f-GAN, Pearson f*(t))     χ²(p‖q)=∫(p−q)²/q     2(p/q − 1)
js         ½(E_p[log σ(h)] + E_q[log(1−σ(h))] + log 4)  (GAN)          JS(p, q)              log(p/q)
w1gp       (E_p[h] − E_q[h]) / L̂        (Kantorovich–Rubinstein)        W1(p, q)              Kantorovich potential
=========  ==========================================================  ====================  ======================

``w1gp`` trains ``E_p[h] − E_q[h] − λ E_x̂[max(0, ‖∇h(x̂)‖ − 1)²]`` on interpolates
``x̂ = t x_p + (1 − t) x_q`` (Gulrajani et al. 2017; the one-sided penalty of Petzka et al. 2018),
λ = ``gp_weight`` (default 10).  One-sided because the two-sided ``(‖∇h‖ − 1)²`` makes the
wrong-signed critic a local maximum whenever the shift δ < 2λ (for ``h = s·x`` between shifted
Gaussians the objective ``sδ − λ(|s| − 1)²`` has a second maximum at s < 0; 2 of 3 seeds landed
there at λ = 10).  A soft penalty lets the slope exceed 1 (the optimum above has slope
1 + δ/(2λ)), so the estimate divides by ``L̂ = sqrt(mean ‖∇h(x̂)‖²)``, the critic's measured slope
on the interpolates: with the true Lipschitz constant in place of L̂ this is a lower bound on W1.
λ = 0.2 is too weak: the critic's slope grew to 12–14 in the tails and the normalised value was
14.5–17.5 % above W1 (raw value 4.3–4.5×), against −0.2 % to +3.2 % at λ = 10 (1-D Gaussians,
seeds 0–2: benchmarks/results/critics_gp.json, tests/test_critics.py).

The velocity is the critic's gradient at generated points, ``V(x) = ∇h(x)`` (RMS-normalised,
MATH.md §1).  At the optimum every ``h`` above except ``w1gp`` is an increasing function
``g(r)`` of ``r = p/q``, so ``V = g′(r)∇r`` and, under ``∂_t q = −∇·(qV)``, every f-divergence
D_f(p‖q) = ∫ q f(p/q) decreases: ``dD_f/dt = −∫ q g′(r) r f″(r) ‖∇r‖² ≤ 0``.  For the KL critics
``V = ∇log(p/q)``, which is also the Wasserstein gradient flow of KL(q‖p).  For ``w1gp`` V is the
gradient of the Kantorovich potential (the WGAN generator direction).

The pure bounds are the functions below; :class:`Critic` holds the network, its Adam optimiser
and its random stream, and runs the inner maximisation steps (``inner_steps`` per generator
step, warm-started across steps).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..placement import noise_generator

from ..validation import check_choice, check_float, check_positive_float, check_positive_int
from .common import rms_normalize

Tensor = torch.Tensor

__all__ = ["kl_dv", "kl_nwj", "chi2", "js", "w1gp", "gradient_penalty", "mmd2_unbiased", "median_bandwidth",
           "ESTIMATORS", "CriticNet", "Critic"]


# -- the bounds (pure functions of critic outputs) ------------------------------------------------

def kl_dv(h_p: Tensor, h_q: Tensor) -> Tensor:
    """Donsker–Varadhan lower bound on KL(p‖q): ``E_p[h] − log E_q[e^h]`` (log-mean-exp, stable).
    Tight at ``h = log(p/q) + c`` for any constant c."""
    return h_p.mean() - (torch.logsumexp(h_q, 0) - math.log(h_q.shape[0]))


def kl_nwj(h_p: Tensor, h_q: Tensor) -> Tensor:
    """NWJ lower bound on KL(p‖q): ``E_p[h] − E_q[e^(h−1)]``.  Tight at ``h = 1 + log(p/q)``."""
    return h_p.mean() - torch.exp(h_q - 1.0).mean()


def chi2(t_p: Tensor, t_q: Tensor) -> Tensor:
    """f-GAN lower bound on Pearson χ²(p‖q) = ∫ (p − q)²/q: ``E_p[T] − E_q[f*(T)]`` with
    ``f(u) = (u − 1)²``, ``f*(t) = t + t²/4``.  Tight at ``T = f′(p/q) = 2(p/q − 1)``."""
    return t_p.mean() - (t_q + 0.25 * t_q.pow(2)).mean()


def js(h_p: Tensor, h_q: Tensor) -> Tensor:
    """Jensen–Shannon divergence JS(p, q) (symmetric; nats, at most log 2) from the GAN
    discriminator ``D = σ(h)``: ``½(E_p[log σ(h)] + E_q[log(1 − σ(h))] + log 4)``.
    Tight at ``h = log(p/q)``."""
    return 0.5 * (nn.functional.logsigmoid(h_p).mean() + nn.functional.logsigmoid(-h_q).mean() + math.log(4.0))


def w1gp(h_p: Tensor, h_q: Tensor, grad_norm: Tensor | None = None) -> Tensor:
    """W1(p, q) from a critic: ``E_p[h] − E_q[h]``, divided by ``L̂ = sqrt(mean grad_norm²)`` when
    the critic's gradient norms on the interpolates are given (see module doc).  The raw value
    (no ``grad_norm``) is the IPM term the critic maximises."""
    value = h_p.mean() - h_q.mean()
    if grad_norm is None:
        return value
    return value / grad_norm.pow(2).mean().sqrt().clamp_min(1e-12)


def gradient_penalty(grad_norm: Tensor) -> Tensor:
    """``mean (‖∇h(x̂)‖ − 1)²`` (two-sided, WGAN-GP)."""
    return (grad_norm - 1.0).clamp_min(0).pow(2).mean()


ESTIMATORS = {"kl_dv": kl_dv, "kl_nwj": kl_nwj, "chi2": chi2, "js": js, "w1gp": w1gp}


# -- the closed-form kernel IPM (no critic network) ------------------------------------------------

def median_bandwidth(x: Tensor, y: Tensor) -> Tensor:
    """Median heuristic (Gretton et al. 2012): h = median pairwise distance of the pooled sample
    (distinct pairs only)."""
    z = torch.cat([x, y], 0)
    d2 = torch.cdist(z, z).pow(2)
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1)
    return d2[iu[0], iu[1]].median().sqrt()


def mmd2_unbiased(x: Tensor, y: Tensor, bandwidth: float | Tensor | None = None) -> Tensor:
    """Unbiased MMD² between samples ``x ~ p`` (n, d) and ``y ~ q`` (m, d) with the Gaussian kernel
    ``k(a, b) = exp(−‖a − b‖² / 2h²)``; ``bandwidth`` h, or None for :func:`median_bandwidth`::

        MMD²_u = Σ_{i≠j} k(x_i, x_j)/(n(n−1)) + Σ_{i≠j} k(y_i, y_j)/(m(m−1)) − 2 Σ_ij k(x_i, y_j)/(nm)

    Symmetric in (x, y); can be slightly negative when p = q.  (The data-mode ``"mmd"`` velocity,
    :func:`~freeflow.velocities.kernels.mmd_velocity`, is the gradient flow of this energy.)"""
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"mmd2_unbiased needs at least 2 points in each sample, got {n} and {m}")
    h = median_bandwidth(x, y) if bandwidth is None else torch.as_tensor(bandwidth, dtype=x.dtype)
    if not float(h) > 0:
        raise ValueError(f"bandwidth must be positive, got {float(h)}")
    k = lambda a, b: torch.exp(-torch.cdist(a, b).pow(2) / (2 * h * h))  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            - 2.0 * kxy.mean())


# -- the critic ------------------------------------------------------------------------------------

class CriticNet(nn.Module):
    """h: R^d → R, an MLP with SiLU activations (``depth`` hidden layers of width ``hidden``) on
    standardised inputs ``(x − loc)/scale`` (buffers, set once from the first data seen)."""

    def __init__(self, dim: int, hidden: int = 128, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        width = dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("loc", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("standardized", torch.tensor(False))

    def set_standardization(self, data: Tensor) -> None:
        std = data.std(0)
        self.loc.copy_(data.mean(0))
        self.scale.copy_(std.clamp_min(1e-3 * float(std.max().clamp_min(1e-12))))
        self.standardized.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.loc) / self.scale).squeeze(-1)  # (n,)


def _diverged(message: str):
    from ..train.trainer import NonFiniteError  # lazy: train imports generators, which import velocities
    return NonFiniteError(message)


class Critic:
    """A critic network trained to maximise one of the :data:`ESTIMATORS` bounds, and its gradient
    field as the velocity that moves q toward p (see the module doc).

    Args:
        dim: dimension of the points.
        estimator: a key of :data:`ESTIMATORS`.
        hidden, depth: the MLP's width and number of hidden layers.
        lr: Adam learning rate of the critic.
        inner_steps: critic ascent steps per :meth:`update` (one update per generator step).
        gp_weight: λ of the gradient penalty (``w1gp`` only).
        seed: seeds the network's initialisation and the interpolation draws.

    A non-finite loss, output or parameter raises :class:`~freeflow.train.NonFiniteError`
    (a FloatingPointError) naming the critic and the update/inner step.
    """

    def __init__(self, dim: int, estimator: str = "kl_dv", *, hidden: int = 128, depth: int = 2,
                 lr: float = 1e-3, inner_steps: int = 5, gp_weight: float = 10.0, seed: int = 0):
        check_positive_int(dim, "dim")
        check_choice(estimator, ESTIMATORS, "critic estimator")
        for value, name in ((hidden, "hidden"), (depth, "depth"), (inner_steps, "inner_steps")):
            check_positive_int(value, name)
        check_positive_float(lr, "lr")
        check_float(gp_weight, "gp_weight", low=0.0)
        self.dim, self.estimator, self.inner_steps, self.gp_weight = dim, estimator, int(inner_steps), float(gp_weight)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = CriticNet(dim, hidden, depth)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.rng = noise_generator(seed + 7919)
        self.updates = 0            # completed calls of update
        self.last_objective = float("nan")

    @property
    def name(self) -> str:
        return f"critic:{self.estimator}"

    # -- pieces --------------------------------------------------------------------------------
    def _interpolates(self, x_gen: Tensor, x_data: Tensor, rng: torch.Generator | None = None) -> Tensor:
        rng = self.rng if rng is None else rng
        n = min(x_gen.shape[0], x_data.shape[0])
        i = torch.randint(0, x_gen.shape[0], (n,), generator=rng)
        j = torch.randint(0, x_data.shape[0], (n,), generator=rng)
        t = torch.rand(n, 1, generator=rng)
        return t * x_data[j] + (1 - t) * x_gen[i]

    def _grad_norm(self, x: Tensor, *, create_graph: bool) -> Tensor:
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.net(x).sum(), x, create_graph=create_graph)
        return g.norm(dim=-1)

    def _check(self, value: Tensor, what: str, inner: int | None = None, step: int | None = None,
               *, after_update: bool = False) -> None:
        if not torch.isfinite(value).all():
            if step is not None:
                where = f"step {step}"
            else:
                where = f"after update {self.updates}" if after_update else f"update {self.updates + 1}"
            if inner is not None:
                where += f", inner step {inner + 1} of {self.inner_steps}"
            raise _diverged(f"critic {self.name!r} diverged: non-finite {what} at {where} "
                            f"(lower critic_lr, or raise gp_weight for w1gp)")

    # -- the inner maximisation ----------------------------------------------------------------
    def objective(self, x_gen: Tensor, x_data: Tensor, *, inner: int | None = None,
                  step: int | None = None) -> Tensor:
        """The quantity the critic maximises (with graph): the bound, minus λ·penalty for w1gp."""
        bound = ESTIMATORS[self.estimator]
        h_p, h_q = self.net(x_data), self.net(x_gen)
        self._check(h_p, "critic output on data", inner, step)
        self._check(h_q, "critic output on generated points", inner, step)
        value = bound(h_p, h_q)
        if self.estimator == "w1gp" and self.gp_weight > 0:
            value = value - self.gp_weight * gradient_penalty(
                self._grad_norm(self._interpolates(x_gen, x_data), create_graph=True))
        return value

    def update(self, x_gen: Tensor, x_data: Tensor, *, step: int | None = None) -> float:
        """``inner_steps`` Adam ascent steps on the bound over the given batches; returns the last
        objective value.  The first call also fixes the input standardisation from ``x_data``.
        ``step`` (the generator step, for error messages) defaults to the 1-based update count."""
        x_gen, x_data = x_gen.detach(), x_data.detach()
        if not bool(self.net.standardized):
            self.net.set_standardization(x_data)
        with torch.enable_grad():
            for i in range(self.inner_steps):
                obj = self.objective(x_gen, x_data, inner=i, step=step)
                self._check(obj, "objective", i, step)
                self.optimizer.zero_grad(set_to_none=True)
                (-obj).backward()
                self.optimizer.step()
                for p in self.net.parameters():
                    self._check(p.detach(), "parameters", i, step)
        self.updates += 1
        self.last_objective = float(obj.detach())
        return self.last_objective

    # -- what the critic gives back ------------------------------------------------------------
    def velocity(self, x: Tensor, *, normalize: bool = True, step: int | None = None) -> Tensor:
        """``∇h(x)`` (n, d): moves generated points toward the data (see module doc),
        RMS-normalised unless ``normalize=False``."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            h = self.net(xg)
            self._check(h, "critic output in the velocity", step=step, after_update=True)
            (v,) = torch.autograd.grad(h.sum(), xg)
        self._check(v, "critic gradient (velocity)", step=step, after_update=True)
        return rms_normalize(v) if normalize else v

    def estimate(self, x_gen: Tensor, x_data: Tensor) -> Tensor:
        """The current bound on the divergence between p (``x_data``) and q (``x_gen``), a scalar
        tensor (for w1gp the slope-normalised W1 of the module doc; its interpolates come from a
        fixed stream, so reading the estimate does not change the training)."""
        bound = ESTIMATORS[self.estimator]
        with torch.no_grad():
            h_p, h_q = self.net(x_data), self.net(x_gen)
        if self.estimator == "w1gp":
            with torch.enable_grad():
                x_hat = self._interpolates(x_gen.detach(), x_data.detach(), noise_generator(0))
                gn = self._grad_norm(x_hat, create_graph=False)
            return bound(h_p, h_q, gn).detach()
        return bound(h_p, h_q).detach()

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"estimator": self.estimator, "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.get_state(), "updates": self.updates}

    def load_state_dict(self, sd: dict) -> None:
        if sd.get("estimator") != self.estimator:
            raise ValueError(f"critic state is for {sd.get('estimator')!r}, this critic is {self.estimator!r}")
        self.net.load_state_dict(sd["net"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.rng.set_state(sd["rng"])
        self.updates = int(sd["updates"])
