"""The data-free sampler's defaults and the rules its settings are checked against.

:func:`default_settings` is what a user who passes only a log-density and ``dim`` gets
(measured in docs/benchmarks.md); :data:`SETTING_RULES` gives each setting's type and range,
checked by :func:`check_settings` before anything is built.
"""
from __future__ import annotations

from typing import Any

from ..validation import check_choice, check_float, check_int, check_setting_names

__all__ = ["default_settings", "default_generator", "default_steps", "check_settings", "SETTING_RULES",
           "GENERATORS", "AUTO_ROUND_STEPS"]

from ..generators.registry import GENERATORS as _REGISTRY

#: the generator names (the registry's, freeflow.generators.registry)
GENERATORS = tuple(_REGISTRY)
#: fit() without steps trains in rounds of this many steps (freeflow.datafree.autostop)
AUTO_ROUND_STEPS = 1000


def default_settings(dim: int) -> dict[str, Any]:
    """The best settings measured for a dimension (see docs/benchmarks.md for the runs).

    A user who passes only ``log_density`` and ``dim`` gets these.
    """
    return {
        "batch_size": 1024,
        "reference": "independent",
        "reference_size": 1024,
        "noise_dim": max(dim, 4),
        "hidden": 128,
        "depth": 3,
        "lr": 1e-3,
        "lr_schedule": "cosine",
        "step_size": 0.5,
        "grad_clip": 1.0,
        "ema_decay": 0.999,
        "beta0": 0.02,
        "anneal_fraction": 0.5,
        # tempered p̃^β in d ≤ 3 (measured on ring8/gmm40); above, the geometric path from
        # N(0, init_scale² I), which stays bounded on funnels (freeflow.datafree)
        "anneal_path": "tempered" if dim <= 3 else "geometric",
        "max_ratio": 20.0,
        "temper": 1.0,
        "bandwidth": "scott",
        "bandwidth_factor": (0.5, 0.3),
        "covariance": "full",
        "init_scale": 1.0,
        "affine_lr_scale": 1.0,
        # -- flow route and log-variance divergence (docs/flow-route.md) --
        "flow_kind": "realnvp",  # auxiliary flow (density="flow") / flow generator: spline | realnvp
        "flow_layers": 4,
        "flow_hidden": 64,
        "flow_fit_steps": 3,  # warm-started ML steps of the auxiliary flow per generator step
        "flow_lr": 1e-3,
        "lv_reference": "on_policy",  # divergence="lv": on_policy | gaussian | mixture | replay
        "lv_mode": "derived",  # derived | surrogate
        "lv_clip": 20.0,
        "lv_options": {},  # kwargs of the reference (inflate, alpha, capacity, ...)
        # -- mixture generator and its Fisher-Rao step (docs/theory.md §7) --
        "components": None,  # K; None: default_components(dim, batch_size)
        "component_scale": 0.5,  # initial std of a component (unit-scale space)
        "mixture_flow_layers": None,  # shared flow after the components; None: 0 (mixture), 4 (product_mixture, d ≤ 1024)
        "mixture_lr_scale": 10.0,  # lr multiplier of the components and the global affine map
        "reaction_step": 0.2,  # η of the Fisher-Rao step on log π (0: transport only)
        "birth_every": 10,  # steps between birth checks (0: no births)
        "birth_mass": 0.005,  # a birth needs an estimated missing mass ∫(p − q)₊ above this
        "birth_fraction": 0.7,  # births only in the first fraction of training
        # -- the Gaussian stage (freeflow.datafree.gaussian_stage): "auto" = on for generators with
        # exact log q in d > 3 and in d ≤ 3 where p̃ is badly scaled at its mode, "on", "off"
        "gaussian_stage": "auto",
        # -- the verdict's MCMC check: chains (None: 1024, or the batch where the cost probe
        # reduced it, freeflow.datafree.cost)
        "check_chains": None,
        # -- the training step (freeflow.train.jko, docs/jko.md) --
        "step": "explicit",  # explicit Euler regression | "jko": implicit (proximal) step
        "jko_tau": None,  # τ of the JKO step, in step_size units; None: τ = step_size
        "jko_inner": 5,  # M, inner optimiser steps per JKO step
    }


def default_generator(dim: int, density=None) -> str:
    """The generator a user gets by default (docs/benchmarks.md, "Mode weights on targets we
    did not tune on"; ``benchmarks/new_targets.py``):

    * d ≤ 3: ``"mixture"``, K full-covariance Gaussians with a Fisher–Rao step on their
      weights and births. On 2-D mixtures we built (weights spanning 6–7×, widths 6×) it
      recovers mode weights to the noise floor in seconds, where the MLP + KDE route left a
      mass TV of 0.08–0.33.
    * d > 3: ``"product_mixture"``, per-coordinate mixtures with Fisher–Rao steps pushed
      through a shared flow. On double-well products (manywell32, a tilted coupled variant)
      it gets per-well masses within 0.004 and log Z within 0.001, where the flow generator
      was 0.14 and 0.6 nats off; on mixtures in general position and on the posteriors it is
      as good as or better than the flow generator. For a mixture of a few modes in general
      position in moderate d, ``generator="mixture"`` is better still.

    An explicit ``density="kde"``/``"flow"``/estimator keeps the MLP generator."""
    if density is not None and density != "exact":
        return "mlp"
    return "mixture" if dim <= 3 else "product_mixture"


def default_steps(dim: int) -> int:
    """Training length that the defaults were measured with (docs/benchmarks.md)."""
    return 3000


#: setting -> ("int", min, allow_None) | ("float", low, high, low_open, allow_None) | ("choice", names)
SETTING_RULES: dict[str, tuple] = {
    "batch_size": ("int", 2, False), "reference_size": ("int", 1, True), "noise_dim": ("int", 1, False),
    "hidden": ("int", 1, False), "depth": ("int", 1, False), "flow_layers": ("int", 1, False),
    "flow_hidden": ("int", 1, False), "flow_fit_steps": ("int", 0, False), "components": ("int", 1, True),
    "mixture_flow_layers": ("int", 0, True), "birth_every": ("int", 0, False),
    "lr": ("float", 0.0, None, True, False), "step_size": ("float", 0.0, None, True, False),
    "grad_clip": ("float", 0.0, None, True, True), "ema_decay": ("float", 0.0, 1.0, False, False),
    "beta0": ("float", 0.0, 1.0, True, False), "anneal_fraction": ("float", 0.0, 1.0, False, False),
    "max_ratio": ("float", 1.0, None, False, False), "temper": ("float", 0.0, None, True, False),
    "init_scale": ("float", 0.0, None, True, False), "affine_lr_scale": ("float", 0.0, None, False, False),
    "flow_lr": ("float", 0.0, None, True, False), "lv_clip": ("float", 0.0, None, True, False),
    "component_scale": ("float", 0.0, None, True, False), "mixture_lr_scale": ("float", 0.0, None, True, False),
    "reaction_step": ("float", 0.0, None, False, False), "birth_mass": ("float", 0.0, None, False, False),
    "birth_fraction": ("float", 0.0, 1.0, False, False),
    "jko_tau": ("float", 0.0, None, True, True), "jko_inner": ("int", 1, False),
    "step": ("choice", ("explicit", "jko")), "gaussian_stage": ("choice", ("auto", "on", "off")), "check_chains": ("int", 8, True),
    "reference": ("choice", ("independent", "loo")), "lr_schedule": ("choice", ("cosine", "constant")),
    "anneal_path": ("choice", ("tempered", "geometric")), "covariance": ("choice", ("full", "diag", "iso")),
    "flow_kind": ("choice", ("realnvp", "spline")), "lv_mode": ("choice", ("derived", "surrogate")),
    "lv_reference": ("choice", ("on_policy", "gaussian", "mixture", "replay")),
}


def check_settings(settings: dict[str, Any], dim: int) -> dict[str, Any]:
    """Unknown keys (with a close-match suggestion) and each known key's type and range."""
    check_setting_names(settings, default_settings(dim))
    for key, value in settings.items():
        rule = SETTING_RULES.get(key)
        if rule is None:
            continue
        if rule[0] == "int":
            check_int(value, key, minimum=rule[1], allow_none=rule[2])
        elif rule[0] == "float":
            _, low, high, low_open, allow_none = rule
            check_float(value, key, low=low, high=high, low_open=low_open, allow_none=allow_none)
        elif isinstance(value, str) or key != "lv_reference":  # lv_reference may be an object
            check_choice(value, rule[1], key)
    return settings
