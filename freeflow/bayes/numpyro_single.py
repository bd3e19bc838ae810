"""A NumPyro model's log-density in single precision (:mod:`freeflow.bayes.precision`).

Tracing the float64 log-density again with JAX's 64-bit types off fails on most models: the
model's arguments (float64 / int64 arrays), the values of its structure trace and the site
transforms built from them stay 64-bit, and NumPyro's ``lax`` calls refuse the mixed dtypes
(``lax.div requires arguments to have the same dtypes``). So the float32 log-density is built
apart, from scratch, with 64-bit types off: the array arguments cast to their 32-bit types, a
structure trace of its own, its own transforms and potential. Nothing of the float64 one is
shared or touched (its values are bit-identical before and after; a test checks it). A model
that closes over 64-bit arrays of its own may still fail in float32: the probe then keeps
float64 (``float64 (float32 failed: TypeError)``)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["potential", "single_args", "single_value_and_grad"]

_NARROW = {np.dtype(np.float64): np.float32, np.dtype(np.int64): np.int32,
           np.dtype(np.uint64): np.uint32, np.dtype(np.complex128): np.complex64}


def potential(model: Callable, model_args: tuple, model_kwargs: dict, trace, latent: list[str], seed: int):
    """NumPyro's potential as ``initialize_model`` builds it, without its search for a valid initial
    point (a compiled while-loop, seconds): params substituted from ``trace`` (a structure trace of
    the model), the site transforms ``biject_to(support)`` of the ``latent`` sites, constraining by
    replaying the model (``constrain_fn``: right for deterministic sites and supports that depend
    on other parameters). (potential_fn, postprocess_fn, inv_transforms, prepared model, fixed params)."""
    from numpyro import handlers
    from numpyro.distributions import biject_to
    from numpyro.infer.util import get_potential_fn

    inv_transforms = {k: biject_to(trace[k]["fn"].support) for k in latent}
    fixed = {k: s["value"] for k, s in trace.items() if s["type"] in ("param", "mutable")}
    prepared = handlers.substitute(handlers.seed(model, rng_seed=seed), data=fixed)
    potential_fn, postprocess_fn = get_potential_fn(prepared, inv_transforms, replay_model=True,
                                                    model_args=tuple(model_args), model_kwargs=model_kwargs)
    return potential_fn, postprocess_fn, inv_transforms, prepared, fixed


def single_args(tree: Any) -> Any:
    """``tree`` with every NumPy / JAX array of a 64-bit type cast to its 32-bit type (as a NumPy
    array); Python scalars and other leaves as they are."""
    import jax

    def narrow(a):
        if isinstance(a, (np.ndarray, jax.Array)) and np.dtype(a.dtype) in _NARROW:
            return np.asarray(a).astype(_NARROW[np.dtype(a.dtype)])
        return a

    return jax.tree_util.tree_map(narrow, tree)


def single_value_and_grad(model: Callable, model_args: tuple, model_kwargs: dict, latent: list[str],
                          slices: dict, raw_shapes: dict, seed: int,
                          structure_trace: Callable) -> tuple[Callable, Callable]:
    """(jit(vmap(value_and_grad)), jit(vmap(value))) of log p̃ = −potential in float32, for
    :func:`freeflow.bayes.jax_batch.call_chunked_single` (which calls them with 64-bit types off,
    so they are traced in float32). ``latent``, ``slices``, ``raw_shapes``: the float64
    posterior's layout (the same sites in the same order); ``structure_trace(model, args, kwargs,
    seed)``: the front end's one run of the model for its sites."""
    import jax

    with jax.enable_x64(False):
        args, kwargs = single_args(tuple(model_args)), single_args(dict(model_kwargs))
        trace = structure_trace(model, args, kwargs, seed)
        missing = [k for k in latent if k not in trace]
        if missing:
            raise ValueError(f"the float32 trace of the model lacks sites {missing}")
        potential_fn = potential(model, args, kwargs, trace, latent, seed)[0]

    def log_density(zf):
        return -potential_fn({k: zf[slices[k]].reshape(raw_shapes[k]) for k in latent})

    return jax.jit(jax.vmap(jax.value_and_grad(log_density))), jax.jit(jax.vmap(log_density))
