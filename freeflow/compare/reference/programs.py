"""Compiled blackjax programs (window adaptation and a chunk of NUTS steps, vmapped over chains) and
torch bridges, memoised by log-density identity."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import torch

from .bridge import TorchBridge

# Compiled programs and bridges are memoised so that a second run on the same log-density
# (another seed, more draws, a cache recompute) does not pay JAX's compilation again
# (compiling vmapped NUTS + window adaptation takes ~5-15 s on a CPU).
_MEMO_SIZE = 8
_PROGRAMS: "OrderedDict[tuple, tuple]" = OrderedDict()
_BRIDGES: "OrderedDict[tuple, TorchBridge]" = OrderedDict()


def _memo_put(memo: OrderedDict, key: tuple, value: Any) -> Any:
    memo[key] = value
    memo.move_to_end(key)
    while len(memo) > _MEMO_SIZE:
        memo.popitem(last=False)
    return value


def _fn_identity(fn: Any) -> Any:
    # Bound methods are new objects at every attribute access: key them by (self, function).
    # The memo holds a strong reference to fn, so id(self) cannot be recycled meanwhile.
    if hasattr(fn, "__self__") and hasattr(fn, "__func__"):
        return ("method", id(fn.__self__), fn.__func__)
    return ("object", id(fn))


def _bridge_for(log_density: Callable, dim: int, torch_dtype: torch.dtype) -> TorchBridge:
    key = (_fn_identity(log_density), dim, torch_dtype)
    if key in _BRIDGES:
        _BRIDGES.move_to_end(key)
        return _BRIDGES[key]
    return _memo_put(_BRIDGES, key, TorchBridge(log_density, dim, torch_dtype=torch_dtype, validate=False))


def _programs(logdensity_fn, warmup, chunk, dense_mass, target_acceptance_rate, max_num_doublings):
    """(run_warmup, sample_chunk), jitted and vmapped over chains, memoised (see above)."""
    import blackjax
    import jax

    key = (_fn_identity(logdensity_fn), warmup, chunk, dense_mass, target_acceptance_rate,
           max_num_doublings)
    if key in _PROGRAMS:
        _PROGRAMS.move_to_end(key)
        return _PROGRAMS[key]
    warm = blackjax.window_adaptation(
        blackjax.nuts,
        logdensity_fn,
        is_mass_matrix_diagonal=not dense_mass,
        target_acceptance_rate=target_acceptance_rate,
        adaptation_info_fn=blackjax.adaptation.base.get_filter_adapt_info_fn(
            info_keys={"num_integration_steps"}
        ),
        max_num_doublings=max_num_doublings,
    )

    def one_chain_warmup(k, x0):
        (state, params), info = warm.run(k, x0, num_steps=warmup)
        return (state, params["step_size"], params["inverse_mass_matrix"],
                info.info.num_integration_steps)

    def one_chain_step(state, k, step_size, inverse_mass_matrix):
        kernel = blackjax.nuts(logdensity_fn, step_size=step_size,
                               inverse_mass_matrix=inverse_mass_matrix,
                               max_num_doublings=max_num_doublings)
        return kernel.step(k, state)

    def sample_chunk(states, keys, step_size, inverse_mass_matrix):  # keys: (chunk, chains)
        def body(carry, ks):
            new, info = jax.vmap(one_chain_step)(carry, ks, step_size, inverse_mass_matrix)
            return new, (new.position, info.is_divergent, info.num_integration_steps)

        return jax.lax.scan(body, states, keys)

    programs = (jax.jit(jax.vmap(one_chain_warmup)), jax.jit(sample_chunk))
    return _memo_put(_PROGRAMS, key, programs)
