"""Benchmark targets: unnormalised log-densities with exact samplers and mode information.

    from targets import get_target, available_targets
    t = get_target("gmm40")
    t.log_prob(x)            # (n, 2) -> (n,)
    t.sample(10_000)         # exact samples, float32

Definitions follow MATH.md §4; each module's docstring states its density.
"""
from .base import Target
from .registry import available_targets, get_target, register_target

# Importing the modules registers their targets.
from . import banana, funnel, lgcp, logreg, manywell, mixtures, posteriors, tilted_wells  # noqa: E402,F401

__all__ = ["Target", "available_targets", "get_target", "register_target"]
