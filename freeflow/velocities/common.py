"""Helpers shared by every velocity field."""
from __future__ import annotations

import torch


def rms_normalize(v: torch.Tensor, eps: float = 1e-12, *, batch_dims: int = 0) -> torch.Tensor:
    """V / sqrt(mean(V**2)), the mean over all elements (MATH.md §1, step 4); with
    ``batch_dims = k`` the mean is taken separately for each index of the first k dimensions
    (e.g. per class, so the result does not depend on which other classes share the batch).

    After this the step size eta is in units of the batch's own drift.  A zero field stays zero.
    """
    if batch_dims:
        dims = tuple(range(batch_dims, v.ndim))
        rms = v.pow(2).mean(dim=dims, keepdim=True).sqrt()
    else:
        rms = v.pow(2).mean().sqrt()
    return v / rms.clamp_min(eps)
