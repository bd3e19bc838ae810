"""Sample-quality metrics for image mode: Fréchet distance, KID, class accuracy (MATH.md §3).

Two ways to score generated images:

* **Digits** (scikit-learn's 8×8 digits, values in [-1, 1], shape (N, 1, 8, 8)): our own small
  CNN (:class:`DigitsFeatureNet`) supplies the feature space — Inception-v3 is meaningless on
  8×8 images. :class:`DigitsEvaluator` bundles a feature net and a *separately seeded*
  classifier of the same architecture, both trained on the train split only; FID/KID are
  measured against the features of the test split (the reference) and class accuracy of
  conditional samples with the held-out classifier. Beside a generated FID report
  :meth:`DigitsEvaluator.real_floor`: the same statistic for real images at the same sample
  size (FID is biased upwards at small n, so a number alone is not interpretable).
* **ImageNet-style images**: :func:`torch_fidelity_metrics`, a thin wrapper around
  ``torch_fidelity.calculate_metrics`` (FID, IS, KID with the Inception-v3 weights from a local
  file; nothing is downloaded). torch-fidelity imports torchvision at import time, so it
  needs a torchvision built for the installed torch; it is imported lazily, only there.

Numerics of :func:`frechet_distance` (float64, symmetric eigen-decompositions by default): see
:mod:`freeflow.images.feature_distances`.

The code lives in three modules, re-exported here: :mod:`.feature_distances` (Fréchet
distance, KID), :mod:`.digits_eval` (the digits feature net, classifier and evaluator) and
:mod:`.fidelity` (the torch-fidelity wrapper).
"""
from __future__ import annotations

from .data import digits_data
from .digits_eval import (DEFAULT_EPOCHS, FEATURE_NET_FORMAT, DigitsEvaluator, DigitsFeatureNet, class_accuracy,
                          held_out_classifier, load_feature_net, save_feature_net, train_digits_feature_net)
from .feature_distances import feature_statistics, frechet_distance, frechet_from_features, kernel_inception_distance
from .fidelity import torch_fidelity_metrics

__all__ = [
    "frechet_distance", "feature_statistics", "frechet_from_features", "kernel_inception_distance",
    "DigitsFeatureNet", "train_digits_feature_net", "save_feature_net", "load_feature_net",
    "digits_data", "held_out_classifier", "class_accuracy", "DigitsEvaluator", "torch_fidelity_metrics",
    "FEATURE_NET_FORMAT", "DEFAULT_EPOCHS",
]
