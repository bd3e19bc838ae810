"""freeflow: one-step samplers for unnormalised densities.

A neural generator maps Gaussian noise to samples of a target in one forward pass; it is
trained by compressing a Wasserstein gradient flow of an f-divergence into the generator.
"""
from .density import DensityEstimator
from .density.kde import KDE
from .divergences import Divergence, available_divergences, get_divergence, register_divergence
from .generators import EMA, ResidualMLP
from .datafree import OneStepSampler, default_settings, default_steps
from .train import TrainConfig, Trainer
from .compare import Report, compare, reference
from .compare.divergences import compare_divergences
from .data import DataFlow
from .density.flow import FlowDensity
from .generators import ExactFlowDensity, FlowGenerator
from . import importance
from .interop import to_inference_data
from .generators import MixtureGenerator, ProductMixtureGenerator
from .reliability import Reliability, ReliabilityWarning
from . import bayes
from .bayes import Posterior, from_numpyro, from_pymc, loo, predictive, print_summary, sample

__version__ = "0.1.0"

__all__ = [
    "OneStepSampler", "default_settings", "default_steps", "Divergence", "get_divergence", "available_divergences",
    "register_divergence", "DensityEstimator", "KDE", "ResidualMLP", "EMA", "Trainer", "TrainConfig",
    "compare", "compare_divergences", "Report", "DataFlow", "FlowDensity", "FlowGenerator", "ExactFlowDensity", "importance", "to_inference_data", "reference",
    "MixtureGenerator", "ProductMixtureGenerator", "Reliability", "ReliabilityWarning",
    "bayes", "Posterior", "from_numpyro", "from_pymc", "sample", "print_summary", "predictive", "loo",
]
