"""What the twin tests (tests/test_reparam.py, tests/test_pymc_twin.py) compare with: the
log|det| of a twin's map back to the model's coordinates by central finite differences."""
from __future__ import annotations

import torch


def jacobian_logdet(rep, w: torch.Tensor, eps: float = 1e-6) -> float:
    """log|det ∂z/∂w| of ``rep.to_model`` at one point w (dim,), by central differences."""
    cols = []
    for j in range(w.shape[0]):
        e = torch.zeros_like(w)
        e[j] = eps
        cols.append((rep.to_model((w + e)[None])[0] - rep.to_model((w - e)[None])[0]) / (2 * eps))
    return float(torch.linalg.slogdet(torch.stack(cols, 1))[1])
