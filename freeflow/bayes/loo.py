"""PSIS-LOO from freeflow's own importance-weighted draws: :func:`loo`.

freeflow's draws come from the generator q, not from the posterior p, and each carries its
log importance weight r_s = log p̃(θ_s) − log q(θ_s) (``sample_stats.log_weight``).  The
leave-one-out predictive density of observation i is

    p(y_i | y_−i) = ∫ p(y_i | θ) p(θ | y_−i) dθ,    p(θ | y_−i) ∝ p(θ | y) / p(y_i | θ),

so with draws from q the leave-one-out weights are w_is ∝ exp(r_s − ℓ_is), ℓ_is = log p(y_i | θ_s),
and

    elpd_i = log Σ_s w̃_is exp(ℓ_is),   w̃_i· = PSIS-smoothed, normalised exp(r − ℓ_i·),

which is arviz's ``az.loo`` with the ratios −ℓ_is replaced by r_s − ℓ_is (for posterior draws
r_s is constant and the two coincide).  Pareto smoothing (``az.psislw``) is applied per
observation; the draws are independent, so the relative efficiency is 1.  The k̂ of each
observation now measures both how far q is from p and how influential y_i is.

``lppd`` (for ``p_loo = lppd − elpd_loo``) is log Σ_s w̄_s exp(ℓ_is) with w̄ the smoothed,
normalised posterior weights; the standard error is arviz's, sqrt(N · var_i(elpd_i)).
The result is an arviz ``ELPDData`` like ``az.loo``'s, so ``az.compare`` takes it.
``az.loo(idata)`` also runs on a freeflow InferenceData: it treats the draws as posterior
draws (ignoring the weights), a fine approximation only when the fit is trusted.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["loo"]


def _log_likelihood(idata: Any, var_name: str | None) -> tuple[str, np.ndarray]:
    """(name, array (S, N)) of one log_likelihood variable, draws flattened chain-major."""
    if "log_likelihood" not in idata.groups():
        raise ValueError("loo needs a log_likelihood group: build the InferenceData from a model with "
                         "observations (ff.from_numpyro, ff.from_pymc) or pass log_likelihood=fn to "
                         "ff.Posterior, and keep to_inference_data(log_likelihood=None or True)")
    group = idata.log_likelihood
    names = list(group.data_vars)
    if var_name is None:
        if len(names) != 1:
            raise ValueError(f"the log_likelihood group has several variables {names}: pass var_name=")
        var_name = names[0]
    elif var_name not in names:
        raise ValueError(f"var_name {var_name!r} is not in the log_likelihood group; it has {names}")
    da = group[var_name]
    arr = np.asarray(da.transpose("chain", "draw", ...).values, dtype=np.float64)
    return var_name, arr.reshape(arr.shape[0] * arr.shape[1], -1)


def _relative_efficiency(idata: Any, n_samples: int) -> float:
    """arviz's r_eff for MCMC draws: the mean ESS of the posterior variables over the draws."""
    import arviz as az

    if "posterior" not in idata.groups() or idata.posterior.sizes.get("chain", 1) == 1:
        return 1.0
    ess = az.ess(idata.posterior, method="mean")
    return float(np.hstack([ess[v].values.ravel() for v in ess.data_vars]).mean() / n_samples)


def _log_weights(idata: Any, n_samples: int) -> tuple[np.ndarray, float]:
    """(log importance weights (S,), relative efficiency): freeflow's ``log_weight`` and 1
    (independent draws); for draws without it (MCMC), equal weights and arviz's r_eff."""
    stats = idata.sample_stats if "sample_stats" in idata.groups() else None
    if stats is None or "log_weight" not in stats:
        return np.zeros(n_samples), _relative_efficiency(idata, n_samples)
    lw = np.asarray(stats["log_weight"].transpose("chain", "draw").values, dtype=np.float64).reshape(-1)
    if lw.shape[0] != n_samples:
        raise ValueError(f"sample_stats.log_weight has {lw.shape[0]} draws, log_likelihood {n_samples}")
    return np.where(np.isnan(lw), -np.inf, lw), 1.0  # NaN: outside the support, weight 0


def _logsumexp(a: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _psis(log_ratios: np.ndarray, reff: float) -> tuple[np.ndarray, np.ndarray]:
    """az.psislw row by row (normalised log weights, k̂), and where arviz's smoothing returns
    non-finite weights (a degenerate tail: log-ratios that differ by ~1e-11, as for an
    observation every draw predicts almost surely) the unsmoothed normalised weights."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz's k̂ warnings: reported by loo instead
        smoothed, khat = az.psislw(log_ratios, reff=reff)
    smoothed, khat = np.array(smoothed, dtype=np.float64, ndmin=2), np.array(khat, dtype=np.float64, ndmin=1)
    bad = ~np.isfinite(smoothed).all(axis=1)
    if bad.any():
        raw = log_ratios[bad]
        smoothed[bad] = raw - _logsumexp(raw, axis=-1)[:, None]
    return smoothed, khat


def loo(idata: Any, *, var_name: str | None = None, pointwise: bool | None = None, scale: str | None = None):
    """Importance-weighted PSIS-LOO of a freeflow InferenceData (see module docstring).

    Draws without ``sample_stats.log_weight`` (MCMC) get equal weights and arviz's relative
    efficiency: then it is ``az.loo``, except where arviz's smoothing returns NaN for an
    observation (see :func:`_psis`).

    ``var_name``: the log_likelihood variable (needed when there are several); ``pointwise``
    and ``scale`` as in ``az.loo`` ("log" by default: elpd).  Returns ``az.ELPDData`` with
    ``elpd_loo``, ``se``, ``p_loo``, ``n_samples``, ``n_data_points``, ``warning``, ``scale``,
    ``good_k`` (and ``loo_i``, ``pareto_k`` when pointwise).  A ValueError names what is
    missing: the log_likelihood group (the model's likelihood term)."""
    import arviz as az
    import xarray as xr
    from arviz.stats.stats_utils import ELPDData

    name, ll = _log_likelihood(idata, var_name)             # (S, N)
    lw, reff = _log_weights(idata, ll.shape[0])             # (S,)
    keep = np.isfinite(lw)
    if keep.sum() < 10:
        raise ValueError(f"only {int(keep.sum())} draws have finite importance weights; LOO needs more")
    ll, lw = ll[keep], lw[keep]
    n_samples, n_data = ll.shape
    scale = (az.rcParams["stats.ic_scale"] if scale is None else scale).lower()
    scale_value = {"log": 1.0, "negative_log": -1.0, "deviance": -2.0}.get(scale)
    if scale_value is None:
        raise TypeError('Valid scale values are "deviance", "log", "negative_log"')
    pointwise = az.rcParams["stats.ic_pointwise"] if pointwise is None else pointwise

    log_ratios = lw[None, :] - ll.T                         # (N, S): r_s − ℓ_is
    smoothed, khat = _psis(log_ratios, reff)                # normalised over S
    post_w, _ = _psis(lw[None, :], reff)
    post_w = post_w[0]
    elpd_i = _logsumexp(smoothed + ll.T, axis=-1)           # (N,)
    lppd = float(np.sum(_logsumexp(post_w[None, :] + ll.T, axis=-1)))
    elpd = float(np.sum(elpd_i))
    se = float((n_data * np.var(scale_value * elpd_i)) ** 0.5)
    good_k = min(1 - 1 / np.log10(n_samples), 0.7)
    khat = np.asarray(khat, dtype=np.float64)
    warn = bool(np.any(khat > good_k))
    if warn:
        warnings.warn(f"Pareto k̂ above {good_k:.2f} for {int(np.sum(khat > good_k))} of {n_data} observations: "
                      "the leave-one-out weights are unreliable there (an influential observation, or "
                      "q far from the posterior); refit longer or check the model", UserWarning, stacklevel=2)
    p_loo = lppd - elpd
    data = [scale_value * elpd, se, p_loo, n_samples, n_data, warn]
    index = ["elpd_loo", "se", "p_loo", "n_samples", "n_data_points", "warning"]
    if pointwise:
        obs_dims = [d for d in idata.log_likelihood[name].dims if d not in ("chain", "draw")]
        shape = tuple(idata.log_likelihood[name].sizes[d] for d in obs_dims)
        coords = {d: idata.log_likelihood[name].coords[d] for d in obs_dims if d in idata.log_likelihood[name].coords}
        data += [xr.DataArray((scale_value * elpd_i).reshape(shape), dims=obs_dims, coords=coords, name="loo_i"),
                 xr.DataArray(khat.reshape(shape), dims=obs_dims, coords=coords, name="pareto_shape")]
        index += ["loo_i", "pareto_k"]
    data += [scale, good_k]
    index += ["scale", "good_k"]
    return ELPDData(data=data, index=index)
