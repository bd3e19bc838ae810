"""Reference samplers to compare freeflow against: blackjax NUTS (with a torch->JAX bridge)
and an on-disk cache of their draws.  Needs the ``mcmc`` extra (jax, blackjax, arviz)."""
from .bridge import BridgeError, TorchBridge, torch_to_jax, validate_log_density
from .cache import DrawCache
from .nuts import Reference, nuts

__all__ = [
    "BridgeError",
    "DrawCache",
    "Reference",
    "TorchBridge",
    "nuts",
    "torch_to_jax",
    "validate_log_density",
]
