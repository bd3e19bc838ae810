"""DataFlow: a one-step generator fitted to a point cloud by a sample-based gradient flow.

    flow = DataFlow(dim=2, velocity="sinkhorn", seed=0)        # or "drifting", "mmd", "kde_kl"
    flow.fit(data, steps=2000)                                 # data: (n, d) tensor or array
    x = flow.sample(10_000)                                    # one forward pass
    cond = DataFlow(dim=2, num_classes=8)
    cond.fit(data, labels=y, steps=2000)
    x = cond.sample(1000, labels=3, guidance=1.5)              # one forward pass at any scale
    transfer = DataFlow(dim=2, source=source_points)           # input = a source sample
    transfer.fit(target_points); y = transfer.transform(new_source_points)

Only the drift is specific to this mode (MATH.md §1, §3): :class:`DataDrift` draws the
generator's inputs (noise or source points, class labels, guidance scales), a data batch and
an independent second generator batch, and returns the velocity; the lead's single
:class:`~freeflow.train.Trainer` does the regression step.

Conditional generation: per-class drifts (a batch of ``classes_per_step`` classes, each with
its own generated batch, second batch and data batch, computed as one batched call); the
guidance scale α is a generator input (sinusoidal embedding) drawn per class from
``p(α) ∝ α^(−k)`` on ``[1, alpha_max]``; the velocity at α is the guided one (velocity or
distribution guidance, :mod:`freeflow.velocities.guidance`).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from .generators import ResidualMLP, sinusoidal_embedding
from .io import atomic_torch_save, load_checkpoint
from .train import History, TrainConfig, Trainer, standard_callbacks
from .validation import check_positive_float, check_positive_int
from .velocities.common import rms_normalize
from .velocities.guidance import distribution_guidance, velocity_guidance
from .velocities.kde_ratio import kde_ratio_velocity
from .velocities.kernels import drifting_velocity, mmd_velocity
from .velocities.sinkhorn import sinkhorn_velocity

Tensor = torch.Tensor

__all__ = ["DataFlow", "DataDrift", "data_default_settings", "VELOCITIES", "sample_power_law"]

FORMAT = "freeflow.DataFlow/1"
VELOCITIES = ("sinkhorn", "drifting", "mmd", "kde_kl")
GUIDANCE_EMBED_DIM = 16


def data_default_settings(dim: int) -> dict[str, Any]:
    """Defaults for every DataFlow setting (override by keyword)."""
    return {
        "batch_size": 512,          # generated samples per step (per class when conditional)
        "data_batch_size": None,    # data samples per step (per class); None = batch_size
        "noise_dim": max(dim, 4),
        "hidden": 256,
        "depth": 3,
        "lr": 1e-3,
        "lr_schedule": "cosine",
        "warmup_steps": 0,
        "step_size": 1.0,
        "grad_clip": 1.0,
        "ema_decay": 0.995,
        # velocity parameters (each velocity reads its own)
        "rel_eps": (0.01, 0.05),    # sinkhorn: ε relative to mean ‖x − y‖²
        "num_iters": 5,             # sinkhorn: fixed iterations from zero potentials
        "temperature": (0.02, 0.05, 0.2),  # drifting: τ relative to the mean distance
        "rel_bandwidth": None,      # mmd: h²/median‖x−y‖² (default (0.1, 1.0)); kde_kl: × Scott (default 1.0)
        # conditional generation
        "classes_per_step": 8,
        "guidance": "velocity",     # or "distribution" (sinkhorn only)
        "alpha_max": 4.0,
        "alpha_power": 3.0,         # p(α) ∝ α^(−k)
        "uncond_size": None,        # unconditional reals per step; None = data_batch_size
        "self_term": "independent", # "same": biased same-batch self term (for ablations only)
    }


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
def _as_points(x, name: str, dim: int | None = None) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.array(x, dtype=np.float32, copy=True))
    elif isinstance(x, torch.Tensor):
        x = x.detach().to(torch.float32).cpu()
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (n, d), got {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has dimension {x.shape[1]}, expected dim={dim}")
    bad = ~torch.isfinite(x).all(dim=1)
    if bad.any():
        rows = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(f"{name} has {int(bad.sum())} row(s) with NaN or inf (first: {rows})")
    return x


def _as_labels(labels, n: int, num_classes: int) -> Tensor:
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(np.array(labels, copy=True))
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor or numpy array, got {type(labels).__name__}")
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) to match data, got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point:
        if not torch.isfinite(labels).all() or (labels != labels.round()).any():
            raise ValueError("labels must be integers")
    labels = labels.long()
    if (labels < 0).any() or (labels >= num_classes).any():
        raise ValueError(
            f"labels must lie in [0, {num_classes - 1}] (num_classes={num_classes}), "
            f"got values in [{int(labels.min())}, {int(labels.max())}]"
        )
    return labels


@dataclass
class DataDrift:
    """The data-mode drift (trainer protocol: ``drift(generator, step, rng, total_steps=)``).

    Attributes:
        velocity: "sinkhorn" | "drifting" | "mmd" | "kde_kl".
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
    source_mean: Tensor | None = None
    source_std: Tensor | None = None
    data: Tensor | None = field(default=None, repr=False)
    labels: Tensor | None = field(default=None, repr=False)
    source: Tensor | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.velocity not in VELOCITIES:
            raise ValueError(f"velocity must be one of {VELOCITIES}, got {self.velocity!r}")
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
        return torch.cat([onehot, emb], dim=-1)

    def _rows(self, pool: Tensor, n: int, rng: torch.Generator) -> Tensor:
        return pool[torch.randint(0, pool.shape[0], (n,), generator=rng)]

    # -- the drift -----------------------------------------------------------------------------
    def __call__(self, generator: nn.Module, step: int, rng: torch.Generator, *, total_steps: int = 0):
        if self.data is None:
            raise RuntimeError("no data attached: call DataFlow.fit(data)")
        n, m = self.batch_size, self.data_batch_size
        if self.num_classes is None:
            x = generator(self.generator_input(n, rng))  # (n, d), with graph
            with torch.no_grad():
                x_prime = generator(self.generator_input(n, rng))  # independent second batch
                if self.self_term == "same":
                    x_prime = x.detach()
                data = self._rows(self.data, m, rng)
                v = self._field(x.detach(), data, x_prime)
                info = {"v_raw_rms": float(v.pow(2).mean().sqrt())}
                v = rms_normalize(v)
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
        if self.velocity == "sinkhorn":
            return sinkhorn_velocity(x, pos, neg, rel_eps=p["rel_eps"], num_iters=p["num_iters"])
        if self.velocity == "drifting":
            return drifting_velocity(x, pos, neg, temperature=p["temperature"])
        if self.velocity == "mmd":
            return mmd_velocity(x, pos, neg, rel_bandwidth=p["rel_bandwidth"] or (0.1, 1.0))
        return kde_ratio_velocity(x, pos, neg, rel_bandwidth=p["rel_bandwidth"] or 1.0)

    def _guided(self, x: Tensor, pos: Tensor, unc: Tensor, x_prime: Tensor, alpha: Tensor) -> Tensor:
        p = self.params
        if self.velocity == "sinkhorn" and self.guidance == "distribution":
            return distribution_guidance(x, pos, unc, x_prime, alpha=alpha, rel_eps=p["rel_eps"],
                                         num_iters=p["num_iters"])
        if self.velocity == "sinkhorn":
            return velocity_guidance(x, pos, unc, x_prime, scale=alpha, rel_eps=p["rel_eps"],
                                     num_iters=p["num_iters"])
        # other fields: V_w = (1 + w) V(p_c) − w V(p_∅), each field computed (and normalised) alone
        w = (alpha - 1).view(-1, 1, 1)
        unc_b = unc.expand(x.shape[0], *unc.shape)
        return (1 + w) * self._field(x, pos, x_prime) - w * self._field(x, unc_b, x_prime)


class DataFlow:
    """A generator trained to reproduce a data set (optionally per class, or from a source set).

    Args:
        dim: dimension of the data.
        velocity: "sinkhorn" (W-Flow, default), "drifting", "mmd" or "kde_kl".
        seed: seeds initialisation, training randomness and default sampling noise.
        num_classes: number of classes for conditional generation (labels passed to ``fit``).
        source: (n_src, dim_src) source points; the generator's input is then a source point
            (domain transfer) instead of noise.  Needs dim_src >= dim.
        **settings: override any key of :func:`data_default_settings`.
    """

    def __init__(self, dim: int, velocity: str = "sinkhorn", *, seed: int = 0,
                 num_classes: int | None = None, source=None, **settings):
        check_positive_int(dim, "dim")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        if velocity not in VELOCITIES:
            raise ValueError(f"velocity must be one of {VELOCITIES}, got {velocity!r}")
        if num_classes is not None:
            check_positive_int(num_classes, "num_classes")
        unknown = set(settings) - set(data_default_settings(dim))
        if unknown:
            raise TypeError(f"unknown setting(s) {sorted(unknown)}; valid: {sorted(data_default_settings(dim))}")
        s = {**data_default_settings(dim), **settings}
        for key in ("batch_size", "noise_dim", "hidden", "num_iters", "classes_per_step"):
            check_positive_int(s[key], key)
        for key in ("lr", "step_size", "alpha_max"):
            check_positive_float(s[key], key)
        if s["alpha_max"] < 1:
            raise ValueError(f"alpha_max must be >= 1, got {s['alpha_max']}")
        if s["data_batch_size"] is None:
            s["data_batch_size"] = s["batch_size"]
        check_positive_int(s["data_batch_size"], "data_batch_size")
        if s["uncond_size"] is None:
            s["uncond_size"] = s["data_batch_size"]
        check_positive_int(s["uncond_size"], "uncond_size")
        for key in ("rel_eps", "temperature", "rel_bandwidth"):
            if isinstance(s[key], list):
                s[key] = tuple(s[key])
        self.dim, self.velocity, self.seed, self.num_classes = dim, velocity, seed, num_classes
        self.settings = s
        src_mean = src_std = None
        if source is not None:
            source = _as_points(source, "source")
            if source.shape[0] < 2:
                raise ValueError("source must hold at least 2 points")
            if source.shape[1] < dim:
                raise ValueError(f"source has dimension {source.shape[1]} < dim={dim}; the generator "
                                 "input must be at least as large as its output")
            src_mean, src_std = source.mean(0), source.std(0).clamp_min(1e-8)
        self.noise_dim = source.shape[1] if source is not None else s["noise_dim"]
        self.drift = DataDrift(
            velocity=velocity,
            params={k: s[k] for k in ("rel_eps", "num_iters", "temperature", "rel_bandwidth")},
            batch_size=s["batch_size"], data_batch_size=s["data_batch_size"], noise_dim=self.noise_dim,
            num_classes=num_classes, classes_per_step=s["classes_per_step"], guidance=s["guidance"],
            alpha_max=float(s["alpha_max"]), alpha_power=float(s["alpha_power"]),
            uncond_size=s["uncond_size"], self_term=s["self_term"], source_mean=src_mean, source_std=src_std,
        )
        self.drift.source = source
        self.cond_dim = 0 if num_classes is None else num_classes + GUIDANCE_EMBED_DIM
        self._build(init_loc=0.0, init_scale=1.0)
        self._sample_rng = torch.Generator().manual_seed(seed + 1)
        self._fitted_stats = False

    def _build(self, init_loc, init_scale) -> None:
        s = self.settings
        torch.manual_seed(self.seed)
        self.generator = ResidualMLP(self.noise_dim, self.dim, hidden=s["hidden"], depth=s["depth"],
                                     cond_dim=self.cond_dim, init_scale=init_scale, init_loc=init_loc)
        cfg = TrainConfig(lr=s["lr"], lr_schedule=s["lr_schedule"], warmup_steps=s["warmup_steps"],
                          step_size=s["step_size"], grad_clip=s["grad_clip"], ema_decay=s["ema_decay"])
        self.trainer = Trainer(self.generator, self.drift, cfg, seed=self.seed)
        self.state = self.trainer.init()
        self.history = History()

    # -- training ------------------------------------------------------------------------------
    def fit(self, data, labels=None, *, steps: int = 2000, progress: bool = False,
            log: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
            checkpoint_every: int = 500, callbacks: Iterable = ()) -> History:
        """Train until ``steps`` steps are done in total (continues a loaded or earlier run).

        The first call starts the generator at the data's per-coordinate mean and standard
        deviation (a Gaussian at the data's scale).  Returns this call's per-step diagnostics.
        """
        check_positive_int(steps, "steps")
        data = _as_points(data, "data", self.dim)
        s = self.settings
        if self.num_classes is None:
            if labels is not None:
                raise ValueError("labels were given but num_classes is None; pass num_classes=")
            if data.shape[0] < s["data_batch_size"]:
                raise ValueError(f"data has {data.shape[0]} rows, fewer than data_batch_size="
                                 f"{s['data_batch_size']}; pass a smaller data_batch_size")
        else:
            if labels is None:
                raise ValueError(f"labels are required with num_classes={self.num_classes}")
            labels = _as_labels(labels, data.shape[0], self.num_classes)
            counts = torch.bincount(labels, minlength=self.num_classes)
            small = [(c, int(k)) for c, k in enumerate(counts.tolist()) if 0 < k < 2]
            if small:
                raise ValueError(f"data: class(es) {small[:5]} have fewer than 2 samples")
            if data.shape[0] < s["uncond_size"]:
                raise ValueError(f"data has {data.shape[0]} rows, fewer than uncond_size={s['uncond_size']}")
        if not self._fitted_stats and self.state.step == 0:
            mean, std = data.mean(0), data.std(0).clamp_min(1e-6)
            self._build(init_loc=mean, init_scale=std)
            self._fitted_stats = True
        self.drift.attach(data, labels)
        cbs = standard_callbacks(progress=progress, log=log, checkpoint=checkpoint, save=self.save,
                                 checkpoint_every=checkpoint_every, extra=callbacks,
                                 progress_keys=("loss", "v_raw_rms"))
        hist = self.trainer.fit(self.state, steps, callbacks=cbs)
        self.history.extend(hist)
        return hist

    @property
    def steps_done(self) -> int:
        return self.state.step

    @property
    def training_seconds(self) -> float:
        return self.state.elapsed

    # -- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, labels=None, guidance: float = 1.0, *, seed: int | None = None,
               ema: bool = True) -> Tensor:
        """n samples (n, dim) in one forward pass.

        Conditional models need ``labels`` (an int or n ints); ``guidance`` is the scale α
        (1 = no guidance, up to ``alpha_max``).  With a source, n source rows are drawn at random
        (use :meth:`transform` for given source points).
        """
        check_positive_int(n, "n")
        rng = torch.Generator().manual_seed(seed) if seed is not None else self._sample_rng
        net = self.state.ema.module if ema else self.generator
        z = self.drift.generator_input(n, rng)
        return net(z, self._cond(n, labels, guidance))

    @torch.no_grad()
    def transform(self, source, *, ema: bool = True) -> Tensor:
        """Map given source points through the generator (domain transfer)."""
        if self.drift.source is None:
            raise ValueError("transform needs a model built with source=")
        src = _as_points(source, "source", self.drift.source.shape[1])
        net = self.state.ema.module if ema else self.generator
        return net((src - self.drift.source_mean) / self.drift.source_std)

    def _cond(self, n: int, labels, guidance) -> Tensor | None:
        if self.num_classes is None:
            if labels is not None:
                raise ValueError("labels given to an unconditional model")
            if guidance != 1.0:
                raise ValueError("guidance needs a conditional model (num_classes)")
            return None
        if labels is None:
            raise ValueError("labels are required for a conditional model")
        lab = torch.as_tensor(labels)
        if lab.dim() == 0:
            lab = lab.expand(n)
        lab = _as_labels(lab, n, self.num_classes)
        g = float(guidance)
        if not (1.0 <= g <= self.settings["alpha_max"]):
            raise ValueError(f"guidance must lie in [1, alpha_max={self.settings['alpha_max']}], got {guidance}")
        return self.drift.condition(lab, torch.full((n,), g))

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        src = self.drift.source
        return {
            "format": FORMAT,
            "dim": self.dim,
            "velocity": self.velocity,
            "seed": self.seed,
            "num_classes": self.num_classes,
            "settings": json.loads(json.dumps(self.settings)),
            "source": None if src is None else src.clone(),
            "trainer": self.trainer.state_dict(self.state),
            "history": list(self.history),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint atomically (the training data are not stored; pass them to fit)."""
        return atomic_torch_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DataFlow":
        ck = load_checkpoint(path)
        if not isinstance(ck, dict) or ck.get("format") != FORMAT:
            raise ValueError(f"{str(path)!r} is not a freeflow DataFlow checkpoint")
        settings = dict(ck["settings"])
        for key in ("rel_eps", "temperature", "rel_bandwidth"):
            if isinstance(settings.get(key), list):
                settings[key] = tuple(settings[key])
        self = cls(ck["dim"], ck["velocity"], seed=ck["seed"], num_classes=ck["num_classes"],
                   source=ck["source"], **settings)
        self.trainer.load_state_dict(self.state, ck["trainer"])
        self._fitted_stats = True
        self.history = History(ck.get("history", []))
        return self
