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
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..generators import ResidualMLP
from ..generators.components import ComponentMLP
from ..io import atomic_torch_save, load_checkpoint
from ..placement import Placement, checkpoint_placement, placed, resumed_rng_state
from ..train import History, TrainConfig, Trainer, standard_callbacks
from ..validation import (check_choice, check_float, check_int, check_points, check_positive_float, check_positive_int, check_seed,
                          check_setting_names)
from ..velocities.critics import Critic
from .drift import CRITIC_VELOCITIES, GUIDANCE_EMBED_DIM, VELOCITIES, DataDrift, sample_power_law
from .reaction import SinkhornReaction

Tensor = torch.Tensor

__all__ = ["DataFlow", "DataDrift", "data_default_settings", "VELOCITIES", "sample_power_law"]

FORMAT = "freeflow.DataFlow/1"


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
        # critic velocities "critic:<estimator>" (freeflow.velocities.critics): V = ∇h of a
        # critic MLP that ascends its bound critic_inner_steps Adam steps per generator step
        "critic_hidden": 128,
        "critic_depth": 2,
        "critic_lr": 1e-3,
        "critic_inner_steps": 5,
        "gp_weight": 10.0,          # critic:w1gp: weight of the one-sided gradient penalty
        # conditional generation
        "classes_per_step": 8,
        "guidance": "velocity",     # or "distribution" (sinkhorn only)
        "alpha_max": 4.0,
        "alpha_power": 3.0,         # p(α) ∝ α^(−k)
        "uncond_size": None,        # unconditional reals per step; None = data_batch_size
        "self_term": "independent", # "same": biased same-batch self term (for ablations only)
        # generator: "components" (K residual-MLP components, weights moved by the Fisher-Rao
        # step of the Sinkhorn flow; unconditional sinkhorn default) or "mlp" (one map)
        "generator": "auto",
        "components": 32,
        "reaction_step": 0.05,
        # training step (freeflow.train.jko, docs/jko.md): "explicit" Euler regression or
        # "jko", the implicit proximal step with τ = jko_tau (None: = step_size), jko_inner steps
        "step": "explicit",
        "jko_tau": None,
        "jko_inner": 5,
    }


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


class DataFlow:
    """A generator trained to reproduce a data set (optionally per class, or from a source set).

    Args:
        dim: dimension of the data.
        velocity: "sinkhorn" (W-Flow, default), "drifting", "mmd", "kde_kl", or a critic velocity
            "critic:kl_dv" | "critic:kl_nwj" | "critic:chi2" | "critic:js" | "critic:w1gp"
            (unconditional, noise input; :mod:`freeflow.velocities.critics`).
        seed: seeds initialisation, training randomness and default sampling noise.
        num_classes: number of classes for conditional generation (labels passed to ``fit``).
        source: (n_src, dim_src) source points; the generator's input is then a source point
            (domain transfer) instead of noise.  Needs dim_src >= dim.
        device, dtype: where the generator, its optimiser state, the noise, the drift (and a
            critic) live, and their floating dtype, as for :class:`~freeflow.OneStepSampler`
            (:mod:`freeflow.placement`); data, labels and source points are moved there.
        **settings: override any key of :func:`data_default_settings`; ``step="jko"`` takes
            the implicit (proximal) step (``jko_tau``, ``jko_inner``; docs/jko.md).
    """

    def __init__(self, dim: int, velocity: str = "sinkhorn", *, seed: int = 0,
                 num_classes: int | None = None, source=None, device=None, dtype=None, **settings):
        self.placement = Placement.resolve(device, dtype)
        with self.placement.scope():
            self._init(dim, velocity, seed, num_classes, source, settings)

    def _init(self, dim, velocity, seed, num_classes, source, settings) -> None:
        check_positive_int(dim, "dim")
        check_seed(seed)
        if isinstance(velocity, str) and velocity.startswith("critic:"):
            check_choice(velocity, CRITIC_VELOCITIES, "critic velocity")
        check_choice(velocity, VELOCITIES + CRITIC_VELOCITIES, "velocity")
        if num_classes is not None:
            check_positive_int(num_classes, "num_classes")
        check_setting_names(settings, data_default_settings(dim))
        s = {**data_default_settings(dim), **settings}
        for key in ("batch_size", "noise_dim", "hidden", "num_iters", "classes_per_step"):
            check_positive_int(s[key], key)
        for key in ("lr", "step_size", "alpha_max"):
            check_positive_float(s[key], key)
        check_float(s["ema_decay"], "ema_decay", low=0.0, high=1.0)
        check_float(s["grad_clip"], "grad_clip", low=0.0, low_open=True, allow_none=True)
        check_int(s["warmup_steps"], "warmup_steps", minimum=0)
        check_choice(s["guidance"], ("velocity", "distribution"), "guidance")
        check_choice(s["lr_schedule"], ("cosine", "constant"), "lr_schedule")
        for key in ("rel_eps", "temperature", "rel_bandwidth"):
            vals = s[key] if isinstance(s[key], (list, tuple)) else [s[key]]
            for v in vals:
                if v is not None:
                    check_float(v, key, low=0.0, low_open=True)
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
            source = self._placed(check_points(source, "source"))
            if source.shape[0] < 2:
                raise ValueError("source must hold at least 2 points")
            if source.shape[1] < dim:
                raise ValueError(f"source has dimension {source.shape[1]} < dim={dim}; the generator "
                                 "input must be at least as large as its output")
            src_mean, src_std = source.mean(0), source.std(0).clamp_min(1e-8)
        if velocity in CRITIC_VELOCITIES:
            for arg, value in (("num_classes", num_classes), ("source", source)):
                if value is not None:
                    raise ValueError(f"{arg}= is not supported with velocity={velocity!r}: critic velocities "
                                     "are unconditional with a noise input")
        for key in ("critic_hidden", "critic_depth", "critic_inner_steps"):
            check_positive_int(s[key], key)
        check_positive_float(s["critic_lr"], "critic_lr")
        check_float(s["gp_weight"], "gp_weight", low=0.0)
        check_choice(s["generator"], ("auto", "mlp", "components"), "generator")
        if s["generator"] == "auto":
            s["generator"] = "components" if (velocity == "sinkhorn" and num_classes is None and source is None) \
                else "mlp"
        if s["generator"] == "components" and (num_classes is not None or source is not None):
            raise ValueError("generator='components' is for unconditional noise-input models "
                             "(no num_classes, no source); use generator='mlp'")
        check_positive_int(s["components"], "components")
        check_float(s["reaction_step"], "reaction_step", low=0.0)
        check_choice(s["step"], ("explicit", "jko"), "step")
        check_float(s["jko_tau"], "jko_tau", low=0.0, low_open=True, allow_none=True)
        check_int(s["jko_inner"], "jko_inner", minimum=1)
        self.noise_dim = source.shape[1] if source is not None else s["noise_dim"]
        if s["generator"] == "components":
            self.noise_dim += 1  # the last noise coordinate picks the component
        self.drift = DataDrift(
            velocity=velocity,
            params={k: s[k] for k in ("rel_eps", "num_iters", "temperature", "rel_bandwidth")},
            batch_size=s["batch_size"], data_batch_size=s["data_batch_size"], noise_dim=self.noise_dim,
            num_classes=num_classes, classes_per_step=s["classes_per_step"], guidance=s["guidance"],
            alpha_max=float(s["alpha_max"]), alpha_power=float(s["alpha_power"]),
            uncond_size=s["uncond_size"], self_term=s["self_term"], source_mean=src_mean, source_std=src_std,
        )
        self.drift.source = source
        if velocity in CRITIC_VELOCITIES:
            self.drift.critic = Critic(dim, velocity.split(":", 1)[1], hidden=s["critic_hidden"],
                                       depth=s["critic_depth"], lr=s["critic_lr"],
                                       inner_steps=s["critic_inner_steps"], gp_weight=float(s["gp_weight"]), seed=seed)
        if s["generator"] == "components":
            self.drift.reaction = SinkhornReaction(step_size=float(s["reaction_step"]), rel_eps=s["rel_eps"],
                                                   num_iters=s["num_iters"])
        self.cond_dim = 0 if num_classes is None else num_classes + GUIDANCE_EMBED_DIM
        self._build(init_loc=0.0, init_scale=1.0)
        self._sample_rng = self.placement.generator(seed + 1)
        self._fitted_stats = False

    def _build(self, init_loc, init_scale) -> None:
        s = self.settings
        torch.manual_seed(self.seed)
        if s["generator"] == "components":
            self.generator = ComponentMLP(self.noise_dim - 1, self.dim, s["components"], hidden=s["hidden"],
                                          depth=s["depth"], init_scale=init_scale, init_loc=init_loc)
        else:
            self.generator = ResidualMLP(self.noise_dim, self.dim, hidden=s["hidden"], depth=s["depth"],
                                         cond_dim=self.cond_dim, init_scale=init_scale, init_loc=init_loc)
        self.generator.to(self.placement.device, self.placement.dtype)
        cfg = TrainConfig(lr=s["lr"], lr_schedule=s["lr_schedule"], warmup_steps=s["warmup_steps"],
                          step_size=s["step_size"], grad_clip=s["grad_clip"], ema_decay=s["ema_decay"],
                          step=s["step"], jko_tau=s["jko_tau"], jko_inner=s["jko_inner"])
        self.trainer = Trainer(self.generator, self.drift, cfg, seed=self.seed)
        self.state = self.trainer.init()
        self.history = History()

    def _placed(self, x: Tensor) -> Tensor:
        return x.to(self.placement.device, self.placement.dtype)

    # -- training ------------------------------------------------------------------------------
    @placed
    def fit(self, data, labels=None, *, steps: int = 2000, progress: bool = False,
            log: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
            checkpoint_every: int = 500, callbacks: Iterable = ()) -> History:
        """Train until ``steps`` steps are done in total (continues a loaded or earlier run).

        The first call starts the generator at the data's per-coordinate mean and standard
        deviation (a Gaussian at the data's scale).  Returns this call's per-step diagnostics.
        """
        check_positive_int(steps, "steps")
        data = self._placed(check_points(data, "data", dim=self.dim))
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
            labels = _as_labels(labels, data.shape[0], self.num_classes).to(self.placement.device)
            counts = torch.bincount(labels, minlength=self.num_classes)
            small = [(c, int(k)) for c, k in enumerate(counts.tolist()) if 0 < k < 2]
            if small:
                raise ValueError(f"data: class(es) {small[:5]} have fewer than 2 samples")
            if data.shape[0] < s["uncond_size"]:
                raise ValueError(f"data has {data.shape[0]} rows, fewer than uncond_size={s['uncond_size']}")
        if not self._fitted_stats and self.state.step == 0:
            mean, std = data.mean(0), data.std(0).clamp_min(1e-6)
            self._build(init_loc=mean, init_scale=std)
            if isinstance(self.generator, ComponentMLP):
                self.generator.init_from_data(data, self.placement.generator(self.seed))
                self.state = self.trainer.init()  # EMA and optimiser see the initialised components
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
    @placed
    @torch.no_grad()
    def sample(self, n: int, labels=None, guidance: float = 1.0, *, seed: int | None = None,
               ema: bool = True) -> Tensor:
        """n samples (n, dim) in one forward pass.

        Conditional models need ``labels`` (an int or n ints); ``guidance`` is the scale α
        (1 = no guidance, up to ``alpha_max``).  With a source, n source rows are drawn at random
        (use :meth:`transform` for given source points).
        """
        check_positive_int(n, "n")
        rng = self.placement.generator(seed) if seed is not None else self._sample_rng
        net = self.state.ema.module if ema else self.generator
        z = self.drift.generator_input(n, rng)
        return net(z, self._cond(n, labels, guidance))

    @placed
    @torch.no_grad()
    def transform(self, source, *, ema: bool = True) -> Tensor:
        """Map given source points through the generator (domain transfer)."""
        if self.drift.source is None:
            raise ValueError("transform needs a model built with source=")
        src = self._placed(check_points(source, "source", dim=self.drift.source.shape[1]))
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
            "history": self.history.rows(),
            "placement": self.placement.describe(),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint atomically (the training data are not stored; pass them to fit)."""
        return atomic_torch_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, map_location=None, dtype=None) -> "DataFlow":
        """Rebuild from ``save``'s file on ``map_location`` (default: the saved device, or the CPU
        where it is not here) in ``dtype`` (default: the saved one)."""
        ck = load_checkpoint(path)
        if not isinstance(ck, dict) or ck.get("format") != FORMAT:
            raise ValueError(f"{str(path)!r} is not a freeflow DataFlow checkpoint")
        device, dtype = checkpoint_placement(ck, map_location, dtype)
        settings = dict(ck["settings"])
        for key in ("rel_eps", "temperature", "rel_bandwidth"):
            if isinstance(settings.get(key), list):
                settings[key] = tuple(settings[key])
        self = cls(ck["dim"], ck["velocity"], seed=ck["seed"], num_classes=ck["num_classes"],
                   source=ck["source"], device=device, dtype=dtype, **settings)
        self.trainer.load_state_dict(self.state, resumed_rng_state(ck, ck["trainer"], self.placement))
        self._fitted_stats = True
        self.history = History(ck.get("history", []))
        return self
