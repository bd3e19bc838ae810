"""What a training step carries (:class:`TrainState`), what it reports (:class:`StepInfo`) and the
run's record of it (:class:`History`).

``Trainer.step`` returns a :class:`StepInfo`: a frozen record with the fields the trainer itself
measures (``step``, ``lr``, ``loss``, ``grad_norm``, ``seconds``, ``recoveries`` and, on the
first good step after a failed one, ``recovered_from``) and, in ``extra``, the diagnostics of
the drift that produced the step (their names depend on the drift: ``beta``, ``ess``,
``outside_support``, ``weight_entropy``, ``jko_loss``, ...; see each drift's docs). The data-free
drift's batch ESS is ``ess_fraction`` (a fraction, arviz's name); ``info["ess"]``, its former
name, still reads it with a DeprecationWarning.

A StepInfo is also a read-only mapping over all of these names, so the readers written for the
plain dicts of earlier versions keep working: ``info["loss"]``, ``info.get("beta")``,
``"birth" in info``, ``dict(info)``. ``recovered_from`` is a key only when it is set. A name
the drift reports never shadows a trainer field (the trainer's value wins).

A callback that adds diagnostics (as :class:`~freeflow.datafree.autostop.AutoStop` adds
``round_check``) returns ``info.with_extra(name=value)`` from ``on_step_end``: the later
callbacks and the history see the returned record.

:class:`History` is the list of a fit's StepInfo records; ``history["loss"]`` gives a column
(None where a row lacks the name). Checkpoints hold its rows as plain dicts
(:meth:`History.rows`); ``History(rows)`` turns such dicts back into StepInfo records.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from ..generators.mlp import EMA

__all__ = ["TrainState", "StepInfo", "History"]

#: the trainer's own fields, in the order a row lists them
CORE = ("step", "lr", "loss", "grad_norm", "seconds", "recoveries")


@dataclass(frozen=True, eq=False)
class StepInfo(Mapping):
    """One step's diagnostics: the trainer's measurements and the drift's (``extra``).

    Attributes:
        step: steps completed after this one (1 for the first step).
        lr: the learning rate used (schedule × the recovery factor).
        loss: the regression loss of the step (the JKO step: at its first inner iterate).
        grad_norm: global gradient norm before clipping.
        seconds: wall time of the step.
        recoveries: failed attempts restored and retried so far in the run.
        recovered_from: on the first good step after a recovery, the error recovered from;
            else None (and then not a key of the mapping).
        extra: the drift's diagnostics and those callbacks added (read-only).
    """

    step: int
    lr: float
    loss: float
    grad_norm: float
    seconds: float
    recoveries: int = 0
    recovered_from: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "extra", MappingProxyType(
            {k: v for k, v in dict(self.extra).items() if k not in CORE and k != "recovered_from"}))

    # -- the mapping view ------------------------------------------------------------------
    def _keys(self) -> list[str]:
        keys = list(CORE)
        if self.recovered_from is not None:
            keys.append("recovered_from")
        return keys + list(self.extra)

    def __getitem__(self, key: str) -> Any:
        if key in CORE or (key == "recovered_from" and self.recovered_from is not None):
            return getattr(self, key)
        if key == "ess" and "ess" not in self.extra and "ess_fraction" in self.extra:
            warnings.warn('the step diagnostic "ess" is now "ess_fraction" (a fraction of the batch)',
                          DeprecationWarning, stacklevel=3)
            return self.extra["ess_fraction"]
        return self.extra[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __eq__(self, other) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]  (extra may hold unhashable values)

    def __repr__(self) -> str:
        return f"StepInfo({', '.join(f'{k}={v!r}' for k, v in self.items())})"

    # -- building -------------------------------------------------------------------------
    def with_extra(self, **values: Any) -> "StepInfo":
        """A copy with ``values`` added to (or replacing names of) ``extra``."""
        return replace(self, extra={**self.extra, **values})

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> "StepInfo":
        """The record of a plain dict row (a checkpoint's history, an older version's info)."""
        if isinstance(row, StepInfo):
            return row
        core = {k: row.get(k) for k in CORE}
        core["recoveries"] = core["recoveries"] or 0
        rest = {k: v for k, v in row.items() if k not in CORE and k != "recovered_from"}
        return cls(**core, recovered_from=row.get("recovered_from"), extra=rest)


class History(list):
    """The per-step :class:`StepInfo` records of a fit; ``history["loss"]`` gives one column.

    Built from plain dict rows (a checkpoint's), it holds them as StepInfo records."""

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()):
        super().__init__(StepInfo.from_dict(r) for r in rows)

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return [row.get(key) for row in self]
        return super().__getitem__(key)

    def rows(self) -> list[dict[str, Any]]:
        """The rows as plain dicts (what checkpoints and JSON hold)."""
        return [dict(r) for r in self]


@dataclass
class TrainState:
    """Everything the next step needs; ``step`` counts completed steps.

    ``lr_factor`` multiplies the scheduled learning rate (< 1 after failed steps),
    ``recoveries`` counts failed attempts that were restored and retried, ``failure`` says why
    ``fit`` stopped early (None: it did not), ``failed_attempts`` counts the failures in a row
    at the current step (:mod:`freeflow.train.recovery`).

    Ownership (the state is changed in place, by these and nobody else):

    * ``generator``, ``ema``, ``optimizer``, ``rng``: set once by :meth:`Trainer.init`; their
      contents change in ``Trainer.step`` (and the JKO step), the recovery snapshot's
      ``restore`` and ``Trainer.load_state_dict``.
    * ``step``: ``Trainer.step`` (+1 per good step), the snapshot's ``restore``, ``load_state_dict``.
    * ``total_steps``: ``Trainer.fit`` (the run's length), ``load_state_dict``, and a callback's
      ``on_step_end``, the one place a callback may write: it extends or ends the run
      (``AutoStop`` adds a round).
    * ``elapsed``: ``Trainer.step`` and ``Trainer.fit``; ``lr_factor``, ``recoveries``,
      ``failed_attempts``, ``last_error``, ``failure``: the recovery logic (``Trainer.step``,
      ``Trainer.fit``, ``Trainer._recover``) and ``load_state_dict``.

    It is not an immutable record replaced at each step (blackjax's way): the generator, its
    EMA copy and the optimizer are torch objects updated in place by every optimiser step, and
    samplers, callbacks and the recovery snapshot hold this one object, so a fresh record per
    step would copy the counters while sharing (and mutating) everything that matters."""

    generator: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    rng: torch.Generator
    step: int = 0
    total_steps: int = 0
    elapsed: float = 0.0  # seconds spent in completed steps (carried across resumes)
    lr_factor: float = 1.0
    recoveries: int = 0
    failure: str | None = None
    failed_attempts: int = 0
    last_error: str | None = None  # the last failure recovered from (reported once in info)
