"""``fit()`` without ``steps``: train in rounds until the mass diagnostics have settled.

A round is a run of ``round_steps`` steps with its own cosine learning-rate decay (the first
also anneals the target, over ``anneal_steps``). At the end of each round the sampler's
reliability check runs (:mod:`freeflow.reliability`: Pareto k̂, importance ESS, raw against
importance-weighted estimates and, for a mixture, whether its weights match their
importance-weighted values). If it passes, training stops; otherwise the run is extended by
another round (the cosine decay is stretched over the longer run, so the learning rate
jumps back up: to lr/2 for the second round), up to
``max_steps``. Only generators with an exact log q can be checked; the others train
``max_steps`` steps. The decision uses only the current state (fixed evaluation seed), so a
run resumed from a checkpoint decides exactly as the uninterrupted one.
"""
from __future__ import annotations

from ..train.trainer import Callback

__all__ = ["AutoStop"]


class AutoStop(Callback):
    def __init__(self, sampler, auto: dict):
        self.sampler, self.auto = sampler, auto

    def on_step_end(self, trainer, state, info):
        auto = self.auto
        if auto.get("stopped_at") is not None or state.step != state.total_steps:
            return
        rep = self.sampler.reliability()
        self.sampler.last_reliability = rep  # fit's final check reuses it (same state, same seed)
        info = info.with_extra(round_check=rep.verdict)
        auto.setdefault("rounds", []).append({"step": state.step, "trusted": rep.trusted,
                                              "reasons": list(rep.reasons)})
        if rep.trusted is False and state.step + auto["round_steps"] <= auto["max_steps"]:
            state.total_steps = state.step + auto["round_steps"]
        else:
            auto["stopped_at"] = state.step
        return info
