"""Pure velocity fields V(x) (MATH.md).  No optimiser, no module state: tensors in, tensors out."""
from .common import rms_normalize

__all__ = ["rms_normalize"]
