"""Non-centred twins of a NumPyro model, for the sampler to train in where they fit better.

A centred hierarchy ``theta_j ~ Normal(mu, tau)`` has a funnel in (log tau, theta): where tau's
posterior reaches 0 the thetas' width shrinks with it, and a generator that must bend that neck
comes out too narrow in log tau (the Gaussian stage's frame cannot express it). Written
non-centred, ``theta_j = mu + tau · eta_j`` with ``eta_j ~ Normal(0, 1)``, the same posterior
has no neck when the data say little about each theta_j; when they say much, the centred form
is the better one (Betancourt & Girolami 2015; Gorinova et al. 2020, *Automatic
Reparameterisation of Probabilistic Programs*). Which one fits is measured, not guessed: the
sampler fits its Gaussian stage in both and keeps the one with the higher ELBO (both are lower
bounds on the same log Z, the change of variables' Jacobian is in the twin's log-density).

:func:`noncentred_twin` builds the twin with NumPyro's own handler
(``handlers.reparam`` with ``LocScaleReparam(centered=0)``) at every latent ``Normal`` site
whose loc or scale depends on other latent sites, and a cumulative-sum decentring at every
``GaussianRandomWalk`` whose scale does: ``x = cumsum(scale · eps)``, ``eps ~ Normal(0, 1)``.
The dependence is found by tracing the model twice with different seeds (a constant prior
such as ``Normal(0, 10)`` is left as it is). The twin's draws map back to the model's own
unconstrained coordinates (:meth:`Reparametrized.to_model`): the twin's replay computes the
original sites as deterministic values, which the model's transforms unconstrain.
"""
from __future__ import annotations

import numpy as np
import torch

Tensor = torch.Tensor

__all__ = ["Reparametrized", "noncentred_twin", "usable"]


class Reparametrized:
    """A posterior written in other coordinates w, with the map back to the model's own z.

    ``posterior``: the twin (a :class:`~freeflow.Posterior` on w, its log-density including the
    change of variables); ``base``: the model's posterior on z; ``label``: what was changed."""

    def __init__(self, label: str, posterior, base, sites: tuple[str, ...]):
        self.label, self.posterior, self.base, self.sites = label, posterior, base, tuple(sites)

    def to_model(self, w: Tensor) -> Tensor:
        """The model's unconstrained coordinates z (n, dim) of twin draws w (n, dim)."""
        values = self.posterior.constrain(w.detach().to(torch.float64))
        z = self.base.unconstrain({k: values[k] for k in self.base.names})
        return z.to(device=w.device, dtype=w.dtype)

    def log_det(self, w: Tensor, z: Tensor | None = None) -> Tensor:
        """log |det ∂z/∂w| per row: the twin's log p̃ minus the model's at the mapped point z
        (``to_model(w)``, computed here where not given; the same joint density in two
        coordinate systems)."""
        w64 = w.detach().to(torch.float64)
        z64 = self.to_model(w64) if z is None else z.detach().to(torch.float64)
        return self.posterior.log_density(w64).double() - self.base.log_density(z64).double()

    def __repr__(self) -> str:
        return f"Reparametrized({self.label!r})"


def usable(rep: Reparametrized, post) -> bool:
    """Whether a twin can stand in for ``post``: the same dimension, every parameter of the
    model a parameter or deterministic site of the twin, and finite model coordinates at a probe."""
    twin = rep.posterior
    if twin.dim != post.dim or not all(k in twin.derived_names or k in twin.names for k in post.names):
        return False
    return bool(torch.isfinite(rep.to_model(torch.zeros(2, post.dim, dtype=torch.float64))).all())


def _unwrapped(fn):
    import numpyro.distributions as dist

    while isinstance(fn, (dist.Independent, dist.ExpandedDistribution, dist.MaskedDistribution)):
        fn = fn.base_dist
    return fn


def _kind(fn) -> str | None:
    import numpyro.distributions as dist

    base = _unwrapped(fn)
    if type(base) is dist.Normal:
        return "loc_scale"
    if type(base) is dist.GaussianRandomWalk:
        return "random_walk"
    return None


def _params(fn) -> list[np.ndarray]:
    base = _unwrapped(fn)
    names = ("loc", "scale") if hasattr(base, "loc") else ("scale",)
    return [np.asarray(getattr(base, k), dtype=np.float64) for k in names]


def _dependent_sites(trace_a, trace_b, latent: list[str]) -> dict[str, str]:
    """{site: kind} of latent Normal / GaussianRandomWalk sites whose parameters differ between
    two traces of the model (so they depend on other latent sites)."""
    out = {}
    for name in latent:
        kind = _kind(trace_a[name]["fn"])
        if kind is None or name not in trace_b:
            continue
        pa, pb = _params(trace_a[name]["fn"]), _params(trace_b[name]["fn"])
        if any(a.shape != b.shape or not np.allclose(a, b, rtol=1e-12, atol=0.0) for a, b in zip(pa, pb)):
            out[name] = kind
    return out


def _random_walk_reparam():
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer.reparam import Reparam

    class RandomWalkReparam(Reparam):
        """x = cumsum(scale · eps) over the last axis, eps ~ Normal(0, 1) (a GaussianRandomWalk)."""

        def __call__(self, name, fn, obs):
            assert obs is None, "a random walk's decentring is for latent sites"
            base, expand_shape, event_dim = self._unwrap(fn)
            std = dist.Normal(jnp.zeros(base.batch_shape + base.event_shape), 1.0).to_event(1)
            eps = numpyro.sample(f"{name}_decentered", self._wrap(std, expand_shape, event_dim))
            return None, jnp.cumsum(jnp.asarray(base.scale)[..., None] * eps, axis=-1)

    return RandomWalkReparam()


def noncentred_twin(post) -> Reparametrized | None:
    """The non-centred twin of a :class:`~freeflow.bayes.ppl_numpyro.NumPyroPosterior` (see the
    module docstring), or None where no latent site's location or scale depends on another's, or
    where NumPyro cannot build it (e.g. a site inside a construct the handler does not reach)."""
    from numpyro import handlers
    from numpyro.infer.reparam import LocScaleReparam

    model, args, kwargs = post.model, post.model_args, post.model_kwargs
    try:
        trace_a, trace_b = post.structure_trace(1), post.structure_trace(2)
    except Exception:  # noqa: BLE001 - a model that cannot be traced twice: no twin
        return None
    sites = _dependent_sites(trace_a, trace_b, list(post.names))
    if not sites:
        return None
    config = {k: (LocScaleReparam(centered=0) if kind == "loc_scale" else _random_walk_reparam())
              for k, kind in sites.items()}
    try:
        twin = type(post)(handlers.reparam(model, config=config), args, kwargs,
                                name=f"{post.name} (non-centred)", noncentre=False)
        rep = Reparametrized("non-centred: " + ", ".join(sites), twin, post, tuple(sites))
        if not usable(rep, post):
            return None
    except Exception:  # noqa: BLE001 - the handler cannot rewrite this model: keep the model as written
        return None
    return rep
