"""Estimators of the generator's density q, behind one protocol (fit; log_prob; score)."""
from .base import DensityEstimator
from .flow import FlowDensity, FlowFitError
from .kde import KDE

__all__ = ["DensityEstimator", "KDE", "FlowDensity", "FlowFitError"]
