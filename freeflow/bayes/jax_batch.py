"""Batches for a jit-compiled, vmapped JAX log-density (NumPyro's, or PyMC's through
PyTensor's JAX backend).

``jax.jit`` compiles once per input shape: a call of every batch size would compile on every
call. Batches are therefore cut into calls of at most :data:`MAX_ROWS` rows, each padded with
zero rows to a power of two (at least :data:`MIN_ROWS`), so that training, checks and sampling
compile a handful of shapes. The padded rows' outputs are dropped."""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np

__all__ = ["MAX_ROWS", "MIN_ROWS", "padded_rows", "chunks", "call_chunked"]

MAX_ROWS = 2048  # rows per call: see freeflow.importance.LOG_DENSITY_CHUNK
MIN_ROWS = 8


def padded_rows(n: int) -> int:
    """The padded size of a call of n rows: the next power of two, at least MIN_ROWS."""
    return max(MIN_ROWS, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


def chunks(x: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(m, padded) per call: m real rows of ``x`` first, then zero rows."""
    for start in range(0, x.shape[0], MAX_ROWS):
        part = x[start:start + MAX_ROWS]
        m = part.shape[0]
        padded = np.zeros((padded_rows(m), x.shape[1]))
        padded[:m] = part
        yield m, padded


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
