"""Pure velocity fields V(x) (MATH.md).  No optimiser, no module state: tensors in, tensors out."""
from .common import rms_normalize
from .critics import ESTIMATORS, Critic, mmd2_unbiased
from .guidance import distribution_guidance, velocity_guidance
from .logvar import REFERENCES, lv_surrogate_velocity, lv_velocity, make_reference, reference_weights
from .kde_ratio import kde_ratio_velocity
from .kernels import drifting_velocity, mmd_velocity
from .sinkhorn import barycentric_map, relative_epsilon, sinkhorn_potentials, sinkhorn_velocity

__all__ = ["rms_normalize", "sinkhorn_potentials", "barycentric_map", "sinkhorn_velocity", "relative_epsilon",
           "drifting_velocity", "mmd_velocity", "kde_ratio_velocity", "velocity_guidance", "distribution_guidance",
           "lv_velocity", "lv_surrogate_velocity", "reference_weights", "make_reference", "REFERENCES",
           "Critic", "ESTIMATORS", "mmd2_unbiased"]
