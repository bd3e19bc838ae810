"""Generators: networks mapping noise to samples in one pass.

* :mod:`.mlp` — the residual MLP (with EMA and the sinusoidal embedding used for guidance);
* :mod:`.flow` — a normalizing-flow generator with exact log q;
* :mod:`.exact` — the density protocol answered by a generator's own log q;
* :mod:`.mixture` — mixture and product-mixture generators with exact log q, whose weights
  the Fisher–Rao step moves (:mod:`freeflow.datafree.reaction`).
"""
from .mlp import EMA, ResidualMLP, sinusoidal_embedding
from .flow import ExactFlowDensity, FlowGenerator
from .exact import ExactDensity
from .mixture import MixtureGenerator, ProductMixtureGenerator, default_components

__all__ = ["ResidualMLP", "EMA", "sinusoidal_embedding", "FlowGenerator", "ExactFlowDensity",
           "MixtureGenerator", "ProductMixtureGenerator", "ExactDensity", "default_components"]
