"""How a :class:`~freeflow.datafree.sampler.OneStepSampler` is assembled from its arguments:
the target, the divergence, the generator (by the registry, :mod:`freeflow.generators.registry`),
the estimator of q, the drift and the trainer's settings. Pure construction, no training."""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict

from ..density import DensityEstimator
from ..density.flow import FlowDensity
from ..density.kde import KDE
from ..divergences import Divergence, get_divergence
from ..generators.exact import ExactDensity
from ..generators.registry import GeneratorSpec, get_generator_spec, resolve_settings
from ..train import TrainConfig
from ..train import distributed as _dist
from ..validation import check_choice
from .defaults import default_generator, default_settings
from .drift import DataFreeDrift
from .logvar import LogVarianceDrift
from .reaction import MixtureReaction
from .schedule import CoverageSchedule

__all__ = ["is_target", "resolve_target", "resolve_divergence", "resolve_generator", "make_density",
           "make_drift", "train_config", "distribute", "CountedLogDensity"]

DENSITIES = ("kde", "flow", "exact")


def is_target(obj) -> bool:
    return hasattr(obj, "log_prob") and hasattr(obj, "dim") and callable(getattr(obj, "log_prob"))


def resolve_target(log_density, dim):
    """(log-density function, dim, target config or None) from a function or a target object."""
    if not is_target(log_density):
        if dim is None:
            raise ValueError("dim is required when log_density is a plain function")
        return log_density, dim, None
    if dim is not None and dim != log_density.dim:
        raise ValueError(f"dim={dim} does not match the target's dimension {log_density.dim}")
    config = log_density.config() if hasattr(log_density, "config") else None
    return log_density.log_prob, log_density.dim, config


def resolve_divergence(divergence):
    """(name, Divergence, CoverageSchedule or None): "lv" trains the log-variance flow with the
    reverse-KL weight; "auto" switches from kl_pq to kl_qp on the missing mass."""
    if not isinstance(divergence, (str, Divergence)):
        raise TypeError(f"divergence must be a name or a Divergence, got {type(divergence).__name__}")
    name = divergence if isinstance(divergence, str) else divergence.name
    schedule = CoverageSchedule() if name == "auto" else None
    div = schedule.current if schedule is not None else get_divergence("kl_qp" if name == "lv" else divergence)
    return name, div, schedule


def resolve_generator(generator, density, dim: int, settings: dict) -> tuple[GeneratorSpec, object, dict]:
    """(spec, density choice, full settings): the generator by the registry, its density
    ("exact" for generators with exact log q), the defaults overridden by ``settings`` and the
    generator's own choices (noise width, components)."""
    if isinstance(density, str):
        check_choice(density, DENSITIES, "density")
    elif density is not None and not isinstance(density, DensityEstimator):
        raise TypeError(f"density must be 'kde', 'flow', 'exact' or a DensityEstimator, got {type(density).__name__}")
    spec = get_generator_spec(default_generator(dim, density) if generator is None else generator)
    if density is None:
        density = "exact" if spec.exact else "kde"
    if (density == "exact") != spec.exact:
        exact = [n for n in _exact_names()]
        raise ValueError(f"density='exact' goes with the generators that have an exact log q ({', '.join(exact)}) "
                         f"and only with them, got density={density!r}, generator={spec.name!r}")
    if spec.noise_dim is not None:
        need = spec.noise_dim(dim)
        if settings.get("noise_dim", need) != need:
            raise ValueError(f"noise_dim must be {need} for generator={spec.name!r} in d = {dim} "
                             f"(it is fixed by the generator), got {settings['noise_dim']!r}")
        settings = {**settings, "noise_dim": need}
    s = {**default_settings(dim), **settings}
    if s["noise_dim"] < dim:
        raise ValueError(f"noise_dim ({s['noise_dim']}) must be >= dim ({dim})")
    if s["reference"] == "loo" and s["batch_size"] < 2:
        raise ValueError("batch_size must be >= 2 for the leave-one-out reference")
    if isinstance(s["bandwidth_factor"], list):
        s["bandwidth_factor"] = tuple(s["bandwidth_factor"])
    return spec, density, resolve_settings(spec, dim, s)


def _exact_names() -> list[str]:
    from ..generators.registry import GENERATORS
    return [n for n, sp in GENERATORS.items() if sp.exact]


def make_density(density, s: dict, dim: int, seed: int, generator) -> DensityEstimator:
    """The estimator of q: the generator's own (exact), a KDE, an auxiliary flow, or the user's."""
    if isinstance(density, DensityEstimator):
        return density
    if density == "exact":
        return ExactDensity(generator)
    if density == "kde":
        factor = s["bandwidth_factor"][0] if s["bandwidth_factor"] else 1.0
        return KDE(s["bandwidth"], factor=factor, covariance=s["covariance"])
    return FlowDensity(dim, kind=s["flow_kind"], layers=s["flow_layers"], hidden=s["flow_hidden"],
                       fit_steps=s["flow_fit_steps"], lr=s["flow_lr"], seed=seed)


def make_drift(log_density, divergence_name: str, divergence, schedule, density, spec: GeneratorSpec, s: dict):
    """The drift the trainer drives: f-divergence (with the Fisher–Rao reaction for weighted
    mixtures) or the log-variance flow."""
    kwargs = dict(
        log_density=log_density, divergence=divergence, density=density,
        noise_dim=s["noise_dim"], batch_size=s["batch_size"], reference=s["reference"],
        reference_size=s["reference_size"], beta0=s["beta0"],
        anneal_fraction=s["anneal_fraction"], max_ratio=s["max_ratio"], temper=s["temper"],
        bandwidth_factor=s["bandwidth_factor"], anneal_path=s["anneal_path"],
        base_scale=float(s["init_scale"]),
    )
    if spec.has_weights:
        kwargs["reaction"] = MixtureReaction(divergence, step_size=float(s["reaction_step"]),
                                             birth_every=s["birth_every"], birth_mass=float(s["birth_mass"]),
                                             birth_fraction=float(s["birth_fraction"]))
    if schedule is not None:
        kwargs["schedule"] = schedule
    if divergence_name == "lv":
        return LogVarianceDrift(**kwargs, lv_reference=s["lv_reference"], lv_mode=s["lv_mode"],
                                lv_clip=s["lv_clip"], lv_options=dict(s["lv_options"]))
    return DataFreeDrift(**kwargs)


def distribute(generator, divergence_name: str, s: dict):
    """The generator the trainer drives: wrapped for data-parallel training when several
    torch.distributed processes run (:mod:`freeflow.train.distributed`), else itself."""
    if _dist.world()[1] > 1:
        if divergence_name == "lv" or s["step"] != "explicit":
            raise ValueError("data-parallel training supports the f-divergence drifts with step='explicit'; "
                             f"got divergence={divergence_name!r}, step={s['step']!r}")
        _dist.shard(s["batch_size"])  # (checks that the batch splits evenly)
    return _dist.wrap(generator)


def train_config(s: dict) -> TrainConfig:
    return TrainConfig(lr=s["lr"], lr_schedule=s["lr_schedule"], step_size=s["step_size"],
                       grad_clip=s["grad_clip"], ema_decay=s["ema_decay"], step=s["step"],
                       jko_tau=s["jko_tau"], jko_inner=s["jko_inner"])


class CountedLogDensity:
    """The user's log p̃, counting the rows passed to it and the seconds spent in it, per stage
    of a fit (``with counted.stage("training"): ...``); ``cost()`` gives the table."""

    def __init__(self, log_density):
        self.log_density = log_density
        self.rows: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self.current = "other"
        self._since = time.perf_counter()

    def __call__(self, x):
        self.rows[self.current] += int(x.shape[0])
        return self.log_density(x)

    def _switch(self, name: str) -> None:
        """Close the running stage's clock (stages nest; each second counts for one stage)."""
        now = time.perf_counter()
        if self.current != "other":  # time outside the fit's stages is the user's, not ours
            self.seconds[self.current] += now - self._since
        self.current, self._since = name, now

    @contextlib.contextmanager
    def stage(self, name: str):
        old = self.current
        self._switch(name)
        try:
            yield self
        finally:
            self._switch(old)

    def cost(self) -> dict:
        """{stage: {"evaluations": rows of log p̃ (values and gradients), "seconds": wall time}}."""
        names = sorted(set(self.rows) | set(self.seconds))
        return {k: {"evaluations": self.rows.get(k, 0), "seconds": round(self.seconds.get(k, 0.0), 3)}
                for k in names}

    def state_dict(self) -> dict:
        return {"rows": dict(self.rows), "seconds": dict(self.seconds)}

    def load_state_dict(self, sd: dict) -> None:
        self.rows.update(sd.get("rows", {}))
        self.seconds.update(sd.get("seconds", {}))
