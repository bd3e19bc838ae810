"""Helpers shared by every velocity field."""
from __future__ import annotations

import torch


def rms_normalize(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """V / sqrt(mean(V**2)), the mean over all elements (MATH.md §1, step 4).

    After this the step size eta is in units of the batch's own drift.  A zero field stays zero.
    """
    rms = v.pow(2).mean().sqrt()
    return v / rms.clamp_min(eps)
