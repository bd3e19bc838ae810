"""``fit()`` without ``steps``: train in rounds until the mass diagnostics have settled.

A round is a run of ``round_steps`` steps with its own cosine learning-rate decay (the first
also anneals the target, over ``anneal_steps``). At the end of each round the sampler's
reliability check runs (:mod:`freeflow.reliability`: Pareto k̂, importance ESS, raw against
importance-weighted estimates and, for a mixture, whether its weights match their
importance-weighted values; then the Gibbs and MCMC checks), and a verdict that passes is
confirmed by the longer MCMC check of the final verdict (:func:`freeflow.datafree.verdict.confirm`).
Before the last round the check stops once the importance checks fail (the Gibbs and MCMC
checks could only add reasons; ``rounds[i]["partial"]``). If both pass, training stops; otherwise the run is extended by
another round (the cosine decay is stretched over the longer run, so the learning rate
jumps back up: to lr/2 for the second round), up to
``max_steps``. Only generators with an exact log q can be checked; the others train
``max_steps`` steps. The decision uses only the current state (fixed evaluation seed), so a
run resumed from a checkpoint decides exactly as the uninterrupted one.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from ..train.trainer import Callback
from .defaults import AUTO_ROUND_STEPS, default_steps
from .verdict import round_check

__all__ = ["AutoRun", "AutoStop"]


@dataclass
class AutoRun:
    """The record of a ``fit()`` without steps (``OneStepSampler.auto``); only :class:`AutoStop`
    changes it once it is made, and checkpoints hold it as a dict (:meth:`to_dict`).

    Attributes:
        max_steps: the most steps the run may take (:func:`default_steps` of the dimension).
        round_steps: the length of a round (the whole budget for a generator without exact log q,
            which cannot be checked).
        anneal_steps: the target's annealing length (over the first round).
        stopped_at: the step at which the run stopped (None: it goes on at the next ``fit()``).
        rounds: one ``{"step", "trusted", "reasons"}`` per check at the end of a round.
    """

    max_steps: int
    round_steps: int
    anneal_steps: int
    stopped_at: int | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, dim: int, exact: bool, anneal_fraction: float) -> "AutoRun":
        """A fresh run: rounds of ``AUTO_ROUND_STEPS`` (exact log q) up to the default budget."""
        budget = default_steps(dim)
        return cls(max_steps=budget, round_steps=AUTO_ROUND_STEPS if exact else budget,
                   anneal_steps=int(round(anneal_fraction * AUTO_ROUND_STEPS)))

    @property
    def done(self) -> bool:
        return self.stopped_at is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, key: str) -> Any:
        """Deprecated: ``auto["rounds"]`` (the dict of earlier versions); use ``auto.rounds``."""
        warnings.warn(f"sampler.auto[{key!r}] is deprecated: sampler.auto is an AutoRun record, "
                      f"use sampler.auto.{key}", DeprecationWarning, stacklevel=2)
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """Deprecated dict access, as :meth:`__getitem__`."""
        return self[key] if key in self.__dataclass_fields__ else default

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "AutoRun | None":
        """The record of a checkpoint's dict (also the string-keyed dict of earlier versions,
        which had no ``rounds`` before the first check); None stays None."""
        if d is None or isinstance(d, AutoRun):
            return d
        return cls(max_steps=int(d["max_steps"]), round_steps=int(d["round_steps"]),
                   anneal_steps=int(d["anneal_steps"]),
                   stopped_at=None if d.get("stopped_at") is None else int(d["stopped_at"]),
                   rounds=[dict(r) for r in d.get("rounds", [])])


class AutoStop(Callback):
    """At the end of each round: check the sampler, then add a round or stop (``run.stopped_at``)."""

    def __init__(self, sampler, run: AutoRun):
        self.sampler, self.run = sampler, run

    def on_step_end(self, trainer, state, info):
        run = self.run
        if run.done or state.step != state.total_steps:
            return None
        last = state.step + run.round_steps > run.max_steps
        rep = round_check(self.sampler, last)  # (trusted: confirmed by the final verdict's MCMC check)
        # fit's final check reuses a complete one (same state, same seed)
        self.sampler.last_reliability = None if rep.partial else rep
        run.rounds.append({"step": state.step, "trusted": rep.trusted, "reasons": list(rep.reasons),
                           "partial": rep.partial})
        if rep.trusted is False and state.step + run.round_steps <= run.max_steps:
            state.total_steps = state.step + run.round_steps
        else:
            run.stopped_at = state.step
        return info.with_extra(round_check=rep.verdict)
