"""The sampler :func:`freeflow.sample` trains, built from what the user passes: a NumPyro model
function and its arguments, a PyMC model, an :class:`~freeflow.Posterior` or a plain log-density
with ``dim`` (shared by :mod:`freeflow.bayes.api` and :mod:`freeflow.bayes.warm`)."""
from __future__ import annotations

import inspect
from typing import Any, Sequence

from .posterior import Posterior

__all__ = ["build_sampler", "make_target", "split_options"]


def _is_pymc_model(obj: Any) -> bool:
    return type(obj).__module__.startswith("pymc") and type(obj).__name__ == "Model"


def split_options(options: dict, extra_fit: tuple = ()) -> tuple[dict, dict]:
    """(constructor options, fit options): a key is fit's when ``OneStepSampler.fit`` takes it."""
    from ..datafree.sampler import OneStepSampler

    fit_keys = (set(inspect.signature(OneStepSampler.fit).parameters) - {"self"}) | set(extra_fit)
    return ({k: v for k, v in options.items() if k not in fit_keys},
            {k: v for k, v in options.items() if k in fit_keys})


def make_target(model: Any, model_args: Sequence, model_kwargs: dict | None, dim: int | None):
    """(the first argument of OneStepSampler, its dim): a Posterior, a PyMC or NumPyro model
    made into one, or a plain log-density with ``dim``."""
    if not isinstance(model_args, (tuple, list)):
        raise TypeError(f"model_args must be a tuple of the model's positional arguments, got "
                        f"{type(model_args).__name__}")
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise TypeError(f"model_kwargs must be a dict, got {type(model_kwargs).__name__}")
    numpyro_like = callable(model) and dim is None and not isinstance(model, Posterior) and not _is_pymc_model(model)
    if (model_args or model_kwargs) and not numpyro_like:
        raise TypeError("model_args / model_kwargs are the arguments of a NumPyro model function; "
                        f"got them with a {type(model).__name__} (and dim={dim!r})")
    if isinstance(model, Posterior):
        return model, None
    if _is_pymc_model(model):
        from .ppl_pymc import PyMCPosterior

        return PyMCPosterior(model), None
    if not callable(model):
        raise TypeError(f"model must be a NumPyro model function, a PyMC model, an ff.Posterior, a "
                        f"fitted OneStepSampler or a log-density with dim=, got {type(model).__name__}")
    if dim is not None:
        return model, dim
    from .ppl_numpyro import NumPyroPosterior

    return NumPyroPosterior(model, tuple(model_args), dict(model_kwargs or {})), None


def build_sampler(model: Any, *, seed: int = 0, model_args: Sequence = (), model_kwargs: dict | None = None,
                  dim: int | None = None, **sampler_options):
    """The unfitted :class:`~freeflow.OneStepSampler` that :func:`sample` trains."""
    from ..datafree.sampler import OneStepSampler

    target, dim = make_target(model, model_args, model_kwargs, dim)
    return OneStepSampler(target, dim, seed=seed, **sampler_options)
