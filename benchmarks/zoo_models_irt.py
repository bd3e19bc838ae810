"""An item-response posterior of the zoo (benchmarks/zoo_models.py registers it), written after the
rest and not tuned on: the one-parameter (Rasch) model in the shape of the public collection's
synthetic item-response benchmark, 400 students × 100 questions, every response observed:

    P(student i answers question j correctly) = sigmoid(δ + α_i − β_j),
    δ ~ N(0.75, 1), α_i ~ N(0, 1), β_j ~ N(0, 1),

501 unconstrained coordinates, all coupled through δ (a shift of δ against every α_i, or of every
β_j, leaves the likelihood unchanged; only the priors fix it). The responses are simulated from the
model with a fixed seed."""
from __future__ import annotations

import functools

import numpy as np
import numpyro
import numpyro.distributions as dist


def irt_1pl(y):
    """y (students, questions) of 0/1."""
    students, questions = y.shape
    delta = numpyro.sample("mean_ability", dist.Normal(0.75, 1.0))
    with numpyro.plate("students", students):
        ability = numpyro.sample("ability", dist.Normal(0.0, 1.0))
    with numpyro.plate("questions", questions):
        difficulty = numpyro.sample("difficulty", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Bernoulli(logits=delta + ability[:, None] - difficulty).to_event(2), obs=y)


@functools.lru_cache(maxsize=None)
def irt_1pl_data(seed: int = 20271207, students: int = 400, questions: int = 100):
    """(y,) simulated from the prior's draws."""
    rng = np.random.default_rng(seed)
    delta, ability, difficulty = 0.75 + rng.normal(), rng.normal(size=students), rng.normal(size=questions)
    p = 1 / (1 + np.exp(-(delta + ability[:, None] - difficulty)))
    return ((rng.uniform(size=p.shape) < p).astype(np.float64),)


def entries() -> dict:
    return {"irt_1pl": (irt_1pl, irt_1pl_data(), {},
                        "1PL (Rasch) IRT, 400 students x 100 questions, all observed, "
                        "mean ability ~ N(0.75, 1), abilities, difficulties ~ N(0, 1)")}


DIMS = {"irt_1pl": 501}
TWINS: dict = {}
DATA = (irt_1pl_data,)
