"""The coordinates the sampler trains in: the model as written, or a twin that fits better.

A :class:`~freeflow.Posterior` may offer other parameterisations of the same posterior
(``posterior.reparametrizations()``: a NumPyro model's non-centred twin,
:mod:`freeflow.bayes.reparam`). Before training, the Gaussian stage is fitted in each, and a
twin becomes the space the generator, the drift, the verdict and ``refine`` work in where its
Gaussian is the better start by either of two measures, and not worse by the other:

* its ELBO is higher by more than ``MARGIN`` nats (both ELBOs bound the same log Z from below);
* or the Pareto k̂ of its importance weights (``KHAT_DRAWS`` common draws) is lower by more than
  ``KHAT_GAP``, with an ELBO at most ``MARGIN`` lower. A funnel's neck is mass the Gaussian
  misses, which the reverse KL of the ELBO hardly sees (centred eight schools: ELBOs 0.9–1.1
  nats apart) and the weights' tail shows plainly (k̂ 0.77–0.96 as written, 0.11–0.29
  non-centred); on varying intercepts with informative groups, where both fit, the ELBOs are
  within 0.6 nat and the choice falls either way (``benchmarks/twin_choice.py``).
 Every draw a user sees is mapped back to the model's own unconstrained coordinates
(:func:`to_model`), and ``log q`` there carries the map's log-Jacobian.

Measured on centred hierarchies whose group scale reaches 0 (``benchmarks/posteriors_zoo.py``,
docs/benchmarks.md, "Non-centred twins"): centred eight schools, small groups of varying
intercepts and a Poisson hierarchy, flagged as written (log τ or log σ 12–36 % too narrow), are
right and trusted in the twin.
"""
from __future__ import annotations

import math

import torch

Tensor = torch.Tensor

__all__ = ["alternatives", "choose", "use", "to_model", "model_log_det", "single_precision", "restore_precision",
           "MARGIN"]

MARGIN = 1.0      # nats of ELBO
KHAT_GAP = 0.2    # of the Gaussian's importance weights' Pareto k̂ (0.7: the usual limit of reliability)
KHAT_DRAWS = 4000


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
    best_k = gaussian_khat(sampler.counted, fit, sampler.seed)
    tried = [{"coordinates": "as written", "elbo": _elbo(fit), "khat": best_k}]
    for rep in twins:
        sampler.counted.log_density = rep.posterior.log_density
        try:
            f2, i2 = stage(sampler.counted)
            k2 = gaussian_khat(sampler.counted, f2, sampler.seed) if f2 is not None else math.inf
        except Exception as e:  # noqa: BLE001 - the twin's stage failed: not a candidate
            tried.append({"coordinates": rep.label, "elbo": None, "error": f"{type(e).__name__}: {e}"})
            continue
        finally:
            sampler.counted.log_density = sampler.model_log_density
        tried.append({"coordinates": rep.label, "elbo": _elbo(f2), "khat": k2})
        if f2 is not None and i2.get("used") and better(_elbo(f2), k2, _elbo(best_fit), best_k):
            best, best_fit, best_info, best_k = rep, f2, i2, k2
    info = dict(best_info)
    info["coordinates"] = best.label if best is not None else "as written"
    info["coordinates_tried"] = tried
    if best is not None:
        _switch(sampler, best)
    return best_fit, info


def better(elbo: float, khat: float, elbo_ref: float, khat_ref: float) -> bool:
    """Whether a twin's Gaussian (elbo, khat) is the better start (see the module docstring)."""
    return elbo > elbo_ref + MARGIN or (khat < khat_ref - KHAT_GAP and elbo >= elbo_ref - MARGIN)


def gaussian_khat(log_density, fit, seed: int, n: int = KHAT_DRAWS) -> float:
    """Pareto k̂ of p̃/N(loc, chol cholᵀ) on n draws (seeded: common to every candidate);
    +inf where fewer than 20 weights are finite."""
    from ..importance import log_density_at, pareto_k
    d = fit.loc.shape[0]
    eps = torch.randn(n, d, generator=torch.Generator().manual_seed(int(seed) + 7919), dtype=torch.float64)
    x = fit.loc.double().cpu() + eps @ fit.chol.double().cpu().T
    dtype, device = torch.get_default_dtype(), torch.get_default_device()
    with torch.no_grad():
        lw = log_density_at(log_density, x.to(device=device, dtype=dtype)).double().cpu() + 0.5 * eps.pow(2).sum(1)
    lw = lw[torch.isfinite(lw)]
    return float(pareto_k(lw)) if lw.numel() >= 20 else math.inf


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


def model_log_det(sampler, w: Tensor, z: Tensor, chunk: int = 16384) -> Tensor:
    """log |det ∂z/∂w| per row, z = :func:`to_model` (w) (zeros where the sampler trains in the
    model's coordinates)."""
    rep = getattr(sampler, "reparam", None)
    if rep is None:
        return torch.zeros(len(w), dtype=torch.float64, device=w.device)
    return torch.cat([rep.log_det(a, b) for a, b in zip(w.split(chunk), z.split(chunk))]).to(w.device)


def _trained_posterior(sampler):
    """The posterior whose log-density the sampler trains and checks on (a twin's, or the model's)."""
    rep = getattr(sampler, "reparam", None)
    return rep.posterior if rep is not None else sampler.posterior


def single_precision(sampler, fit) -> str | None:
    """After the Gaussian stage ``fit``: let the trained posterior evaluate the float32 sampler's
    batches in float32 where :mod:`freeflow.bayes.precision` measures that accurate at
    ``PROBE_DRAWS`` draws of the stage's Gaussian; what was decided (None: nothing to decide,
    e.g. a torch log-density, which runs in its batch's dtype anyway, or a float64 sampler)."""
    from ..bayes.precision import PROBE_DRAWS

    post = _trained_posterior(sampler)
    if post is None or fit is None or sampler.placement.dtype != torch.float32:
        return None
    g = torch.Generator().manual_seed(sampler.seed + 31)
    loc, chol = fit.loc.detach().cpu().double(), fit.chol.detach().cpu().double()
    x = loc + torch.randn(PROBE_DRAWS, sampler.dim, generator=g, dtype=torch.float64) @ chol.T
    return post.use_single_precision(x, chol)


def restore_precision(sampler) -> None:
    """A loaded sampler's posterior evaluates in the precision its training decided."""
    decided = (sampler.gaussian_fit or {}).get("precision")
    post = _trained_posterior(sampler)
    if decided and post is not None and sampler.placement.dtype == torch.float32:
        post.use_single_precision(decided=decided.startswith("float32"))
