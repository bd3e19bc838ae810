"""Data-free mode: sample from an unnormalised log-density.

* :mod:`.sampler` — :class:`OneStepSampler`, the user-facing sampler;
* :mod:`.drift` — the f-divergence drift with target annealing (:class:`DataFreeDrift`);
* :mod:`.logvar` — the log-variance drift;
* :mod:`.reaction` — the Fisher–Rao (birth–death) step on mixture weights;
* :mod:`.autostop` — ``fit()`` without steps: rounds until the reliability check passes.
"""
from .drift import ANNEAL_PATHS, MAX_OUTSIDE, DataFreeDrift, annealed, outside_support_velocity, ramp
from .logvar import LogVarianceDrift
from .reaction import MixtureReaction
from .sampler import OneStepSampler, default_generator, default_settings, default_steps

__all__ = ["OneStepSampler", "default_settings", "default_steps", "default_generator", "DataFreeDrift",
           "LogVarianceDrift", "MixtureReaction", "annealed", "ramp", "outside_support_velocity",
           "ANNEAL_PATHS", "MAX_OUTSIDE"]
