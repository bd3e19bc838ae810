"""Recovery from a failed step: back to the last good state, a smaller learning rate, new noise.

A step can meet a NaN or an inf: the log-density is not finite on too much of the batch (the
samples wandered into a bad region), a velocity, loss, gradient or updated parameter is not
finite, an auxiliary flow or critic diverged.  Each of these raises a ``FloatingPointError``
(:class:`~freeflow.train.NonFiniteError` from the trainer's guards and the drifts) in the
middle of the step, when the generator, its optimizer and the drift's own state (estimator
of q, critic, memory bank, divergence schedule) may be half-updated.

:meth:`~freeflow.train.Trainer.fit` therefore takes a :class:`Snapshot` before every step and,
when the step raises, restores it exactly and tries again:

* the learning rate is multiplied by ``TrainConfig.recovery_lr_factor`` (0.5) for every failed
  attempt, down to ``min_lr_factor`` (1e-3); after each good step the factor grows back by
  2^(1/``recovery_lr_steps``) (it doubles back over 100 good steps), up to 1, so a transient
  failure costs little and a region where the full rate keeps failing is crossed at a smaller
  one (the floor keeps a run whose batches often fail, whatever the rate, from freezing);
* the random stream is NOT rewound: the next attempt draws new noise (a new batch);
* ``TrainState.recoveries`` counts the attempts retried; each step's info reports it, and the
  first good step after a recovery carries the error it recovered from (``recovered_from``).

What is restored: generator and optimizer exactly as before the failed step (the EMA copy is
updated only at the end of a step that succeeded, so a failed step leaves it as it was and it
needs no copy); the drift's carried state (estimator of q, critic, memory bank, schedule) as of
its latest copy, taken every ``TrainConfig.drift_snapshot_every`` steps. The learning-rate
factor comes back slowly, not at once: a rate restored right after each failure would retry
the failing rate again and again.

After more than ``TrainConfig.max_recoveries`` failed attempts in a row the loop stops cleanly:
the state is the last good one, ``TrainState.failure`` says why, and a
:class:`TrainingStoppedWarning` is issued; no exception reaches the caller.

The snapshot is cheap: the buffers are allocated once and every later snapshot copies the
tensors into them in place with one fused call, so a step pays about one memory copy of the
parameters and Adam moments (and holds one extra copy of them in memory). For the 32-D default
sampler (product mixture, batch 1024): 0.19 ms per step against a 39 ms step, 0.5%; 0.6% for
the flow generator, 0.9% with an auxiliary flow as q-estimator, whose state is deep-copied
every 10 steps (``python benchmarks/recovery_overhead.py``, 2-core x86-64 VM, torch 2.13.0 CPU,
one thread; benchmarks/results/recovery_overhead.json).

Under torch.distributed with several processes there is no recovery: a failure raises, as the
ranks could not agree to retry a step without an extra collective.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch

__all__ = ["Snapshot", "TrainingStoppedWarning", "copy_into", "clone_tree"]

_ATOMS = (int, float, bool, str, bytes, type(None))


class TrainingStoppedWarning(RuntimeWarning):
    """Training stopped before its last step: a step kept failing (``TrainState.failure``)."""


def copy_into(dst: Any, src: Any) -> Any:
    """A private copy of the tree ``src`` (dicts, lists, tuples of tensors and plain values),
    reusing the tensors of ``dst`` (a previous result) in place where shape, dtype and device
    match; everything else is copied afresh."""
    if isinstance(src, torch.Tensor):
        if (isinstance(dst, torch.Tensor) and dst.shape == src.shape and dst.dtype == src.dtype
                and dst.device == src.device):
            return dst.copy_(src.detach())
        return src.detach().clone()
    if isinstance(src, dict):
        old = dst if isinstance(dst, dict) else {}
        out = type(src)() if isinstance(src, OrderedDict) else {}
        for k, v in src.items():
            out[k] = copy_into(old.get(k), v)
        if hasattr(src, "_metadata"):  # nn.Module.state_dict's version records
            out._metadata = copy.deepcopy(src._metadata)
        return out
    if isinstance(src, (list, tuple)):
        old = dst if isinstance(dst, (list, tuple)) and len(dst) == len(src) else [None] * len(src)
        items = [copy_into(o, v) for o, v in zip(old, src)]
        return items if isinstance(src, list) else tuple(items)
    if isinstance(src, _ATOMS):
        return src
    return copy.deepcopy(src)


def clone_tree(tree: Any) -> Any:
    """A copy of ``tree`` sharing no tensor with it (what a ``load_state_dict`` that keeps
    references, e.g. an optimizer's, is given, so the snapshot's buffers stay private)."""
    return copy_into(None, tree)


class Snapshot:
    """The last good state of a run: generator and optimizer (every step) and the drift's
    carried state (every ``drift_every`` steps: its ``state_dict`` may be a deep copy, e.g. an
    auxiliary flow's, and a few steps' staleness of an estimator of q or a critic is harmless).

    ``take(state, drift, generator)`` before a step, ``restore`` (same arguments) after a failed
    one: ``state`` a :class:`~freeflow.train.TrainState`, ``generator`` the plain module inside
    ``state.generator`` (unwrapped from DistributedDataParallel). The trainer's random stream
    and its counters (step, elapsed time, learning-rate factor) are not part of it.

    Cost: every ``drift_every`` steps (and whenever the optimizer's state appears) a full pass
    finds the tensors to copy (each parameter and buffer, each Adam moment) and copies them; in
    between, one fused in-place copy of that list (``torch._foreach_copy_``) is the whole snapshot.
    The tensors are updated in place by the optimizer and the Fisher–Rao step, so the list stays
    valid; ``restore`` looks everything up afresh and checks the shapes. The EMA copy is not part
    of it: ``Trainer.step`` updates it last, after everything that can fail."""

    def __init__(self, drift_every: int = 1) -> None:
        self.drift_every = int(drift_every)
        self.step: int | None = None
        self.drift = None
        self._gen: list[torch.Tensor] | None = None
        self._opt: list | None = None
        self._groups: list[dict] = []
        self._plan: tuple[list, list, list] | None = None  # (copies, sources, non-tensor entries)
        self._plan_step = 0
        self._opt_len = -1

    @torch.no_grad()
    def take(self, state, drift, generator: torch.nn.Module) -> None:
        due = (self._plan is None or len(state.optimizer.state) != self._opt_len
               or not 0 <= state.step - self._plan_step < self.drift_every)
        if due:
            self._full(state, drift, generator)
        else:
            dst, src, extra = self._plan
            _foreach_copy(dst, src)
            for entry, key, current in extra:
                entry[key] = copy.deepcopy(current[key])
        self._groups = [{k: v for k, v in g.items() if k != "params"} for g in state.optimizer.param_groups]
        self.step = state.step

    def _full(self, state, drift, generator: torch.nn.Module) -> None:
        gen = [d[k] for d, k in _slots(generator)]
        self._gen = _copy_all(self._gen, gen)
        self._opt = _copy_optimizer_state(self._opt, state.optimizer)
        dst, src, extra = list(self._gen), list(gen), []
        for p, entry in self._opt:
            for k, v in (entry or {}).items():
                if isinstance(v, torch.Tensor):
                    dst.append(v)
                    src.append(state.optimizer.state[p][k])
                else:
                    extra.append((entry, k, state.optimizer.state[p]))
        self._plan, self._plan_step, self._opt_len = (dst, src, extra), state.step, len(state.optimizer.state)
        if _has_state(drift):
            self.drift = copy_into(self.drift, drift.state_dict())

    @torch.no_grad()
    def restore(self, state, drift, generator: torch.nn.Module) -> None:
        if self.step is None:
            raise RuntimeError("no snapshot to restore")
        now = [d[k] for d, k in _slots(generator)]
        saved = self._gen
        if len(now) != len(saved) or any(a.shape != b.shape or a.dtype != b.dtype for a, b in zip(now, saved)):
            raise RuntimeError("cannot undo the failed step: the generator's parameters changed shape")
        _foreach_copy(now, saved)
        _load_optimizer_state(state.optimizer, self._opt)
        for group, saved in zip(state.optimizer.param_groups, self._groups):
            group.update(saved)  # (the learning rate and the other settings of each group)
        if self.drift is not None and _has_state(drift):
            drift.load_state_dict(clone_tree(self.drift))
        state.step = self.step
        self._plan = None  # look the tensors up afresh at the next snapshot


def _slots(module: torch.nn.Module) -> list:
    """(attribute dict, name) of every parameter and buffer of ``module``."""
    return [(d, k) for m in module.modules() for d in (m._parameters, m._buffers)
            for k, v in d.items() if v is not None]


def _foreach_copy(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    if not dst:
        return
    try:
        torch._foreach_copy_(dst, src)  # one fused call (grouped by device and dtype inside)
    except (AttributeError, RuntimeError, TypeError):
        for a, b in zip(dst, src):
            a.copy_(b)


def _copy_all(saved: list | None, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    if saved is not None and len(saved) == len(tensors) and all(
            a.shape == b.shape and a.dtype == b.dtype and a.device == b.device for a, b in zip(saved, tensors)):
        _foreach_copy(saved, tensors)  # (under no_grad: nothing recorded)
        return saved
    return [t.detach().clone() for t in tensors]


def _copy_optimizer_state(saved: list | None, optimizer: torch.optim.Optimizer) -> list:
    """[(param, {key: tensor copy or value} or None)] for the optimizer's parameters, in place
    where the previous snapshot's tensors fit."""
    old = {id(p): entry for p, entry in saved} if saved else {}
    out, dst, src = [], [], []
    for group in optimizer.param_groups:
        for p in group["params"]:
            current = optimizer.state.get(p)
            if not current:
                out.append((p, None))
                continue
            prev = old.get(id(p)) or {}
            entry = {}
            for k, v in current.items():
                if isinstance(v, torch.Tensor):
                    b = prev.get(k)
                    if isinstance(b, torch.Tensor) and b.shape == v.shape and b.dtype == v.dtype and b.device == v.device:
                        dst.append(b)
                        src.append(v)
                        entry[k] = b
                    else:
                        entry[k] = v.detach().clone()
                else:
                    entry[k] = copy.deepcopy(v)
            out.append((p, entry))
    _foreach_copy(dst, src)
    return out


def _load_optimizer_state(optimizer: torch.optim.Optimizer, saved: list) -> None:
    dst, src = [], []
    for p, entry in saved:
        if entry is None:
            optimizer.state.pop(p, None)  # no state yet before the first step
            continue
        current = optimizer.state[p]
        for k in [k for k in current if k not in entry]:
            del current[k]
        for k, v in entry.items():
            c = current.get(k)
            if isinstance(v, torch.Tensor):
                if isinstance(c, torch.Tensor) and c.shape == v.shape and c.dtype == v.dtype and c.device == v.device:
                    dst.append(c)
                    src.append(v)
                else:
                    current[k] = v.clone()
            else:
                current[k] = copy.deepcopy(v)
    _foreach_copy(dst, src)


def _has_state(drift) -> bool:
    return hasattr(drift, "state_dict") and hasattr(drift, "load_state_dict")
