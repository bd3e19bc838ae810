"""OneStepSampler: the user-facing data-free sampler (MATH.md §1–2).

    sampler = OneStepSampler(log_density, dim=2, divergence="kl_pq", density="kde", seed=0)
    history = sampler.fit(steps=3000)
    x = sampler.sample(100_000)

Fit in rounds, sampling, importance weights, the verdict: assembled in ``build.py`` (generator,
density, drift), trains in the frame of the Gaussian stage (``gaussian_stage.py``), saves through
``persistence.py``; defaults and setting rules in ``defaults.py``, the drifts in
``drift.py``/``logvar.py``, the stopping rule in ``autostop.py``.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable

import torch

from .. import importance as _iw
from ..bayes.posterior import Posterior
from ..density import DensityEstimator
from ..io import atomic_torch_save
from ..mcmc import refine as run_refine
from ..placement import Placement, placed
from ..reliability import Reliability, ReliabilityWarning
from ..train import History, Trainer, standard_callbacks
from ..validation import check_int, check_log_density, check_positive_int, check_seed
from .autostop import AutoRun, AutoStop
from .build import (CountedLogDensity, distribute, is_target, make_density, make_drift, resolve_divergence,
                    resolve_generator, resolve_target, train_config)
from .cost import cost_settings, time_limit_callback
from .defaults import check_settings, default_generator, default_settings, default_steps
from .gaussian_stage import Frame, stage_for_sampler
from .persistence import load_sampler, sampler_state_dict
from .weighted import ImportanceMethods
from . import space as _space
from . import verdict as _verdict

Tensor = torch.Tensor

__all__ = ["OneStepSampler", "default_settings", "default_steps", "default_generator"]

class OneStepSampler(ImportanceMethods):
    """A generator trained to sample from exp(log_density) in one forward pass.

    Args:
        log_density: batched, differentiable, unnormalised log-density (n, dim) -> (n,);
            or a target object from :mod:`targets` (its ``log_prob`` and ``dim`` are used),
            or a :class:`~freeflow.Posterior` (then :meth:`sample` returns its named parameters).
        dim: dimension of the samples (taken from a target when omitted).
        divergence: f-divergence fixing the drift weight, by name (see
            :func:`freeflow.available_divergences`); ``"lv"`` the log-variance flow; ``"auto"``
            forward KL while the batch's missing mass is large, then reverse KL
            (:mod:`freeflow.datafree.schedule`, docs/divergences.md). ``"kl_pq"`` (forward KL, mass-covering)
            is the default: it recovers mode weights, which ``"kl_qp"`` does not. For a
            unimodal target ``"kl_qp"`` corrects over-dispersed tails faster (docs/benchmarks.md).
        density: estimator of the generator's density q: ``"exact"`` (the generator's own,
            default for generators with exact log q), ``"kde"`` or ``"flow"`` (an auxiliary
            normalizing flow; both for ``generator="mlp"``) or a
            :class:`~freeflow.density.DensityEstimator` instance.
        seed: seeds initialisation, training noise and default sampling noise.
        generator: a name of the registry (:func:`freeflow.generators.available_generators`):
            ``"mixture"`` (default in d ≤ 3), ``"product_mixture"`` (default in d > 3),
            ``"flow"`` or ``"mlp"``; :func:`default_generator` gives the default. All but
            ``"mlp"`` have an exact log q (importance weights, log Ẑ, the full verdict).
            ``divergence="lv"`` selects the log-variance flow (settings ``lv_*``).
        **settings: override any key of :func:`default_settings`; among them ``step``
            (``"explicit"``, default, or ``"jko"``: the implicit proximal step with ``jko_tau``
            (None: = ``step_size``) and ``jko_inner`` inner steps, default 5; docs/jko.md);
            ``gaussian_stage`` (``"auto"``: on for exact generators in d > 3, and in d ≤ 3 where
            p̃ is badly scaled at its mode (``gaussian_stage.badly_scaled``); ``"on"``, ``"off"``):
            a full-covariance Gaussian fitted before training, whose frame the generator
            trains in (:mod:`freeflow.datafree.gaussian_stage`); for a posterior with a
            non-centred twin (a NumPyro model's centred hierarchy), fitted in both, and training
            runs in the better (:mod:`freeflow.datafree.space`; ``self.reparam``).
        device: where the generator, its optimiser state and EMA, the noise, the drift, the
            estimator of q, the Gaussian stage, importance weights and the checks live: ``"cpu"``
            (default), ``"cuda"``, ``"cuda:1"``, a ``torch.device``. A torch log-density is
            called on batches on this device and must return its values there.
        dtype: ``torch.float32`` (default: torch's default dtype), ``torch.float64`` or their
            names; the generator's and the log-density's batches'. Both are checked before anything
            is built (:mod:`freeflow.placement`); the log-density is probed on a placed batch (an
            error names it if it answers on another device or in a lower precision).
    """

    def __init__(
        self,
        log_density,
        dim: int | None = None,
        *,
        divergence: str = "kl_pq",
        density: str | DensityEstimator | None = None,
        seed: int = 0,
        generator: str | None = None,
        device=None,
        dtype=None,
        **settings,
    ):
        self.placement = Placement.resolve(device, dtype)
        with self.placement.scope():
            self._build(log_density, dim, divergence, density, seed, generator, settings)

    def _build(self, log_density, dim, divergence, density, seed, generator, settings) -> None:
        # a freeflow.Posterior: sample() returns its named constrained parameters
        self.posterior = log_density if isinstance(log_density, Posterior) else None
        probe_name = f"{type(log_density).__name__}.log_prob" if is_target(log_density) else "log_density"
        log_density, dim, self.target_config = resolve_target(log_density, dim)
        check_positive_int(dim, "dim")
        check_seed(seed)
        check_settings(settings, dim)
        check_log_density(log_density, dim, name=probe_name)
        settings = {**settings, **cost_settings(log_density, dim, settings, default_settings(dim)["batch_size"],
                                                name=probe_name)}
        self.counted = CountedLogDensity(log_density)
        # the model's log p̃; training may move to a twin's coordinates (space.py, self.reparam)
        self.model_log_density, self.reparam = log_density, None
        self.log_density, self.dim, self.seed = self.counted, dim, seed
        self.divergence_name, self.divergence, schedule = resolve_divergence(divergence)
        self.spec, density, self.settings = resolve_generator(generator, density, dim, settings)
        self.generator_name = self.spec.name
        self.density_name = density if isinstance(density, str) else type(density).__name__
        if density != "exact":  # (built before the network's initialisation, which it must not shift)
            self.density = make_density(density, self.settings, dim, seed, None)
        torch.manual_seed(seed)  # network initialisation
        self.generator = self.spec.build(dim, self.settings).to(self.placement.device, self.placement.dtype)
        if density == "exact":
            self.density = make_density(density, self.settings, dim, seed, self.generator)
        # the generator trains in the frame of the Gaussian stage: x = loc + chol u (gaussian_stage.py)
        self.frame = Frame(dim)
        self.gaussian_fit: dict | None = None
        self.drift = make_drift(self.frame.pull_back(self.counted), self.divergence_name, self.divergence,
                                schedule, self.density, self.spec, self.settings)
        self.trainer = Trainer(distribute(self.generator, self.divergence_name, self.settings), self.drift,
                               train_config(self.settings), seed=seed)  # (wrapped across processes)
        self.state = self.trainer.init()
        self.history = History()
        self._sample_rng = self.placement.generator(seed + 1)
        self.last_reliability: Reliability | None = None
        self.stop_reason: str | None = None  # why the last fit ended early (fit's time_limit)
        self.auto: AutoRun | None = None  # the record of a fit() without steps (autostop.py owns it)
        self.last_refine = None  # diagnostics of the last sample(..., refine=k)

    @property
    def exact_log_q(self) -> bool:
        """Whether the generator knows its own density (importance weights without estimation)."""
        return self.spec.exact

    def cost(self) -> dict:
        """Log-density evaluations (rows) and seconds per stage of this sampler's life:
        ``gaussian_stage``, ``training``, ``checks`` (the verdict, also between rounds) and
        ``other`` (sampling and importance weights on request: evaluations only)."""
        return self.counted.cost()

    def _gaussian_stage(self) -> None:
        """Fit the Gaussian frame before the first training step (when the setting asks)."""
        mode = self.settings["gaussian_stage"]
        if self.gaussian_fit is not None or self.state.step > 0 or mode == "off" or (
                mode == "auto" and not self.spec.exact):
            return
        def stage(f):
            return stage_for_sampler(f, self.dim, mode=mode, seed=self.seed)

        with self.counted.stage("gaussian_stage"):
            fit, self.gaussian_fit = _space.choose(self, stage, *stage(self.counted))
        if fit is not None:
            self.frame.set(fit.loc, fit.chol)
            precision = _space.single_precision(self, fit)   # (float32 rows for a JAX log-density)
            if precision is not None:
                self.gaussian_fit["precision"] = precision

    # -- training ------------------------------------------------------------------------------
    @placed
    def fit(
        self,
        steps: int | None = None,
        *,
        progress: bool = True,
        log: str | os.PathLike | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 500,
        callbacks: Iterable = (),
        check: bool = True,
        time_limit: float | None = None,
    ) -> History:
        """Train until ``steps`` steps are done in total (resumes a loaded or interrupted run).

        Without ``steps``, train in rounds of 1000 steps until the reliability check passes
        (the mixture weights settled, raw and importance-weighted estimates agree, k̂ and ESS
        fine), at most :func:`default_steps` steps; see :mod:`freeflow.datafree.autostop`. Such a run
        resumes with ``fit()`` again.

        ``steps`` is the length of the whole schedule (annealing, learning-rate decay): to
        resume an interrupted run, load its checkpoint and call ``fit`` with the same
        ``steps``; the result equals the uninterrupted run. Returns this call's diagnostics
        (one :class:`~freeflow.train.StepInfo` per step); ``self.history`` accumulates all of them.

        With ``check`` (default), the finished fit is assessed (:meth:`reliability`): the
        verdict is kept in ``self.last_reliability`` and a :class:`ReliabilityWarning` says
        plainly when the samples should not be trusted.

        ``time_limit`` (seconds, from this call): training ends at the first step past it, and
        the verdict judges the draws as they are then (``self.stop_reason`` says where it
        stopped); ``fit()`` again resumes the schedule. For log-densities too expensive for the
        default schedule (docs/api.md, "A time budget").
        """
        extra = list(callbacks)
        if time_limit is not None:
            extra.append(time_limit_callback(time_limit))
        auto_run = steps is None
        if auto_run:
            # rounds until the reliability check passes (freeflow.datafree.autostop), at most default_steps
            if self.auto is None:
                self.auto = AutoRun.start(self.dim, self.spec.exact, self.settings["anneal_fraction"])
            self.drift.anneal_steps = self.auto.anneal_steps
            steps = self.state.total_steps if (self.auto.done or self.state.step) else self.auto.round_steps
        check_positive_int(steps, "steps")
        keys = ("beta", "ess_fraction", "weight_entropy", "outside_support") if self.spec.has_weights else (
            "beta", "ess_fraction", "outside_support")
        self._gaussian_stage()
        cbs = standard_callbacks(progress=progress, log=log, checkpoint=checkpoint, save=self.save,
                                 checkpoint_every=checkpoint_every, extra=extra, progress_keys=keys)
        if auto_run:
            # first, so that a checkpoint written at a step already holds that step's decision
            cbs.insert(0, AutoStop(self, self.auto))
        self.show_progress = progress  # the verdict's MCMC checks show a bar too (verdict.mcmc_check)
        with self.counted.stage("training"):
            hist = self.trainer.fit(self.state, steps, callbacks=cbs)
        self.history.extend(hist)
        self.stop_reason = self.trainer.stop_reason
        if self.stop_reason is not None:
            warnings.warn(f"freeflow fit: {self.stop_reason}; fit() again resumes", UserWarning, stacklevel=3)
        if check:
            rep = self.last_reliability = _verdict.final(self, auto_run)
            if rep.trusted is False:
                warnings.warn(_verdict.warning_text(self, rep),
                              ReliabilityWarning, stacklevel=3)  # (under @placed)
        self.show_progress = False
        return hist

    @placed
    def reliability(self, n: int = 4000, *, seed: int = 12345, cheap_first: bool = False) -> Reliability:
        """Should the samples be trusted? Pareto k̂, importance ESS, raw vs importance-weighted
        estimates and (mixture) whether the weights settled, from n fresh samples; see
        :mod:`freeflow.reliability`. "unverified" where log q is not exact; ``partial``: see verdict.py."""
        check_positive_int(n, "n")
        with self.counted.stage("checks"):
            return _verdict.reliability(self, n, seed, cheap_first=bool(cheap_first))

    def _log_density_chunked(self, x: Tensor) -> Tensor:
        """log p̃ at x in chunks, NaN (outside the support) as −inf."""
        return _iw.log_density_at(self.log_density, x)

    @property
    def steps_done(self) -> int:
        return self.state.step

    @property
    def training_seconds(self) -> float:
        return self.state.elapsed

    # -- sampling ------------------------------------------------------------------------------
    @placed
    def sample(self, n: int, *, seed: int | None = None, ema: bool = True, chunk_size: int = 65536,
               refine: int = 0):
        """n samples (n, dim) in one forward pass per chunk (EMA weights unless ``ema=False``).

        ``refine=k`` (k ≥ 1): then k steps of p-invariant HMC (after 50 warm-up steps) from each
        draw, one chain per draw, preconditioned by the draws' covariance
        (:func:`freeflow.mcmc.refine`): right where the one-step draws are not if the chains reach
        what q missed within those steps (not a deep neck: docs/refine.md), at the cost of
        (50 + k)·4 log-density gradients per draw; R-hat, ESS and the chains' drift from their
        first to their last kept step are in ``self.last_refine``, and a
        :class:`ReliabilityWarning` says when they still drift.

        For a :class:`~freeflow.Posterior`: a dict {name: constrained values (n, *shape)}
        (:meth:`sample_unconstrained` gives the (n, dim) tensor the generator produces)."""
        refine = check_int(refine, "refine", minimum=0)
        x = self._draw(n, seed=seed, ema=ema, chunk_size=chunk_size)
        if refine:
            with self.counted.stage("refine"):
                res = run_refine(self.log_density, x, refine, seed=self.seed if seed is None else seed)
            self.last_refine = res._replace(draws=None, all_draws=None)
            if res.drift >= 1:
                warnings.warn(f"sample(refine={refine}): the chains still drift between their first and last "
                              f"kept steps ({res.drift_where}, {res.drift:.2f} thresholds of the MCMC check's "
                              "paired tests): the refined draws are not yet the posterior's; do not trust them "
                              "(more steps may or may not get there; docs/refine.md)",
                              ReliabilityWarning, stacklevel=3)
            x = res.draws.to(x.dtype)
        x = _space.to_model(self, x)
        return self.posterior.constrain(x) if self.posterior is not None else x

    @placed
    @torch.no_grad()
    def sample_unconstrained(self, n: int, *, seed: int | None = None, ema: bool = True,
                             chunk_size: int = 65536) -> Tensor:
        """n samples (n, dim) of the generator, in the log-density's coordinates (the model's
        own, also where training ran in a twin's: ``self.reparam``)."""
        return _space.to_model(self, self._draw(n, seed=seed, ema=ema, chunk_size=chunk_size))

    @placed
    @torch.no_grad()
    def _draw(self, n: int, *, seed: int | None = None, ema: bool = True, chunk_size: int = 65536) -> Tensor:
        """n samples in the coordinates training ran in (those of ``self.log_density``)."""
        check_positive_int(n, "n")
        net = self.state.ema.module if ema else self.generator
        rng = self.placement.generator(seed) if seed is not None else self._sample_rng
        out = []
        for start in range(0, n, chunk_size):
            m = min(chunk_size, n - start)
            out.append(self.frame.to_x(net(torch.randn(m, self.settings["noise_dim"], generator=rng))))
        return torch.cat(out)

    @placed
    def to_inference_data(self, draws: int | None = None, chains: int = 4, var_names=None, *,
                          seed: int | None = None, n: int | None = None, log_likelihood: bool | None = None,
                          posterior_predictive: bool = False):
        """arviz InferenceData of ``draws`` samples per chain (default 1000) in ``chains``
        independent batches, as PyMC counts them; ``seed`` makes it reproducible; ``n`` (the
        total, a multiple of ``chains``) is deprecated.

        For a :class:`~freeflow.Posterior`: its parameter names and dims, deterministic sites,
        log importance weights, the per-observation ``log_likelihood`` group where the model has
        one (``log_likelihood=False`` skips it), ``posterior_predictive`` when asked,
        observed/constant data (:func:`freeflow.bayes.sampler_inference_data`)."""
        if self.posterior is not None:
            from ..bayes.inference_data import sampler_inference_data

            return sampler_inference_data(self, draws, chains, seed=seed, var_names=var_names, n=n,
                                          log_likelihood=log_likelihood, posterior_predictive=posterior_predictive)
        from ..interop import sampler_to_inference_data

        return sampler_to_inference_data(self, draws, chains, var_names, seed=seed, n=n, log_likelihood=log_likelihood,
                                         posterior_predictive=posterior_predictive)

    # -- persistence (datafree/persistence.py) --------------------------------------------------
    @placed
    def state_dict(self) -> dict:
        return sampler_state_dict(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint atomically (a failed write leaves an earlier file intact)."""
        return atomic_torch_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike, log_density, *, check_target: bool = True, map_location=None,
             dtype=None) -> "OneStepSampler":
        """Rebuild a sampler from ``save``'s file; training can continue with ``fit``.

        The checkpoint is checked against ``log_density`` (same dimension, same target config
        for a target object, same log-density up to a constant at fixed probe points).
        ``map_location``: the device to rebuild on (default: the one it was saved from, or the
        CPU where that device is not here); ``dtype``: the dtype (default: the saved one).
        Weights, optimiser state and EMA are converted; resumed on another kind of device,
        training continues with a fresh noise stream (seeded from the seed and the step).
        """
        return load_sampler(cls, path, log_density, check_target, map_location=map_location, dtype=dtype)
