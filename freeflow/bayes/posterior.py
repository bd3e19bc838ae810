"""Posterior: named, constrained parameters over an unconstrained sampling space.

    post = ff.Posterior(log_joint, params={"mu": (), "tau": "positive", "theta": (8,)})
    sampler = ff.OneStepSampler(post)          # dim inferred: post.dim
    sampler.fit()
    draws = sampler.sample(4000)               # {"mu": (4000,), "tau": (4000,), "theta": (4000, 8)}

Convention.  ``log_joint(values)`` takes a dict of batched constrained tensors (leading
dimension n, then each parameter's shape) and returns log p̃(θ) of shape (n,): the log joint
density of the parameters and the data, in the constrained coordinates, up to a constant.
The sampler works on z ∈ ℝᵈ, the parameters' unconstrained coordinates concatenated in the
order of ``params`` (each flattened row-major), and

    log p̃_z(z) = log_joint(T(z)) + log |det ∂T(z)/∂z|,

T the parameters' bijections (:mod:`freeflow.bayes.constraints`), so that the pushforward of
p̃_z by T is the posterior.  ``log_density`` computes this, batched and differentiable.

Optional model pieces (for arviz's ``log_likelihood``, ``posterior_predictive`` and
deterministic variables; a NumPyro or PyMC model supplies its own):

* ``log_likelihood(values)``: log p(y_i | θ) per observation, a tensor (n, *obs_shape) or
  ``{observed name: tensor}``; needed by PSIS-LOO (:func:`freeflow.loo`, ``az.loo``).
* ``deterministics(values)``: ``{name: tensor (n, *shape)}`` computed from the parameters;
  :meth:`constrain` adds them to the parameters (``deterministics=False`` leaves them out).
* ``predictive(values, generator)``: draws ``{observed name: tensor (n, *obs_shape)}`` of
  y_rep ~ p(y | θ), one per row, using the ``torch.Generator`` for randomness.

A tensor (rather than a dict) from ``log_likelihood`` or ``predictive`` is named after the
only entry of ``observed_data``, or ``"y"``.

The class is also the base of the models read from probabilistic programming languages
(:func:`freeflow.from_numpyro`, :func:`freeflow.from_pymc`), which supply their own
log-density on their own unconstrained space; the layout, checks and arviz export are shared.
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Callable, Mapping

import numpy as np
import torch

from . import _pieces
from .constraints import parse_spec
from ..placement import noise_generator

Tensor = torch.Tensor

__all__ = ["Posterior"]


class Posterior:
    """Named constrained parameters and their log joint density (see module docstring).

    Args:
        log_joint: ``dict[str, Tensor] -> Tensor (n,)``, batched constrained values in,
            log p̃ out; differentiable with torch.
        params: ``{name: spec}`` in the order the parameters take in z; spec grammar in
            :mod:`freeflow.bayes.constraints` (``()``, ``(8,)``, ``"positive"``,
            ``("positive", 8)``, ``("interval", lo, hi)``, ``("simplex", K)``,
            ``("corr_cholesky", K)``, ``("lower_cholesky", K)``, ...).
        name: a label for checkpoints and NUTS caches.
        observed_data, constant_data: ``{name: array}`` copied into the InferenceData groups
            of the same names.
        dims, coords: arviz dims (``{param: [dim names]}``) and coords for the export;
            a parameter without dims gets ``<name>_dim_0``, ``<name>_dim_1``, ...
        check: probe ``log_joint`` once at construction (shape, dtype, names, gradient).
        log_likelihood, deterministics, predictive: the optional model pieces of the module
            docstring (``deterministics`` is probed once to learn its names).

    Attributes: ``names``, ``shapes`` (constrained), ``raw_shapes`` (unconstrained),
    ``constraints`` (a label per parameter), ``dim`` (number of unconstrained coordinates),
    ``slices`` (where each parameter sits in z).
    """

    def __init__(
        self,
        log_joint: Callable[[dict[str, Tensor]], Tensor],
        params: Mapping[str, Any],
        *,
        name: str = "posterior",
        observed_data: Mapping[str, Any] | None = None,
        constant_data: Mapping[str, Any] | None = None,
        dims: Mapping[str, Any] | None = None,
        coords: Mapping[str, Any] | None = None,
        check: bool = True,
        log_likelihood: Callable[[dict[str, Tensor]], Any] | None = None,
        deterministics: Callable[[dict[str, Tensor]], Mapping[str, Tensor]] | None = None,
        predictive: Callable[[dict[str, Tensor], torch.Generator], Any] | None = None,
    ):
        if not callable(log_joint):
            raise TypeError(f"log_joint must be callable, got {type(log_joint).__name__}")
        if not isinstance(params, Mapping) or not params:
            raise TypeError(f"params must be a non-empty dict {{name: spec}}, got {params!r}")
        blocks = []
        for key, spec in params.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise ValueError(f"parameter names must be identifiers (str), got {key!r}")
            blocks.append(parse_spec(key, spec))
        for arg, fn in (("log_likelihood", log_likelihood), ("deterministics", deterministics),
                        ("predictive", predictive)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{arg} must be callable (or None), got {type(fn).__name__}")
        self._blocks = blocks
        self.log_joint = log_joint
        self._log_likelihood_fn, self._deterministics_fn, self._predictive_fn = (
            log_likelihood, deterministics, predictive)
        self._init_layout([b.name for b in blocks], [b.shape for b in blocks], [b.raw_shape for b in blocks],
                          [b.label for b in blocks], name=name, observed_data=observed_data,
                          constant_data=constant_data, dims=dims, coords=coords)
        if deterministics is not None:
            self.derived_names = tuple(_pieces.probe(self, "deterministics"))
        if check:
            self._check_log_joint()
            for arg, fn in (("log_likelihood", log_likelihood), ("predictive", predictive)):
                if fn is not None:
                    _pieces.probe(self, arg)

    # -- layout (shared with the PPL subclasses) ----------------------------------------------
    def _init_layout(self, names, shapes, raw_shapes, labels, *, name, observed_data=None,
                     constant_data=None, dims=None, coords=None, derived_names=()) -> None:
        self.name = str(name)
        self.names = tuple(names)
        self.shapes = {k: tuple(int(s) for s in sh) for k, sh in zip(names, shapes)}
        self.raw_shapes = {k: tuple(int(s) for s in sh) for k, sh in zip(names, raw_shapes)}
        self.constraints = dict(zip(names, labels))
        self.derived_names = tuple(derived_names)
        self.slices, start = {}, 0
        for k in self.names:
            size = math.prod(self.raw_shapes[k])
            self.slices[k] = slice(start, start + size)
            start += size
        self.dim = start
        self.observed_data = {k: np.asarray(v) for k, v in (observed_data or {}).items()}
        self.constant_data = {k: np.asarray(v) for k, v in (constant_data or {}).items()}
        self.coords = dict(coords or {})
        self.dims = {}
        for k, d in (dims or {}).items():
            if k in self.shapes and len(tuple(d)) != len(self.shapes[k]):
                raise ValueError(f"dims[{k!r}] = {list(d)} has {len(tuple(d))} names for the "
                                 f"{len(self.shapes[k])} axes of shape {self.shapes[k]}")
            self.dims[k] = list(d)
        for k in self.names:
            self.dims.setdefault(k, [f"{k}_dim_{i}" for i in range(len(self.shapes[k]))])

    # -- the three maps a subclass provides ---------------------------------------------------
    def _constrain_with_jacobian(self, z: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        values, ladj = {}, torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for b in self._blocks:
            x, lj = b.constrain(z[:, self.slices[b.name]])
            values[b.name] = x
            ladj = ladj + lj
        return values, ladj

    def _log_density(self, z: Tensor) -> Tensor:
        values, ladj = self._constrain_with_jacobian(z)
        lp = self.log_joint(values)
        if not isinstance(lp, torch.Tensor) or lp.shape != (z.shape[0],):
            got = tuple(lp.shape) if isinstance(lp, torch.Tensor) else type(lp).__name__
            raise ValueError(f"log_joint must return one value per draw, shape ({z.shape[0]},), got {got}")
        return lp.to(z.dtype) + ladj

    def _constrain(self, z: Tensor) -> dict[str, Tensor]:
        return self._constrain_with_jacobian(z)[0]

    def _unconstrain(self, values: dict[str, Tensor]) -> Tensor:
        return torch.cat([b.unconstrain(values[b.name]) for b in self._blocks], dim=1)

    def _derived(self, z: Tensor) -> dict[str, Tensor]:
        if self._deterministics_fn is None:
            return {}
        return _pieces.deterministics(self._deterministics_fn, self._constrain(z), z.shape[0], self.shapes)

    def _constrain_all(self, z: Tensor) -> dict[str, Tensor]:
        """Parameters and deterministic sites of flat z (n, dim) (a subclass computing both in
        one pass overrides this)."""
        values = self._constrain(z)
        if self._deterministics_fn is not None:
            values.update(_pieces.deterministics(self._deterministics_fn, values, z.shape[0], self.shapes))
        return values

    def _pointwise_log_likelihood(self, z: Tensor) -> dict[str, Tensor]:
        out = self._log_likelihood_fn(self._constrain(z))
        return _pieces.named(out, "log_likelihood", z.shape[0], self._default_observed_name())

    def _predict(self, z: Tensor, seed: int) -> dict[str, Tensor]:
        gen = noise_generator(seed)  # (on the sampler's device)
        with torch.no_grad():
            out = self._predictive_fn(self._constrain(z), gen)
        return _pieces.named(out, "predictive", z.shape[0], self._default_observed_name())

    def _default_observed_name(self) -> str:
        return next(iter(self.observed_data)) if len(self.observed_data) == 1 else "y"

    # -- public API -----------------------------------------------------------------------------
    def _flat(self, z, what: str) -> tuple[Tensor, tuple[int, ...]]:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"{what} takes a torch.Tensor of shape (n, {self.dim}), got {type(z).__name__}")
        if z.ndim < 1 or z.shape[-1] != self.dim:
            raise ValueError(f"{what} takes shape (..., {self.dim}) (the unconstrained dimension of "
                             f"{self.name!r}), got {tuple(z.shape)}")
        if not z.is_floating_point():
            raise TypeError(f"{what} takes a floating-point tensor, got {z.dtype}")
        return z.reshape(-1, self.dim), tuple(z.shape[:-1])

    def log_density(self, z: Tensor) -> Tensor:
        """log p̃_z(z) = log_joint(T(z)) + log|det J_T(z)|: (..., dim) -> (...), differentiable,
        in z's dtype."""
        flat, batch = self._flat(z, "log_density")
        return self._log_density(flat).reshape(batch)

    def log_prob(self, z: Tensor) -> Tensor:
        """Same as :meth:`log_density` (so that a Posterior is accepted wherever a Target is)."""
        return self.log_density(z)

    def reparametrizations(self) -> tuple:
        """Other parameterisations of this posterior the sampler may train in
        (:class:`freeflow.bayes.reparam.Reparametrized`; a NumPyro or PyMC model's non-centred
        twin, :meth:`_noncentred_twin`, built once; none where ``noncentre`` is False); none for
        a model written as a Posterior."""
        if getattr(self, "_twins", None) is None:
            twin = self._noncentred_twin() if getattr(self, "noncentre", False) else None
            self._twins = (twin,) if twin is not None else ()
        return self._twins

    def _noncentred_twin(self):
        """The model's non-centred twin, or None (a front end that can build one overrides this)."""
        return None

    def use_single_precision(self, x: Tensor | None = None, scale: Tensor | None = None, *,
                             decided: bool | None = None) -> str | None:
        """Evaluate float32 batches in float32 from now on, where that is accurate at the rows of
        ``x`` (n, dim; gradients compared in the frame of ``scale``, a Cholesky factor), or as
        ``decided`` earlier (a checkpoint's). What was decided and why
        (:mod:`freeflow.bayes.precision`); None for a posterior that always evaluates in the
        batch's own dtype (a torch log-density)."""
        fn32 = self._single_precision_host()
        if fn32 is None:
            return None
        if decided is not None:
            self._fn32 = fn32 if decided else None
            return "float32" if decided else "float64"
        if x is None or scale is None:
            raise ValueError("use_single_precision: give x and scale (draws and their Cholesky factor), or decided")
        from .precision import agrees
        ok, why = agrees(self._host, fn32, x.detach().cpu().double().numpy(), scale.detach().cpu().double().numpy())
        self._fn32 = fn32 if ok else None
        return why

    def _single_precision_host(self):
        """A host function evaluating a float32 batch in float32 (JAX front ends), or None."""
        return None

    def log_prob_jax(self, z):
        """A JAX single-position log-density ``(dim,) -> ()`` where the model has one (NumPyro);
        NotImplementedError otherwise (NUTS then bridges :meth:`log_density`)."""
        raise NotImplementedError(f"posterior {self.name!r} has no JAX log-density")

    def constrain(self, z: Tensor, *, deterministics: bool = True) -> dict[str, Tensor]:
        """Unconstrained z (..., dim) -> {name: constrained values (..., *shape)}: the
        parameters, then the deterministic sites (``derived_names``) unless
        ``deterministics=False``."""
        flat, batch = self._flat(z, "constrain")
        values = self._constrain_all(flat) if deterministics and self.derived_names else self._constrain(flat)
        return {k: v.reshape(batch + tuple(v.shape[1:])) for k, v in values.items()}

    @property
    def has_log_likelihood(self) -> bool:
        """Whether :meth:`pointwise_log_likelihood` is available (for LOO)."""
        return self._log_likelihood_fn is not None

    @property
    def has_predictive(self) -> bool:
        """Whether :meth:`predict` is available (posterior predictive draws)."""
        return self._predictive_fn is not None

    def pointwise_log_likelihood(self, z: Tensor) -> dict[str, Tensor]:
        """{observed name: log p(y_i | θ) (..., *obs_shape)} at unconstrained z (..., dim), one
        value per observation (arviz's ``log_likelihood`` group)."""
        if not self.has_log_likelihood:
            raise ValueError(f"posterior {self.name!r} has no per-observation log-likelihood: pass "
                             "log_likelihood=fn to ff.Posterior (fn(values) -> tensor (n, *obs_shape)) "
                             "to get a log_likelihood group and LOO")
        flat, batch = self._flat(z, "pointwise_log_likelihood")
        with torch.no_grad():
            out = self._pointwise_log_likelihood(flat)
        return {k: v.reshape(batch + tuple(v.shape[1:])) for k, v in out.items()}

    def predict(self, z: Tensor, *, seed: int = 0) -> dict[str, Tensor]:
        """Posterior predictive draws {observed name: y_rep (..., *obs_shape)}, one per row of
        unconstrained z (..., dim); reproducible for a given ``seed``."""
        if not self.has_predictive:
            raise ValueError(f"posterior {self.name!r} cannot draw predictions: pass predictive=fn to "
                             "ff.Posterior (fn(values, generator) -> tensor (n, *obs_shape)), or build "
                             "it from a NumPyro or PyMC model")
        flat, batch = self._flat(z, "predict")
        out = self._predict(flat, int(seed))
        return {k: torch.as_tensor(v).reshape(batch + tuple(v.shape[1:])) for k, v in out.items()}

    def derived(self, z: Tensor) -> dict[str, Tensor]:
        """Quantities computed from the parameters (a NumPyro/PyMC model's deterministic sites),
        ``{name: (..., *shape)}``; empty for a hand-written Posterior."""
        flat, batch = self._flat(z, "derived")
        return {k: v.reshape(batch + tuple(v.shape[1:])) for k, v in self._derived(flat).items()}

    def unconstrain(self, values: Mapping[str, Any]) -> Tensor:
        """{name: constrained values (..., *shape)} -> z (..., dim); the inverse of :meth:`constrain`
        (keys that are not parameters, e.g. deterministic sites, are ignored)."""
        if not isinstance(values, Mapping):
            raise TypeError(f"unconstrain takes a dict {{name: values}}, got {type(values).__name__}")
        missing = [k for k in self.names if k not in values]
        extra = [k for k in values if k not in self.shapes and k not in self.derived_names]
        if missing:  # (other keys, e.g. another model's deterministic sites, are ignored)
            raise ValueError(f"unconstrain needs exactly the parameters {list(self.names)}; "
                             f"missing {missing}, unknown {extra}")
        batch, flat = None, {}
        for k in self.names:
            v = torch.as_tensor(values[k])
            if not v.is_floating_point():
                v = v.to(torch.get_default_dtype())
            shape = self.shapes[k]
            if tuple(v.shape[v.ndim - len(shape):]) != shape or v.ndim < len(shape):
                raise ValueError(f"parameter {k!r}: expected shape (..., {', '.join(map(str, shape))}), "
                                 f"got {tuple(v.shape)}")
            b = tuple(v.shape[: v.ndim - len(shape)])
            if batch is None:
                batch = b
            elif b != batch:
                raise ValueError(f"parameter {k!r} has batch shape {b}, the others {batch}")
            flat[k] = v.reshape((-1,) + shape)
        dtype = functools.reduce(torch.promote_types, [v.dtype for v in flat.values()])
        z = self._unconstrain({k: v.to(dtype) for k, v in flat.items()})
        return z.reshape(batch + (self.dim,))

    def coordinate_names(self) -> list[str]:
        """A label per coordinate of z, e.g. ``theta[3]`` (unconstrained coordinates)."""
        out = []
        for k in self.names:
            shape = self.raw_shapes[k]
            if not shape:
                out.append(k)
            else:
                out.extend(f"{k}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape))
        return out

    def config(self) -> dict:
        """JSON-serialisable description (checkpoints compare it on load)."""
        return {"name": self.name,
                "params": {k: {"constraint": self.constraints[k], "shape": list(self.shapes[k])}
                           for k in self.names}}

    def __repr__(self) -> str:
        body = ", ".join(f"{k}: {self.constraints[k]}{list(self.shapes[k]) if self.shapes[k] else ''}"
                         for k in self.names)
        return f"{type(self).__name__}({self.name!r}, dim={self.dim}; {body})"

    # -- checks -------------------------------------------------------------------------------
    def _check_log_joint(self, n: int = 4) -> None:
        """Call log_joint once on a probe batch: clear errors for a missing name, a wrong
        shape or dtype, no autograd graph; a warning for a parameter it ignores."""
        z = 0.5 * torch.randn(n, self.dim, generator=torch.Generator().manual_seed(20260101))
        values, _ = self._constrain_with_jacobian(z)
        values = {k: v.detach().requires_grad_(True) for k, v in values.items()}
        try:
            with torch.enable_grad():
                lp = self.log_joint(dict(values))
        except KeyError as e:
            key = e.args[0] if e.args else "?"
            raise ValueError(f"log_joint looked up {key!r}, which is not a parameter of this "
                             f"Posterior (its parameters are {list(self.names)}); add it to params "
                             "or fix the name") from e
        except Exception as e:
            shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in values.items())
            raise ValueError(f"log_joint raised {type(e).__name__}: {e} on a probe batch of n={n} draws "
                             f"({shapes}); it must take a dict of batched constrained tensors with "
                             "the leading dimension n") from e
        if not isinstance(lp, torch.Tensor):
            raise TypeError(f"log_joint must return a torch.Tensor of shape ({n},), got {type(lp).__name__}")
        if lp.shape != (n,):
            hint = (" (it seems to sum over the draws: keep one value per draw)" if lp.ndim == 0 else
                    " (sum each draw's terms over the parameter axes, e.g. .sum(-1))")
            raise ValueError(f"log_joint must return one value per draw, shape ({n},) for n={n} "
                             f"draws, got {tuple(lp.shape)}{hint}")
        if not lp.dtype.is_floating_point:
            raise TypeError(f"log_joint must return a floating-point tensor, got {lp.dtype}")
        if lp.requires_grad:
            grads = torch.autograd.grad(lp.sum(), list(values.values()), allow_unused=True)
            unused = [k for k, g in zip(values, grads) if g is None]
        else:
            unused = list(values)
        if unused:
            # a flat density is legitimate (a uniform on an interval); a .detach()/.numpy() inside
            # log_joint is not, and looks the same from here
            warnings.warn(f"log_joint does not depend on parameter(s) {unused} through autograd: "
                          "their density is flat in the constrained space (improper on an unbounded "
                          "support), or log_joint breaks the graph (.detach(), .numpy(), .item())",
                          UserWarning, stacklevel=3)
