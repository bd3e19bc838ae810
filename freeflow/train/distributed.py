"""Data-parallel data-free training: one global batch split over torch.distributed processes.

Under ``torchrun`` (or any ``torch.distributed`` process group of several processes: gloo on the
CPU, nccl on GPUs) a :class:`~freeflow.OneStepSampler` trains one global batch of
``batch_size`` draws split into equal shards, one per process:

1. every process draws the same global noise (the same seed, the same stream) and runs the
   generator on its own shard only, with its graph;
2. log p̃ and ∇log p̃ — the expensive part for large data or a Cholesky per draw — are
   evaluated on the shard only, and the shards' draws, values and gradients are gathered
   (``all_gather``) so that every process holds the global batch;
3. the drift's batch-level algebra (self-normalised ratios, the estimator of q, RMS
   normalisation, the mixture reaction) runs on the global batch, identically everywhere;
4. each process regresses its shard onto its shard of the drift, and
   ``DistributedDataParallel`` averages the gradients (all-reduce): with equal shards, the mean
   of the shard means is the global batch mean, so the update is the one-process update at the
   same global batch and seed, up to the order of floating-point sums.

Nothing changes in a single process: :func:`shard` is None and :func:`wrap` returns the module.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["world", "shard", "gather_rows", "wrap"]


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without an initialised process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(n: int, name: str = "batch_size") -> slice | None:
    """This process's rows of a global batch of n (None in a single process); n must split evenly."""
    rank, size = world()
    if size == 1:
        return None
    if n % size:
        raise ValueError(f"{name}={n} must be a multiple of the number of processes ({size}) "
                         "for data-parallel training")
    per = n // size
    return slice(rank * per, (rank + 1) * per)


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """The processes' equal shards (m, ...) concatenated in rank order (world·m, ...), detached."""
    import torch.distributed as dist

    _, size = world()
    if size == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(size)]
    dist.all_gather(parts, t.detach().contiguous())
    return torch.cat(parts)


def wrap(module: nn.Module) -> nn.Module:
    """``module`` in DistributedDataParallel when several processes train (else itself).

    Parameters that a step leaves without gradient (a mixture's weights, moved by the reaction
    instead) are allowed (``find_unused_parameters``)."""
    _, size = world()
    if size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    dev = next(module.parameters()).device
    return DDP(module, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=True)
