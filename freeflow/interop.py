"""arviz interop: freeflow samples (and NUTS draws) as an arviz InferenceData.

Convention.  Independent samples of shape (n, d) become ``chains`` pseudo-chains of
``n / chains`` draws each, in order (one "chain" per independent batch), so arviz's
summary, R-hat, ESS and plots work on them.  For i.i.d. samples R-hat ≈ 1 and ESS ≈ n.
A sampler's ``to_inference_data(draws=1000, chains=4)`` counts ``draws`` per chain, as PyMC
and nutpie do (4000 draws in all); the older ``n=`` (the total) still works with a
DeprecationWarning.  A total that is not a multiple of ``chains`` is refused (ValueError),
never silently cut.
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


def draw_counts(draws: Any = None, chains: Any = 4, n: Any = None, *, stacklevel: int = 3) -> tuple[int, int]:
    """(draws per chain, chains) from ``draws`` (per chain, default 1000) or the deprecated
    ``n`` (the total, a multiple of ``chains``); errors name the argument."""
    from .validation import check_positive_int

    chains = check_positive_int(chains, "chains")
    if n is None:
        return check_positive_int(1000 if draws is None else draws, "draws"), chains
    if draws is not None:
        raise TypeError(f"pass draws= (per chain) or the deprecated n= (the total), not both "
                        f"(got draws={draws!r}, n={n!r})")
    warnings.warn("n= (the total number of draws) is deprecated: pass draws= per chain, e.g. "
                  "draws=1000, chains=4 for 4000 draws", DeprecationWarning, stacklevel=stacklevel)
    n = check_positive_int(n, "n")
    if n % chains:
        raise ValueError(f"n={n} is not a multiple of chains={chains}; pass draws= per chain instead "
                         f"(e.g. draws={max(n // chains, 1)}, chains={chains})")
    return n // chains, chains


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
    n must be a multiple of ``chains`` (a ValueError otherwise: nothing is dropped silently).
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
        raise ValueError(f"samples hold n={n} draws, not a multiple of chains={chains}; pass "
                         f"{per * chains} or {(per + 1) * chains} samples, or another chains")
    draws = x.reshape(chains, per, x.shape[1])
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


def sampler_to_inference_data(sampler: Any, draws: int | None = None, chains: int = 4,
                              var_names: Sequence[str] | None = None, *, seed: int | None = None,
                              n: int | None = None, log_likelihood: bool | None = None,
                              posterior_predictive: bool = False):
    """``to_inference_data(sampler.sample(draws * chains, seed=seed), chains, var_names)``: the
    body of ``OneStepSampler.to_inference_data`` for a plain log-density (``draws`` per chain;
    ``n`` the deprecated total).  A plain log-density has no observations: asking for
    ``log_likelihood`` or ``posterior_predictive`` is a ValueError naming them."""
    per, chains = draw_counts(draws, chains, n, stacklevel=4)
    for name, value in (("log_likelihood", log_likelihood), ("posterior_predictive", posterior_predictive)):
        if value:
            raise ValueError(f"{name}=True needs a model with observations (ff.from_numpyro, ff.from_pymc "
                             "or ff.Posterior with log_likelihood=/predictive=); this sampler has a plain "
                             "log_density")
    return to_inference_data(sampler.sample(per * chains, seed=seed), chains=chains, var_names=var_names)
