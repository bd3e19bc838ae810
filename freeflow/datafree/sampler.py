"""OneStepSampler: the user-facing data-free sampler (MATH.md §1–2).

    sampler = OneStepSampler(log_density, dim=2, divergence="kl_pq", density="kde", seed=0)
    history = sampler.fit(steps=3000)
    x = sampler.sample(100_000)

Over 400 lines on purpose: this is the one user-facing class (construction, fit in rounds,
sampling, importance weights, save/load), whose methods share its state; its defaults and
setting rules live in ``defaults.py``, the drifts in ``drift.py``/``logvar.py``, the stopping
rule in ``autostop.py``.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable

import torch

from .drift import DataFreeDrift
from .logvar import LogVarianceDrift
from ..density.flow import FlowDensity
from ..generators.flow import ExactFlowDensity, FlowGenerator
from ..generators.exact import ExactDensity
from ..generators.mixture import MixtureGenerator, ProductMixtureGenerator, default_components
from .reaction import MixtureReaction
from ..reliability import TAIL_WIDEN, Reliability, ReliabilityWarning, assess, gibbs_shift
from .autostop import AutoStop
from .schedule import CoverageSchedule
from .. import importance as _iw
from ..density import DensityEstimator
from ..density.kde import KDE
from ..divergences import Divergence, get_divergence
from ..generators.mlp import ResidualMLP
from ..io import atomic_torch_save, load_checkpoint
from ..train import History, TrainConfig, Trainer, standard_callbacks
from ..validation import check_choice, check_log_density, check_positive_int, check_seed
from .defaults import AUTO_ROUND_STEPS, GENERATORS, check_settings, default_generator, default_settings, default_steps
from ..bayes.posterior import Posterior

Tensor = torch.Tensor

__all__ = ["OneStepSampler", "default_settings", "default_steps", "default_generator"]

FORMAT = "freeflow.OneStepSampler/1"


def _is_target(obj) -> bool:
    return hasattr(obj, "log_prob") and hasattr(obj, "dim") and callable(getattr(obj, "log_prob"))


def _fingerprint(log_density: Callable[[Tensor], Tensor], dim: int) -> list[float]:
    """log p̃ at fixed probe points, relative to the first: identifies a target up to log Z."""
    x = torch.randn(16, dim, generator=torch.Generator().manual_seed(20261122))
    with torch.no_grad():
        v = log_density(x).double()
    return (v - v[0]).tolist()


class OneStepSampler:
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
        density: estimator of the generator's density q: ``"kde"`` (default for the MLP
            generator), ``"flow"`` (auxiliary normalizing flow, for d ≳ 10), ``"exact"``
            (default and only choice for ``generator="flow"``) or a
            :class:`~freeflow.density.DensityEstimator` instance.
        seed: seeds initialisation, training noise and default sampling noise.
        generator: default :func:`default_generator` (MLP in d ≤ 3, flow above);
            ``"mlp"`` (ResidualMLP) or ``"flow"`` (a normalizing flow with exact log q,
            enabling :meth:`importance_weights` and :meth:`log_normalizer` without estimation).
            ``divergence="lv"`` selects the log-variance flow (settings ``lv_*``).
        **settings: override any key of :func:`default_settings`; among them ``step``
            (``"explicit"``, default, or ``"jko"``: the implicit proximal step with ``jko_tau``
            (None: = ``step_size``) and ``jko_inner`` inner steps, default 5; docs/jko.md).
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
        **settings,
    ):
        self.target_config = None
        # a freeflow.Posterior: sample() returns its named constrained parameters
        self.posterior = log_density if isinstance(log_density, Posterior) else None
        if _is_target(log_density):
            target = log_density
            if dim is not None and dim != target.dim:
                raise ValueError(f"dim={dim} does not match the target's dimension {target.dim}")
            dim = target.dim
            self.target_config = target.config() if hasattr(target, "config") else None
            log_density = target.log_prob
        if dim is None:
            raise ValueError("dim is required when log_density is a plain function")
        check_positive_int(dim, "dim")
        check_seed(seed)
        check_settings(settings, dim)
        check_log_density(log_density, dim)
        self.log_density, self.dim, self.seed = log_density, dim, seed
        # "lv" is not an f-divergence: it has its own drift (freeflow.datafree.logvar);
        # "auto" switches from kl_pq to kl_qp on the measured missing mass (datafree.schedule)
        if not isinstance(divergence, (str, Divergence)):
            raise TypeError(f"divergence must be a name or a Divergence, got {type(divergence).__name__}")
        self.divergence_name = divergence if isinstance(divergence, str) else divergence.name
        schedule = CoverageSchedule() if self.divergence_name == "auto" else None
        self.divergence = schedule.current if schedule is not None else get_divergence(
            "kl_qp" if self.divergence_name == "lv" else divergence)
        if isinstance(density, str):
            check_choice(density, ("kde", "flow", "exact"), "density")
        elif density is not None and not isinstance(density, DensityEstimator):
            raise TypeError(f"density must be 'kde', 'flow', 'exact' or a DensityEstimator, got {type(density).__name__}")
        if generator is None:
            generator = default_generator(dim, density)
        check_choice(generator, GENERATORS, "generator")
        self.generator_name = generator
        exact = generator in ("flow", "mixture", "product_mixture")
        if density is None:
            density = "exact" if exact else "kde"
        if (density == "exact") != exact:
            raise ValueError("density='exact' goes with generator='flow' or 'mixture' (and only with "
                             f"them), got density={density!r}, generator={generator!r}")
        if exact:
            # a flow maps R^d to R^d; a mixture's last noise coordinate picks the component
            need = {"flow": dim, "mixture": dim + 1, "product_mixture": 2 * dim}[generator]
            if settings.get("noise_dim", need) != need:
                raise ValueError(f"noise_dim must be {need} for generator={generator!r} in d = {dim} "
                                 f"(it is fixed by the generator), got {settings['noise_dim']!r}")
            settings = {**settings, "noise_dim": need}
        s = {**default_settings(dim), **settings}
        if s["noise_dim"] < dim:
            raise ValueError(f"noise_dim ({s['noise_dim']}) must be >= dim ({dim})")
        if s["reference"] == "loo" and s["batch_size"] < 2:
            raise ValueError("batch_size must be >= 2 for the leave-one-out reference")
        if isinstance(s["bandwidth_factor"], list):
            s["bandwidth_factor"] = tuple(s["bandwidth_factor"])
        self.settings = s
        self.density_name = density if isinstance(density, str) else type(density).__name__
        if density != "exact":
            self.density = self._make_density(density, s, dim, seed)
        torch.manual_seed(seed)  # network initialisation
        reaction = None
        if generator == "flow":
            self.generator = FlowGenerator(dim, layers=s["flow_layers"], hidden=s["flow_hidden"],
                                           kind=s["flow_kind"], init_scale=s["init_scale"])
            self.density = ExactFlowDensity(self.generator)
        elif generator in ("mixture", "product_mixture"):
            product = generator == "product_mixture"
            k = s["components"] if s["components"] is not None else (
                4 if product else default_components(dim, s["batch_size"]))
            check_positive_int(k, "components")
            if k * 2 > s["batch_size"]:
                raise ValueError(f"components={k} cannot be fitted with batch_size={s['batch_size']}: "
                                 f"the Fisher-Rao step needs at least 2 samples per component")
            s["components"] = k
            layers = s["mixture_flow_layers"]
            if layers is None:
                layers = 4 if product else 0
            cls = ProductMixtureGenerator if product else MixtureGenerator
            self.generator = cls(
                dim, k, init_scale=s["init_scale"], component_scale=s["component_scale"],
                flow_layers=layers, flow_hidden=s["flow_hidden"], flow_kind=s["flow_kind"],
                lr_scale=s["mixture_lr_scale"])
            self.density = ExactDensity(self.generator)
            reaction = MixtureReaction(self.divergence, step_size=float(s["reaction_step"]),
                                       birth_every=s["birth_every"], birth_mass=float(s["birth_mass"]),
                                       birth_fraction=float(s["birth_fraction"]))
        else:
            self.generator = ResidualMLP(s["noise_dim"], dim, hidden=s["hidden"], depth=s["depth"],
                                         init_scale=s["init_scale"], affine_lr_scale=s["affine_lr_scale"])
        drift_kwargs = dict(
            log_density=log_density, divergence=self.divergence, density=self.density,
            noise_dim=s["noise_dim"], batch_size=s["batch_size"], reference=s["reference"],
            reference_size=s["reference_size"], beta0=s["beta0"],
            anneal_fraction=s["anneal_fraction"], max_ratio=s["max_ratio"], temper=s["temper"],
            bandwidth_factor=s["bandwidth_factor"], anneal_path=s["anneal_path"],
            base_scale=float(s["init_scale"]),
        )
        if reaction is not None:
            drift_kwargs["reaction"] = reaction
        if schedule is not None:
            drift_kwargs["schedule"] = schedule
        if self.divergence_name == "lv":
            self.drift = LogVarianceDrift(**drift_kwargs, lv_reference=s["lv_reference"],
                                          lv_mode=s["lv_mode"], lv_clip=s["lv_clip"],
                                          lv_options=dict(s["lv_options"]))
        else:
            self.drift = DataFreeDrift(**drift_kwargs)
        cfg = TrainConfig(lr=s["lr"], lr_schedule=s["lr_schedule"], step_size=s["step_size"],
                          grad_clip=s["grad_clip"], ema_decay=s["ema_decay"], step=s["step"],
                          jko_tau=s["jko_tau"], jko_inner=s["jko_inner"])
        self.trainer = Trainer(self.generator, self.drift, cfg, seed=seed)
        self.state = self.trainer.init()
        self.history = History()
        self._sample_rng = torch.Generator().manual_seed(seed + 1)
        self.last_reliability: Reliability | None = None
        self.auto: dict | None = None  # the state of a fit() without steps (freeflow.autostop)

    @staticmethod
    def _make_density(density, s, dim: int, seed: int) -> DensityEstimator:
        if isinstance(density, DensityEstimator):
            return density
        if density == "kde":
            factor = s["bandwidth_factor"][0] if s["bandwidth_factor"] else 1.0
            return KDE(s["bandwidth"], factor=factor, covariance=s["covariance"])
        if density == "flow":
            return FlowDensity(dim, kind=s["flow_kind"], layers=s["flow_layers"], hidden=s["flow_hidden"],
                               fit_steps=s["flow_fit_steps"], lr=s["flow_lr"], seed=seed)
        raise ValueError(f"density must be 'kde', 'flow', 'exact' or a DensityEstimator, got {density!r}")

    # -- training ------------------------------------------------------------------------------
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
    ) -> History:
        """Train until ``steps`` steps are done in total (resumes a loaded or interrupted run).

        Without ``steps``, train in rounds of 1000 steps until the reliability check passes
        (the mixture weights settled, raw and importance-weighted estimates agree, k̂ and ESS
        fine), at most :func:`default_steps` steps; see :mod:`freeflow.autostop`. Such a run
        resumes with ``fit()`` again.

        ``steps`` is the length of the whole schedule (annealing, learning-rate decay): to
        resume an interrupted run, load its checkpoint and call ``fit`` with the same
        ``steps``; the result equals the uninterrupted run. Returns this call's diagnostics
        (one dict per step); ``self.history`` accumulates all of them.

        With ``check`` (default), the finished fit is assessed (:meth:`reliability`): the
        verdict is kept in ``self.last_reliability`` and a :class:`ReliabilityWarning` says
        plainly when the samples should not be trusted.
        """
        extra = list(callbacks)
        auto_run = steps is None
        if auto_run:
            # rounds until the reliability check passes (freeflow.autostop), at most default_steps
            exact = hasattr(self.generator, "forward_and_log_prob")
            if self.auto is None:
                self.auto = {"max_steps": default_steps(self.dim), "stopped_at": None,
                             "round_steps": AUTO_ROUND_STEPS if exact else default_steps(self.dim),
                             "anneal_steps": int(round(self.settings["anneal_fraction"] * AUTO_ROUND_STEPS))}
            self.drift.anneal_steps = self.auto["anneal_steps"]
            done = self.auto["stopped_at"] is not None
            steps = self.state.total_steps if (done or self.state.step) else self.auto["round_steps"]
        check_positive_int(steps, "steps")
        keys = ("beta", "ess", "weight_entropy", "outside_support") if isinstance(
            self.generator, MixtureGenerator) else ("beta", "ess", "outside_support")
        cbs = standard_callbacks(progress=progress, log=log, checkpoint=checkpoint, save=self.save,
                                 checkpoint_every=checkpoint_every, extra=extra, progress_keys=keys)
        if auto_run:
            # first, so that a checkpoint written at a step already holds that step's decision
            cbs.insert(0, AutoStop(self, self.auto))
        hist = self.trainer.fit(self.state, steps, callbacks=cbs)
        self.history.extend(hist)
        if check:
            rep = self.last_reliability
            if not (auto_run and self.auto.get("stopped_at") == self.steps_done and rep is not None):
                rep = self.reliability()  # (an auto run's last round already checked this state)
            self.last_reliability = rep
            if rep.trusted is False:
                warnings.warn(f"freeflow fit after {self.steps_done} steps: {rep.verdict}",
                              ReliabilityWarning, stacklevel=2)
        return hist

    def reliability(self, n: int = 4000, *, seed: int = 12345) -> Reliability:
        """Should the samples be trusted? Pareto k̂, importance ESS, raw vs importance-weighted
        estimates and (mixture) whether the weights settled, from n fresh samples; see
        :mod:`freeflow.reliability`. "unverified" where log q is not exact."""
        check_positive_int(n, "n")
        net = self.state.ema.module
        if not hasattr(net, "forward_and_log_prob"):
            x = self.sample_unconstrained(n, seed=seed)
            return assess(x, None, None, gibbs=gibbs_shift(self.log_density, x, seed=seed), unverified_reason=(
                f"density={self.density_name!r} gives no exact log q, so importance checks are "
                "unavailable; compare with a reference (freeflow.compare) instead"))
        x, log_q = self.sample_and_log_prob(n, seed=seed)
        with torch.no_grad():
            log_p = self._log_density_chunked(x).to(log_q.dtype)
            log_resp = net.log_responsibilities(x) if isinstance(net, MixtureGenerator) else None
            # defensive proposal ρ = ½ q + ½ q_f: draws from q_f, and both densities everywhere
            with net.widened(TAIL_WIDEN):
                xw, log_qf_w = self.sample_and_log_prob(n, seed=seed + 1)
                log_qf_x = torch.cat([net.log_prob(c) for c in x.split(16384)])
            log_q_w = torch.cat([net.log_prob(c) for c in xw.split(16384)])
            log_rho = torch.logaddexp(torch.cat([log_q, log_q_w]), torch.cat([log_qf_x, log_qf_w])) - math.log(2)
            log_w_def = torch.cat([log_p, self._log_density_chunked(xw).to(log_q.dtype)]) - log_rho
        return assess(x, log_p, log_q, log_resp, log_w_defensive=log_w_def,
                      gibbs=gibbs_shift(self.log_density, x, seed=seed))

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
    def sample(self, n: int, *, seed: int | None = None, ema: bool = True, chunk_size: int = 65536):
        """n samples (n, dim) in one forward pass per chunk (EMA weights unless ``ema=False``).

        For a :class:`~freeflow.Posterior`: a dict {name: constrained values (n, *shape)}
        (:meth:`sample_unconstrained` gives the (n, dim) tensor the generator produces)."""
        x = self.sample_unconstrained(n, seed=seed, ema=ema, chunk_size=chunk_size)
        return self.posterior.constrain(x) if self.posterior is not None else x

    @torch.no_grad()
    def sample_unconstrained(self, n: int, *, seed: int | None = None, ema: bool = True,
                             chunk_size: int = 65536) -> Tensor:
        """n samples (n, dim) of the generator, in the log-density's coordinates."""
        check_positive_int(n, "n")
        net = self.state.ema.module if ema else self.generator
        rng = torch.Generator().manual_seed(seed) if seed is not None else self._sample_rng
        out = []
        for start in range(0, n, chunk_size):
            m = min(chunk_size, n - start)
            out.append(net(torch.randn(m, self.settings["noise_dim"], generator=rng)))
        return torch.cat(out)

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

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": FORMAT,
            "dim": self.dim,
            "seed": self.seed,
            "divergence": self.divergence_name,
            "density": self.density_name,
            "generator": self.generator_name,
            "settings": json.loads(json.dumps(self.settings)),
            "target": self.target_config,
            "fingerprint": _fingerprint(self.log_density, self.dim),
            "trainer": self.trainer.state_dict(self.state),
            "history": list(self.history),
            "auto": dict(self.auto) if self.auto is not None else None,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint atomically (a failed write leaves an earlier file intact)."""
        return atomic_torch_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike, log_density, *, check_target: bool = True) -> "OneStepSampler":
        """Rebuild a sampler from ``save``'s file; training can continue with ``fit``.

        The checkpoint is checked against ``log_density`` (same dimension, same target config
        for a target object, same log-density up to a constant at fixed probe points).
        """
        ck = load_checkpoint(path)
        if not isinstance(ck, dict) or ck.get("format") != FORMAT:
            raise ValueError(f"{str(path)!r} is not a freeflow OneStepSampler checkpoint")
        dim = ck["dim"]
        if _is_target(log_density):
            if log_density.dim != dim:
                raise ValueError(
                    f"log_density: checkpoint {str(path)!r} is for dimension {dim}, "
                    f"the target has dimension {log_density.dim}"
                )
            cfg = log_density.config() if hasattr(log_density, "config") else None
            if check_target and ck["target"] is not None and cfg is not None and cfg != ck["target"]:
                raise ValueError(
                    f"log_density: checkpoint {str(path)!r} was trained on target {ck['target']}, "
                    f"not {cfg}"
                )
        settings = dict(ck["settings"])
        density = ck["density"] if ck["density"] in ("kde", "flow", "exact") else "kde"
        self = cls(log_density, dim, divergence=ck["divergence"], density=density,
                   generator=ck.get("generator", "mlp"), seed=ck["seed"], **settings)
        if check_target:
            fp = _fingerprint(self.log_density, dim)
            if not torch.allclose(torch.tensor(fp), torch.tensor(ck["fingerprint"]), rtol=1e-4, atol=1e-3):
                raise ValueError(
                    f"log_density: checkpoint {str(path)!r} was trained on a different "
                    "log-density (its values at the probe points differ); pass check_target=False "
                    "to load anyway"
                )
        self.trainer.load_state_dict(self.state, ck["trainer"])
        self.history = History(ck.get("history", []))
        self.auto = ck.get("auto")
        if self.auto is not None:
            self.drift.anneal_steps = self.auto["anneal_steps"]
        return self

    # -- importance weights (flow route; docs/flow-route.md) ------------------------------------
    @torch.no_grad()
    def sample_and_log_prob(self, n: int, *, seed: int | None = None, ema: bool = True,
                            chunk_size: int = 16384) -> tuple[Tensor, Tensor]:
        """n samples x ~ q (n, d) and log q(x): exact for generator="flow", the auxiliary flow's
        estimate for density="flow"; any other estimator is refused with a ValueError (a KDE's
        log q̂ is too biased to weight with)."""
        check_positive_int(n, "n")
        net = self.state.ema.module if ema else self.generator
        if isinstance(net, (FlowGenerator, MixtureGenerator)):
            rng = torch.Generator().manual_seed(seed) if seed is not None else self._sample_rng
            xs, lqs = [], []
            for start in range(0, n, chunk_size):
                z = torch.randn(min(chunk_size, n - start), self.settings["noise_dim"], generator=rng)
                x, lq = net.forward_and_log_prob(z)
                xs.append(x)
                lqs.append(lq)
            return torch.cat(xs), torch.cat(lqs)
        if isinstance(self.density, FlowDensity):
            x = self.sample_unconstrained(n, seed=seed, ema=ema)
            return x, torch.cat([self.density.log_prob(c) for c in x.split(chunk_size)])
        raise ValueError(
            f"importance weights need log q: use generator='flow' (exact) or density='flow' "
            f"(approximate), not density={self.density_name!r}"
        )

    @torch.no_grad()
    def importance_weights(self, n: int, *, seed: int | None = None, ema: bool = True,
                           constrained: bool | None = None):
        """Samples x ~ q (n, d) and log w = log p̃(x) − log q(x) (float64).

        For a :class:`~freeflow.Posterior` the samples are the dict of :meth:`sample` (named
        constrained values, deterministic sites included); ``constrained=False`` gives the
        unconstrained (n, dim) tensor instead."""
        if constrained and self.posterior is None:
            raise ValueError("constrained=True needs a sampler built on a freeflow.Posterior; this one "
                             "samples a plain log_density on R^d")
        x, log_q = self.sample_and_log_prob(n, seed=seed, ema=ema)
        lw = _iw.log_importance_weights(self._log_density_chunked(x), log_q)
        if self.posterior is not None and constrained is not False:
            return self.posterior.constrain(x), lw
        return x, lw

    def log_normalizer(self, n: int, *, seed: int | None = None, ema: bool = True) -> tuple[float, float]:
        """(log Ẑ, standard error) from n importance samples (see :mod:`freeflow.importance`)."""
        return _iw.log_normalizer(self.importance_weights(n, seed=seed, ema=ema)[1])

    def importance_summary(self, n: int, *, seed: int | None = None, ema: bool = True) -> "_iw.ImportanceSummary":
        """log Ẑ ± se, reverse ESS fraction, ELBO and Pareto k̂ from n importance samples."""
        x, lw = self.importance_weights(n, seed=seed, ema=ema)
        log_z, se = _iw.log_normalizer(lw)
        return _iw.ImportanceSummary(log_z, se, _iw.reverse_ess(lw), _iw.elbo(lw), _iw.pareto_khat(lw), n)

    def expectation(self, f: Callable, n: int, *, seed: int | None = None, ema: bool = True):
        """Self-normalised importance estimate of E_p[f(x)] and its standard error.

        ``f`` takes the samples as :meth:`importance_weights` gives them: x (n, d) for a plain
        log-density; for a :class:`~freeflow.Posterior`, the dict of named constrained values,
        e.g. ``sampler.expectation(lambda d: d["tau"], 100_000)``; returns (n,) or (n, k)."""
        if not callable(f):
            raise TypeError(f"f must be callable (samples -> values (n,) or (n, k)), got {type(f).__name__}")
        x, lw = self.importance_weights(n, seed=seed, ema=ema)
        return _iw.self_normalized_expectation(f(x), lw)
