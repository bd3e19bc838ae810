"""The image drift (MATH.md §3): class-conditional Sinkhorn flow in a feature space.

Per step the drift draws ``classes_per_step`` classes (a fraction ``null_fraction`` of the
slots become the null class, trained towards unconditional reals), a guidance scale α per
class from p(α) ∝ α^(−k) on [1, α_max] (α = 1 for null slots), ``gen_per_class`` noise images
per class, a second independent generated batch (no gradient) and ``real_per_class`` reals per
class from the memory bank, plus ``uncond_reals`` unconditional reals.  Every group of the
feature map φ is a set of points per (class, location); the velocity is the shared
:func:`~freeflow.velocities.guidance.velocity_guidance` (or distribution guidance, or the
drifting-kernel field with :func:`~freeflow.velocities.guidance.guided_field`), batched over
classes × locations, normalised per class, and weighted so that every group carries the same
share of the loss.  It returns ``(φ(G(z)) flattened with its graph, V)``: the one trainer
regresses the features onto ``sg(φ + ηV)``, which pulls the velocity back to the generator.

Distributed: every rank draws the same *global* step (same generator state) and keeps its own
slice of the classes, so W processes compute exactly the step one process would with the same
global batch (the per-class normalisation makes each class's velocity independent of the
others); DistributedDataParallel averages the gradients.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.drift import sample_power_law
from ..train.trainer import unwrap
from ..velocities.guidance import distribution_guidance, guided_field, velocity_guidance
from ..velocities.common import rms_normalize
from ..velocities.kernels import drifting_velocity

Tensor = torch.Tensor

__all__ = ["ImageDrift", "IMAGE_VELOCITIES"]

IMAGE_VELOCITIES = ("sinkhorn", "drifting")


@dataclass
class ImageDrift:
    """Trainer protocol: ``drift(generator, step, rng, total_steps=) -> (features, v, info)``.

    ``bank`` answers ``sample(classes, n, generator) -> (C, n, *shape)`` and
    ``sample_unconditional(n, generator) -> (n, *shape)`` (a
    :class:`~freeflow.images.data.ClassMemoryBank`).  ``rank``/``world`` select this process's
    slice of the classes (``classes_per_step`` must be divisible by ``world``)."""

    features: nn.Module
    bank: object
    num_classes: int
    image_shape: tuple[int, int, int]
    classes_per_step: int = 10
    gen_per_class: int = 32
    real_per_class: int = 32
    uncond_reals: int = 32
    velocity: str = "sinkhorn"
    rel_eps: tuple[float, ...] = (0.05,)
    num_iters: int = 5
    temperature: tuple[float, ...] = (0.02, 0.05, 0.2)
    guidance: str = "velocity"
    alpha_max: float = 2.0
    alpha_power: float = 3.0
    null_fraction: float = 0.1
    autocast: str | None = None          # "bf16": generator forward under bfloat16 autocast
    rank: int = 0
    world: int = 1
    device: str = "cpu"
    _groups: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        if self.velocity not in IMAGE_VELOCITIES:
            raise ValueError(f"velocity must be one of {IMAGE_VELOCITIES}, got {self.velocity!r}")
        if self.guidance not in ("velocity", "distribution"):
            raise ValueError(f"guidance must be 'velocity' or 'distribution', got {self.guidance!r}")
        if self.guidance == "distribution" and self.velocity != "sinkhorn":
            raise ValueError("guidance='distribution' needs velocity='sinkhorn'")
        if self.classes_per_step % self.world:
            raise ValueError(f"classes_per_step={self.classes_per_step} must be divisible by the "
                             f"number of processes ({self.world})")
        if not 0 <= self.null_fraction < 1:
            raise ValueError(f"null_fraction must lie in [0, 1), got {self.null_fraction}")
        if self.autocast not in (None, "bf16"):
            raise ValueError(f"autocast must be None or 'bf16', got {self.autocast!r}")

    # -- inputs --------------------------------------------------------------------------------
    def draw(self, rng: torch.Generator) -> dict[str, Tensor]:
        """The global step's random inputs (identical on every rank)."""
        c, n = self.classes_per_step, self.gen_per_class
        classes = torch.randperm(self.num_classes, generator=rng)[:c] if c <= self.num_classes else \
            torch.randint(0, self.num_classes, (c,), generator=rng)
        null = torch.rand(c, generator=rng) < self.null_fraction
        alpha = sample_power_law(c, self.alpha_power, 1.0, self.alpha_max, rng)
        alpha = torch.where(null, torch.ones_like(alpha), alpha)
        noise = torch.randn(c, n, *self.image_shape, generator=rng)
        noise2 = torch.randn(c, n, *self.image_shape, generator=rng)
        pos = self.bank.sample(classes, self.real_per_class, rng)                 # (C, m, *shape)
        unc = self.bank.sample_unconditional(self.uncond_reals, rng)              # (u, *shape)
        null_pos = self.bank.sample_unconditional(c * self.real_per_class, rng).view(pos.shape)
        pos = torch.where(null.view(-1, *([1] * (pos.ndim - 1))), null_pos, pos)
        labels = torch.where(null, torch.full_like(classes, self.num_classes), classes)
        return {"labels": labels, "alpha": alpha, "noise": noise, "noise2": noise2, "pos": pos, "unc": unc}

    def _slice(self, t: Tensor) -> Tensor:
        k = self.classes_per_step // self.world
        return t[self.rank * k:(self.rank + 1) * k]

    def _generate(self, generator: nn.Module, noise: Tensor, labels: Tensor, alpha: Tensor) -> Tensor:
        c, n = noise.shape[:2]
        lab = labels.repeat_interleave(n).to(self.device)
        al = alpha.repeat_interleave(n).to(self.device)
        ctx = torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16) \
            if self.autocast == "bf16" else contextlib.nullcontext()
        uses_alpha = getattr(getattr(unwrap(generator), "config", None), "guidance_embed", True)
        with ctx:
            x = generator(noise.reshape(c * n, *self.image_shape).to(self.device), lab, al if uses_alpha else None)
        return x.float()                                     # the drift runs in float32

    # -- the drift -----------------------------------------------------------------------------
    def __call__(self, generator: nn.Module, step: int, rng: torch.Generator, *, total_steps: int = 0,
                 update: bool = True):
        """``update`` is the JKO inner-step flag of the trainer; this drift has no side effects."""
        d = {k: self._slice(v) if k != "unc" else v for k, v in self.draw(rng).items()}
        c, n = d["noise"].shape[:2]
        x = self._generate(generator, d["noise"], d["labels"], d["alpha"])       # (c·n, C, H, W)
        with torch.no_grad():
            x2 = self._generate(generator, d["noise2"], d["labels"], d["alpha"])
            f_pos = self.features(d["pos"].reshape(-1, *self.image_shape).to(self.device))
            f_unc = self.features(d["unc"].to(self.device))
            f_x2 = self.features(x2)
        f_x = self.features(x)
        alpha = d["alpha"].to(self.device)
        total = sum(t[0].numel() for t in f_x.values())
        feats, vels, info = [], [], {}
        with torch.no_grad():
            for name, fx in f_x.items():
                L, D = fx.shape[1:]
                def sets(t, k):  # (k·c, L, D) -> (c, L, k, D)
                    return t.reshape(c, k, L, D).transpose(1, 2)
                v = self._velocity(sets(fx.detach(), n), sets(f_pos[name], self.real_per_class),
                                   f_unc[name].transpose(0, 1), sets(f_x2[name], n), alpha)
                v = v.transpose(1, 2).reshape(c * n, L * D)
                # equal loss share per group; overall RMS 1 over the concatenated features
                v = v * math.sqrt(total / (len(f_x) * L * D))
                info[f"v_{name}_rms"] = float(v.pow(2).mean().sqrt())
                vels.append(v)
        for fx in f_x.values():
            feats.append(fx.reshape(c * n, -1))
        info["alpha_mean"] = float(d["alpha"].mean())
        return torch.cat(feats, 1), torch.cat(vels, 1), info

    def _velocity(self, x: Tensor, pos: Tensor, unc: Tensor, x2: Tensor, alpha: Tensor) -> Tensor:
        """x, x2 (c, L, n, D); pos (c, L, m, D); unc (L, u, D); alpha (c,) -> V (c, L, n, D)."""
        a = alpha.view(-1, 1).expand(x.shape[:2])
        unc = unc.unsqueeze(0).expand(x.shape[0], *unc.shape)
        if self.velocity == "sinkhorn" and self.guidance == "distribution":
            return distribution_guidance(x, pos, unc, x2, alpha=a, rel_eps=self.rel_eps,
                                         num_iters=self.num_iters, batch_dims=1)
        if self.velocity == "sinkhorn":
            return velocity_guidance(x, pos, unc, x2, scale=a, rel_eps=self.rel_eps,
                                     num_iters=self.num_iters, batch_dims=1)

        def field(xx, p, q):
            return drifting_velocity(xx, p, q, temperature=self.temperature, batch_dims=1)

        # normalised after guidance, as the Sinkhorn form is: both velocities take steps of one size
        return rms_normalize(guided_field(field, x, pos, unc, x2, a), batch_dims=1)
