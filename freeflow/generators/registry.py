"""The generators a data-free sampler can be built with, by name.

Each entry is a :class:`GeneratorSpec`: how to build the generator from the sampler's settings,
its noise width, and its capabilities (exact log q; mixture weights for the Fisher–Rao step).
Adding a generator is adding an entry; ``tests/test_generator_registry.py`` walks the registry
(shapes, log q against sampling where exact, save/load).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..validation import check_choice, check_positive_int
from .base import Generator
from .flow import FlowGenerator
from .mixture import MixtureGenerator, ProductMixtureGenerator, default_components
from .mlp import ResidualMLP

__all__ = ["GeneratorSpec", "GENERATORS", "register_generator", "get_generator_spec", "available_generators",
           "default_mixture_flow_layers", "PRODUCT_FLOW_MAX_DIM"]


@dataclass(frozen=True)
class GeneratorSpec:
    """name; ``build(dim, settings) -> Generator``; ``noise_dim(dim)`` when the generator fixes
    its noise width (None: the ``noise_dim`` setting); ``resolve(dim, settings) -> dict`` fills
    settings the generator decides (e.g. the number of components); capabilities."""

    name: str
    build: Callable[[int, dict], Generator]
    exact: bool
    has_weights: bool
    noise_dim: Callable[[int], int] | None = None
    resolve: Callable[[int, dict], dict] | None = None
    summary: str = ""


GENERATORS: dict[str, GeneratorSpec] = {}


def register_generator(spec: GeneratorSpec) -> GeneratorSpec:
    if spec.name in GENERATORS:
        raise ValueError(f"a generator named {spec.name!r} is already registered")
    GENERATORS[spec.name] = spec
    return spec


def available_generators() -> list[str]:
    return list(GENERATORS)


def get_generator_spec(name: str) -> GeneratorSpec:
    check_choice(name, tuple(GENERATORS), "generator")
    return GENERATORS[name]


# -- the built-in generators ---------------------------------------------------------------------
def _mlp(dim: int, s: dict) -> Generator:
    return ResidualMLP(s["noise_dim"], dim, hidden=s["hidden"], depth=s["depth"],
                       init_scale=s["init_scale"], affine_lr_scale=s["affine_lr_scale"])


def _flow(dim: int, s: dict) -> Generator:
    return FlowGenerator(dim, layers=s["flow_layers"], hidden=s["flow_hidden"], kind=s["flow_kind"],
                         init_scale=s["init_scale"])


def _resolve_mixture(product: bool) -> Callable[[int, dict], dict]:
    def resolve(dim: int, s: dict) -> dict:
        k = s["components"] if s["components"] is not None else (
            4 if product else default_components(dim, s["batch_size"]))
        check_positive_int(k, "components")
        if k * 2 > s["batch_size"]:
            raise ValueError(f"components={k} cannot be fitted with batch_size={s['batch_size']}: "
                             f"the Fisher-Rao step needs at least 2 samples per component")
        layers = s["mixture_flow_layers"]
        return {"components": k, "mixture_flow_layers": default_mixture_flow_layers(dim, product) if layers is None else layers}
    return resolve


#: above this dimension the product mixture has no shared flow by default
PRODUCT_FLOW_MAX_DIM = 1024


def default_mixture_flow_layers(dim: int, product: bool) -> int:
    """The shared RealNVP flow's depth: 4 for the product mixture up to ``PRODUCT_FLOW_MAX_DIM``
    coordinates, else 0 (and 0 for the full-covariance mixture). A coupling layer costs
    d × ``flow_hidden`` per row in each of its four linear maps, so at d = 1600 the flow was 45 %
    of a training step (838 against 463 ms at batch 1024, ``benchmarks/step_profile.py``), and
    on the 1600-D Cox process the mixture without it reached as good a log Ẑ
    (docs/benchmarks.md, "Standard targets")."""
    return 4 if product and dim <= PRODUCT_FLOW_MAX_DIM else 0


def _mixture(product: bool) -> Callable[[int, dict], Generator]:
    cls = ProductMixtureGenerator if product else MixtureGenerator

    def build(dim: int, s: dict) -> Generator:
        return cls(dim, s["components"], init_scale=s["init_scale"], component_scale=s["component_scale"],
                   flow_layers=s["mixture_flow_layers"], flow_hidden=s["flow_hidden"],
                   flow_kind=s["flow_kind"], lr_scale=s["mixture_lr_scale"])
    return build


register_generator(GeneratorSpec(
    "mlp", _mlp, exact=False, has_weights=False,
    summary="residual MLP; log q estimated (KDE or an auxiliary flow)"))
register_generator(GeneratorSpec(
    "flow", _flow, exact=True, has_weights=False, noise_dim=lambda d: d,
    summary="a normalizing flow (RealNVP or splines) with exact log q"))
register_generator(GeneratorSpec(
    "mixture", _mixture(False), exact=True, has_weights=True, noise_dim=lambda d: d + 1,
    resolve=_resolve_mixture(False),
    summary="K full-covariance Gaussians (optionally through a shared flow), Fisher-Rao weights"))
register_generator(GeneratorSpec(
    "product_mixture", _mixture(True), exact=True, has_weights=True, noise_dim=lambda d: 2 * d,
    resolve=_resolve_mixture(True),
    summary="per-coordinate mixtures through a shared RealNVP flow, Fisher-Rao weights"))


def resolve_settings(spec: GeneratorSpec, dim: int, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings with the generator's own choices filled in (noise width, components)."""
    s = dict(settings)
    if spec.resolve is not None:
        s.update(spec.resolve(dim, s))
    return s
