"""Checkpoints of a :class:`~freeflow.datafree.sampler.OneStepSampler`: what is saved, and how a
sampler is rebuilt from it (checked against the log-density it is loaded with)."""
from __future__ import annotations

import json
import os
from typing import Callable

import torch

from ..io import load_checkpoint
from ..placement import checkpoint_placement, resumed_rng_state
from ..train import History
from .autostop import AutoRun
from . import space
from .build import is_target

Tensor = torch.Tensor

__all__ = ["FORMAT", "fingerprint", "sampler_state_dict", "load_sampler"]

FORMAT = "freeflow.OneStepSampler/1"


def fingerprint(log_density: Callable[[Tensor], Tensor], dim: int) -> list[float]:
    """log p̃ at fixed probe points, relative to the first finite one: identifies a target up to
    log Z (NaN and ±inf stay as they are: a log-density may fail at a probe point)."""
    # drawn on the CPU in float32 (the same points on every device and dtype), then placed
    x = torch.randn(16, dim, generator=torch.Generator().manual_seed(20261122), dtype=torch.float32, device="cpu")
    x = x.to(device=torch.get_default_device(), dtype=torch.get_default_dtype())
    with torch.no_grad():
        v = log_density(x).double()
    finite = torch.isfinite(v)
    ref = v[finite][0] if bool(finite.any()) else v.new_zeros(())
    return torch.where(finite, v - ref, v).tolist()


def sampler_state_dict(sampler) -> dict:
    return {
        "format": FORMAT,
        "dim": sampler.dim,
        "seed": sampler.seed,
        "divergence": sampler.divergence_name,
        "density": sampler.density_name,
        "generator": sampler.generator_name,
        "settings": json.loads(json.dumps(sampler.settings)),
        "target": sampler.target_config,
        "fingerprint": fingerprint(sampler.log_density if sampler.reparam is None else sampler.model_log_density,
                                   sampler.dim),   # (the model's log p̃, also where training ran in a twin's)
        "coordinates": sampler.reparam.label if sampler.reparam is not None else "as written",
        "trainer": sampler.trainer.state_dict(sampler.state),
        "history": sampler.history.rows(),
        "auto": sampler.auto.to_dict() if sampler.auto is not None else None,
        "frame": sampler.frame.state_dict(),
        "gaussian_fit": sampler.gaussian_fit,
        "cost": sampler.counted.state_dict(),
        "placement": sampler.placement.describe(),
    }



def load_sampler(cls, path: str | os.PathLike, log_density, check_target: bool = True, *, map_location=None,
                 dtype=None):
    """Rebuild a ``cls`` sampler from a checkpoint (see ``OneStepSampler.load``)."""
    ck = load_checkpoint(path)
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a freeflow OneStepSampler checkpoint")
    dim = ck["dim"]
    if is_target(log_density):
        if log_density.dim != dim:
            raise ValueError(
                f"log_density: checkpoint {str(path)!r} is for dimension {dim}, "
                f"the target has dimension {log_density.dim}"
            )
        cfg = log_density.config() if hasattr(log_density, "config") else None
        if check_target and ck["target"] is not None and cfg is not None and cfg != ck["target"]:
            raise ValueError(
                f"log_density: checkpoint {str(path)!r} was trained on target {ck['target']}, "
                f"not {cfg}"
            )
    device, dtype = checkpoint_placement(ck, map_location, dtype)
    settings = dict(ck["settings"])
    density = ck["density"] if ck["density"] in ("kde", "flow", "exact") else "kde"
    sampler = cls(log_density, dim, divergence=ck["divergence"], density=density,
               generator=ck.get("generator", "mlp"), seed=ck["seed"], device=device, dtype=dtype, **settings)
    if check_target:
        with sampler.placement.scope():
            fp = fingerprint(sampler.log_density, dim)
        if not torch.allclose(torch.tensor(fp), torch.tensor(ck["fingerprint"]), rtol=1e-4, atol=1e-3,
                              equal_nan=True):
            raise ValueError(
                f"log_density: checkpoint {str(path)!r} was trained on a different "
                "log-density (its values at the probe points differ); pass check_target=False "
                "to load anyway"
            )
    space.use(sampler, ck.get("coordinates"))   # (a twin's coordinates: freeflow/datafree/space.py)
    sampler.trainer.load_state_dict(sampler.state, resumed_rng_state(ck, ck["trainer"], sampler.placement))
    sampler.history = History(ck.get("history", []))
    sampler.auto = AutoRun.from_dict(ck.get("auto"))  # (a dict in every version's checkpoints)
    if "frame" in ck:
        sampler.frame.load_state_dict(ck["frame"])
    sampler.gaussian_fit = ck.get("gaussian_fit")
    space.restore_precision(sampler)   # (float32 evaluation of a JAX log-density, as decided in training)
    sampler.counted.load_state_dict(ck.get("cost", {}))
    if sampler.auto is not None:
        sampler.drift.anneal_steps = sampler.auto.anneal_steps
    return sampler

