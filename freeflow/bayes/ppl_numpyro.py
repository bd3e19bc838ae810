"""``from_numpyro(model, *args, **kwargs)``: a NumPyro model as a :class:`~freeflow.Posterior`.

The unconstrained space, the log-density and the constraining map are NumPyro's own
(``numpyro.infer.util.get_potential_fn``, as ``initialize_model`` builds them): z is the
model's latent sample sites in trace order, each in the unconstrained coordinates of ``biject_to(site.support)``, flattened; log p̃(z) is
minus NumPyro's potential energy (it includes the log-Jacobians); ``postprocess_fn`` maps z to
the constrained values and the deterministic sites.  torch reaches it through a host call
(:mod:`freeflow.bayes.host`): ``jit(vmap(value_and_grad(−potential)))`` on a float64 batch.
Batches are cut and padded as :mod:`freeflow.bayes.jax_batch` says, so that training,
checks and sampling compile a handful of shapes, not one per batch size. The sampler's float32
batches are evaluated in float32 where its precision probe measures that accurate
(:mod:`freeflow.bayes.precision`; the float32 log-density is built apart,
:mod:`freeflow.bayes.numpyro_single`).

The JAX-native log-density is kept as ``log_prob_jax``: ``freeflow.compare.reference.nuts(posterior)``
runs blackjax on it directly, without the bridge.

Discrete latent sites are refused (freeflow samples continuous parameters): marginalise them
in the model, or enumerate them (NumPyro's ``infer={"enumerate": "parallel"}`` with funsor is
for NumPyro's own samplers; freeflow does not sum over them).

JAX is switched to float64 globally (``jax_enable_x64``), as the NUTS bridge does.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
import torch

from .host import host_log_density
from .jax_batch import call_chunked, call_chunked_single, chunks
from .numpyro_single import potential, single_value_and_grad
from .posterior import Posterior

Tensor = torch.Tensor

__all__ = ["from_numpyro", "NumPyroPosterior"]

def _import_numpyro():
    try:
        import jax
        import numpyro
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("freeflow.from_numpyro needs numpyro (and jax): pip install 'freeflow[ppl]' "
                          f"or pip install numpyro ({e})") from e
    jax.config.update("jax_enable_x64", True)
    return jax, numpyro


def _is_factor(site) -> bool:
    """A ``numpyro.factor`` site: an observed sample site of NumPyro's ``Unit`` distribution."""
    from numpyro.distributions.distribution import Unit

    fn = site["fn"]
    while hasattr(fn, "base_dist") and not isinstance(fn, Unit):  # (masked / expanded wrappers)
        fn = fn.base_dist
    return isinstance(fn, Unit)


def _structure_trace(model, model_args: tuple, model_kwargs: dict, seed: int):
    """One run of the model, for its sites' names, shapes and supports. A site that cannot be
    sampled (``dist.ImproperUniform``, NumPyro's way to write e.g. an ordered cutpoint vector
    with a flat or factor prior), or whose prior draw breaks a later site (a vague
    ``Gamma(0.001, 0.001)`` precision whose draw underflows to 0, making a scale infinite), gets a
    value as NumPyro's MCMC initialises it: uniform in (−2, 2) on the unconstrained scale
    (``init_to_uniform``). A model that fails there too raises its own error."""
    from numpyro import handlers
    from numpyro.infer.initialization import init_to_uniform

    seeded = handlers.seed(model, rng_seed=seed)
    try:
        return handlers.trace(seeded).get_trace(*model_args, **model_kwargs)
    except (NotImplementedError, ValueError):
        return handlers.trace(handlers.substitute(seeded, substitute_fn=init_to_uniform)).get_trace(
            *model_args, **model_kwargs)


class NumPyroPosterior(Posterior):
    """A :class:`~freeflow.Posterior` whose log-density and transforms are a NumPyro model's
    (built by :func:`from_numpyro`; see the module docstring)."""

    def __init__(self, model: Callable, model_args: tuple = (), model_kwargs: dict | None = None, *,
                 seed: int = 0, name: str | None = None, noncentre: bool = True):
        jax, numpyro = _import_numpyro()
        import jax.numpy as jnp
        from numpyro import handlers
        from numpyro.infer import Predictive
        from numpyro.infer.util import log_likelihood, transform_fn, unconstrain_fn

        if not callable(model):
            raise TypeError(f"model must be a NumPyro model (a callable), got {type(model).__name__}")
        model_kwargs = dict(model_kwargs or {})
        trace = _structure_trace(model, model_args, model_kwargs, seed)
        latent, observed, derived = [], {}, {}
        for site_name, site in trace.items():
            if site["type"] == "sample" and site["is_observed"] and _is_factor(site):
                continue  # numpyro.factor: a term of log p̃, not data (no log_likelihood entry)
            if site["type"] == "sample" and site["is_observed"]:
                observed[site_name] = np.asarray(site["value"])
            elif site["type"] == "sample":
                if site["fn"].support.is_discrete:
                    discrete = [k for k, s in trace.items() if s["type"] == "sample"
                                and not s["is_observed"] and s["fn"].support.is_discrete]
                    raise ValueError(
                        f"NumPyro model has discrete latent site(s) {discrete} (site {site_name!r}: "
                        f"{type(site['fn']).__name__}); freeflow samples continuous parameters only: "
                        "they must be enumerated or marginalised out of the model (sum the likelihood "
                        "over their values, e.g. a mixture via dist.MixtureSameFamily)")
                latent.append(site_name)
            elif site["type"] == "deterministic":
                derived[site_name] = tuple(np.shape(site["value"]))
        if not latent:
            raise ValueError("the NumPyro model has no latent sample sites: nothing to sample")
        potential_fn, postprocess_fn, inv_transforms, prepared, fixed = potential(
            model, model_args, model_kwargs, trace, latent, seed)
        z0 = transform_fn(inv_transforms, {k: trace[k]["value"] for k in latent}, invert=True)
        raw_shapes = [tuple(np.shape(z0[k])) for k in latent]
        shapes = [tuple(np.shape(trace[k]["value"])) for k in latent]
        labels = [_label(trace[k]["fn"].support) for k in latent]
        self._init_layout(latent, shapes, raw_shapes, labels,
                          name=name or f"numpyro:{getattr(model, '__name__', type(model).__name__)}",
                          observed_data=observed, constant_data=_constant_data(model, model_args, model_kwargs, observed),
                          derived_names=tuple(derived))
        self.model, self.model_args, self.model_kwargs = model, tuple(model_args), model_kwargs
        if not isinstance(noncentre, bool):
            raise TypeError(f"noncentre must be True or False, got {noncentre!r}")
        self.noncentre, self._twins = noncentre, None
        self.derived_shapes = derived
        self._trace_seed = seed
        slices, raw = dict(self.slices), dict(self.raw_shapes)

        def unravel(zf):
            return {k: zf[slices[k]].reshape(raw[k]) for k in latent}

        def log_density(zf):  # (dim,) -> (): log p̃ = −U
            return -potential_fn(unravel(zf))

        self._jax_log_density = log_density
        self._value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(log_density)))
        self._value = jax.jit(jax.vmap(log_density))
        self._postprocess = jax.jit(jax.vmap(lambda zf: postprocess_fn(unravel(zf))))
        self._unconstrain_one = jax.jit(jax.vmap(
            lambda p: unconstrain_fn(prepared, self.model_args, model_kwargs, p)))
        self._jnp = jnp
        # per-observation log-likelihood (numpyro.infer.log_likelihood on the constrained latent
        # values of a padded batch) and posterior predictive draws (numpyro.infer.Predictive of
        # the model with its observations removed: handlers.uncondition; no seed handler inside,
        # Predictive seeds each draw itself)
        latent_names = tuple(latent)

        def batch_log_likelihood(zb):
            values = jax.vmap(lambda zf: postprocess_fn(unravel(zf)))(zb)
            return log_likelihood(prepared, {k: values[k] for k in latent_names}, *self.model_args,
                                  parallel=True, **model_kwargs)

        self._log_likelihood = jax.jit(batch_log_likelihood)
        unobserved = handlers.uncondition(handlers.substitute(model, data=fixed))
        self._predictive = lambda values, key: Predictive(
            unobserved, posterior_samples=values, return_sites=list(observed), parallel=True)(
            key, *self.model_args, **model_kwargs)

    # -- host side ---------------------------------------------------------------------------
    def _host(self, x: np.ndarray, grad: bool):
        return call_chunked(self._value_and_grad, self._value, x, grad)

    def _single_precision_host(self):
        """The model's log-density built again in float32 (:mod:`freeflow.bayes.numpyro_single`)."""
        if getattr(self, "_single", None) is None:
            try:
                self._single = single_value_and_grad(
                    self.model, self.model_args, self.model_kwargs, list(self.names), dict(self.slices),
                    dict(self.raw_shapes), self._trace_seed, _structure_trace)
            except Exception as e:  # noqa: BLE001 - reported by the precision probe, which keeps float64
                self._single = e
        if isinstance(self._single, Exception):
            failed = self._single

            def fail(x, grad):
                raise failed
            return fail
        return lambda x, grad: call_chunked_single(*self._single, x, grad)

    def _postprocessed(self, z: Tensor) -> dict[str, np.ndarray]:
        x = z.detach().cpu().to(torch.float64).numpy()
        parts: dict[str, list] = {}
        for m, padded in chunks(x):
            out = self._postprocess(padded)
            for k, v in out.items():
                parts.setdefault(k, []).append(np.asarray(v)[:m])
        return {k: np.concatenate(v) for k, v in parts.items()}

    # -- the Posterior maps ----------------------------------------------------------------------
    def _log_density(self, z: Tensor) -> Tensor:
        return host_log_density(z, self._host, getattr(self, "_fn32", None))

    def _constrain(self, z: Tensor) -> dict[str, Tensor]:
        out = self._postprocessed(z)
        return {k: torch.from_numpy(out[k].copy()).to(device=z.device, dtype=z.dtype).reshape((z.shape[0],) + self.shapes[k])
                for k in self.names}

    def _derived(self, z: Tensor) -> dict[str, Tensor]:
        if not self.derived_names:
            return {}
        out = self._postprocessed(z)
        return {k: torch.from_numpy(out[k].copy()).to(device=z.device, dtype=z.dtype) for k in self.derived_names}

    def _constrain_all(self, z: Tensor) -> dict[str, Tensor]:
        out = self._postprocessed(z)  # one pass: parameters and deterministic sites
        values = {k: torch.from_numpy(out[k].copy()).to(device=z.device, dtype=z.dtype).reshape((z.shape[0],) + self.shapes[k])
                  for k in self.names}
        values.update({k: torch.from_numpy(out[k].copy()).to(device=z.device, dtype=z.dtype) for k in self.derived_names})
        return values

    @property
    def has_log_likelihood(self) -> bool:
        return bool(self.observed_data)

    @property
    def has_predictive(self) -> bool:
        return bool(self.observed_data)

    def _pointwise_log_likelihood(self, z: Tensor) -> dict[str, Tensor]:
        parts: dict[str, list] = {}
        for m, padded in chunks(z.detach().cpu().to(torch.float64).numpy()):
            for k, v in self._log_likelihood(padded).items():
                if k in self.observed_data:   # (not numpyro.factor sites)
                    parts.setdefault(k, []).append(np.asarray(v)[:m])
        return {k: torch.from_numpy(np.concatenate(v)) for k, v in parts.items()}

    def _predict(self, z: Tensor, seed: int) -> dict[str, Tensor]:
        import jax

        values = {k: v for k, v in self._postprocessed(z).items() if k in self.names}
        out = self._predictive(values, jax.random.PRNGKey(int(seed)))
        return {k: torch.from_numpy(np.array(out[k])) for k in self.observed_data}

    def _unconstrain(self, values: dict[str, Tensor]) -> Tensor:
        dtype = next(iter(values.values())).dtype
        params = {k: self._jnp.asarray(v.detach().cpu().to(torch.float64).numpy()) for k, v in values.items()}
        out = self._unconstrain_one(params)
        n = next(iter(values.values())).shape[0]
        return torch.cat([torch.from_numpy(np.array(out[k], dtype=np.float64)).reshape(n, -1)
                          for k in self.names], dim=1).to(dtype)

    def structure_trace(self, seed: int):
        """One seeded run of the model (its sites, their distributions and values)."""
        return _structure_trace(self.model, self.model_args, self.model_kwargs, seed)

    def _noncentred_twin(self):
        """The NumPyro model's non-centred twin (:func:`freeflow.bayes.reparam.noncentred_twin`), or None."""
        from .reparam import noncentred_twin

        return noncentred_twin(self)

    def log_prob_jax(self, z):
        """NumPyro's log-density −U(z) at one position ``(dim,) -> ()`` (JAX; for blackjax)."""
        return self._jax_log_density(z)


def _label(support) -> str:
    """'positive', 'real', 'simplex', 'interval', ... from a NumPyro constraint (an
    independent(...) wrapper names its base constraint)."""
    while hasattr(support, "base_constraint"):
        support = support.base_constraint
    return type(support).__name__.lstrip("_").lower()


def _constant_data(model, args, kwargs, observed: dict) -> dict[str, np.ndarray]:
    """The model's array arguments that are not observed sites (by name or by value)."""
    try:
        bound = inspect.signature(model).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return {}
    out = {}
    for key, value in bound.arguments.items():
        if value is None or isinstance(value, (bool, str)) or key in observed:
            continue
        if not (isinstance(value, np.ndarray) or type(value).__module__.startswith("jax")):
            continue
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf" or any(
                arr.shape == o.shape and np.array_equal(arr, o) for o in observed.values()):
            continue
        out[key] = arr
    return out


def from_numpyro(model: Callable, *args: Any, seed: int = 0, name: str | None = None, noncentre: bool = True,
                 **kwargs: Any) -> NumPyroPosterior:
    """A :class:`~freeflow.Posterior` from a NumPyro model and the arguments to call it with.

        def eight_schools(sigma, y=None):
            mu = numpyro.sample("mu", dist.Normal(0, 5))
            tau = numpyro.sample("tau", dist.HalfCauchy(5))
            with numpyro.plate("J", len(sigma)):
                eta = numpyro.sample("eta", dist.Normal(0, 1))
                numpyro.sample("y", dist.Normal(mu + tau * eta, sigma), obs=y)

        post = ff.from_numpyro(eight_schools, sigma, y=y)   # names mu, tau, eta

    The parameter names and shapes are the model's latent sites; constrained values come from
    the model's own transforms; observed sites go to ``observed_data`` and other array
    arguments to ``constant_data``.  ``seed`` only seeds the trace that reads the model's
    structure.  ``noncentre``: let the sampler train in the model's non-centred twin where its
    Gaussian stage fits better there (:mod:`freeflow.bayes.reparam`; draws come back in the
    model's own coordinates either way); ``False`` keeps the model as written.  ``seed``,
    ``name`` and ``noncentre`` are freeflow's keywords (pass a model argument with one of these
    names positionally).  A discrete latent site raises a ValueError naming it."""
    return NumPyroPosterior(model, args, kwargs, seed=seed, name=name, noncentre=noncentre)
