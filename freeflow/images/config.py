"""TOML configuration of an image run: ``[model]``, ``[data]``, ``[drift]``, ``[train]``.

Every key has a typed default below; an unknown section or key, or a value of the wrong type,
is a ``ValueError`` naming ``section.key`` (and the file).  Shipped configs live in
``configs/`` at the top of the repository (``digits.toml``, ``imagenet_B2.toml``,
``imagenet_L2.toml``, ``imagenet_XL2.toml``); ``load_config("digits")`` finds them by name.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ImageConfig", "ModelConfig", "DataConfig", "DriftConfig", "RunConfig", "load_config",
           "config_from_dict", "config_to_dict", "CONFIG_DIR"]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass
class ModelConfig:
    name: str = "DiT-tiny/2"          # a key of freeflow.images.dit.DIT_MODELS
    input_size: int = 8               # latent/image height = width
    in_channels: int = 1
    num_classes: int = 10
    norm: str = "layernorm"           # or "rmsnorm"
    qk_norm: bool = False
    mlp: str = "gelu"                 # or "swiglu"
    guidance_embed: bool = True       # the guidance scale is a generator input
    activation_checkpointing: bool = False  # recompute DiT block activations in backward (less memory)


@dataclass
class DataConfig:
    source: str = "digits"            # "digits" (scikit-learn, ships) or "latents" (a folder of shards)
    latents: str = ""                 # folder written by `freeflow images encode`
    vae: str = ""                     # local AutoencoderKL folder, to decode latents to images
    bank_capacity: int = 1024         # reals kept per class in the memory bank


@dataclass
class DriftConfig:
    velocity: str = "sinkhorn"        # or "drifting" (the kernel baseline)
    rel_eps: list = field(default_factory=lambda: [0.05])
    num_iters: int = 5
    temperature: list = field(default_factory=lambda: [0.02, 0.05, 0.2])
    guidance: str = "velocity"        # or "distribution"
    alpha_max: float = 2.0
    alpha_power: float = 3.0
    null_fraction: float = 0.1
    classes_per_step: int = 10
    gen_per_class: int = 32
    real_per_class: int = 32
    uncond_reals: int = 32
    features: str = "multiscale"      # or "encoder"
    patch_sizes: list = field(default_factory=lambda: [4])
    pool_sizes: list = field(default_factory=lambda: [2])
    stat_sizes: list = field(default_factory=lambda: [4])
    whole: bool = True
    encoder_path: str = ""


@dataclass
class RunConfig:
    steps: int = 2000
    lr: float = 2e-4
    lr_schedule: str = "constant"
    warmup_steps: int = 100
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.0
    grad_clip: float = 2.0
    ema_decay: float = 0.999
    step_size: float = 1.0
    step: str = "explicit"            # or "jko": the implicit (proximal) step (freeflow/train/jko.py)
    jko_tau: float = 1.0              # τ of the JKO step (units of the RMS-normalised drift, as step_size)
    jko_inner: int = 3                # inner optimiser steps per JKO step
    autocast: str = "none"            # or "bf16" (generator forward; the drift stays float32)
    seed: int = 0
    checkpoint_every: int = 200
    backend: str = "auto"             # torch.distributed backend: auto = nccl on GPU, gloo on CPU
    timeout_s: int = 600              # collective timeout (a dead rank ends the job after this)


@dataclass
class ImageConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    train: RunConfig = field(default_factory=RunConfig)


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "drift": DriftConfig, "train": RunConfig}
_CHOICES = {("model", "norm"): ("layernorm", "rmsnorm"), ("model", "mlp"): ("gelu", "swiglu"),
            ("data", "source"): ("digits", "latents"), ("drift", "velocity"): ("sinkhorn", "drifting"),
            ("drift", "guidance"): ("velocity", "distribution"), ("drift", "features"): ("multiscale", "encoder"),
            ("train", "autocast"): ("none", "bf16"), ("train", "backend"): ("auto", "gloo", "nccl"),
            ("train", "lr_schedule"): ("constant", "cosine"), ("train", "step"): ("explicit", "jko")}


def _check_value(where: str, key: str, value, default):
    def bad(expected: str):
        return ValueError(f"{where}{key} must be {expected}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
    elif isinstance(default, list):
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise bad("a list of numbers")
    return value


def config_from_dict(raw: dict, *, source: str = "config") -> ImageConfig:
    """Validate a parsed TOML dict into an :class:`ImageConfig` (errors name ``section.key``)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a table of sections")
    cfg = ImageConfig()
    for sec, body in raw.items():
        if sec not in _SECTIONS:
            close = difflib.get_close_matches(sec, list(_SECTIONS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{source}: unknown section [{sec}]{hint}; sections: {sorted(_SECTIONS)}")
        if not isinstance(body, dict):
            raise ValueError(f"{source}: [{sec}] must be a table")
        target = getattr(cfg, sec)
        names = [f.name for f in dataclasses.fields(target)]
        for key, value in body.items():
            where = f"{source}: {sec}."
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"{where}{key} is not a known key{hint}; keys of [{sec}]: {names}")
            value = _check_value(where, key, value, getattr(target, key))
            choices = _CHOICES.get((sec, key))
            if choices and value not in choices:
                raise ValueError(f"{where}{key} must be one of {choices}, got {value!r}")
            setattr(target, key, value)
    _check_ranges(cfg, source)
    return cfg


def _check_ranges(cfg: ImageConfig, source: str) -> None:
    positive = [("model", "input_size"), ("model", "in_channels"), ("model", "num_classes"),
                ("data", "bank_capacity"), ("drift", "num_iters"), ("drift", "classes_per_step"),
                ("drift", "gen_per_class"), ("drift", "real_per_class"), ("drift", "uncond_reals"),
                ("train", "steps"), ("train", "checkpoint_every"), ("train", "timeout_s"), ("train", "jko_inner")]
    for sec, key in positive:
        if getattr(getattr(cfg, sec), key) < 1:
            raise ValueError(f"{source}: {sec}.{key} must be >= 1, got {getattr(getattr(cfg, sec), key)}")
    for key in ("lr", "grad_clip", "step_size", "jko_tau"):
        if not getattr(cfg.train, key) > 0:
            raise ValueError(f"{source}: train.{key} must be > 0, got {getattr(cfg.train, key)}")
    if not 0 <= cfg.train.ema_decay < 1:
        raise ValueError(f"{source}: train.ema_decay must lie in [0, 1), got {cfg.train.ema_decay}")
    if len(cfg.train.betas) != 2 or not all(0 <= b < 1 for b in cfg.train.betas):
        raise ValueError(f"{source}: train.betas must be two numbers in [0, 1), got {cfg.train.betas}")
    if cfg.drift.alpha_max < 1:
        raise ValueError(f"{source}: drift.alpha_max must be >= 1, got {cfg.drift.alpha_max}")
    for key in ("rel_eps", "temperature"):
        vals = getattr(cfg.drift, key)
        if not vals or any(v <= 0 for v in vals):
            raise ValueError(f"{source}: drift.{key} must be a non-empty list of positive numbers, got {vals}")
    if cfg.data.source == "latents" and not cfg.data.latents:
        raise ValueError(f"{source}: data.latents must name the latent folder when data.source = 'latents'")
    if cfg.drift.features == "encoder" and not cfg.drift.encoder_path:
        raise ValueError(f"{source}: drift.encoder_path is required when drift.features = 'encoder'")


def config_to_dict(cfg: ImageConfig) -> dict:
    return dataclasses.asdict(cfg)


def load_config(path_or_name: str | os.PathLike, overrides: dict | None = None) -> ImageConfig:
    """Read a TOML file (or a shipped config by name, e.g. ``"digits"``); ``overrides`` maps
    ``"section.key"`` to values (e.g. from the command line's ``--set``)."""
    path = Path(path_or_name)
    if not path.exists() and not path.suffix:
        path = CONFIG_DIR / f"{path_or_name}.toml"
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {str(path_or_name)!r} (shipped configs: "
                                f"{sorted(p.stem for p in CONFIG_DIR.glob('*.toml'))})")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    for dotted, value in (overrides or {}).items():
        if "." not in dotted:
            raise ValueError(f"override {dotted!r} must be section.key")
        sec, key = dotted.split(".", 1)
        raw.setdefault(sec, {})[key] = value
    return config_from_dict(raw, source=str(path))
