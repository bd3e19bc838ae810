"""The data-mode drift the trainer drives: generator inputs (noise or source points, labels,
guidance scales), a data batch and a second generated batch in, the velocity out (MATH.md §1, §3)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..generators import sinusoidal_embedding
from ..velocities.common import rms_normalize
from ..velocities.critics import ESTIMATORS
from ..velocities.guidance import distribution_guidance, guided_field, velocity_guidance
from ..velocities.kde_ratio import kde_ratio_velocity
from ..velocities.kernels import drifting_velocity, mmd_velocity
from ..velocities.sinkhorn import sinkhorn_velocity

Tensor = torch.Tensor

__all__ = ["DataDrift", "VELOCITIES", "CRITIC_VELOCITIES", "sample_power_law"]

VELOCITIES = ("sinkhorn", "drifting", "mmd", "kde_kl")
#: critic velocities ∇h of a trained critic network (freeflow.velocities.critics), unconditional only
CRITIC_VELOCITIES = tuple(f"critic:{name}" for name in ESTIMATORS)
GUIDANCE_EMBED_DIM = 16


def sample_power_law(n: int, k: float, lo: float, hi: float, rng: torch.Generator) -> Tensor:
    """n draws of α with density ∝ α^(−k) on [lo, hi] by inverse CDF (k = 1: log-uniform)."""
    u = torch.rand(n, generator=rng)
    if hi == lo:
        return torch.full((n,), float(lo))
    if abs(k - 1.0) < 1e-12:
        return lo * (hi / lo) ** u
    a, b = lo ** (1 - k), hi ** (1 - k)
    return (a + u * (b - a)) ** (1.0 / (1 - k))


# -- input checks ----------------------------------------------------------------------------
@dataclass
class DataDrift:
    """The data-mode drift (trainer protocol: ``drift(generator, step, rng, total_steps=)``).

    Attributes:
        velocity: "sinkhorn" | "drifting" | "mmd" | "kde_kl" | one of :data:`CRITIC_VELOCITIES`.
        params: the velocity's parameters (rel_eps, num_iters, temperature, rel_bandwidth).
        batch_size: generated samples per step (per class when conditional).
        data_batch_size: data samples per step (per class).
        noise_dim: dimension of the noise input (unused with a source).
        num_classes: None (unconditional) or the number of classes.
        classes_per_step, guidance, alpha_max, alpha_power, uncond_size: conditional settings.
        source_mean, source_std: standardisation of the source (domain transfer); the data and
            source tensors themselves are attached with :meth:`attach`.
    """

    velocity: str
    params: dict
    batch_size: int
    data_batch_size: int
    noise_dim: int
    num_classes: int | None = None
    classes_per_step: int = 8
    guidance: str = "velocity"
    alpha_max: float = 4.0
    alpha_power: float = 3.0
    uncond_size: int = 256
    self_term: str = "independent"
    reaction: object = None              # a SinkhornReaction for a component generator
    critic: object = None                # a velocities.critics.Critic for the "critic:..." velocities
    source_mean: Tensor | None = None
    source_std: Tensor | None = None
    data: Tensor | None = field(default=None, repr=False)
    labels: Tensor | None = field(default=None, repr=False)
    source: Tensor | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.velocity not in VELOCITIES + CRITIC_VELOCITIES:
            raise ValueError(f"velocity must be one of {VELOCITIES + CRITIC_VELOCITIES}, got {self.velocity!r}")
        if self.velocity in CRITIC_VELOCITIES and self.num_classes is not None:
            raise ValueError(f"velocity={self.velocity!r} is unconditional only: num_classes must be None")
        if self.guidance not in ("velocity", "distribution"):
            raise ValueError(f"guidance must be 'velocity' or 'distribution', got {self.guidance!r}")
        if self.guidance == "distribution" and self.velocity != "sinkhorn":
            raise ValueError("guidance='distribution' needs velocity='sinkhorn' (weighted column marginals)")
        if self.self_term not in ("independent", "same"):
            raise ValueError(f"self_term must be 'independent' or 'same', got {self.self_term!r}")
        self._class_index: list[Tensor] = []

    def attach(self, data: Tensor, labels: Tensor | None) -> None:
        self.data, self.labels = data, labels
        if labels is not None:
            self._class_index = [(labels == c).nonzero().flatten() for c in range(self.num_classes)]

    # -- generator inputs ----------------------------------------------------------------------
    def generator_input(self, n: int, rng: torch.Generator) -> Tensor:
        """Noise (n, noise_dim), or n standardised source rows drawn with replacement."""
        if self.source is not None:
            idx = torch.randint(0, self.source.shape[0], (n,), generator=rng)
            return (self.source[idx] - self.source_mean) / self.source_std
        return torch.randn(n, self.noise_dim, generator=rng)

    def condition(self, labels: Tensor, alpha: Tensor) -> Tensor:
        """[one-hot(label), sinusoidal(α)] of shape (n, num_classes + GUIDANCE_EMBED_DIM)."""
        onehot = nn.functional.one_hot(labels, self.num_classes).float()
        # embed log α scaled to [0, ~100] so the sinusoid frequencies resolve the range
        emb = sinusoidal_embedding(100.0 * torch.log(alpha) / math.log(max(self.alpha_max, 1.0 + 1e-6)),
                                   GUIDANCE_EMBED_DIM)
        return torch.cat([onehot, emb], dim=-1).to(torch.get_default_dtype())  # (the flow's dtype)

    def _rows(self, pool: Tensor, n: int, rng: torch.Generator) -> Tensor:
        return pool[torch.randint(0, pool.shape[0], (n,), generator=rng)]

    # -- the drift -----------------------------------------------------------------------------
    def __call__(self, generator: nn.Module, step: int, rng: torch.Generator, *, total_steps: int = 0,
                 update: bool = True):
        # update=False (the JKO step's inner evaluations, freeflow.train.jko): no Fisher-Rao
        # step on the component weights, which must stay fixed while the proximal anchor is used
        if self.data is None:
            raise RuntimeError("no data attached: call DataFlow.fit(data)")
        n, m = self.batch_size, self.data_batch_size
        if self.num_classes is None:
            z = self.generator_input(n, rng)
            if self.reaction is not None:
                x, k = generator.forward_with_index(z)  # (n, d) with graph, component indices
            else:
                x = generator(z)  # (n, d), with graph
            with torch.no_grad():
                x_prime = generator(self.generator_input(n, rng))  # independent second batch
                if self.self_term == "same":
                    x_prime = x.detach()
                data = self._rows(self.data, m, rng)
                v = (self._field(x.detach(), data, x_prime) if self.critic is None
                     else self._critic_field(x.detach(), data, x_prime, step))
                info = {"v_raw_rms": float(v.pow(2).mean().sqrt())}
                if self.critic is not None:
                    info["critic_objective"] = self.critic.last_objective
                v = rms_normalize(v)
                if update and self.reaction is not None:
                    info.update(self.reaction(generator, x.detach(), k, data, x_prime, step=step))
            return x, v, info
        # conditional: C classes, each with n generated, n second-batch, m data points
        c = min(self.classes_per_step, self.num_classes)
        present = torch.tensor([i for i, idx in enumerate(self._class_index) if len(idx) > 0])
        classes = present[torch.randperm(len(present), generator=rng)[:c]]  # (C,)
        c = len(classes)
        alpha = sample_power_law(c, self.alpha_power, 1.0, self.alpha_max, rng)  # (C,)
        lab = classes.repeat_interleave(n)  # (C·n,)
        cond = self.condition(lab, alpha.repeat_interleave(n))
        x = generator(self.generator_input(c * n, rng), cond)  # (C·n, d)
        with torch.no_grad():
            x_prime = generator(self.generator_input(c * n, rng), cond).view(c, n, -1)
            pos = torch.stack([self.data[self._rows(self._class_index[int(k)], m, rng)] for k in classes])
            unc = self._rows(self.data, self.uncond_size, rng)  # (M_unc, d)
            v = self._guided(x.detach().view(c, n, -1), pos, unc, x_prime, alpha)
            info = {"v_raw_rms": float(v.pow(2).mean().sqrt()), "alpha_mean": float(alpha.mean())}
            v = rms_normalize(v).reshape(c * n, -1)
        return x, v, info

    def _field(self, x: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        p = self.params
        if self.velocity in CRITIC_VELOCITIES:
            raise RuntimeError(f"velocity={self.velocity!r} needs a Critic attached as drift.critic")
        if self.velocity == "sinkhorn":
            return sinkhorn_velocity(x, pos, neg, rel_eps=p["rel_eps"], num_iters=p["num_iters"])
        if self.velocity == "drifting":
            return drifting_velocity(x, pos, neg, temperature=p["temperature"])
        if self.velocity == "mmd":
            return mmd_velocity(x, pos, neg, rel_bandwidth=p["rel_bandwidth"] or (0.1, 1.0))
        return kde_ratio_velocity(x, pos, neg, rel_bandwidth=p["rel_bandwidth"] or 1.0)

    def _critic_field(self, x: Tensor, pos: Tensor, neg: Tensor, step: int) -> Tensor:
        # the critic ascends its bound on (second batch, data), then V = ∇h at x: the points
        # it is evaluated at are not the ones it was just trained on
        self.critic.update(neg, pos, step=step)
        return self.critic.velocity(x, normalize=False, step=step)

    # -- state carried across steps (the critic's network, optimiser and random stream) --------
    def state_dict(self) -> dict:
        return {} if self.critic is None else {"critic": self.critic.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        if self.critic is not None:
            if "critic" not in sd:
                raise ValueError("checkpoint has no critic state for a critic velocity")
            self.critic.load_state_dict(sd["critic"])

    def _guided(self, x: Tensor, pos: Tensor, unc: Tensor, x_prime: Tensor, alpha: Tensor) -> Tensor:
        p = self.params
        if self.velocity == "sinkhorn" and self.guidance == "distribution":
            return distribution_guidance(x, pos, unc, x_prime, alpha=alpha, rel_eps=p["rel_eps"],
                                         num_iters=p["num_iters"])
        if self.velocity == "sinkhorn":
            return velocity_guidance(x, pos, unc, x_prime, scale=alpha, rel_eps=p["rel_eps"],
                                     num_iters=p["num_iters"])
        return guided_field(self._field, x, pos, unc, x_prime, alpha)
