"""Parameter specs -> bijections from unconstrained ℝᵏ onto a constrained support.

A *spec* names a parameter's support and its constrained shape (the grammar of
:class:`freeflow.Posterior`'s ``params``):

=====================================  ==========================================================
spec                                   parameter
=====================================  ==========================================================
``()``, ``(8,)``, ``(2, 3)``           real, of that shape (``()`` is a scalar)
``"real"``, ``"positive"``,            a scalar with that support: ℝ, (0, ∞), (0, 1)
``"unit_interval"``
``("positive", 8)``,                   an array of that support; an int n is the shape (n,)
``("positive", (2, 3))``
``("interval", lo, hi)``,              (lo, hi), scalar or of that shape
``("interval", lo, hi, shape)``
``("greater_than", lo[, shape])``,     (lo, ∞) and (−∞, hi)
``("less_than", hi[, shape])``
``("simplex", K)``                     a point of the simplex {x ∈ ℝᴷ: xᵢ > 0, Σ xᵢ = 1}
``("simplex", (B, K))``                B simplices (a tuple is the full constrained shape)
``("corr_cholesky", K)``               K×K Cholesky factor of a correlation matrix
``("lower_cholesky", K)``              K×K lower-triangular with a positive diagonal
``(..., K, K)`` tuple for those two    a batch of such matrices
``Constraint``, ``(Constraint, shape)``  any ``torch.distributions.constraints`` object with a
                                       registered ``biject_to``
=====================================  ==========================================================

For the event constraints (simplex, the two Cholesky factors) an int K is the size of ONE
event (shape (K,) or (K, K)); a tuple is always the whole constrained shape.

Bijections.  Each support maps to ``torch.distributions.biject_to(constraint)`` (exp,
sigmoid + affine, stick-breaking, the signed stick-breaking of LKJ), so the log-Jacobian is
the transform's own ``log_abs_det_jacobian``.  The one exception is ``lower_cholesky``:
torch registers no bijection for it (``transform_to``'s map reads only the lower triangle of
a full K×K input, so it is not injective); here a vector of K(K+1)/2 numbers fills the lower
triangle (a coordinate embedding, volume 1) and torch's ``LowerCholeskyTransform`` then
exponentiates the diagonal, so log|det J| = Σᵢ log Lᵢᵢ.

Densities on lower-dimensional supports.  A simplex point has K−1 free coordinates and a
correlation Cholesky factor K(K−1)/2; densities there are with respect to Lebesgue measure on
(x₁, …, x_{K−1}) and on the strictly-lower-triangular entries respectively — the convention of
``torch.distributions.Dirichlet`` and ``LKJCholesky``, and the coordinates in which the
transforms' log-Jacobians are computed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Transform, biject_to, constraints
from torch.distributions.transforms import LowerCholeskyTransform
from torch.distributions.utils import tril_matrix_to_vec, vec_to_tril_matrix

from ..validation import suggest

Tensor = torch.Tensor

__all__ = ["CONSTRAINTS", "Block", "parse_spec"]

#: constraint name -> (kind, what its size argument means)
CONSTRAINTS = {
    "real": "elementwise",
    "positive": "elementwise",
    "unit_interval": "elementwise",
    "interval": "elementwise",
    "greater_than": "elementwise",
    "less_than": "elementwise",
    "simplex": "vector",
    "corr_cholesky": "matrix",
    "lower_cholesky": "matrix",
}


class TrilVectorToLowerCholesky(Transform):
    """ℝ^{K(K+1)/2} -> K×K lower triangular with positive diagonal: fill the lower triangle
    row by row (``vec_to_tril_matrix``), then torch's ``LowerCholeskyTransform`` (exp of the
    diagonal).  log|det J| = Σᵢ xᵢᵢ (the embedding has unit volume)."""

    domain = constraints.real_vector
    codomain = constraints.lower_cholesky
    bijective = True

    def __eq__(self, other):
        return isinstance(other, TrilVectorToLowerCholesky)

    def _call(self, x):
        return LowerCholeskyTransform()(vec_to_tril_matrix(x))

    def _inverse(self, y):
        return tril_matrix_to_vec(LowerCholeskyTransform().inv(y))

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return torch.log(torch.diagonal(y, dim1=-2, dim2=-1)).sum(-1)

    def forward_shape(self, shape):
        n = shape[-1]
        k = round((math.sqrt(8 * n + 1) - 1) / 2)
        if k * (k + 1) // 2 != n:
            raise ValueError(f"{n} is not a triangular number K(K+1)/2")
        return shape[:-1] + (k, k)

    def inverse_shape(self, shape):
        k = shape[-1]
        return shape[:-2] + (k * (k + 1) // 2,)


@dataclass(frozen=True)
class Block:
    """One named parameter: its constrained ``shape``, the unconstrained ``raw_shape`` that
    the bijection ``transform`` maps from, and the spec it came from (``label``)."""

    name: str
    label: str
    shape: tuple[int, ...]
    raw_shape: tuple[int, ...]
    transform: Transform

    @property
    def size(self) -> int:
        """Number of unconstrained coordinates."""
        return math.prod(self.raw_shape)

    def constrain(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """u (n, size) -> (x (n, *shape), log|det ∂x/∂u| (n,))."""
        n = u.shape[0]
        u = u.reshape((n,) + self.raw_shape)
        x = self.transform(u)
        ladj = self.transform.log_abs_det_jacobian(u, x)  # (n, batch dims of the transform)
        return x, ladj.reshape(n, -1).sum(-1)

    def unconstrain(self, x: Tensor) -> Tensor:
        """x (n, *shape) -> u (n, size)."""
        return self.transform.inv(x).reshape(x.shape[0], self.size)


def _valid() -> str:
    return ", ".join(repr(k) for k in CONSTRAINTS)


def _shape(value, where: str) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise ValueError(f"{where}: a shape must be an int or a tuple of positive ints, got {value!r}")
    if isinstance(value, int):
        value = (value,)
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in value):
        raise ValueError(f"{where}: a shape must be an int or a tuple of positive ints, got {value!r}")
    return value


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{where}: bounds must be numbers, got {value!r}")
    return float(value)


def parse_spec(name: str, spec) -> Block:
    """A :class:`Block` for parameter ``name`` from its spec (grammar: module docstring).

    Raises ValueError/TypeError naming the parameter (and listing the valid constraint names
    for an unknown one)."""
    where = f"parameter {name!r}"
    if isinstance(spec, constraints.Constraint):
        spec = (spec, ())
    if isinstance(spec, str):
        if CONSTRAINTS.get(spec) == "elementwise" and spec not in ("interval", "greater_than", "less_than"):
            spec = (spec, ())
        elif spec in CONSTRAINTS:
            need = {"interval": "('interval', lo, hi)", "greater_than": "('greater_than', lo)",
                    "less_than": "('less_than', hi)"}.get(spec, f"({spec!r}, K)")
            raise ValueError(f"{where}: {spec!r} needs its arguments, e.g. {need}")
        else:
            raise ValueError(f"{where}: unknown constraint {spec!r}{suggest(spec, CONSTRAINTS)}; valid constraints: {_valid()}")
    if isinstance(spec, list):
        spec = tuple(spec)
    if not isinstance(spec, tuple):
        raise TypeError(f"{where}: a spec must be a shape tuple, a constraint name or a tuple "
                        f"(constraint, shape), got {type(spec).__name__} {spec!r}")
    if len(spec) == 0 or not isinstance(spec[0], (str, constraints.Constraint)):
        return _elementwise(name, "real", constraints.real, _shape(spec, where))
    head, args = spec[0], spec[1:]
    if isinstance(head, constraints.Constraint):
        if len(args) > 1:
            raise ValueError(f"{where}: expected (constraint, shape), got {spec!r}")
        shape = _shape(args[0], where) if args else ()
        return _from_constraint(name, head, shape)
    if head not in CONSTRAINTS:
        raise ValueError(f"{where}: unknown constraint {head!r}{suggest(head, CONSTRAINTS)}; valid constraints: {_valid()}")
    nbounds = {"interval": 2, "greater_than": 1, "less_than": 1}.get(head, 0)
    if len(args) < nbounds or len(args) > nbounds + 1:
        form = {"interval": "('interval', lo, hi[, shape])", "greater_than": "('greater_than', lo[, shape])",
                "less_than": "('less_than', hi[, shape])"}.get(head, f"({head!r}, size or shape)")
        raise ValueError(f"{where}: expected {form}, got {spec!r}")
    bounds = [_number(b, where) for b in args[:nbounds]]
    size = args[nbounds] if len(args) > nbounds else None
    kind = CONSTRAINTS[head]
    if kind == "elementwise":
        shape = () if size is None else _shape(size, where)
        if head == "interval":
            lo, hi = bounds
            if not lo < hi:
                raise ValueError(f"{where}: interval needs lo < hi, got ({lo}, {hi})")
            c = constraints.interval(lo, hi)
        elif head == "greater_than":
            c = constraints.greater_than(bounds[0])
        elif head == "less_than":
            c = constraints.less_than(bounds[0])
        else:
            c = {"real": constraints.real, "positive": constraints.positive,
                 "unit_interval": constraints.unit_interval}[head]
        label = f"{head}({', '.join(f'{b:g}' for b in bounds)})" if bounds else head
        return _elementwise(name, label, c, shape)
    if size is None:
        raise ValueError(f"{where}: {head!r} needs a size, e.g. ({head!r}, 3)")
    if kind == "vector":
        shape = _shape(size, where)
        if shape[-1] < 2:
            raise ValueError(f"{where}: a simplex needs K >= 2 entries, got shape {shape}")
        return _block(name, head, shape, biject_to(constraints.simplex))
    # matrix constraints: an int K is one K×K matrix
    shape = (size, size) if isinstance(size, int) and not isinstance(size, bool) else _shape(size, where)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(f"{where}: {head!r} needs square matrices, shape (..., K, K); got {shape}")
    if head == "corr_cholesky":
        if shape[-1] < 2:
            raise ValueError(f"{where}: corr_cholesky needs K >= 2, got {shape}")
        return _block(name, head, shape, biject_to(constraints.corr_cholesky))
    return _block(name, head, shape, TrilVectorToLowerCholesky())


def _elementwise(name: str, label: str, c, shape: tuple[int, ...]) -> Block:
    return _block(name, label, shape, biject_to(c))


def _from_constraint(name: str, c, shape: tuple[int, ...]) -> Block:
    try:
        t = biject_to(c)
    except NotImplementedError:
        raise ValueError(f"parameter {name!r}: torch has no bijection for constraint {c!r}; "
                         f"use one of {_valid()}") from None
    return _block(name, repr(c), shape, t)


def _block(name: str, label: str, shape: tuple[int, ...], t: Transform) -> Block:
    try:
        raw = tuple(t.inverse_shape(shape))
    except (ValueError, IndexError) as e:
        raise ValueError(f"parameter {name!r}: shape {shape} does not fit constraint {label!r} ({e})") from None
    if math.prod(raw) < 1:
        raise ValueError(f"parameter {name!r}: shape {shape} leaves no free coordinates")
    return Block(name, label, shape, raw, t)
