"""The data-free drift: V(x) = w(r̂(x)) · (β∇log p̃(x) − ∇log q̂(x)) on a generator batch.

Binds a log-density, a divergence, an estimator of q and the schedules to the trainer's drift
protocol (see :mod:`freeflow.train.trainer`). The maths is in :mod:`freeflow.velocities.fdiv`
and :mod:`freeflow.density`.

Target annealing: the flow targets an annealed density π_β with β ramped linearly from
``beta0`` to 1 over the first ``anneal_fraction`` of training, along one of two paths:

* ``"tempered"``: π_β ∝ p̃^β. Tempered modes are broader and overlap, so the flow spreads the
  samples over all of them before the modes sharpen — a standard aid for mode coverage. But
  p̃^β can be far broader than p̃: for a funnel its neck width exp(x₀/2)/√β explodes, and the
  generator follows it to overflow.
* ``"geometric"``: π_β ∝ ρ^(1−β) p̃^β with ρ = N(0, s² I) (s = ``base_scale``, the generator's
  initial scale): the path of annealed importance sampling from the generator's starting
  distribution to the target. At small β it is close to ρ, so it is never broader than the
  generator's start in directions where p̃ is flat or heavy-tailed; modes still emerge
  gradually as β grows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..density.base import DensityEstimator
from ..divergences import Divergence
from ..train.distributed import gather_rows, shard
from ..train.trainer import NonFiniteError, unwrap
from ..validation import LogDensity, all_finite, check_choice, check_float, log_density_and_score, outside_support
from ..velocities.common import rms_normalize
from ..velocities.fdiv import effective_sample_fraction, fdiv_velocity, log_ratio_snis, regularize_log_ratio

__all__ = ["ramp", "annealed", "DataFreeDrift"]

ANNEAL_PATHS = ("tempered", "geometric")
#: where q̂ is estimated from: a second, no-grad batch, or the training batch leaving one out
REFERENCES = ("independent", "loo")
#: the largest fraction of a batch that may fall outside the support (non-finite log p̃ or
#: gradient) before a step is refused; such samples get log p̃ = −inf (r = 0) and are pulled
#: back into the batch's bulk along ∇log q (see :func:`outside_support_velocity`)
MAX_OUTSIDE = 0.5


def annealed(log_p: torch.Tensor, score_p: torch.Tensor, x: torch.Tensor, beta: float,
             path: str = "tempered", base_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """log π_β and ∇log π_β at x from log p̃ and ∇log p̃ (up to a constant in log π_β).

    tempered: π_β = p̃^β;  geometric: π_β = N(0, base_scale² I)^(1−β) p̃^β.
    """
    if path == "tempered" or beta == 1.0:
        return beta * log_p, beta * score_p
    check_choice(path, ANNEAL_PATHS, "anneal_path")
    xs = x.to(score_p.dtype) / base_scale
    log_base = -0.5 * xs.pow(2).sum(-1)
    score_base = -xs / base_scale
    return beta * log_p + (1 - beta) * log_base.to(log_p.dtype), beta * score_p + (1 - beta) * score_base


def outside_support_velocity(v: torch.Tensor, score_q: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """Replace the drift of samples outside the support by a pull back along ∇log q, scaled to
    the RMS of the others' drift (their own drift is undefined: log p̃ there is not finite);
    the result is RMS-normalised."""
    if not bool(outside.any()):
        return rms_normalize(v)
    rms = v[~outside].pow(2).sum(-1).mean().sqrt() if bool((~outside).any()) else torch.ones(())
    back = score_q[outside]
    back = back / back.norm(dim=-1, keepdim=True).clamp_min(1e-12) * rms
    v = v.clone()
    v[outside] = back
    return rms_normalize(v)


def ramp(step: int, total_steps: int, start: float, end: float, fraction: float) -> float:
    """Linear ramp from ``start`` (step 0) to ``end`` (at ``fraction`` of the run), then flat."""
    if fraction <= 0 or start == end:
        return end
    t = min(step / max(fraction * total_steps, 1.0), 1.0)
    return start + (end - start) * t


@dataclass
class DataFreeDrift:
    """Drift for the data-free mode (MATH.md §2).

    Attributes:
        log_density: batched, differentiable log p̃ (n, d) -> (n,).
        divergence: supplies w(r).
        density: estimator of q, refitted to the generator at every step.
        noise_dim: dimension of the generator's input noise.
        batch_size: samples per step that carry gradient.
        reference: "independent" (q̂ from a second, no-grad batch of ``reference_size``) or
            "loo" (leave-one-out on the training batch itself).
        beta0, anneal_fraction: target annealing (β = 1 throughout when beta0 = 1).
        anneal_path, base_scale: "tempered" (p̃^β) or "geometric" (N(0, base_scale² I)^(1−β) p̃^β).
        max_ratio, temper: regularisation of r̂ (see :func:`regularize_log_ratio`).
        bandwidth_factor: (start, end) of a linear ramp of a KDE's ``factor`` over the
            annealing phase; None leaves the estimator alone.
        reaction: a :class:`~freeflow.datafree.reaction.MixtureReaction` (mixture generator only): the
            Fisher–Rao step on the mixture weights after each drift; None: transport only.
        anneal_steps: annealing length in steps, for runs whose length is not known in
            advance; None: ``anneal_fraction`` of the run.
        schedule: a :class:`~freeflow.datafree.schedule.CoverageSchedule` (``divergence="auto"``)
            that picks the divergence each step from the batch's missing mass; None: fixed.
    """

    log_density: LogDensity
    divergence: Divergence
    density: DensityEstimator
    noise_dim: int
    batch_size: int
    reference: str = "independent"
    reference_size: int | None = None
    beta0: float = 1.0
    anneal_fraction: float = 0.0
    max_ratio: float | None = 20.0
    temper: float = 1.0
    bandwidth_factor: tuple[float, float] | None = None
    anneal_path: str = "tempered"
    base_scale: float = 1.0
    reaction: Any = None
    anneal_steps: int | None = None
    schedule: Any = None

    def __post_init__(self):
        check_choice(self.anneal_path, ANNEAL_PATHS, "anneal_path")
        check_float(self.base_scale, "base_scale", low=0.0, low_open=True)
        check_choice(self.reference, REFERENCES, "reference")
        check_float(self.beta0, "beta0", low=0.0, high=1.0, low_open=True)

    def anneal_horizon(self, total_steps: int) -> float:
        """The run length the annealing fraction refers to: ``total_steps``, or for a run of
        unknown length (``fit()`` without steps) anneal_steps / anneal_fraction."""
        if self.anneal_steps is None or self.anneal_fraction <= 0:
            return total_steps
        return self.anneal_steps / self.anneal_fraction

    def beta(self, step: int, total_steps: int) -> float:
        return ramp(step, self.anneal_horizon(total_steps), self.beta0, 1.0, self.anneal_fraction)

    def batch_statistics(self, generator: nn.Module, step: int, rng: torch.Generator, total_steps: int):
        """Draw a batch and the quantities every data-free velocity needs.

        Returns x (with graph), its detached copy, β, and log π_β, ∇log π_β (the annealed
        target, :func:`annealed`), log q̂, ∇log q̂ and the un-annealed log p̃ at the batch (all
        detached).
        """
        z = torch.randn(self.batch_size, self.noise_dim, generator=rng)
        rows = shard(self.batch_size)  # this process's rows in data-parallel training (train.distributed)
        x = generator(z if rows is None else z[rows])  # (N, d) or the shard, with graph
        xd = gather_rows(x.detach())  # the global batch
        beta = self.beta(step, total_steps)
        if self.bandwidth_factor is not None and hasattr(self.density, "factor"):
            f0, f1 = self.bandwidth_factor
            self.density.factor = ramp(step, self.anneal_horizon(total_steps), f0, f1, self.anneal_fraction)
        with torch.no_grad():
            if getattr(self.density, "exact", False):
                # the generator's own log q: nothing to fit, no reference batch to draw
                log_q, score_q = self.density.log_prob_and_score(xd)
            elif self.reference == "independent":
                m = self.reference_size or self.batch_size
                x_ref = generator(torch.randn(m, self.noise_dim, generator=rng))
                self.density.fit(x_ref)
                log_q, score_q = self.density.log_prob_and_score(xd)
            else:
                self.density.fit(xd)
                log_q, score_q = self.density.log_prob_and_score(xd, same_batch=True)
        log_p, score_p = log_density_and_score(self.log_density, xd if rows is None else xd[rows], step=step,
                                               max_bad_fraction=MAX_OUTSIDE)
        log_p, score_p = gather_rows(log_p), gather_rows(score_p)
        self.outside = outside_support(log_p, score_p)
        if int(self.outside.sum()) > MAX_OUTSIDE * len(self.outside):
            bad = self.outside
            raise NonFiniteError(
                f"log_density has a non-finite gradient at step {step} ({int(bad.sum())} of {len(bad)} "
                f"samples; the largest |x| in the batch is {float(xd.abs().max()):.3g}). If the samples "
                f"diverged, the annealed target may be too broad: try anneal_path='geometric' or beta0=1")
        if not all_finite(log_q, score_q):
            raise NonFiniteError(f"non-finite estimate of log q or its score at step {step}")
        log_pi, score_pi = annealed(log_p, score_p, xd, beta, self.anneal_path, self.base_scale)
        return x, xd, beta, log_pi, score_pi, log_q, score_q, log_p

    def __call__(self, generator: nn.Module, step: int, rng: torch.Generator, *, total_steps: int,
                 update: bool = True):
        """x (with graph), V(x) and diagnostics.  ``update=False`` (the JKO step's inner
        evaluations, :mod:`freeflow.train.jko`) leaves the state that carries across steps
        alone: no divergence-schedule update, no Fisher–Rao step on mixture weights."""
        x, xd, beta, log_p, score_p, log_q, score_q, log_p_raw = self.batch_statistics(
            generator, step, rng, total_steps)
        with torch.no_grad():
            raw_log_r = log_ratio_snis(log_p, log_q)
            log_r = regularize_log_ratio(raw_log_r, max_ratio=self.max_ratio, temper=self.temper)
            extra = self.choose_divergence(log_r, beta, step) if update else {}
            # rows outside the support get a finite placeholder ratio; their drift is replaced
            log_r_v = torch.where(self.outside, torch.zeros_like(log_r), log_r)
            v = outside_support_velocity(fdiv_velocity(score_p, score_q, log_r_v, self.divergence),
                                         score_q, self.outside)
            info = {
                "beta": beta,
                "ess_fraction": float(effective_sample_fraction(log_p - log_q)),
                "max_log_r": float(raw_log_r.max()),
                "clipped": float((log_r < raw_log_r * self.temper - 1e-6).float().mean()),
                "log_p_mean": float(log_p_raw[~self.outside].mean()),
                "outside_support": int(self.outside.sum()),
                **extra,
            }
            if hasattr(self.density, "kernel_std"):
                info["kernel_std"] = float(self.density.kernel_std.mean())
            if update:
                info.update(self.react(unwrap(generator), xd, log_r, log_p - log_q, beta, step, total_steps, rng))
        rows = shard(self.batch_size)
        return x, (v if rows is None else v[rows]), info

    def choose_divergence(self, log_r, beta, step) -> dict:
        """With a schedule: set this step's divergence (drift and reaction) from log r̂."""
        if self.schedule is None:
            return {}
        self.divergence = self.schedule.update(log_r[~self.outside], beta, step)
        if self.reaction is not None:
            self.reaction.divergence = self.divergence
        return {"missing_mass": float(self.schedule.ema), "divergence": self.divergence.name}

    def react(self, generator, xd, log_r, log_w, beta, step, total_steps, rng) -> dict:
        """The Fisher–Rao step on a mixture generator's weights (nothing without ``reaction``)."""
        if self.reaction is None:
            return {}

        def log_target(c):
            lp = self.log_density(c)
            return annealed(lp, torch.zeros_like(c), c, beta, self.anneal_path, self.base_scale)[0]

        log_resp = self.density.responsibilities_at(xd) if hasattr(self.density, "responsibilities_at") else None
        return self.reaction(generator, xd, log_r, log_w, log_target, step=step, total_steps=total_steps,
                             rng=rng, log_resp=log_resp)

    def state_dict(self) -> dict:
        out = {"density": self.density.state_dict()}
        if self.schedule is not None:
            out["schedule"] = self.schedule.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        self.density.load_state_dict(state.get("density", {}))
        if self.schedule is not None and "schedule" in state:
            self.schedule.load_state_dict(state["schedule"])
            self.divergence = self.schedule.current
            if self.reaction is not None:
                self.reaction.divergence = self.divergence
