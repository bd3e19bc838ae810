"""Non-centred twins of a PyMC model, for the sampler to train in where they fit better.

The PyMC counterpart of :func:`freeflow.bayes.reparam.noncentred_twin` (whose docstring says
why: a centred hierarchy ``theta ~ Normal(mu, tau)`` is a funnel in (log tau, theta) that the
non-centred form ``theta = mu + tau · theta_decentered``, ``theta_decentered ~ Normal(0, 1)``,
does not have where the data say little about each theta). The sampler fits its Gaussian stage
in the model as written and in the twin and trains in the one with the higher ELBO.

The twin is a PyMC model built from the model's own graph (``pymc.model.fgraph``: the graph
of model variables, as PyMC's ``do`` and ``observe`` rewrite it): every free ``Normal`` RV with
no transform whose mean or sd depends on another free RV becomes a free standard-normal RV
``{name}_decentered`` of the same shape and dims, and the original RV a deterministic
``mu + sigma · {name}_decentered`` of the same name; every other variable, observation and
potential is kept. Its log-density is PyMC's for that model (the change of variables' Jacobian
is PyMC's too: the deterministic has none, the standard normal's density is the twin's prior)."""
from __future__ import annotations

__all__ = ["noncentred_model", "noncentred_twin"]


def _dependent_normals(fgraph):
    """The ModelFreeRV nodes of untransformed Normal RVs whose mean or sd depend on a free RV."""
    from pymc.model.fgraph import ModelFreeRV
    from pytensor.graph.traversal import ancestors
    from pytensor.tensor.random.basic import NormalRV

    free = {n.outputs[0] for n in fgraph.apply_nodes if isinstance(n.op, ModelFreeRV)}
    for node in fgraph.toposort():
        if not isinstance(node.op, ModelFreeRV) or node.op.transform is not None:
            continue
        rv = node.inputs[0]
        if rv.owner is None or not isinstance(rv.owner.op, NormalRV):
            continue
        mu, sigma = rv.owner.inputs[-2:]
        if free & set(ancestors([mu, sigma])):
            yield node


def noncentred_model(model):
    """(twin model, names of the non-centred RVs), or (None, ()) where no free Normal RV's
    mean or sd depends on another free RV (module docstring)."""
    import pymc as pm
    from pymc.model.fgraph import fgraph_from_model, model_deterministic, model_free_rv, model_from_fgraph
    from pymc.pytensorf import toposort_replace

    fgraph, _ = fgraph_from_model(model, inlined_views=True)
    replacements, sites = [], []
    for node in list(_dependent_normals(fgraph)):
        rv, _value, *dims = node.inputs
        mu, sigma = rv.owner.inputs[-2:]
        name = f"{rv.name}_decentered"
        raw = pm.Normal.dist(0.0, 1.0, size=tuple(rv.shape) if rv.ndim else None)
        raw.name = name
        raw_var = model_free_rv(raw, raw.type(name=name), None, *dims)
        raw_var.name = name
        centred = model_deterministic(mu + sigma * raw_var, *dims)
        centred.name = rv.name
        replacements.append((node.outputs[0], centred))
        sites.append(rv.name)
    if not replacements:
        return None, ()
    toposort_replace(fgraph, replacements)
    return model_from_fgraph(fgraph, mutate_fgraph=True), tuple(sites)


def noncentred_twin(post):
    """The non-centred twin of a :class:`~freeflow.bayes.ppl_pymc.PyMCPosterior` as a
    :class:`~freeflow.bayes.reparam.Reparametrized`, or None where there is none or PyMC
    cannot build it (the model is then trained as written)."""
    from .reparam import Reparametrized, usable

    try:
        model, sites = noncentred_model(post.model)
        if model is None:
            return None
        twin = type(post)(model, name=f"{post.name} (non-centred)", backend=post.backend, noncentre=False)
        rep = Reparametrized("non-centred: " + ", ".join(sites), twin, post, sites)
        if not usable(rep, post):
            return None
    except Exception:  # noqa: BLE001 - a graph PyMC cannot rewrite: keep the model as written
        return None
    return rep
