"""A discrete-latent generator for data mode: K components, each a residual-MLP map of noise.

    x = m_k + exp(s_k) ⊙ (A z + f(z, e_k, c)),     k ~ Categorical(π),  z ~ N(0, I)

The component k is chosen from the last noise coordinate by inverse CDF (as in
:class:`~freeflow.generators.mixture.MixtureGenerator`), so the input is still plain Gaussian
noise of width ``noise_dim + 1``.  A continuous map of one Gaussian cannot cover disconnected
modes without leaving mass on the bridges between them; here each mode can be covered by its
own components, and the weights π — no gradient — are moved by the Fisher–Rao (reaction) step
of the Sinkhorn flow (:mod:`freeflow.data.reaction`), which is what puts the right mass in
each mode.  ``init_from_data`` places the components by k-means++ seeding on the data and sets
π to the share of data nearest each centre.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .mlp import ResidualMLP

Tensor = torch.Tensor

__all__ = ["ComponentMLP", "kmeans_pp"]


def kmeans_pp(x: Tensor, k: int, rng: torch.Generator, iters: int = 10) -> Tensor:
    """k centres: k-means++ seeding (D² sampling, which reaches distant small clusters) then a
    few Lloyd iterations.  x (n, d) -> (k, d)."""
    n = x.shape[0]
    centres = [x[torch.randint(0, n, (1,), generator=rng)].squeeze(0)]
    d2 = (x - centres[0]).pow(2).sum(-1)
    for _ in range(1, k):
        i = torch.multinomial(d2 / d2.sum(), 1, generator=rng) if d2.sum() > 0 else \
            torch.randint(0, n, (1,), generator=rng)
        centres.append(x[i].squeeze(0))
        d2 = torch.minimum(d2, (x - centres[-1]).pow(2).sum(-1))
    c = torch.stack(centres)
    for _ in range(iters):
        a = torch.cdist(x, c).argmin(1)
        for j in range(k):
            members = x[a == j]
            if len(members):
                c[j] = members.mean(0)
    return c


class ComponentMLP(nn.Module):
    """K components sharing one residual MLP (component embedding e_k as an input), each with
    its own location m_k and log-scale s_k; weights π as non-trainable log-weights."""

    def __init__(self, noise_dim: int, out_dim: int, components: int = 32, *, hidden: int = 256, depth: int = 3,
                 cond_dim: int = 0, embed_dim: int = 8, init_scale: float | Tensor = 1.0,
                 init_loc: float | Tensor = 0.0) -> None:
        super().__init__()
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ValueError(f"components must be an int >= 1, got {components!r}")
        self.components, self.out_dim, self.noise_dim = components, out_dim, noise_dim + 1
        self.embed = nn.Parameter(torch.randn(components, embed_dim))
        self.net = ResidualMLP(noise_dim, out_dim, hidden=hidden, depth=depth, cond_dim=cond_dim + embed_dim,
                               init_scale=1.0, init_loc=0.0)
        scale = torch.as_tensor(init_scale, dtype=torch.float32).expand(out_dim)
        self.means = nn.Parameter(torch.as_tensor(init_loc, dtype=torch.float32).expand(components, out_dim).clone())
        self.log_scales = nn.Parameter(scale.log().expand(components, out_dim).clone())
        self.logits = nn.Parameter(torch.zeros(components), requires_grad=False)

    @torch.no_grad()
    def init_from_data(self, data: Tensor, rng: torch.Generator, max_points: int = 4096) -> None:
        """Centres by k-means++ on (a subsample of) the data; scales from each centre's members
        (floored at a tenth of the data's spread); π from the members' share."""
        x = data[torch.randperm(data.shape[0], generator=rng)[:max_points]].float()
        c = kmeans_pp(x, self.components, rng)
        a = torch.cdist(x, c).argmin(1)
        counts = torch.bincount(a, minlength=self.components).float()
        floor = 0.1 * x.std(0).clamp_min(1e-6)
        for j in range(self.components):
            m = x[a == j]
            sd = m.std(0) if len(m) > 2 else floor
            self.log_scales[j] = torch.maximum(sd, floor).log()
        self.means.copy_(c)
        self.set_log_weights((counts + 0.5).log())

    # -- weights -------------------------------------------------------------------------------
    def log_weights(self) -> Tensor:
        return torch.log_softmax(self.logits, -1)

    @torch.no_grad()
    def set_log_weights(self, log_pi: Tensor) -> None:
        self.logits.copy_(log_pi - torch.logsumexp(log_pi, -1, keepdim=True))

    def component_index(self, u: Tensor) -> Tensor:
        cdf = torch.softmax(self.logits.detach(), -1).cumsum(-1)
        return torch.searchsorted(cdf, u.contiguous()).clamp_max(self.components - 1)

    # -- sampling ------------------------------------------------------------------------------
    def forward_with_index(self, z: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (n, d) with graph and the component index k (n,)."""
        if z.ndim != 2 or z.shape[1] != self.noise_dim:
            raise ValueError(f"z must have shape (n, {self.noise_dim}), got {tuple(z.shape)}")
        k = self.component_index(torch.special.ndtr(z[:, -1]))
        c = self.embed[k] if cond is None else torch.cat([self.embed[k], cond], -1)
        u = self.net(z[:, :-1], c)
        return self.means[k] + self.log_scales[k].exp() * u, k

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.forward_with_index(z, cond)[0]

    def param_groups(self) -> list[dict]:
        """Component locations/scales learn 10× faster (Adam moves each parameter ≈ lr per step)."""
        fast = [self.means, self.log_scales]
        body = [p for p in self.parameters() if p.requires_grad and all(p is not f for f in fast)]
        return [{"params": body, "lr_scale": 1.0}, {"params": fast, "lr_scale": 10.0}]

    @property
    def effective_components(self) -> float:
        """exp(entropy of π): how many components carry mass."""
        lp = self.log_weights()
        return float(math.exp(-(lp.exp() * lp).sum()))
