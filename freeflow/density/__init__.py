"""Estimators of the generator's density q, behind one protocol (fit; log_prob; score)."""
from .base import DensityEstimator

__all__ = ["DensityEstimator"]
