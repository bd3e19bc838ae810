"""The coordinates the sampler trains in: the model as written, or a twin that fits better.

A :class:`~freeflow.Posterior` may offer other parameterisations of the same posterior
(``posterior.reparametrizations()``: a NumPyro model's non-centred twin,
:mod:`freeflow.bayes.reparam`). Before training, the Gaussian stage is fitted in each; the one
whose Gaussian has the higher ELBO (by more than ``MARGIN`` nats: both ELBOs bound the same
log Z from below) becomes the space the generator, the drift, the verdict and ``refine`` work
in. Every draw a user sees is mapped back to the model's own unconstrained coordinates
(:func:`to_model`), and ``log q`` there carries the map's log-Jacobian.

Measured on centred hierarchies whose group scale reaches 0 (``benchmarks/posteriors_zoo.py``,
docs/benchmarks.md): the model as written leaves log σ 34–70 % too narrow (flagged); the
non-centred twin is right and trusted.
"""
from __future__ import annotations

import math

import torch

Tensor = torch.Tensor

__all__ = ["alternatives", "choose", "use", "to_model", "model_log_det", "MARGIN"]

MARGIN = 1.0   # nats of ELBO a twin must win by


def alternatives(sampler) -> list:
    """The posterior's other parameterisations (none for a plain log-density)."""
    post = sampler.posterior
    if post is None or not hasattr(post, "reparametrizations"):
        return []
    try:
        return list(post.reparametrizations())
    except Exception:  # noqa: BLE001 - a twin that cannot be built: the model as written
        return []


def choose(sampler, stage, fit, info: dict):
    """After the stage on the model as written (``fit``, ``info``): the stage in each twin,
    ``stage(log_density) -> (fit, info)``; switch the sampler to the best (see module
    docstring). Returns the winner's (fit, info), ``info["coordinates"]`` naming it."""
    if fit is None or not info.get("used"):
        return fit, info
    twins = alternatives(sampler)
    if not twins:
        return fit, info
    best, best_fit, best_info = None, fit, info
    tried = [{"coordinates": "as written", "elbo": _elbo(fit)}]
    for rep in twins:
        sampler.counted.log_density = rep.posterior.log_density
        try:
            f2, i2 = stage(sampler.counted)
        except Exception as e:  # noqa: BLE001 - the twin's stage failed: not a candidate
            tried.append({"coordinates": rep.label, "elbo": None, "error": f"{type(e).__name__}: {e}"})
            continue
        finally:
            sampler.counted.log_density = sampler.model_log_density
        tried.append({"coordinates": rep.label, "elbo": _elbo(f2)})
        if f2 is not None and i2.get("used") and _elbo(f2) > _elbo(best_fit) + MARGIN:
            best, best_fit, best_info = rep, f2, i2
    info = dict(best_info)
    info["coordinates"] = best.label if best is not None else "as written"
    info["coordinates_tried"] = tried
    if best is not None:
        _switch(sampler, best)
    return best_fit, info


def _elbo(fit) -> float:
    value = getattr(fit, "elbo", -math.inf)
    return float(value) if value is not None and math.isfinite(value) else -math.inf


def _switch(sampler, rep) -> None:
    sampler.reparam = rep
    sampler.counted.log_density = rep.posterior.log_density


def use(sampler, label: str | None) -> None:
    """Put a loaded sampler back in the coordinates it was trained in (by label)."""
    if not label or label == "as written":
        return
    for rep in alternatives(sampler):
        if rep.label == label:
            _switch(sampler, rep)
            return
    raise ValueError(f"log_density: the checkpoint was trained in the coordinates {label!r}, which this "
                     "posterior does not offer (a different model?)")


def to_model(sampler, w: Tensor, chunk: int = 65536) -> Tensor:
    """Training-space draws w (n, d) in the model's own unconstrained coordinates."""
    rep = getattr(sampler, "reparam", None)
    if rep is None:
        return w
    return torch.cat([rep.to_model(c) for c in w.split(chunk)]) if len(w) else w


def model_log_det(sampler, w: Tensor, chunk: int = 16384) -> Tensor:
    """log |det ∂z/∂w| per row (zeros where the sampler trains in the model's coordinates)."""
    rep = getattr(sampler, "reparam", None)
    if rep is None:
        return torch.zeros(len(w), dtype=torch.float64, device=w.device)
    return torch.cat([rep.log_det(c) for c in w.split(chunk)]).to(w.device)
