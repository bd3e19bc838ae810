"""A class-conditional DiT as a one-step image generator (MATH.md §3, "Published image pipeline").

Input: Gaussian noise of the output's shape (N, C, H, W), class labels (N,) and, optionally, the
guidance scale (N,). Output: a latent of the same shape. The layout is DiT's (Peebles & Xie,
2023): Conv2d patch embedding, fixed 2-D sin-cos positions, adaLN-Zero blocks
(modulate(x, shift, scale) = x·(1 + scale) + shift, modulation and gates zero-initialised),
a final adaLN layer with a zero-initialised linear output, unpatchify. There is no timestep:
the conditioning vector is the class embedding, plus a guidance-scale embedding (sinusoidal
features → MLP, as DiT's timestep embedder) when ``guidance_embed`` is on. Output channels
equal input channels (no learned sigma).

Class embedding: ``num_classes + 1`` rows; index ``num_classes`` is the null class for
classifier-free guidance (class dropout is the trainer's business).

Learned skip: the zero output layer makes the network part exactly 0 at init, so the
generator returns ``out_scale · noise + net(noise)`` with a learnable scalar ``out_scale``
initialised to 1. At init every block is exactly the identity and the generator maps noise
to itself.

Switches: ``norm`` "layernorm" | "rmsnorm" (both without affine: adaLN supplies scale and
shift), ``qk_norm`` (RMSNorm with a learned weight on q and k per head), ``mlp`` "gelu"
(tanh GELU, hidden = mlp_ratio·width) | "swiglu" (hidden = ⌊2/3·mlp_ratio·width⌋, about the
same parameter count). RoPE, in-context class tokens and style-noise embeddings of the
published models are not included.
"""
from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from ..generators.mlp import sinusoidal_embedding
from ..validation import check_choice, check_positive_float, check_positive_int, check_setting_names

Tensor = torch.Tensor

__all__ = ["DiTConfig", "DiT", "RMSNorm", "DIT_SIZES", "DIT_MODELS", "dit", "dit_config", "parameter_count"]

NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")
FREQ_DIM = 256  # sinusoidal features of the guidance scale (DiT's frequency_embedding_size)


class _RMSNorm(nn.Module):
    """x / sqrt(mean(x², last dim) + eps) · weight (fallback for torch < 2.4)."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6, elementwise_affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(normalized_shape)) if elementwise_affine else None

    def forward(self, x: Tensor) -> Tensor:
        y = x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps).to(x.dtype)
        return y * self.weight if self.weight is not None else y


RMSNorm = getattr(nn, "RMSNorm", _RMSNorm)


@dataclass(frozen=True)
class DiTConfig:
    """DiT hyper-parameters; defaults are DiT-S/2 on 32×32×4 SD-VAE latents, 1000 classes."""

    input_size: int = 32
    in_channels: int = 4
    patch_size: int = 2
    hidden: int = 384
    depth: int = 12
    heads: int = 6
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    norm: str = "layernorm"
    qk_norm: bool = False
    mlp: str = "gelu"
    guidance_embed: bool = False
    #: recompute each block's activations in the backward pass (torch.utils.checkpoint) instead of
    #: keeping them: the same loss and gradients, activation memory of one block, ~1/3 more compute
    activation_checkpointing: bool = False

    def __post_init__(self):
        for name in ("input_size", "in_channels", "patch_size", "hidden", "depth", "heads", "num_classes"):
            check_positive_int(getattr(self, name), name)
        check_positive_float(self.mlp_ratio, "mlp_ratio")
        check_choice(self.norm, NORMS, "norm")
        check_choice(self.mlp, MLPS, "mlp")
        for name in ("qk_norm", "guidance_embed", "activation_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.input_size % self.patch_size:
            raise ValueError(f"input_size={self.input_size} is not divisible by patch_size={self.patch_size}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} is not divisible by heads={self.heads}")
        if self.hidden % 4:
            raise ValueError(f"hidden={self.hidden} must be divisible by 4 (2-D sin-cos positional embedding)")

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.input_size // self.patch_size

    @property
    def mlp_hidden(self) -> int:
        h = int(self.hidden * self.mlp_ratio)
        return int(2 * h / 3) if self.mlp == "swiglu" else h


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x·(1 + scale) + shift, with (N, D) shift/scale broadcast over the tokens of x (N, T, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


def _norm(cfg: DiTConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.hidden, eps=1e-6, elementwise_affine=False)
    return nn.LayerNorm(cfg.hidden, eps=1e-6, elementwise_affine=False)


def sincos_pos_embed_2d(dim: int, grid: int) -> Tensor:
    """(grid², dim) fixed sin-cos positions, DiT's layout: [sin, cos](column) ‖ [sin, cos](row)."""
    omega = 1.0 / 10_000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    pos = torch.arange(grid, dtype=torch.float64)
    rows, cols = pos.repeat_interleave(grid), pos.repeat(grid)  # token t = row·grid + column

    def one(p):
        a = p[:, None] * omega[None]
        return torch.cat([a.sin(), a.cos()], dim=1)

    return torch.cat([one(cols), one(rows)], dim=1).float()


class Attention(nn.Module):
    """Multi-head self-attention (scaled_dot_product_attention), optional RMS QK-norm per head."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.heads, head_dim = cfg.heads, cfg.hidden // cfg.heads
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)
        self.q_norm = RMSNorm(head_dim, eps=1e-6) if cfg.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(head_dim, eps=1e-6) if cfg.qk_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    """fc2(gelu_tanh(fc1 x)), or SwiGLU: w3(silu(w1 x) ⊙ w2 x)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.swiglu = cfg.mlp == "swiglu"
        m = cfg.mlp_hidden
        self.fc1 = nn.Linear(cfg.hidden, 2 * m if self.swiglu else m)
        self.fc2 = nn.Linear(m, cfg.hidden)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        if self.swiglu:
            a, b = h.chunk(2, dim=-1)
            return self.fc2(F.silu(a) * b)
        return self.fc2(F.gelu(h, approximate="tanh"))


class DiTBlock(nn.Module):
    """adaLN-Zero block: x + g₁·attn(mod(norm x)) + g₂·mlp(mod(norm x)); gates start at 0."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm1, self.norm2 = _norm(cfg), _norm(cfg)
        self.attn, self.mlp = Attention(cfg), Mlp(cfg)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cfg.hidden, 6 * cfg.hidden))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """linear(mod(norm x)) to patch²·C values per token; modulation and linear start at 0."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm = _norm(cfg)
        self.linear = nn.Linear(cfg.hidden, cfg.patch_size ** 2 * cfg.in_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cfg.hidden, 2 * cfg.hidden))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT(nn.Module):
    """Class-conditional one-step DiT generator: ``forward(noise, labels, guidance=None)``.

    ``noise`` (N, C, H, W) with C = in_channels, H = W = input_size; ``labels`` (N,) integers
    in [0, num_classes] (num_classes = null class); ``guidance`` (N,) or a number, only with
    ``guidance_embed`` (None → 1.0). Returns ``out_scale · noise + net(noise)`` (N, C, H, W).
    """

    def __init__(self, config: DiTConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = DiTConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a DiTConfig or keyword fields, not both")
        if not isinstance(config, DiTConfig):
            raise TypeError(f"config must be a DiTConfig, got {type(config).__name__}")
        self.config = cfg = config
        h, p = cfg.hidden, cfg.patch_size
        self.x_embedder = nn.Conv2d(cfg.in_channels, h, kernel_size=p, stride=p)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(h, cfg.grid)[None], persistent=False)
        self.y_embedder = nn.Embedding(cfg.num_classes + 1, h)
        self.g_embedder = (nn.Sequential(nn.Linear(FREQ_DIM, h), nn.SiLU(), nn.Linear(h, h))
                           if cfg.guidance_embed else None)
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.final_layer = FinalLayer(cfg)
        self.out_scale = nn.Parameter(torch.ones(()))
        self.initialize_weights()

    @torch.no_grad()
    def initialize_weights(self) -> None:
        """DiT's init: xavier-uniform linears (zero bias), N(0, 0.02) embeddings, then zeros for
        every adaLN modulation and the output linear; out_scale = 1."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.bias)
        nn.init.normal_(self.y_embedder.weight, std=0.02)
        if self.g_embedder is not None:
            nn.init.normal_(self.g_embedder[0].weight, std=0.02)
            nn.init.normal_(self.g_embedder[2].weight, std=0.02)
        for m in [*(b.adaLN_modulation[-1] for b in self.blocks),
                  self.final_layer.adaLN_modulation[-1], self.final_layer.linear]:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        self.out_scale.fill_(1.0)

    def _check(self, x: Tensor, labels: Tensor, guidance) -> Tensor | None:
        cfg = self.config
        want = (cfg.in_channels, cfg.input_size, cfg.input_size)
        if not isinstance(x, Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != want:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (N, {', '.join(map(str, want))}), got {got}")
        n = x.shape[0]
        if not isinstance(labels, Tensor) or labels.shape != (n,):
            got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"labels must have shape ({n},) to match x, got {got}")
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
        if n and not (0 <= int(labels.min()) and int(labels.max()) <= cfg.num_classes):
            raise ValueError(f"labels must lie in [0, {cfg.num_classes}] ({cfg.num_classes} = null class), "
                             f"got values in [{int(labels.min())}, {int(labels.max())}]")
        if self.g_embedder is None:
            if guidance is not None:
                raise ValueError("guidance given, but the model was built with guidance_embed=False")
            return None
        if guidance is None:
            guidance = 1.0
        if isinstance(guidance, numbers.Real) and not isinstance(guidance, bool):
            return torch.full((n,), float(guidance), device=x.device)
        if not isinstance(guidance, Tensor) or guidance.shape != (n,):
            got = tuple(guidance.shape) if isinstance(guidance, Tensor) else type(guidance).__name__
            raise ValueError(f"guidance must be a number or have shape ({n},) to match x, got {got}")
        return guidance

    def forward(self, x: Tensor, labels: Tensor, guidance: Tensor | float | None = None) -> Tensor:
        guidance = self._check(x, labels, guidance)
        cfg, p, g = self.config, self.config.patch_size, self.config.grid
        tokens = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos_embed  # (N, T, D)
        c = self.y_embedder(labels)
        if self.g_embedder is not None:
            c = c + self.g_embedder(sinusoidal_embedding(guidance, FREQ_DIM).to(c.dtype))
        recompute = cfg.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:
                tokens = torch.utils.checkpoint.checkpoint(block, tokens, c, use_reentrant=False)
            else:
                tokens = block(tokens, c)
        out = self.final_layer(tokens, c)  # (N, T, p·p·C)
        out = out.view(-1, g, g, p, p, cfg.in_channels).permute(0, 5, 1, 3, 2, 4)
        return x * self.out_scale + out.reshape(x.shape)


def parameter_count(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as the fixed positional embedding excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


DIT_SIZES = {"S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1152, 28, 16), "tiny": (64, 2, 2)}
_NAMED = ("hidden", "depth", "heads", "patch_size")  # fixed by the model name
_OVERRIDES = tuple(f.name for f in fields(DiTConfig) if f.name not in _NAMED)


def _config(size: str, patch: int, **overrides) -> DiTConfig:
    check_setting_names(overrides, _OVERRIDES)
    hidden, depth, heads = DIT_SIZES[size]
    return DiTConfig(hidden=hidden, depth=depth, heads=heads, patch_size=patch, **overrides)


def _factory(size: str, patch: int, **overrides) -> DiT:
    return DiT(_config(size, patch, **overrides))


DIT_MODELS = {
    f"DiT-{size}/{patch}": functools.partial(_factory, size, patch)
    for size, patches in [("S", (2, 4, 8)), ("B", (2, 4, 8)), ("L", (2, 4, 8)), ("XL", (2, 4, 8)), ("tiny", (2, 4))]
    for patch in patches
}


def _split(name: str) -> tuple[str, int]:
    check_choice(name, DIT_MODELS, "name")
    size, patch = name[len("DiT-"):].split("/")
    return size, int(patch)


def dit_config(name: str, **overrides) -> DiTConfig:
    """The DiTConfig of a named model ("DiT-XL/2", ...) with overrides (input_size, in_channels,
    num_classes, mlp_ratio, norm, qk_norm, mlp, guidance_embed)."""
    return _config(*_split(name), **overrides)


def dit(name: str, **overrides) -> DiT:
    """Build a named DiT ("DiT-S/2", ..., "DiT-tiny/4"); see :func:`dit_config` for overrides."""
    return DiT(dit_config(name, **overrides))
