"""Generators: networks mapping noise (and optional conditioning) to samples in one pass."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .base import Generator

Tensor = torch.Tensor

__all__ = ["ResidualMLP", "EMA", "sinusoidal_embedding"]


class _Block(nn.Module):
    """Pre-norm residual block: h + W₂ σ(W₁ LN(h)); W₂ starts at zero so the block is the identity."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.act = nn.SiLU()
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.fc2(self.act(self.fc1(self.norm(h))))


class ResidualMLP(Generator):
    """x = loc + exp(log_scale) ⊙ (A z[:, :d] + f(z, c)):  a linear skip plus a residual MLP.

    At initialisation f = 0 (zero-initialised output layer) and A = I, so the generator starts
    as the Gaussian N(loc, diag(scale²)): the flow starts from a sensible distribution, not
    from a collapsed or exploded one. ``loc``/``log_scale`` are learnable so the network
    itself works at unit scale whatever the target's scale.

    Args:
        noise_dim: dimension of z (≥ out_dim).
        out_dim: dimension d of the samples.
        hidden: width of the residual stream.
        depth: number of residual blocks.
        cond_dim: size of an optional conditioning vector concatenated to z.
        init_scale: initial per-coordinate scale of the output (float or (d,) tensor).
        init_loc: initial per-coordinate location of the output.
        affine_lr_scale: learning-rate multiplier of ``loc``/``log_scale`` (see param_groups).
    """

    def __init__(
        self,
        noise_dim: int,
        out_dim: int,
        hidden: int = 256,
        depth: int = 3,
        cond_dim: int = 0,
        init_scale: float | Tensor = 1.0,
        init_loc: float | Tensor = 0.0,
        affine_lr_scale: float = 1.0,
    ):
        super().__init__()
        self.affine_lr_scale = float(affine_lr_scale)
        for name, v in (("noise_dim", noise_dim), ("out_dim", out_dim), ("hidden", hidden)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if noise_dim < out_dim:
            raise ValueError(f"noise_dim ({noise_dim}) must be >= out_dim ({out_dim})")
        if not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be a non-negative int, got {depth!r}")
        self.noise_dim, self.out_dim, self.cond_dim = noise_dim, out_dim, cond_dim
        self.inp = nn.Linear(noise_dim + cond_dim, hidden)
        self.blocks = nn.ModuleList(_Block(hidden) for _ in range(depth))
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, out_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.skip = nn.Linear(noise_dim, out_dim, bias=False)
        with torch.no_grad():
            self.skip.weight.zero_()
            self.skip.weight[:, :out_dim] = torch.eye(out_dim)
        scale = torch.as_tensor(init_scale, dtype=torch.float32).expand(out_dim).clone()
        if (scale <= 0).any() or not torch.isfinite(scale).all():
            raise ValueError("init_scale must be positive and finite")
        self.log_scale = nn.Parameter(scale.log())
        self.loc = nn.Parameter(torch.as_tensor(init_loc, dtype=torch.float32).expand(out_dim).clone())

    def param_groups(self, affine_lr_scale: float | None = None) -> list[dict]:
        """Optimiser groups: the output affine map (loc, log_scale) learns ``affine_lr_scale``×
        faster. Adam moves each parameter by about lr per step, so at lr = 1e-3 shifting the
        output by 10 or growing its scale 20-fold would take thousands of steps otherwise."""
        affine_lr_scale = self.affine_lr_scale if affine_lr_scale is None else affine_lr_scale
        affine = [self.loc, self.log_scale]
        body = [p for p in self.parameters() if all(p is not a for a in affine)]
        return [{"params": body, "lr_scale": 1.0}, {"params": affine, "lr_scale": affine_lr_scale}]

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        inp = z if cond is None else torch.cat([z, cond], dim=-1)  # (N, noise_dim + cond_dim)
        h = self.inp(inp)  # (N, hidden)
        for block in self.blocks:
            h = block(h)  # (N, hidden)
        u = self.skip(z) + self.out(torch.nn.functional.silu(self.out_norm(h)))  # (N, d)
        return self.loc + self.log_scale.exp() * u  # (N, d)


class EMA:
    """Exponential moving average of a module's parameters (and buffers), used for sampling.

    decay_t = min(decay, (1 + t) / (10 + t)) so early averages are not dominated by the
    random initialisation.
    """

    def __init__(self, module: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.num_updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for e, p in zip(self.module.parameters(), module.parameters()):
            e.lerp_(p.detach(), 1.0 - d)
        for e, b in zip(self.module.buffers(), module.buffers()):
            e.copy_(b)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.num_updates = state["num_updates"]
        self.module.load_state_dict(state["module"])


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """(N,) scalars -> (N, dim) sin/cos features (as DiT's TimestepEmbedder); for guidance scales."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb
