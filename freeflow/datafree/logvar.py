"""Drift for the log-variance divergence (``divergence="lv"``; MATH.md §2, derived).

Same plumbing as :class:`freeflow.datafree.DataFreeDrift` (target annealing p̃^β, q̂ refitted
on an independent batch or leave-one-out), but the velocity is

* ``mode="derived"``:   V = 2 r̂ [β + c ∇log(ρ/q)]            (:func:`lv_velocity`)
* ``mode="surrogate"``: V = 2 r̂ β                               (:func:`lv_surrogate_velocity`)

with r̂ ≈ ρ/q from a reference ρ (:mod:`freeflow.velocities.logvar`): ``"on_policy"``,
``"gaussian"``, ``"mixture"`` or ``"replay"``.  The reference is updated with the batch after
the velocity is computed, so a replay buffer only ever holds past samples.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .drift import DataFreeDrift, outside_support_velocity
from ..velocities.fdiv import log_ratio_snis, regularize_log_ratio
from ..velocities.logvar import lv_surrogate_velocity, lv_velocity, make_reference, reference_weights

__all__ = ["LogVarianceDrift"]


@dataclass
class LogVarianceDrift(DataFreeDrift):
    """DataFreeDrift with the log-variance velocity.  ``divergence`` is unused (pass any).

    Extra attributes: ``lv_reference`` (name or reference object), ``lv_mode``
    ("derived" | "surrogate"), ``lv_clip`` (clip of r̂ = ρ/q), ``lv_options`` (kwargs of the
    reference constructor, e.g. ``inflate``, ``alpha``, ``capacity``).
    """

    lv_reference: Any = "on_policy"
    lv_mode: str = "derived"
    lv_clip: float = 20.0
    lv_options: dict = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()
        if self.lv_mode not in ("derived", "surrogate"):
            raise ValueError(f"lv_mode must be 'derived' or 'surrogate', got {self.lv_mode!r}")
        self.ref = make_reference(self.lv_reference, **(self.lv_options or {}))

    def __call__(self, generator: nn.Module, step: int, rng: torch.Generator, *, total_steps: int,
                 update: bool = True):
        """As :meth:`DataFreeDrift.__call__`; ``update=False`` also leaves the reference (a
        replay buffer) unchanged."""
        x, xd, beta, log_p, score_p, log_q, score_q, log_p_raw = self.batch_statistics(
            generator, step, rng, total_steps)
        with torch.no_grad():
            log_p_in = log_p
            if bool(self.outside.any()):  # a finite floor keeps the batch centring of LV finite
                floor = log_p[~self.outside].min() - 10.0
                log_p = torch.where(self.outside, floor, log_p)
            log_rho, score_rho = self.ref(xd, log_q, score_q)
            if self.lv_mode == "derived":
                v = lv_velocity(score_p, score_q, log_p, log_q, log_rho, score_rho, clip=self.lv_clip)
            else:
                v = lv_surrogate_velocity(score_p, score_q, log_q, log_rho, clip=self.lv_clip)
            r = reference_weights(log_rho, log_q, clip=self.lv_clip)
            if update:
                self.ref.update(xd)
            v = outside_support_velocity(torch.where(self.outside[:, None], 0.0, v), score_q, self.outside)
            info = {
                "beta": beta,
                "rho_ess": float(1.0 / (r / r.sum()).pow(2).sum() / r.numel()),
                "log_p_mean": float(log_p_raw[~self.outside].mean()),
                "outside_support": int(self.outside.sum()),
            }
            if update and self.reaction is not None:  # on-policy LV is twice the KL(q‖p) flow: its reaction
                log_r = regularize_log_ratio(log_ratio_snis(log_p_in, log_q), max_ratio=self.max_ratio)
                info.update(self.react(generator, xd, log_r, log_p_in - log_q, beta, step, total_steps, rng))
        return x, v, info

    def state_dict(self) -> dict:
        out = super().state_dict()
        if hasattr(self.ref, "state_dict"):
            out["lv_reference"] = self.ref.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "lv_reference" in state and hasattr(self.ref, "load_state_dict"):
            self.ref.load_state_dict(state["lv_reference"])
