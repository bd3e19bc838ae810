"""A mixture generator: K full-covariance Gaussian components with weights, exact log q.

    x = loc + e^s ⊙ T(m_k + L_k ε),     k ~ Categorical(π),  ε ~ N(0, I_d),

with an optional shared normalizing flow T (``flow_layers > 0``; identity otherwise). The
support can be disconnected (components are drawn discretely), so a mixture draws no thin
bridges of samples between separated modes, and its density is exact:

    log q(x) = logsumexp_k [log π_k + log N(y; m_k, L_k L_kᵀ)] + log|det ∂y/∂x|,
    y = T⁻¹((x − loc) e^{−s}).

It plugs into the trainer like any generator: ``forward(z)`` takes z of width d + 1, the last
coordinate choosing the component by inverse CDF (Φ(z_{d+1}) against the cumulative weights),
so ``x = G(z)`` with z ~ N(0, I_{d+1}) and everything that draws z as for other generators
(the drift, ``sample``, the EMA) works unchanged. The means, Cholesky factors, global affine map
and flow are trained by the drift regression (transport); the weights ``logits`` carry no
gradient: the Fisher–Rao step of :mod:`freeflow.velocities.fisher_rao` moves them (reaction),
and :meth:`rebirth` re-initialises a component where q under-covers p.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ..density.flow import build_flow
from .base import Generator
from .fast_flow import flow_forward, flow_inverse

Tensor = torch.Tensor

__all__ = ["MixtureGenerator", "ProductMixtureGenerator", "default_components"]


def default_components(dim: int, batch_size: int) -> int:
    """K by default: 64 in d ≤ 3 (room for ~40 modes, e.g. gmm40), fewer above, and never fewer
    than 16 samples of the batch per component (the Fisher–Rao estimates come from them)."""
    k = 64 if dim <= 3 else 16
    return max(1, min(k, batch_size // 16))


class MixtureGenerator(Generator):
    """Mixture of K Gaussians (optionally pushed through a shared flow) with exact log q.

    Args:
        dim: data dimension d (noise width is d + 1).
        components: K ≥ 1.
        init_scale: initial global scale e^s (float or (d,)); components start with
            covariance (``component_scale`` · I) in the unit-scale space.
        init_loc: initial global location.
        spread: component means start at spread · N(0, I) (unit-scale space), seeded by the
            global torch RNG like any network initialisation.
        component_scale: initial std of each component in unit-scale space.
        flow_layers, flow_hidden, flow_kind: the shared flow T (0 layers: none).
        lr_scale: learning-rate multiplier of the component means/factors and the global
            affine map (see :meth:`param_groups`).
    """

    exact_log_prob = True
    has_weights = True
    has_births = True

    def __init__(self, dim: int, components: int, *, init_scale: float | Tensor = 1.0,
                 init_loc: float | Tensor = 0.0, spread: float = 1.0, component_scale: float = 0.5,
                 flow_layers: int = 0, flow_hidden: int = 64, flow_kind: str = "spline",
                 lr_scale: float = 10.0) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ValueError(f"components must be an int >= 1, got {components!r}")
        for name, v in (("spread", spread), ("component_scale", component_scale), ("lr_scale", lr_scale)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        scale = torch.as_tensor(init_scale, dtype=torch.float32).expand(dim).clone()
        if not bool((scale > 0).all() and torch.isfinite(scale).all()):
            raise ValueError(f"init_scale must be positive and finite, got {init_scale!r}")
        self.dim, self.components = dim, components
        self.noise_dim, self.out_dim = dim + 1, dim
        self.lr_scale = float(lr_scale)
        self.means = nn.Parameter(spread * torch.randn(components, dim))
        self.log_diag = nn.Parameter(torch.full((components, dim), math.log(component_scale)))
        self.lower = nn.Parameter(torch.zeros(components, dim, dim))
        # The weights get no gradient: the Fisher-Rao step sets them (EMA still averages them).
        self.logits = nn.Parameter(torch.zeros(components), requires_grad=False)
        self.loc = nn.Parameter(torch.as_tensor(init_loc, dtype=torch.float32).expand(dim).clone())
        self.log_scale = nn.Parameter(scale.log())
        self.register_buffer("_tril", torch.tril(torch.ones(dim, dim), -1), persistent=False)
        self.flow = nn.ModuleList(build_flow(dim, layers=flow_layers, hidden=flow_hidden, kind=flow_kind,
                                             for_sampling=True)) if flow_layers else nn.ModuleList()
        self._widen = 1.0  # component stds × this (see widened)

    @contextlib.contextmanager
    def widened(self, factor: float):
        """Within the block, every component's std is multiplied by ``factor``: sampling and
        log q then belong to a wider mixture q_f (a defensive proposal for tail checks)."""
        old, self._widen = self._widen, float(factor)
        try:
            yield self
        finally:
            self._widen = old

    # -- parameters --------------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        """Adam moves each parameter by about lr per step: the components and the global affine
        map learn ``lr_scale``× faster than the flow, so they can travel to far modes."""
        fast = [self.means, self.log_diag, self.lower, self.loc, self.log_scale]
        slow = list(self.flow.parameters())
        groups = [{"params": fast, "lr_scale": self.lr_scale}]
        return groups + ([{"params": slow, "lr_scale": 1.0}] if slow else [])

    def cholesky(self) -> Tensor:
        """L_k (K, d, d): strictly lower part free, diagonal e^{log_diag}."""
        return self.lower * self._tril + torch.diag_embed(self.log_diag.exp())

    def log_weights(self) -> Tensor:
        return torch.log_softmax(self.logits, 0)

    # -- sampling ----------------------------------------------------------------------------
    def component_index(self, u: Tensor) -> Tensor:
        """Component of each uniform u ∈ (0, 1) by inverse CDF of the weights."""
        cdf = torch.softmax(self.logits.detach(), 0).cumsum(0)
        return torch.searchsorted(cdf, u.contiguous()).clamp_max(self.components - 1)

    def forward(self, z: Tensor) -> Tensor:
        """x = G(z) for z (n, d + 1), with graph (through the chosen component's parameters)."""
        if z.ndim != 2 or z.shape[1] != self.noise_dim:
            raise ValueError(f"z must have shape (n, {self.noise_dim}), got {tuple(z.shape)}")
        return self._push(self._base_sample(z))[0]

    def _base_sample(self, z: Tensor) -> Tensor:
        """y₀ (n, d): the chosen component's Gaussian draw, before the flow."""
        eps, u = z[:, : self.dim], torch.special.ndtr(z[:, self.dim])
        k = self.component_index(u)
        return self.means[k] + self._widen * (self.cholesky()[k] @ eps.unsqueeze(-1)).squeeze(-1)

    def _push(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """x = loc + e^s · T(y₀) and log|det ∂x/∂y₀| (n,), through the flow's forward pass (fused
        for a RealNVP flow under no_grad, see :mod:`.fast_flow`; the layer loop otherwise)."""
        y, log_det = flow_forward(self.flow, y, self.log_scale.sum())
        return self.loc + self.log_scale.exp() * y, log_det

    def _base_log_prob(self, y: Tensor) -> Tensor:
        """log q₀(y₀) (n,) of the base mixture."""
        return torch.logsumexp(self._base_component_log_prob(y), 1)

    # -- density -----------------------------------------------------------------------------
    def _unit(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """y = T⁻¹((x − loc)/e^s) and log|det ∂y/∂x| (n,)."""
        y = (x - self.loc) * torch.exp(-self.log_scale)
        return flow_inverse(self.flow, y, (-self.log_scale.sum()).expand(x.shape[0]))

    def component_log_prob(self, x: Tensor) -> Tensor:
        """log π_k + log q_k(x) (n, K), with graph; log q(x) is its logsumexp over k."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {tuple(x.shape)}")
        y, log_det = self._unit(x)
        return self._base_component_log_prob(y) + log_det.unsqueeze(1)

    def _base_component_log_prob(self, y: Tensor) -> Tensor:
        """log π_k + log N(y₀; m_k, Σ_k) (n, K) in the base space."""
        diff = (y.unsqueeze(0) - self.means.unsqueeze(1)).transpose(1, 2)          # (K, d, n)
        sol = torch.linalg.solve_triangular(self.cholesky(), diff, upper=False) / self._widen
        comp = (-0.5 * sol.pow(2).sum(1) - self.log_diag.sum(1, keepdim=True) - self.dim * math.log(self._widen)
                - 0.5 * self.dim * math.log(2 * math.pi))                          # (K, n)
        return comp.T + self.log_weights()

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log q(x) (n,), with graph."""
        return torch.logsumexp(self.component_log_prob(x), 1)

    def log_responsibilities(self, x: Tensor) -> Tensor:
        """log γ_k(x) = log π_k q_k(x)/q(x), shaped (n, 1, K) (one mixture; see the product one)."""
        return self.log_prob_and_responsibilities(x)[1]

    def log_prob_and_responsibilities(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """log q(x) (n,) and the log responsibilities (n, 1, K) from one pass."""
        lc = self.component_log_prob(x)
        lq = torch.logsumexp(lc, 1)
        return lq, (lc - lq.unsqueeze(1)).unsqueeze(1)

    def forward_and_log_prob(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """x = G(z) and its exact log q(x) from the forward pass alone: log q₀(y₀) minus the
        forward log-determinants (change of variables; no inverse pass through the flow)."""
        if z.ndim != 2 or z.shape[1] != self.noise_dim:
            raise ValueError(f"z must have shape (n, {self.noise_dim}), got {tuple(z.shape)}")
        y0 = self._base_sample(z)
        x, log_det = self._push(y0)
        return x, self._base_log_prob(y0) - log_det

    # -- Fisher-Rao weights and births ----------------------------------------------------------
    @torch.no_grad()
    def set_log_weights(self, log_pi: Tensor) -> None:
        log_pi = log_pi.reshape(self.logits.shape)
        if not bool(torch.isfinite(log_pi).all()):
            raise FloatingPointError(f"non-finite mixture log-weights: {log_pi}")
        self.logits.copy_(log_pi - torch.logsumexp(log_pi, -1, keepdim=True))

    @torch.no_grad()
    def rebirth(self, k: int, x: Tensor, log_weight: float) -> None:
        """Re-initialise component k at the data-space point x (d,), with the median
        component covariance and log-weight ``log_weight`` (the others renormalised)."""
        y, _ = self._unit(x.reshape(1, -1).to(self.means))
        self.means[k] = y[0]
        self.log_diag[k] = self.log_diag.median(0).values
        self.lower[k] = 0.0
        lp = self.log_weights().clone()
        others = torch.ones_like(lp, dtype=torch.bool)
        others[k] = False
        lp[others] = lp[others] - torch.logsumexp(lp[others], 0) + math.log1p(-math.exp(log_weight))
        lp[k] = log_weight
        self.set_log_weights(lp)


class ProductMixtureGenerator(MixtureGenerator):
    """A product of per-coordinate 1-D mixtures, pushed through a shared flow, with exact log q:

        x = loc + e^s ⊙ T(y),   y_j = m_{j,k_j} + σ_{j,k_j} ε_j,   k_j ~ Categorical(π_j) independently,

        log q(x) = Σ_j logsumexp_k [log π_jk + log N(y_j; m_jk, σ_jk²)] + log|det ∂y/∂x|.

    It is a mixture of K^d components with product weights, so it can hold the 2^(d/2) modes of
    a double-well product with d·K parameters per kind; the Fisher–Rao step acts on each
    coordinate's weights π_j (docs/theory.md §7) and sets the per-well masses directly, which
    transport alone moves only through the barrier. The flow T carries the dependence between
    coordinates. Noise width 2d: d Gaussian coordinates, then d that pick the components.
    No births (components are per coordinate); ``components`` is K per coordinate.
    """

    has_births = False  # (per-coordinate components: no births)

    def __init__(self, dim: int, components: int, *, flow_layers: int = 4, **kwargs) -> None:
        super().__init__(dim, components, flow_layers=flow_layers, **kwargs)
        spread = kwargs.get("spread", 1.0)
        scale = kwargs.get("component_scale", 0.5)
        self.noise_dim = 2 * dim
        # per-coordinate components, evenly spread over ±spread so each coordinate starts multimodal
        grid = torch.linspace(-spread, spread, components) if components > 1 else torch.zeros(1)
        self.means = nn.Parameter(grid.expand(dim, components).clone())
        self.log_diag = nn.Parameter(torch.full((dim, components), math.log(scale)))
        self.lower = nn.Parameter(torch.zeros(0))
        self.logits = nn.Parameter(torch.zeros(dim, components), requires_grad=False)

    def cholesky(self) -> Tensor:  # pragma: no cover - not used by the product mixture
        raise NotImplementedError("a product mixture has per-coordinate scales, no Cholesky factors")

    def component_index(self, u: Tensor) -> Tensor:
        """(n, d) uniforms -> (n, d) component indices, per coordinate by inverse CDF."""
        cdf = torch.softmax(self.logits.detach(), -1).cumsum(-1)                 # (d, K)
        return torch.searchsorted(cdf, u.T.contiguous()).clamp_max(self.components - 1).T

    def forward(self, z: Tensor) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.noise_dim:
            raise ValueError(f"z must have shape (n, {self.noise_dim}), got {tuple(z.shape)}")
        return self._push(self._base_sample(z))[0]

    def _base_sample(self, z: Tensor) -> Tensor:
        d = self.dim
        eps, u = z[:, :d], torch.special.ndtr(z[:, d:])
        k = self.component_index(u).unsqueeze(-1)                                 # (n, d, 1)
        n = z.shape[0]
        mu = torch.gather(self.means.unsqueeze(0).expand(n, d, -1), 2, k).squeeze(-1)
        ls = torch.gather(self.log_diag.unsqueeze(0).expand(n, d, -1), 2, k).squeeze(-1)
        return mu + self._widen * ls.exp() * eps

    def _base_log_prob(self, y: Tensor) -> Tensor:
        return torch.logsumexp(self._base_coordinate_log_prob(y), -1).sum(-1)

    def _coordinate_log_prob(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """log π_jk + log N(y_j; m_jk, σ_jk²) (n, d, K) and log|det ∂y/∂x| (n,)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {tuple(x.shape)}")
        y, log_det = self._unit(x)
        return self._base_coordinate_log_prob(y), log_det

    def _base_coordinate_log_prob(self, y: Tensor) -> Tensor:
        """log π_jk + log N(y_j; m_jk, σ_jk²) (n, d, K) in the base space."""
        log_sd = self.log_diag + math.log(self._widen)
        zz = (y.unsqueeze(-1) - self.means) * torch.exp(-log_sd)
        return -0.5 * zz.pow(2) - log_sd - 0.5 * math.log(2 * math.pi) + self.log_weights()

    def log_weights(self) -> Tensor:
        return torch.log_softmax(self.logits, -1)

    def log_prob(self, x: Tensor) -> Tensor:
        return self.log_prob_and_responsibilities(x)[0]

    def log_prob_and_responsibilities(self, x: Tensor) -> tuple[Tensor, Tensor]:
        comp, log_det = self._coordinate_log_prob(x)
        per = torch.logsumexp(comp, -1, keepdim=True)                              # (n, d, 1)
        return per.squeeze(-1).sum(-1) + log_det, comp - per

    def component_log_prob(self, x: Tensor) -> Tensor:  # pragma: no cover - K^d components
        raise NotImplementedError("a product mixture has K^d components; use log_responsibilities")

    def log_responsibilities(self, x: Tensor) -> Tensor:
        """Per-coordinate log γ_jk(x) (n, d, K): the responsibilities of coordinate j's mixture
        at y_j = T⁻¹(·)_j — exact, because the base is a product and T a bijection."""
        return self.log_prob_and_responsibilities(x)[1]

    def rebirth(self, *args, **kwargs):  # pragma: no cover
        raise NotImplementedError("no births in a product mixture")
