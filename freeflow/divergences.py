"""f-divergences as drift weights (MATH.md §2).

For D_f(p‖q) = ∫ q f(p/q) with r = p/q the Wasserstein gradient flow moves samples of q along

    V(x) = w(r(x)) · (∇log p̃(x) − ∇log q(x)),      w(r) = r² f''(r).

Each divergence is a small immutable object holding f (for documentation and tests) and
log w as a function of log r, so weights are computed without overflow. Names give the
argument order explicitly: ``kl_qp`` is KL(q‖p) ("reverse KL", mode-seeking), ``kl_pq`` is
KL(p‖q) ("forward KL", mass-covering). Papers use "forward"/"reverse" in opposite senses.

``power_law`` divergences have w(c·r) = c^a w(r): the unknown normaliser Z of p̃ only rescales
V, and the RMS normalisation of the drift removes it exactly. For the others (``js``,
``jeffreys``) r must be estimated with its normaliser (self-normalised importance weights,
see :mod:`freeflow.velocities.fdiv`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = ["Divergence", "get_divergence", "available_divergences", "register_divergence"]


@dataclass(frozen=True)
class Divergence:
    """An f-divergence D_f(p‖q) seen through its drift weight w(r) = r² f''(r).

    Attributes:
        name: registry name (``alpha:0.5`` for parametrised ones).
        f: the generator f(r) of D_f(p‖q) = ∫ q f(p/q), for tests and docs.
        log_weight: log w as a function of log r (elementwise, overflow-free).
        power_law: True when w(c r) ∝ w(r), i.e. the normaliser of p̃ factors out.
        description: one line for error messages and docs.
    """

    name: str
    f: Callable[[Tensor], Tensor]
    log_weight: Callable[[Tensor], Tensor]
    power_law: bool
    description: str

    def weight(self, log_r: Tensor) -> Tensor:
        """w(r) evaluated from log r."""
        return torch.exp(self.log_weight(log_r))


_REGISTRY: dict[str, Callable[..., Divergence]] = {}
_LOG2 = math.log(2.0)


def register_divergence(name: str):
    """Decorator registering a factory ``(**params) -> Divergence`` under ``name``."""

    def deco(factory):
        _REGISTRY[name] = factory
        return factory

    return deco


@register_divergence("kl_qp")
def _kl_qp() -> Divergence:
    return Divergence("kl_qp", lambda r: -torch.log(r), lambda lr: torch.zeros_like(lr), True,
                      "KL(q‖p), reverse KL, mode-seeking: w = 1")


@register_divergence("kl_pq")
def _kl_pq() -> Divergence:
    return Divergence("kl_pq", lambda r: r * torch.log(r), lambda lr: lr, True,
                      "KL(p‖q), forward KL, mass-covering: w = r")


@register_divergence("pearson")
def _pearson() -> Divergence:
    return Divergence("pearson", lambda r: (r - 1) ** 2, lambda lr: _LOG2 + 2 * lr, True,
                      "Pearson χ²(p‖q): w = 2r²")


@register_divergence("neyman")
def _neyman() -> Divergence:
    return Divergence("neyman", lambda r: (1 - r) ** 2 / r, lambda lr: _LOG2 - lr, True,
                      "Neyman χ²(q‖p): w = 2/r")


@register_divergence("hellinger")
def _hellinger() -> Divergence:
    return Divergence("hellinger", lambda r: (torch.sqrt(r) - 1) ** 2,
                      lambda lr: 0.5 * lr - _LOG2, True, "squared Hellinger: w = √r / 2")


@register_divergence("js")
def _js() -> Divergence:
    # w = r / (2(1 + r));  log(1 + r) = softplus(log r)
    return Divergence(
        "js",
        lambda r: 0.5 * (r * torch.log(r) - (1 + r) * torch.log((1 + r) / 2)),
        lambda lr: lr - _LOG2 - F.softplus(lr),
        False,
        "Jensen–Shannon: w = r / (2(1 + r)); needs the normaliser (self-normalised r)",
    )


@register_divergence("jeffreys")
def _jeffreys() -> Divergence:
    return Divergence("jeffreys", lambda r: (r - 1) * torch.log(r), lambda lr: F.softplus(lr),
                      False, "Jeffreys KL(p‖q)+KL(q‖p): w = r + 1; needs the normaliser")


@register_divergence("alpha")
def _alpha(a: float) -> Divergence:
    if not math.isfinite(a) or a in (0.0, 1.0):
        raise ValueError(
            f"divergence 'alpha:{a}': a must be finite and not 0 or 1 "
            "(the limits are 'kl_qp' for a → 0 and 'kl_pq' for a → 1)"
        )
    return Divergence(
        f"alpha:{a:g}",
        lambda r: (r**a - a * r - (1 - a)) / (a * (a - 1)),
        lambda lr: a * lr,
        True,
        f"Amari α-divergence with a = {a:g}: w = r^a",
    )


def available_divergences() -> list[str]:
    """Registry names; parametrised ones are shown with their syntax (``alpha:<a>``)."""
    return [n if n != "alpha" else "alpha:<a>" for n in _REGISTRY]


_PARAM = re.compile(r"^(?P<name>[a-z_]+):(?P<arg>[-+0-9.eE]+)$")


def get_divergence(spec: str | Divergence) -> Divergence:
    """Look up a divergence by name (``"kl_pq"``, ``"alpha:0.5"``) or pass one through."""
    if isinstance(spec, Divergence):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"divergence must be a name or a Divergence, got {type(spec).__name__}")
    key = spec.strip().lower()
    m = _PARAM.match(key)
    if m and m["name"] in _REGISTRY:
        try:
            arg = float(m["arg"])
        except ValueError:
            raise ValueError(f"divergence {spec!r}: cannot read the parameter {m['arg']!r}") from None
        return _REGISTRY[m["name"]](arg)
    if key in _REGISTRY and key != "alpha":
        return _REGISTRY[key]()
    from .validation import suggest

    names = available_divergences()
    raise ValueError(f"unknown divergence {spec!r}{suggest(key, [n.split(':')[0] for n in names])}; "
                     f"valid: {', '.join(names)}")
