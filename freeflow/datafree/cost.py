"""The default batch from the measured cost of the log-density.

A cheap log-density (microseconds per row) trains with the default batch of 1024 draws per
step. A log-density that costs a Cholesky or a large likelihood per row (a GP-latent model, an
item-response model with 4·10⁴ observations) would spend most of a minute per step there, and
a fit would take hours. So, when the user does not choose ``batch_size``, the sampler times one
value-and-gradient call on ``PROBE_ROWS`` rows (after one call that compiles or warms caches)
and halves the batch until a step's log-density work fits ``STEP_BUDGET_SECONDS``, down to
``MIN_AUTO_BATCH``. The MCMC check then runs as many chains as the batch has rows (its
evaluations cost the same as the training's), at least ``MIN_AUTO_BATCH``, and the Gibbs check
fewer base points and coordinates (:func:`freeflow.datafree.verdict.gibbs_check`).

An explicit ``batch_size`` skips the probe, and so does data-parallel training (several
``torch.distributed`` processes must agree on the batch). A probe call that fails raises a ValueError naming
the log-density; one that takes longer than ``PROBE_LIMIT_SECONDS`` raises too, with the
measured time and what to do (pass ``batch_size`` to skip the probe).
"""
from __future__ import annotations

import time

import torch

from ..placement import noise_generator
from ..train.distributed import world
from ..validation import log_density_and_score

__all__ = ["probe_cost", "batch_for_cost", "cost_settings", "time_limit_callback", "PROBE_ROWS", "STEP_BUDGET_SECONDS", "MIN_AUTO_BATCH",
           "PROBE_LIMIT_SECONDS"]

PROBE_ROWS = 256
#: log-density seconds per training step (value and gradient) that the default batch aims at
STEP_BUDGET_SECONDS = 0.1
MIN_AUTO_BATCH = 256
PROBE_LIMIT_SECONDS = 60.0


def probe_cost(log_density, dim: int, *, rows: int = PROBE_ROWS, name: str = "log_density",
               seed: int = 4321) -> float:
    """Seconds per row of one value-and-gradient call of ``log_density`` on ``rows`` standard
    normal rows (the second of two calls: the first may compile)."""
    x = torch.randn(rows, dim, generator=noise_generator(seed))  # (the placed sampler's device and dtype)
    spent = []
    for _ in range(2):
        t0 = time.perf_counter()
        try:
            log_density_and_score(log_density, x, name=name, max_bad_fraction=1.0)
        except (TypeError, ValueError, FloatingPointError):
            raise
        except Exception as e:
            raise ValueError(f"{name} failed on the cost probe, a batch of shape ({rows}, {dim}): "
                             f"{type(e).__name__}: {e}") from e
        spent.append(time.perf_counter() - t0)
        if spent[-1] > PROBE_LIMIT_SECONDS:
            raise ValueError(
                f"{name}: one value-and-gradient call on {rows} rows took {spent[-1]:.0f} s "
                f"(> {PROBE_LIMIT_SECONDS:.0f} s), so a fit would take days; make the log-density "
                "cheaper, or pass batch_size= to skip this probe")
    return spent[-1] / rows


def batch_for_cost(seconds_per_row: float, default: int) -> int:
    """The default batch halved until ``batch × seconds_per_row ≤ STEP_BUDGET_SECONDS`` or it
    reaches ``MIN_AUTO_BATCH`` (a default at or below the floor is kept)."""
    batch = int(default)
    while batch > MIN_AUTO_BATCH and batch * seconds_per_row > STEP_BUDGET_SECONDS:
        batch //= 2
    return batch


def cost_settings(log_density, dim: int, settings: dict, default_batch: int, *, name: str = "log_density") -> dict:
    """The settings the probe decides: ``batch_size`` (unless given) and ``check_chains``
    (unless given: the probed batch where it was reduced, else the MCMC check's 1024)."""
    out = {}
    if "batch_size" not in settings and world()[1] == 1:  # (several processes: the default
        # batch, the same on every process; a per-process timing could split them differently)
        batch = batch_for_cost(probe_cost(log_density, dim, name=name), default_batch)
        out["batch_size"] = batch
        if settings.get("check_chains") is None and batch < default_batch:
            out["check_chains"] = batch
    return out


def time_limit_callback(time_limit):
    """``fit(time_limit=)``: a :class:`~freeflow.train.TimeLimit` from now; refused where
    several ``torch.distributed`` processes train together (they must stop at the same step)."""
    from ..train import TimeLimit
    from ..validation import check_float

    seconds = check_float(time_limit, "time_limit", low=0.0, low_open=True)
    if world()[1] > 1:
        raise ValueError("time_limit: not available with several torch.distributed processes "
                         "(each would stop at a different step); pass steps= instead")
    return TimeLimit(seconds, start=time.perf_counter())
