"""A PyMC model's log-density through PyTensor's JAX backend (``from_pymc(backend="jax")``).

PyTensor's C backend evaluates a vectorised PyMC graph one elementwise op after the other in
float64, without a linked BLAS in a pip install; the same graph handed to JAX is compiled by
XLA, which fuses them. Measured here (``benchmarks/pymc_backends.py``), the JAX route is ~2-3x
faster per row on the logistic regressions of the benchmarks. The graph is PyMC's own
``model.logp(jacobian=True)`` of one point, as ``pymc.sampling.jax.get_jaxified_logp`` builds
it for PyMC's JAX samplers, with one difference: a failed parameter check becomes
log p = −inf (PyMC's ``local_check_parameter_to_ninf_switch`` rewrite, as ``pm.compile``
applies it), not a check that JAX drops. It is then ``jit(vmap(value_and_grad(·)))`` over a
float64 batch (:mod:`freeflow.bayes.jax_batch`). Data containers are frozen into the graph as
constants: rebuild the posterior after ``pm.set_data``. Before compilation the graph is
simplified where that is exact (:mod:`freeflow.bayes.pymc_rewrites`: parameter checks that
cannot fail, a switch between two softplus)."""
from __future__ import annotations

from typing import Callable, Sequence

from .pymc_rewrites import simplify_for_jax

__all__ = ["jax_value_and_grad"]


def jax_value_and_grad(model, values: Sequence, sizes: Sequence[int], shapes: Sequence[tuple],
                       simplify: bool = True) -> tuple[Callable, Callable]:
    """(value_and_grad, value): jit-compiled, vmapped functions of a (m, d) float64 batch z,
    whose columns are ``values`` (value variables) flattened in order. ImportError without jax.
    ``simplify=False``: the graph as PyMC writes it (``benchmarks/pymc_backends.py`` compares)."""
    import jax
    from pymc.sampling.jax import _replace_shared_variables
    from pytensor.compile.mode import JAX
    from pytensor.graph.fg import FunctionGraph
    from pytensor.link.jax.dispatch import jax_funcify

    jax.config.update("jax_enable_x64", True)
    graph = _replace_shared_variables([model.logp(jacobian=True)])
    fgraph = FunctionGraph(inputs=list(values), outputs=graph, clone=True)
    simplify_for_jax(fgraph, JAX.provided_optimizer.including("local_check_parameter_to_ninf_switch"), simplify)
    logp = jax_funcify(fgraph)
    dtypes = [v.dtype for v in values]

    def log_density(z):
        parts, start = [], 0
        for size, shape, dtype in zip(sizes, shapes, dtypes):
            parts.append(z[start:start + size].reshape(shape).astype(dtype))
            start += size
        return logp(*parts)[0]

    return jax.jit(jax.vmap(jax.value_and_grad(log_density))), jax.jit(jax.vmap(log_density))
