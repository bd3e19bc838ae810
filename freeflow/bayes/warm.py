"""New data, same model: start from a trained sampler instead of from scratch.

    sampler_b = ff.bayes.with_data(sampler_a, X_new, y=y_new)      # a NumPyro model's arguments
    idata_b = ff.sample(model, model_args=(X_new,), model_kwargs={"y": y_new}, init=sampler_a)

The new sampler is the old one (generator, EMA weights, optimiser state, frame, settings:
a checkpoint of it, loaded on the new posterior without the target check) continuing its run
on the new log-density, without annealing and at a constant learning rate (the old run's
cosine decay ended near zero).  :func:`warm_fit` first checks the old generator on the new posterior (the same
reliability check as ``fit()``: Pareto k̂, importance ESS, raw against weighted estimates) and
trains only while the check fails, in short rounds (``round_steps``, default 200), up to
``max_steps`` more steps.  When the data moved little, the old generator is often trusted at
once and costs only the check.

The parameters must be the same (names and shapes): the generator maps noise to the same
unconstrained space.  A ValueError names ``init`` otherwise.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

from ..io import atomic_torch_save
from .posterior import Posterior

__all__ = ["warm_start", "warm_fit", "with_data"]


def _same_layout(old: Posterior, new: Posterior) -> None:
    if old.names != new.names or old.raw_shapes != new.raw_shapes:
        raise ValueError(f"init: the previous sampler's parameters {dict(old.raw_shapes)} differ from the new "
                         f"model's {dict(new.raw_shapes)} (unconstrained shapes); a warm start needs the same "
                         "parameters")


def warm_start(previous: Any, model: Any = None, *, model_args: Sequence = (), model_kwargs: dict | None = None,
               **_ignored):
    """A OneStepSampler on the new posterior holding ``previous``'s trained state (unfitted on the
    new data: run :func:`warm_fit`).  ``model``: a Posterior, a PyMC model, a NumPyro model
    function, or None for ``previous``'s NumPyro model called with the new arguments."""
    from ..datafree.sampler import OneStepSampler
    from .build import make_target

    if not isinstance(previous, OneStepSampler) or not isinstance(previous.posterior, Posterior):
        raise TypeError(f"init must be a fitted OneStepSampler of a model (ff.Posterior, NumPyro, PyMC), "
                        f"got {type(previous).__name__}")
    if previous.steps_done == 0:
        raise ValueError("init: the previous sampler has not been trained (steps_done == 0)")
    if model is None:
        model = getattr(previous.posterior, "model", None)
        if model is None or not callable(model):
            raise ValueError("init: pass the model (or an ff.Posterior) for the new data; only a NumPyro "
                             "model can be re-called with new arguments")
    target, _ = make_target(model, model_args, model_kwargs, None)
    _same_layout(previous.posterior, target)
    state = previous.state_dict()
    # the continued run: no annealing (the old run's is over; a longer run must not restart it)
    # and a constant learning rate (the old cosine decay ended near zero, where nothing moves)
    state["settings"] = {**state["settings"], "anneal_fraction": 0.0, "lr_schedule": "constant"}
    state["auto"] = None  # the old run's stopping record is not this run's
    with tempfile.TemporaryDirectory(prefix="freeflow-warm-") as tmp:
        path = atomic_torch_save(state, Path(tmp) / "previous.pt")
        return OneStepSampler.load(path, target, check_target=False)


def warm_fit(sampler: Any, *, round_steps: int = 200, max_steps: int | None = None, steps: int | None = None,
             progress: bool = False, **fit_options) -> Any:
    """Check, then train in rounds of ``round_steps`` while the check fails (at most
    ``max_steps`` more steps, default the dimension's default budget); ``steps``: train exactly
    that many more steps instead.  Warns (ReliabilityWarning) if still untrusted."""
    from ..datafree.defaults import default_steps
    from ..reliability import ReliabilityWarning
    from ..validation import check_positive_int

    start = sampler.steps_done
    fit_options.pop("check", None)  # the check is this loop's stopping rule: always run
    if steps is not None:
        sampler.fit(start + check_positive_int(steps, "steps"), progress=progress, **fit_options)
        return sampler
    check_positive_int(round_steps, "round_steps")
    budget = default_steps(sampler.dim) if max_steps is None else check_positive_int(max_steps, "max_steps")
    rep = sampler.reliability(cheap_first=True)  # (partial: the same decision, cheaper)
    while rep.trusted is False and sampler.steps_done - start + round_steps <= budget:
        sampler.fit(sampler.steps_done + round_steps, progress=progress, check=False, **fit_options)
        rep = sampler.reliability(cheap_first=True)
    sampler.last_reliability = sampler.reliability() if rep.partial else rep
    rep = sampler.last_reliability
    if rep.trusted is False:
        warnings.warn(f"freeflow warm start after {sampler.steps_done - start} more steps: {rep.verdict}",
                      ReliabilityWarning, stacklevel=3)
    return sampler


def with_data(previous: Any, *model_args: Any, round_steps: int = 200, max_steps: int | None = None,
              progress: bool = False, **model_kwargs: Any):
    """``previous``'s NumPyro model on new arguments, warm-started from ``previous`` and fitted
    (:func:`warm_start` then :func:`warm_fit`).  ``round_steps``, ``max_steps`` and
    ``progress`` are freeflow's keywords; every other keyword is the model's."""
    sampler = warm_start(previous, None, model_args=model_args, model_kwargs=model_kwargs)
    return warm_fit(sampler, round_steps=round_steps, max_steps=max_steps, progress=progress)
