"""Name -> factory registry for targets.  Adding a target is one decorated factory."""
from __future__ import annotations

import inspect
from typing import Any, Callable

from .base import Target

_REGISTRY: dict[str, Callable[..., Target]] = {}


def register_target(name: str) -> Callable[[Callable[..., Target]], Callable[..., Target]]:
    """Decorator registering a factory (a Target subclass or a function returning one) as ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")

    def decorator(factory: Callable[..., Target]) -> Callable[..., Target]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"a target named {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_targets() -> list[str]:
    """Registered target names, sorted."""
    return sorted(_REGISTRY)


def get_target(name: str, **kwargs: Any) -> Target:
    """Build the target registered as ``name`` with constructor ``kwargs``.

    ``get_target(**target.config())`` rebuilds ``target``.
    """
    if name not in _REGISTRY:
        from freeflow.validation import suggest

        raise ValueError(f"unknown target {name!r}{suggest(name, available_targets())}; "
                         f"available targets: {', '.join(available_targets())}")
    factory = _REGISTRY[name]
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        sig = None
    if sig is not None:
        try:
            sig.bind(**kwargs)
        except TypeError as err:
            accepted = [p for p in sig.parameters if p != "self"]
            raise TypeError(f"bad arguments for target {name!r}: {err}; accepted: {accepted}") from None
    return factory(**kwargs)
