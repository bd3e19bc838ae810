"""Single precision for a JAX log-density, where it is measured to be accurate enough.

The PyMC front end's JAX route (and NumPyro's) evaluates log p̃ in float64. The sampler's draws
are float32 (its default dtype), and XLA evaluates a float32 row 2-3x faster (the breast-cancer
regression through PyMC: value and gradient 19.8 → 6.0 µs a row, ``benchmarks/pymc_backends.py``,
``results/pymc_backends_f32.json``). Both JAX routes offer float32:
PyMC's graph, compiled by PyTensor's JAX backend, is a pure function and is traced again in
float32; NumPyro's log-density is built apart in float32 (:mod:`freeflow.bayes.numpyro_single`:
traced again, most models mix the 64-bit values of their arguments and trace with 32-bit ones
and fail). Whether a model's
log-density survives single precision depends on the model (a Cholesky of a nearly singular
kernel matrix, a regression whose design has a condition number of 10⁵, sums of 10⁵ terms), so
it is measured, not assumed: :func:`agrees` evaluates log p̃ and its gradient in both
precisions at draws of the Gaussian stage (where training and the checks will evaluate it) and
accepts float32 only where

* float32 is finite at all but ``MAX_FALLBACK`` of the draws where float64 is (the others are
  evaluated again in float64 whenever they occur);
* the float32 error of log p̃ varies by at most ``VALUE_TOL`` nats across the draws (a constant
  offset is harmless: importance weights and Metropolis ratios see differences only);
* the gradient in the stage's frame (Lᵀ∇, unit scale at the posterior) is off by at most
  ``GRAD_TOL`` per coordinate, relative to max(1, its size).

The sampler runs this after its Gaussian stage (:meth:`freeflow.bayes.posterior.Posterior.use_single_precision`)
and keeps the decision with the stage's summary (``sampler.gaussian_fit["precision"]``);
float64 batches (the Gaussian stage itself, ``dtype=torch.float64`` samplers, the model's own
coordinates of a twin) are always evaluated in float64.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["agrees", "VALUE_TOL", "GRAD_TOL", "PROBE_DRAWS", "MAX_FALLBACK"]

#: the largest spread (nats) of log p̃'s float32 error across the probe draws
VALUE_TOL = 0.01
#: the largest float32 error of a frame-scaled gradient coordinate, relative to max(1, its size)
GRAD_TOL = 0.01
#: draws of the Gaussian stage the two precisions are compared at
PROBE_DRAWS = 256
#: the largest fraction of those draws where float32 may fail (a value or gradient that is not
#: finite: e.g. exp overflowing in an untaken branch of a switch, whose gradient is then NaN);
#: such rows are evaluated again in float64 (:mod:`freeflow.bayes.host`)
MAX_FALLBACK = 0.05


def agrees(fn: Callable, fn32: Callable, x: np.ndarray, scale: np.ndarray) -> tuple[bool, str]:
    """Whether ``fn32`` (float32) may stand in for ``fn`` (float64) at the rows of ``x`` (n, d),
    both ``(x, grad) -> (values (n,), gradients (n, d))``; ``scale``: the frame's Cholesky factor
    L (d, d) (gradients compared as Lᵀ∇). (ok, why) — ``why`` says what was measured."""
    x32 = np.asarray(x, dtype=np.float32)     # (both at the same points: the sampler's draws are float32)
    v64, g64 = fn(x32.astype(np.float64), True)
    try:
        v32, g32 = fn32(x32, True)
    except Exception as e:  # noqa: BLE001 - a model that cannot run in float32 stays in float64
        return False, f"float64 (float32 failed: {type(e).__name__})"
    v64, v32 = np.asarray(v64, np.float64), np.asarray(v32, np.float64)
    g64, g32 = np.asarray(g64, np.float64), np.asarray(g32, np.float64)
    ok64 = np.isfinite(v64) & np.isfinite(g64).all(1)
    if ok64.sum() < 8:
        return False, "float64 (too few probe draws with a finite log-density)"
    ok32 = np.isfinite(v32) & np.isfinite(g32).all(1)
    fallback = float((ok64 & ~ok32).sum() / ok64.sum())
    if fallback > MAX_FALLBACK:
        return False, f"float64 (float32 not finite at {fallback:.0%} of the draws where float64 is)"
    both = ok64 & ok32
    err = v32[both] - v64[both]
    spread = float(np.abs(err - np.median(err)).max())
    gu64, gu32 = g64[both] @ scale, g32[both] @ scale
    grad_err = float((np.abs(gu32 - gu64) / np.maximum(1.0, np.abs(gu64))).max())
    measured = (f"log p̃ error spread {spread:.1e} nats, frame gradient error {grad_err:.1e}, "
                f"float64 again at {fallback:.1%}")
    if spread > VALUE_TOL or grad_err > GRAD_TOL:
        return False, f"float64 (float32: {measured}; limits {VALUE_TOL}, {GRAD_TOL})"
    return True, f"float32 ({measured})"
