"""``from_pymc(model)``: a PyMC model as a :class:`~freeflow.Posterior`.

The unconstrained space is PyMC's value-variable space: z is the model's value variables
(``model.value_vars``, e.g. ``tau_log__`` for a positive ``tau``) in the order of
``model.free_RVs``, each flattened.  log p̃(z) is ``model.logp(jacobian=True)``, the density
PyMC's own samplers use, and its gradient is PyTensor's.  It is evaluated on a whole (n, d)
batch in one of three ways (``backend``, :data:`BACKENDS`; ``posterior.backend`` says which):

* ``"jax"`` (the default where jax is installed): the graph of one point through PyTensor's
  JAX backend, ``jit(vmap(value_and_grad))`` (:mod:`freeflow.bayes.pymc_jax`; the graph first
  simplified where that is exact, :mod:`freeflow.bayes.pymc_rewrites`), whose failed
  parameter checks give −inf as PyMC's do; rows where it gives NaN or +inf are evaluated again
  by PyMC's one-point functions, so that they get PyMC's own value;
* ``"pytensor"``: the graph of one point vectorised over a batch
  (``pytensor.graph.vectorize_graph``: value variables replaced by slices of one (n, d) matrix)
  and compiled once into ``(n, d) -> (log p̃ (n,), ∇ (n, d))``;
* ``"rows"``: PyMC's own one-point ``compile_logp``/``compile_dlogp``, row by row.

torch calls the batch through :mod:`freeflow.bayes.host`. A batched route is checked against
PyMC's one-point functions at three random points when it is built; one that cannot be built,
or whose values differ, is not used: "auto" goes on to the next route, and the batched graph
falls back to rows with one warning line on the ``freeflow`` logger: slower, never wrong.

Constrained values are the free RVs with their value variables substituted
(``model.replace_rvs_by_values``: each transform's ``backward``), and the deterministics
likewise; both compiled batched by PyTensor the same way.

Parameter names are the free RVs' names (``tau``, not ``tau_log__``); the model's dims and
coords go to the InferenceData, its observations to ``observed_data`` and its data
containers to ``constant_data`` (as PyMC's own ``to_inference_data`` finds them).

Discrete free RVs are refused: marginalise them (e.g. ``pymc_extras.marginalize``).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from .host import host_log_density
from .jax_batch import call_chunked, call_chunked_single
from .posterior import Posterior

Tensor = torch.Tensor

__all__ = ["from_pymc", "PyMCPosterior", "BACKENDS"]

#: the routes of log p̃ (module docstring); "auto": "jax" where it can be used, else "pytensor"
BACKENDS = ("auto", "jax", "pytensor", "rows")


def _import_pymc():
    try:
        import pymc
        import pytensor
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("freeflow.from_pymc needs pymc: pip install 'freeflow[ppl]' or pip install pymc "
                          f"({e})") from e
    return pymc, pytensor


#: PyMC transform -> the support it maps onto (other transforms keep their class name)
_SUPPORTS = {"LogTransform": "positive", "LogOddsTransform": "unit_interval", "SimplexTransform": "simplex",
             "IntervalTransform": "interval", "Interval": "interval", "LogExpM1": "positive",
             "Ordered": "ordered", "CholeskyCovPacked": "cholesky_cov_packed"}


def _label(transform) -> str:
    if transform is None:
        return "real"
    name = type(transform).__name__
    return _SUPPORTS.get(name, name)


class PyMCPosterior(Posterior):
    """A :class:`~freeflow.Posterior` whose log-density and transforms are a PyMC model's
    (built by :func:`from_pymc`; see the module docstring)."""

    def __init__(self, model=None, *, name: str | None = None, backend: str = "auto", noncentre: bool = True):
        if backend not in BACKENDS:
            raise ValueError(f"from_pymc: backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
        if not isinstance(noncentre, bool):
            raise TypeError(f"from_pymc: noncentre must be True or False, got {noncentre!r}")
        self.noncentre, self._twins = noncentre, None
        pm, pytensor = _import_pymc()
        import pytensor.tensor as pt
        from pytensor.graph.replace import clone_replace, vectorize_graph

        model = pm.modelcontext(model)
        free = list(model.free_RVs)
        if not free:
            raise ValueError("the PyMC model has no free random variables: nothing to sample")
        discrete = [rv.name for rv in free if model.rvs_to_values[rv].dtype.startswith(("int", "uint", "bool"))]
        if discrete:
            raise ValueError(f"PyMC model has discrete free variable(s) {discrete}; freeflow samples "
                             "continuous parameters only: they must be enumerated or marginalised out of "
                             "the model (e.g. pymc_extras.marginalize)")
        values = [model.rvs_to_values[rv] for rv in free]
        point = model.initial_point()
        raw_shapes = [tuple(np.shape(point[v.name])) for v in values]
        sizes = [int(np.prod(s)) for s in raw_shapes]

        zb = pt.matrix("z", dtype="float64")
        n = zb.shape[0]
        replace, start = {}, 0
        for v, shape, size in zip(values, raw_shapes, sizes):
            piece = zb[:, start:start + size].reshape((n, *shape)) if shape else zb[:, start]
            replace[v] = piece.astype(v.dtype)
            start += size
        # PyMC's own compile (not pytensor.function): its rewrites turn failed parameter checks
        # (check_parameters, e.g. sigma > 0) into log p = −inf, as PyMC's samplers see them,
        # instead of raising ParameterValueError (see _host for batches)
        compile_fn = pm.pytensorf.compile
        compile_kw = {"on_unused_input": "ignore"}
        self._values, self._sizes, self._raw_shapes = values, sizes, raw_shapes
        self._row_logp = model.compile_logp(jacobian=True)      # PyMC's one-point functions: the
        self._row_dlogp = model.compile_dlogp(jacobian=True)    # reference, and the fallback
        self.backend = self._build_backend(backend, model, replace, zb, compile_fn, compile_kw)
        self.vectorised = self.backend != "rows"

        deterministics = list(model.deterministics)
        constrained = model.replace_rvs_by_values(free + deterministics)
        batched = vectorize_graph(constrained, replace=replace)
        self._constrained = pytensor.function([zb], batched, **compile_kw)

        # unconstrain: each transform's forward, written in the constrained values of the
        # free RVs (placeholders of the RVs' types), then batched like the rest
        transforms = [model.rvs_to_transforms.get(rv) for rv in free]
        single = [rv.type() for rv in free]
        forward = [rv if t is None else t.forward(rv, *rv.owner.inputs) for rv, t in zip(free, transforms)]
        # (clone_replace, not graph_replace: a free RV may be both an output here and an input
        # of another, e.g. the imputed values of an observation with missing entries depend on
        # the RVs of its mean and scale; graph_replace refuses such a graph)
        forward = clone_replace(forward, replace=dict(zip(free, single)))
        cons_in = [pt.tensor(dtype="float64", shape=(None,) + tuple(rv.type.shape)) for rv in free]
        forward = vectorize_graph(forward, replace={s: c.astype(s.dtype) for s, c in zip(single, cons_in)})
        self._unconstrain_fn = pytensor.function(cons_in, forward, **compile_kw)

        # per-observation log-likelihood: the elementwise logp of each observed RV (no Jacobian:
        # observations are not transformed), batched like log p̃
        self._observed_names = [rv.name for rv in model.observed_RVs]
        if self._observed_names:
            pointwise = model.logp(vars=list(model.observed_RVs), sum=False, jacobian=False)
            self._log_likelihood = pytensor.function(
                [zb], vectorize_graph(list(pointwise), replace=replace), **compile_kw)

        probe = self._constrained(np.zeros((1, sum(sizes))))
        shapes = [tuple(np.shape(a)[1:]) for a in probe[: len(free)]]
        labels = [_label(t) for t in transforms]
        dims = {k: list(d) for k, d in model.named_vars_to_dims.items() if d is not None}
        coords = {k: list(v) for k, v in model.coords.items() if v is not None}
        from pymc.backends.arviz import find_constants, find_observations

        self._init_layout([rv.name for rv in free], shapes, raw_shapes, labels,
                          name=name or f"pymc:{model.name or 'model'}",
                          observed_data={k: np.asarray(v) for k, v in find_observations(model).items()},
                          constant_data={k: np.asarray(v) for k, v in find_constants(model).items()},
                          dims={k: d for k, d in dims.items()
                                if k in [rv.name for rv in free + deterministics + list(model.observed_RVs)]},
                          coords=coords, derived_names=tuple(d.name for d in deterministics))
        self.model = model

    def _noncentred_twin(self):
        """The PyMC model's non-centred twin (:func:`freeflow.bayes.pymc_twin.noncentred_twin`), or None."""
        from .pymc_twin import noncentred_twin

        return noncentred_twin(self)

    # -- host side ---------------------------------------------------------------------------
    def _point(self, row: np.ndarray) -> dict:
        out, start = {}, 0
        for v, shape, size in zip(self._values, self._raw_shapes, self._sizes):
            out[v.name] = row[start:start + size].reshape(shape).astype(v.dtype)
            start += size
        return out

    def _rows(self, x: np.ndarray, grad: bool):
        """PyMC's own one-point log-density (and gradient) at each row."""
        v = np.array([float(self._row_logp(self._point(r))) for r in x], dtype=np.float64)
        g = np.stack([np.asarray(self._row_dlogp(self._point(r)), dtype=np.float64) for r in x]) if grad else None
        return v, g

    def _build_backend(self, backend: str, model, replace, zb, compile_fn, compile_kw) -> str:
        """The route log p̃ takes (module docstring): "jax" where asked or possible ("auto") and
        equal to PyMC's one-point functions at probe points, else the batched PyTensor graph
        where it can be built and is equal, else "rows"; a one-line warning when a route asked
        for, or the batched graph, cannot be used."""
        log = logging.getLogger("freeflow")
        d = sum(self._sizes)
        if backend in ("auto", "jax"):
            reason = None
            try:
                from .pymc_jax import jax_value_and_grad
                self._jax = jax_value_and_grad(model, self._values, self._sizes, self._raw_shapes)
                reason = self._mismatch(d, self._jax_call)
            except ImportError as e:
                if backend == "jax":
                    raise ImportError(f"from_pymc(backend='jax') needs jax: pip install jax ({e})") from e
                reason = f"no jax ({e})"
            except Exception as e:  # noqa: BLE001 - an op without a JAX implementation, etc.
                reason = f"{type(e).__name__}: {e}"
            if reason is None:
                return "jax"
            (log.warning if backend == "jax" else log.info)(
                "from_pymc: the JAX backend cannot be used (%s); using PyTensor's", reason.splitlines()[0][:200])
        if backend != "rows":
            import pytensor
            from pytensor.graph.replace import vectorize_graph

            try:
                logp = vectorize_graph(model.logp(jacobian=True), replace=replace)  # (n,)
                grad = pytensor.gradient.grad(logp.sum(), zb)                       # (n, d)
                self._value_and_grad = compile_fn([zb], [logp, grad], **compile_kw)
                self._value = compile_fn([zb], logp, **compile_kw)
                reason = self._vectorised_mismatch(d)
            except Exception as e:  # noqa: BLE001 - any failure to batch the graph: row by row instead
                reason = f"{type(e).__name__}: {e}"
            if reason is None:
                return "pytensor"
            log.warning("from_pymc: the model's log-density could not be batched (%s); evaluating it "
                        "row by row with PyMC's compile_logp/compile_dlogp (correct, slower)", reason.splitlines()[0][:200])
        return "rows"

    def _vectorised_mismatch(self, d: int) -> str | None:
        """None if the batched PyTensor graph equals PyMC's one-point functions at three random
        points, else what differs (a graph that vectorize_graph batches wrongly is never used)."""
        return self._mismatch(d, self._value_and_grad_batched)

    def _value_and_grad_batched(self, x: np.ndarray, grad: bool):
        if grad:
            v, g = self._value_and_grad(x)
            return np.asarray(v, dtype=np.float64), np.asarray(g, dtype=np.float64)
        return np.asarray(self._value(x), dtype=np.float64), None

    def _jax_call(self, x: np.ndarray, grad: bool):
        return call_chunked(*self._jax, x, grad)

    def _single_precision_host(self):
        """The JAX route's graph in float32 (other backends: none)."""
        if self.backend != "jax":
            return None
        return lambda x, grad: call_chunked_single(*self._jax, x, grad)

    def _mismatch(self, d: int, call) -> str | None:
        """None if ``call`` equals PyMC's one-point functions at three random points, else what differs."""
        x = np.random.default_rng(0).normal(scale=0.5, size=(3, d))
        v, g = call(x, True)
        rv, rg = self._rows(x, True)
        fin = np.isfinite(rv)
        if not (np.array_equal(fin, np.isfinite(v)) and np.allclose(v[fin], rv[fin], rtol=1e-8, atol=1e-8)
                and np.allclose(g[fin], rg[fin], rtol=1e-6, atol=1e-8)):
            return "the batched log-density or gradient differs from PyMC's at a probe point"
        return None

    def _call(self, x: np.ndarray, grad: bool):
        if self.backend == "rows":
            return self._rows(x, grad)
        return self._value_and_grad_batched(x, grad)

    def _host(self, x: np.ndarray, grad: bool):
        if self.backend == "jax":
            v, g = self._jax_call(x, grad)
            bad = np.isnan(v) | (v == np.inf)   # (−inf: PyMC's own failed-check value, pymc_jax)
            if bad.any():  # not a number, or +inf: PyMC's own one-point values there
                v = np.array(v)
                v[bad], gb = self._rows(x[bad], grad)
                if grad:
                    g = np.array(g)
                    g[bad] = gb
            return v, g
        v, g = self._call(x, grad)
        if x.shape[0] <= 1 or np.isfinite(v).all():
            return v, g
        # A failed parameter check is one −inf switch over the whole vectorised batch (the
        # check reduces over every row): evaluate such a batch row by row, so only the rows
        # outside the support get −inf.
        rows = [self._call(x[i:i + 1], grad) for i in range(x.shape[0])]
        v = np.concatenate([r[0] for r in rows])
        return v, (np.concatenate([r[1] for r in rows]) if grad else None)

    def _outputs(self, z: Tensor) -> list[np.ndarray]:
        return self._constrained(z.detach().cpu().to(torch.float64).numpy())

    # -- the Posterior maps ----------------------------------------------------------------------
    def _log_density(self, z: Tensor) -> Tensor:
        return host_log_density(z, self._host, getattr(self, "_fn32", None))

    def _constrain(self, z: Tensor) -> dict[str, Tensor]:
        out = self._outputs(z)
        return {k: torch.from_numpy(np.array(out[i], dtype=np.float64)).to(device=z.device, dtype=z.dtype).reshape(
            (z.shape[0],) + self.shapes[k]) for i, k in enumerate(self.names)}

    def _derived(self, z: Tensor) -> dict[str, Tensor]:
        if not self.derived_names:
            return {}
        out = self._outputs(z)[len(self.names):]
        return {k: torch.from_numpy(np.array(v, dtype=np.float64)).to(device=z.device, dtype=z.dtype) for k, v in zip(self.derived_names, out)}

    def _constrain_all(self, z: Tensor) -> dict[str, Tensor]:
        out = self._outputs(z)  # one pass: parameters and deterministics
        values = {k: torch.from_numpy(np.array(out[i], dtype=np.float64)).to(device=z.device, dtype=z.dtype).reshape(
            (z.shape[0],) + self.shapes[k]) for i, k in enumerate(self.names)}
        values.update({k: torch.from_numpy(np.array(v, dtype=np.float64)).to(device=z.device, dtype=z.dtype)
                       for k, v in zip(self.derived_names, out[len(self.names):])})
        return values

    @property
    def has_log_likelihood(self) -> bool:
        return bool(self._observed_names)

    @property
    def has_predictive(self) -> bool:
        return bool(self._observed_names)

    def _pointwise_log_likelihood(self, z: Tensor) -> dict[str, Tensor]:
        out = self._log_likelihood(z.detach().cpu().to(torch.float64).numpy())
        return {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in zip(self._observed_names, out)}

    def _predict(self, z: Tensor, seed: int) -> dict[str, Tensor]:
        """pm.sample_posterior_predictive on an InferenceData of these draws (one chain)."""
        import arviz as az

        pm, _ = _import_pymc()
        out = self._outputs(z)
        draws = {k: np.array(out[i], dtype=np.float64)[None] for i, k in enumerate(self.names)}
        dims = {k: d for k, d in self.dims.items() if k in draws}
        idata = az.from_dict(posterior=draws, dims=dims, coords=self.coords or None)
        quiet = logging.getLogger("pymc")  # "Sampling: [y]" on every call
        level = quiet.level
        quiet.setLevel(logging.WARNING)
        try:
            pp = pm.sample_posterior_predictive(idata, model=self.model, var_names=list(self._observed_names),
                                                random_seed=int(seed), progressbar=False,
                                                return_inferencedata=True)
        finally:
            quiet.setLevel(level)
        group = pp.posterior_predictive
        return {k: torch.from_numpy(np.array(group[k].values[0], dtype=np.float64)) for k in self._observed_names}

    def _unconstrain(self, values: dict[str, Tensor]) -> Tensor:
        dtype = next(iter(values.values())).dtype
        n = next(iter(values.values())).shape[0]
        out = self._unconstrain_fn(*[values[k].detach().cpu().to(torch.float64).numpy() for k in self.names])
        return torch.cat([torch.from_numpy(np.array(o, dtype=np.float64)).reshape(n, -1) for o in out], 1).to(dtype)


def from_pymc(model: Any = None, *, name: str | None = None, backend: str = "auto",
              noncentre: bool = True) -> PyMCPosterior:
    """A :class:`~freeflow.Posterior` from a PyMC model (the model in context when omitted).

        with pm.Model(coords={"feature": names}) as model:
            w = pm.Normal("w", 0, 1, dims="feature")
            pm.Bernoulli("y", logit_p=X @ w, observed=y)
        post = ff.from_pymc(model)             # parameter "w", dims ("feature",)

    See the module docstring for the space, the log-density and what goes into the
    InferenceData.  ``backend``: how log p̃ and its gradient are evaluated, one of
    :data:`BACKENDS`: "jax" (PyTensor's JAX backend, jit and vmap; needs jax), "pytensor" (the
    batched graph compiled by PyTensor), "rows" (PyMC's one-point functions, row by row), or
    "auto" (default: the first of these that builds and equals PyMC's own values at probe
    points). ``posterior.backend`` says which one is used. ``noncentre``: let the sampler train
    in the model's non-centred twin where its Gaussian stage fits better there
    (:mod:`freeflow.bayes.pymc_twin`); draws, InferenceData and checkpoints stay in the model's
    own coordinates. A discrete free variable raises a ValueError naming it."""
    return PyMCPosterior(model, name=name, backend=backend, noncentre=noncentre)
