"""Callbacks around the training loop: progress bar, JSONL log, periodic checkpoints, a time limit."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from .state import StepInfo, TrainState
from .trainer import Callback, Trainer

__all__ = ["ProgressBar", "JSONLLogger", "Checkpoint", "TimeLimit", "standard_callbacks"]


class ProgressBar(Callback):
    """tqdm bar showing a few diagnostics, each an exponential moving average over about
    1/(1 − ``smooth``) steps (batch statistics such as the ESS jump from step to step); the
    bar's total follows the run's length when a callback extends or shortens it."""

    def __init__(self, keys: Sequence[str] = ("loss", "ess_fraction", "beta"), every: int = 10, enabled: bool = True,
                 smooth: float = 0.95):
        self.keys, self.every, self.enabled = tuple(keys), max(int(every), 1), enabled
        self.smooth = float(smooth)
        self._avg: dict[str, float] = {}
        self._bar = None

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(total=state.total_steps, initial=state.step, desc="freeflow", unit="step",
                         dynamic_ncols=True, mininterval=0.5)

    def on_step_end(self, trainer: Trainer, state: TrainState, info: StepInfo) -> None:
        if self._bar is None:
            return
        if self._bar.total != state.total_steps:
            self._bar.total = state.total_steps
        self._bar.update(1)
        for k in self.keys:
            v = info.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                a = self._avg.get(k)
                self._avg[k] = float(v) if a is None else self.smooth * a + (1 - self.smooth) * float(v)
        if state.step % self.every == 0:
            self._bar.set_postfix({k: f"{v:.3g}" for k, v in self._avg.items()}, refresh=False)

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class JSONLLogger(Callback):
    """Appends one JSON object per step to ``path`` (a resumed run drops records past its step)."""

    def __init__(self, path: str | os.PathLike, every: int = 1):
        self.path, self.every = Path(path), max(int(every), 1)
        self._fh = None

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # keep only the records the resumed state has already seen
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= state.step:
                        kept.append(line)
                except json.JSONDecodeError:
                    break  # a torn last line from an interrupted write
            self.path.write_text("".join(f"{line}\n" for line in kept))
        self._fh = open(self.path, "a")

    def on_step_end(self, trainer: Trainer, state: TrainState, info: StepInfo) -> None:
        if self._fh is not None and state.step % self.every == 0:
            self._fh.write(json.dumps({k: _jsonable(v) for k, v in info.items()}) + "\n")
            self._fh.flush()

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class Checkpoint(Callback):
    """Calls ``save(path)`` every ``every`` steps and at the end; ``save`` must write atomically.

    Only completed, finite steps reach this hook, so the file on disk is always the last good
    state.
    """

    def __init__(self, path: str | os.PathLike, save: Callable[[str | os.PathLike], object], every: int = 500):
        if every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {every}")
        self.path, self.save, self.every = Path(path), save, int(every)
        self.last_saved: int | None = None  # step of the last file written (named in errors)

    def on_step_end(self, trainer: Trainer, state: TrainState, info: StepInfo) -> None:
        if state.step % self.every == 0:
            self.save(self.path)
            self.last_saved = state.step

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        self.save(self.path)
        self.last_saved = state.step


class TimeLimit(Callback):
    """End ``fit`` at the first step that finishes more than ``seconds`` after ``start`` (a
    ``time.perf_counter()`` value; default: when the fit starts), with a stop request naming
    the step reached (:meth:`Trainer.request_stop`)."""

    def __init__(self, seconds: float, start: float | None = None):
        self.seconds, self.start = float(seconds), start

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        if self.start is None:
            self.start = time.perf_counter()

    def on_step_end(self, trainer: Trainer, state: TrainState, info: StepInfo) -> None:
        used = time.perf_counter() - self.start
        if used > self.seconds and state.step < state.total_steps:
            trainer.request_stop(f"time_limit={self.seconds:g} s reached after {used:.0f} s, at step "
                                 f"{state.step} of {state.total_steps}")


def standard_callbacks(
    *,
    progress: bool,
    log: str | os.PathLike | None,
    checkpoint: str | os.PathLike | None,
    save: Callable[[str | os.PathLike], object],
    checkpoint_every: int,
    extra: Sequence[Callback] = (),
    progress_keys: Sequence[str] = ("loss", "ess_fraction", "beta"),
) -> list[Callback]:
    """The callbacks every front end's ``fit`` offers: progress bar, JSONL log, checkpoints."""
    cbs: list[Callback] = [ProgressBar(keys=progress_keys, enabled=progress)]
    if log is not None:
        cbs.append(JSONLLogger(log))
    if checkpoint is not None:
        cbs.append(Checkpoint(checkpoint, save, every=checkpoint_every))
    cbs.extend(extra)
    return cbs
