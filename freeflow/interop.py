"""arviz interop: freeflow samples (and NUTS draws) as an arviz InferenceData.

Convention.  Independent samples of shape (n, d) become ``chains`` pseudo-chains of
``n // chains`` draws each, in order (one "chain" per independent batch), so arviz's
summary, R-hat, ESS and plots work on them.  For i.i.d. samples R-hat ≈ 1 and ESS ≈ n.
The variable is one vector ``x`` with dimension ``x_dim_0`` (``var_name="x"``), or, with
``var_names=[...]`` of length d, one scalar variable per coordinate.

Works with arviz 0.2x (``az.from_dict(posterior=...)``) and 1.x
(``az.from_dict({"posterior": ...})``); the installed version decides which call is made.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Sequence

import numpy as np


def _as_numpy(samples: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(samples, torch.Tensor):
            return samples.detach().cpu().to(torch.float64).numpy().copy()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return np.array(samples, dtype=np.float64)  # copies (JAX arrays are read-only)


def _from_dict(groups: dict[str, dict[str, np.ndarray]], dims=None, coords=None):
    import arviz as az

    params = inspect.signature(az.from_dict).parameters
    if "posterior" in params:  # arviz 0.x: one keyword per group
        return az.from_dict(**groups, dims=dims, coords=coords)
    return az.from_dict(groups, dims=dims, coords=coords)  # arviz 1.x: {group: {var: array}}


def draws_to_inference_data(
    draws: np.ndarray,
    *,
    var_names: Sequence[str] | None = None,
    var_name: str = "x",
    sample_stats: dict[str, np.ndarray] | None = None,
):
    """InferenceData from draws of shape (chains, draws, d) (float64 copy)."""
    draws = _as_numpy(draws)
    if draws.ndim != 3:
        raise ValueError(f"draws must have shape (chains, draws, d), got {draws.shape}")
    d = draws.shape[2]
    if var_names is not None:
        var_names = list(var_names)
        if len(var_names) != d or len(set(var_names)) != d:
            raise ValueError(f"var_names must be {d} distinct names, got {var_names!r}")
        posterior = {name: draws[:, :, j] for j, name in enumerate(var_names)}
        dims = None
    else:
        posterior = {var_name: draws}
        dims = {var_name: [f"{var_name}_dim_0"]}
    groups = {"posterior": posterior}
    if sample_stats:
        groups["sample_stats"] = {k: np.asarray(v) for k, v in sample_stats.items()}
    return _from_dict(groups, dims=dims)


def to_inference_data(
    samples: Any,
    chains: int = 4,
    var_names: Sequence[str] | None = None,
):
    """arviz InferenceData from independent samples (n, d) split into ``chains`` batches.

    ``samples``: a torch tensor, numpy or JAX array of shape (n, d) (or (n,) for d = 1).
    When n is not a multiple of ``chains`` the last n % chains samples are dropped (with a
    warning).
    """
    x = _as_numpy(samples)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"samples must have shape (n, d), got {x.shape}")
    if not isinstance(chains, (int, np.integer)) or isinstance(chains, bool) or chains < 1:
        raise ValueError(f"chains must be a positive int, got {chains!r}")
    n = x.shape[0]
    if n < 2 * chains:
        raise ValueError(f"samples must hold at least 2 per chain (chains={chains}), got n={n}")
    if not np.isfinite(x).all():
        raise ValueError("samples contain non-finite values")
    per = n // chains
    if per * chains != n:
        warnings.warn(
            f"to_inference_data: n={n} is not a multiple of chains={chains}; dropping the last "
            f"{n - per * chains} samples",
            stacklevel=2,
        )
    draws = x[: per * chains].reshape(chains, per, x.shape[1])
    return draws_to_inference_data(draws, var_names=var_names)


def _values(result: Any) -> np.ndarray:
    """All numbers of an arviz diagnostic result (Dataset, DataTree or array) as a flat array."""
    if hasattr(result, "data_vars"):  # xarray Dataset
        return np.concatenate([np.ravel(np.asarray(v)) for v in result.data_vars.values()])
    if hasattr(result, "children") and hasattr(result, "to_dataset"):  # DataTree (arviz 1.x)
        node = result["posterior"] if "posterior" in result.children else result
        return _values(node.to_dataset())
    return np.ravel(np.asarray(result, dtype=np.float64))


def diagnostics(draws: np.ndarray) -> dict[str, float]:
    """Rank-normalised split R-hat (max over coordinates) and bulk/tail ESS (min), via arviz.

    ``draws``: (chains, draws, d).  Needs at least 2 chains for a meaningful R-hat.
    """
    import arviz as az

    idata = draws_to_inference_data(draws)
    return {
        "rhat_max": float(np.max(_values(az.rhat(idata)))),
        "ess_bulk_min": float(np.min(_values(az.ess(idata, method="bulk")))),
        "ess_tail_min": float(np.min(_values(az.ess(idata, method="tail")))),
    }


def sampler_to_inference_data(sampler: Any, n: int, chains: int = 4, var_names: Sequence[str] | None = None):
    """``to_inference_data(sampler.sample(n), chains, var_names)``: the body of
    ``OneStepSampler.to_inference_data(n)``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return to_inference_data(sampler.sample(int(n)), chains=chains, var_names=var_names)
