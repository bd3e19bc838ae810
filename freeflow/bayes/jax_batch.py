"""Batches for a jit-compiled, vmapped JAX log-density (NumPyro's, or PyMC's through
PyTensor's JAX backend).

``jax.jit`` compiles once per input shape: a call of every batch size would compile on every
call. Batches are therefore cut into calls whose sizes are powers of two (the binary digits of
the batch size, at most :data:`MAX_ROWS` rows a call), the last one padded with zero rows to
:data:`MIN_ROWS`: training, checks and sampling compile a handful of shapes, and fewer than
MIN_ROWS rows a batch are wasted (padding a batch of 1100 rows to 2048 would evaluate 86 %
more rows). The padded rows' outputs are dropped."""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np

__all__ = ["MAX_ROWS", "MIN_ROWS", "padded_rows", "chunks", "call_chunked", "call_chunked_single"]

MAX_ROWS = 2048  # rows per call: see freeflow.importance.LOG_DENSITY_CHUNK
MIN_ROWS = 8


def padded_rows(n: int) -> int:
    """The padded size of a call of n rows: the next power of two, at least MIN_ROWS."""
    return max(MIN_ROWS, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


def chunks(x: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(m, padded) per call: m real rows of ``x`` first, then zero rows (the last call only)."""
    n, start = x.shape[0], 0
    while start < n:
        rest = n - start
        size = min(MAX_ROWS, 1 << (rest.bit_length() - 1)) if rest >= MIN_ROWS else rest
        padded = np.zeros((padded_rows(size), x.shape[1]), dtype=x.dtype)
        padded[:size] = x[start:start + size]
        yield size, padded
        start += size


def call_chunked(value_and_grad: Callable, value: Callable, x: np.ndarray, grad: bool):
    """(log p̃ (n,), ∇ (n, d) or None) of every row of ``x`` (float64), through
    ``value_and_grad`` / ``value`` (jit(vmap(...)) functions of a (m, d) batch)."""
    vals, grads = [], []
    for m, padded in chunks(x):
        if grad:
            v, g = value_and_grad(padded)
            grads.append(np.asarray(g)[:m])
        else:
            v = value(padded)
        vals.append(np.asarray(v)[:m])
    return np.concatenate(vals), (np.concatenate(grads) if grad else None)


def call_chunked_single(value_and_grad: Callable, value: Callable, x: np.ndarray, grad: bool):
    """:func:`call_chunked` in single precision: the same jitted functions traced and run with
    JAX's 64-bit types off (float64 constants of the model become float32; JAX's notices
    about it are silenced), on ``x`` as float32. Outputs as float64 arrays."""
    import warnings

    import jax

    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Explicitly requested dtype")
        v, g = call_chunked(value_and_grad, value, np.asarray(x, dtype=np.float32), grad)
    return v.astype(np.float64), (None if g is None else g.astype(np.float64))
