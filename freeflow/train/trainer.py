"""The one training loop: compress a Wasserstein gradient flow into a generator (MATH.md §1).

Every mode (data-free sampling, point clouds, images) runs this loop; they differ only in the
*drift*, an object called as ``drift(generator, step, rng, total_steps=T) -> (x, v, info)``
that draws the generator's inputs itself, returns x = generator(inputs) WITH its graph, the
velocity v at x (detached, RMS-normalised) and a dict of float diagnostics.  A drift may carry
state across steps (``state_dict``/``load_state_dict``), e.g. an auxiliary flow.

One step regresses the generator onto its own moved samples,

    L(θ) = mean_i ‖x_i − sg(x_i + η v_i)‖²,

so one optimiser step moves the samples, to first order, along v: an explicit Euler step of
∂_t q = −∇·(q v).  ``TrainConfig(step="jko")`` takes the implicit (proximal, JKO) step
instead: M inner steps on mean_i ‖x_i(θ) − sg(G_{θ_k}(z_i) + τ v(x_i(θ)))‖², the velocity
re-evaluated at each inner iterate on the same noise (:mod:`freeflow.train.jko`).

Style follows blackjax: ``init() -> TrainState``; ``step(state) -> (state, info)`` with ``info``
a frozen :class:`~freeflow.train.info.StepInfo`; the loop (``fit``) and its progress bar,
logging and checkpoints are callbacks around it. Unlike blackjax's, the state is updated in
place (see :class:`TrainState` for who may change which field).

``step`` raises on a NaN/inf (:class:`NonFiniteError`, a FloatingPointError); ``fit`` never
aborts on one: it returns to the state before the failed step, halves the learning rate and
tries again with new noise, and after ``max_recoveries`` failures in a row stops cleanly with
``state.failure`` set (:mod:`freeflow.train.recovery`).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

import torch
from torch import nn

from ..generators.mlp import EMA
from ..placement import noise_generator
from ..validation import all_finite, check_choice, check_float, check_int, check_positive_int
from .state import History, StepInfo, TrainState
from .jko import STEPS, jko_update
from .recovery import Snapshot, TrainingStoppedWarning

Tensor = torch.Tensor

__all__ = ["TrainConfig", "TrainState", "Trainer", "Drift", "History", "StepInfo", "lr_at", "NonFiniteError",
           "unwrap", "TrainingStoppedWarning"]


#: the learning-rate schedules of ``TrainConfig.lr_schedule``
LR_SCHEDULES = ("cosine", "constant")


class NonFiniteError(FloatingPointError):
    """A NaN/inf appeared during training; the message names the step and the statistic."""


class Drift(Protocol):
    def __call__(
        self, generator: nn.Module, step: int, rng: torch.Generator, *, total_steps: int
    ) -> tuple[Tensor, Tensor, dict[str, float]]: ...


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (numbers; the structure lives in the drift).

    Attributes:
        lr: peak Adam learning rate.
        lr_schedule: "cosine" (decay to ``min_lr_ratio``·lr) or "constant".
        warmup_steps: linear warm-up length.
        min_lr_ratio: floor of the cosine decay.
        step_size: η, the Euler step in units of the batch's RMS drift.
        grad_clip: max global gradient norm (None: off).
        ema_decay: decay of the EMA copy used for sampling.
        betas, weight_decay: Adam(W) settings.
        step: "explicit" (default: one regression step onto sg(x + η v), the explicit Euler
            step) or "jko" (the implicit, proximal step: ``jko_inner`` optimiser steps on the
            JKO objective with proximity weight 1/2τ; :mod:`freeflow.train.jko`).
        jko_tau: τ of the JKO step in the same units as ``step_size`` (the RMS-normalised
            drift); None: τ = ``step_size``.
        jko_inner: M, inner optimiser steps per JKO step (the proximal problem is solved
            warm-started from θ_k, so a few suffice; 1 reproduces the explicit step).
        max_recoveries: failed attempts of one step (NaN/inf anywhere in it) that ``fit``
            restores and retries; one more failure in a row stops training cleanly
            (``TrainState.failure``). 0: stop at the first failure (:mod:`.recovery`).
        recovery_lr_factor: learning-rate multiplier applied per failed attempt, in (0, 1],
            down to ``min_lr_factor`` (where batches fail whatever the rate, e.g. a log-density
            that is NaN on much of the generator's mass, a smaller rate does not help).
        recovery_lr_steps: after a failure, the multiplier doubles back toward 1 over this
            many good steps; None: it stays reduced for the rest of the run.
        drift_snapshot_every: the drift's carried state (estimator of q, critic, memory bank)
            is copied for recovery every this many steps (generator and optimizer: every step;
            the EMA is only updated by steps that succeed); a failed step restores the latest copy.
    """

    lr: float = 1e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    step_size: float = 0.5
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    step: str = "explicit"
    jko_tau: float | None = None
    jko_inner: int = 5
    max_recoveries: int = 20
    recovery_lr_factor: float = 0.5
    min_lr_factor: float = 1e-3
    recovery_lr_steps: int | None = 100
    drift_snapshot_every: int = 10

    def __post_init__(self):
        check_float(self.lr, "lr", low=0.0, low_open=True)
        check_choice(self.lr_schedule, LR_SCHEDULES, "lr_schedule")
        check_int(self.warmup_steps, "warmup_steps", minimum=0)
        check_float(self.step_size, "step_size", low=0.0, low_open=True)
        check_float(self.grad_clip, "grad_clip", low=0.0, low_open=True, allow_none=True)
        check_choice(self.step, STEPS, "step")
        check_float(self.jko_tau, "jko_tau", low=0.0, low_open=True, allow_none=True)
        check_int(self.jko_inner, "jko_inner", minimum=1)
        check_int(self.max_recoveries, "max_recoveries", minimum=0)
        check_float(self.recovery_lr_factor, "recovery_lr_factor", low=0.0, high=1.0, low_open=True)
        check_float(self.min_lr_factor, "min_lr_factor", low=0.0, high=1.0, low_open=True)
        check_int(self.recovery_lr_steps, "recovery_lr_steps", minimum=1, allow_none=True)
        check_int(self.drift_snapshot_every, "drift_snapshot_every", minimum=1)


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Learning rate for step ``step`` (0-based) of a run of ``total_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    span = max(total_steps - cfg.warmup_steps, 1)
    t = min((step - cfg.warmup_steps) / span, 1.0)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


class Callback:
    """Hooks around the loop. Exceptions propagate (an interrupted fit stops cleanly)."""

    def on_fit_start(self, trainer: "Trainer", state: TrainState) -> None: ...

    def on_step_end(self, trainer: "Trainer", state: TrainState, info: StepInfo) -> StepInfo | None:
        """After each good step. Return ``info.with_extra(...)`` to add diagnostics (the later
        callbacks and the history see it); None keeps ``info``."""

    def on_fit_end(self, trainer: "Trainer", state: TrainState) -> None: ...


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel (or similar ``.module``) wrapper."""
    return getattr(module, "module", module)


@dataclass
class Trainer:
    """Binds a generator factory's output, a drift and the optimisation settings.

    ``generator`` may be wrapped in ``torch.nn.parallel.DistributedDataParallel``: the drift
    calls the wrapper (so gradients are averaged over processes), while the EMA copy, the
    parameter groups and the checkpoints use the plain module inside it."""

    generator: nn.Module
    drift: Any
    config: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    callbacks: list = field(default_factory=list)
    #: why the last ``fit`` ended before ``total_steps`` at a callback's request (None: it did not)
    stop_reason: str | None = field(default=None, init=False)

    def request_stop(self, reason: str) -> None:
        """From a callback's ``on_step_end``: end ``fit`` after this step (the callbacks'
        ``on_fit_end`` still run). ``total_steps`` is kept, so a later ``fit`` with the same
        length resumes the schedule where it stopped."""
        self.stop_reason = str(reason)

    # -- state ---------------------------------------------------------------------------------
    def init(self) -> TrainState:
        cfg = self.config
        rng = noise_generator(self.seed)  # on the current default device (a placed sampler's)
        opt_cls = torch.optim.AdamW if cfg.weight_decay else torch.optim.Adam
        kwargs = {"weight_decay": cfg.weight_decay} if cfg.weight_decay else {}
        # A generator may split its parameters into groups with an ``lr_scale`` each.
        base = unwrap(self.generator)
        groups = base.param_groups() if hasattr(base, "param_groups") else \
            [{"params": list(base.parameters()), "lr_scale": 1.0}]
        opt = opt_cls(groups, lr=cfg.lr, betas=cfg.betas, **kwargs)
        return TrainState(self.generator, EMA(base, cfg.ema_decay), opt, rng)

    def state_dict(self, state: TrainState) -> dict:
        out = {
            "generator": unwrap(state.generator).state_dict(),
            "ema": state.ema.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "rng": state.rng.get_state(),
            "step": state.step,
            "total_steps": state.total_steps,
            "elapsed": state.elapsed,
            "lr_factor": state.lr_factor,
            "recoveries": state.recoveries,
            "failure": state.failure,
        }
        if hasattr(self.drift, "state_dict"):
            out["drift"] = self.drift.state_dict()
        return out

    def load_state_dict(self, state: TrainState, sd: dict) -> TrainState:
        unwrap(state.generator).load_state_dict(sd["generator"])
        state.ema.load_state_dict(sd["ema"])
        state.optimizer.load_state_dict(sd["optimizer"])
        state.rng.set_state(sd["rng"])
        state.step, state.total_steps = int(sd["step"]), int(sd["total_steps"])
        state.elapsed = float(sd.get("elapsed", 0.0))
        state.lr_factor = float(sd.get("lr_factor", 1.0))
        state.recoveries = int(sd.get("recoveries", 0))
        state.failure = sd.get("failure")
        if "drift" in sd and hasattr(self.drift, "load_state_dict"):
            self.drift.load_state_dict(sd["drift"])
        return state

    # -- one step ------------------------------------------------------------------------------
    def step(self, state: TrainState) -> tuple[TrainState, StepInfo]:
        cfg, k = self.config, state.step
        t0 = time.perf_counter()
        lr = lr_at(k, state.total_steps, cfg) * state.lr_factor
        for group in state.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        state.generator.train()
        if cfg.step == "jko":  # implicit (proximal) step: M inner optimiser steps (train/jko.py)
            loss, grad_norm, info = jko_update(self, state, k)
        else:
            x, v, info = self.drift(state.generator, k, state.rng, total_steps=state.total_steps)
            self._check_drift(x, v, info, f"step {k}")
            target = (x + cfg.step_size * v).detach()
            loss = (x - target).pow(2).sum(-1).mean()
            grad_norm = self._descend(state, loss, f"step {k}")
            loss = float(loss.detach())
        state.ema.update(unwrap(state.generator))
        state.step = k + 1
        if state.lr_factor < 1.0 and cfg.recovery_lr_steps is not None:
            state.lr_factor = min(1.0, state.lr_factor * 2.0 ** (1.0 / cfg.recovery_lr_steps))
        state.failed_attempts = 0
        dt = time.perf_counter() - t0
        state.elapsed += dt
        # the first good step after a recovery says from what (recovered_from)
        out = StepInfo(step=state.step, lr=lr, loss=loss, grad_norm=grad_norm, seconds=dt,
                       recoveries=state.recoveries, recovered_from=state.last_error, extra=info)
        state.last_error = None
        return state, out

    @staticmethod
    def _check_drift(x: Tensor, v: Tensor, info: dict, where: str) -> None:
        """The drift's output is usable: v detached, x and v finite (else NonFiniteError)."""
        if v.requires_grad:
            raise RuntimeError("the drift must return a detached velocity")
        if not all_finite(x):
            raise NonFiniteError(f"non-finite generator output at {where}: "
                                 f"{int((~torch.isfinite(x).all(-1)).sum())} of {x.shape[0]} samples")
        if not all_finite(v):
            raise NonFiniteError(f"non-finite velocity at {where} (drift diagnostics: {info})")

    def _descend(self, state: TrainState, loss: Tensor, where: str) -> float:
        """One optimiser step on ``loss`` (clipped); returns the gradient norm. Refuses
        (NonFiniteError) a non-finite loss, gradient norm or updated parameter."""
        cfg = self.config
        if not torch.isfinite(loss):
            raise NonFiniteError(f"non-finite loss at {where}")
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in state.generator.parameters() if p.grad is not None]
        if cfg.grad_clip is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        else:
            grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        if not torch.isfinite(grad_norm):
            raise NonFiniteError(f"non-finite gradient norm at {where}")
        state.optimizer.step()
        if not all_finite(*params):
            raise NonFiniteError(f"non-finite generator parameters after the update of {where}")
        return float(grad_norm)

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, state: TrainState, total_steps: int, callbacks: Iterable[Callback] = ()) -> History:
        """Run steps until ``state.step == total_steps``.

        ``total_steps`` is the length of the whole schedule (learning-rate decay, annealing), so
        a run interrupted at step k resumes from a checkpoint by calling ``fit`` with the same
        ``total_steps`` and reproduces the uninterrupted run.

        A step that fails on a NaN/inf is undone and retried (:mod:`freeflow.train.recovery`);
        after ``max_recoveries`` failures in a row the loop stops at the last good state with
        ``state.failure`` set and a :class:`TrainingStoppedWarning` (the callbacks' ``on_fit_end``
        still runs, so a checkpoint then holds that state). Under torch.distributed with
        several processes a failure raises instead (the ranks cannot retry in step).
        """
        total_steps = check_positive_int(total_steps, "steps")
        if state.step > total_steps:
            raise ValueError(
                f"steps={total_steps} is smaller than the {state.step} steps already trained"
            )
        state.total_steps = total_steps
        state.failure, state.failed_attempts = None, 0
        self.stop_reason = None
        cbs = [*self.callbacks, *callbacks]
        history = History()
        snapshot = None if _distributed() else Snapshot(self.config.drift_snapshot_every)
        # Flush float32 subnormals to zero while training: exp() of very negative exponents
        # (KDE kernels, log-sum-exp over mixture components) otherwise hits the CPU's slow
        # subnormal path, measured 5-50x slower. Values below 1e-38 change no result here.
        torch.set_flush_denormal(True)
        try:
            for cb in cbs:
                cb.on_fit_start(self, state)
            # a callback may shorten the run (AutoStop) or end this call (TimeLimit)
            while state.step < state.total_steps and self.stop_reason is None:
                t0 = time.perf_counter()
                if snapshot is not None:
                    # (the snapshot's time counts as training time, as a failed attempt's does)
                    snapshot.take(state, self.drift, unwrap(state.generator))
                    state.elapsed += time.perf_counter() - t0
                    t0 = time.perf_counter()
                try:
                    state, info = self.step(state)
                except FloatingPointError as e:
                    if snapshot is None:
                        raise
                    recovered = self._recover(state, snapshot, e)
                    state.elapsed += time.perf_counter() - t0
                    if recovered:
                        continue
                    break
                for cb in cbs:
                    out = cb.on_step_end(self, state, info)
                    if isinstance(out, StepInfo):  # a callback added diagnostics
                        info = out
                history.append(info)
            for cb in cbs:
                cb.on_fit_end(self, state)
        except FloatingPointError as e:  # NaN/inf mid-run: name the checkpoint that is still good
            saved = [cb for cb in cbs if getattr(cb, "last_saved", None) is not None]
            if not saved:
                raise
            cb = saved[-1]
            raise type(e)(f"{e}; training stopped, the last good checkpoint is {str(cb.path)!r} "
                          f"(step {cb.last_saved})") from e
        finally:
            torch.set_flush_denormal(False)
        if state.failure is not None:
            saved = [cb for cb in cbs if getattr(cb, "last_saved", None) == state.step]
            if saved:
                state.failure += f"; checkpoint {str(saved[-1].path)!r} holds it"
            warnings.warn(state.failure, TrainingStoppedWarning, stacklevel=2)
        return history

    def _recover(self, state: TrainState, snapshot: Snapshot, error: FloatingPointError) -> bool:
        """Undo a failed step (exactly: the snapshot taken before it) and shrink the learning
        rate; False (and ``state.failure`` set) once the failures in a row exceed the limit."""
        cfg = self.config
        snapshot.restore(state, self.drift, unwrap(state.generator))
        state.failed_attempts += 1
        if state.failed_attempts > cfg.max_recoveries:
            state.failure = (f"training stopped at step {state.step} of {state.total_steps} after "
                             f"{state.failed_attempts} failed attempt(s) in a row; the last: {error}; "
                             f"the state is the last good one (step {state.step})")
            return False
        state.recoveries += 1
        state.lr_factor = max(state.lr_factor * cfg.recovery_lr_factor, cfg.min_lr_factor)
        state.last_error = str(error)
        return True


def _distributed() -> bool:
    """Whether this process is one of several (torch.distributed): no recovery there."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
