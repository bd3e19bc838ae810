"""A badly scaled posterior in low dimension: a linear trend on raw years.

    OMP_NUM_THREADS=1 python benchmarks/lowdim_scaling.py      # -> results/lowdim_scaling.json

The shape of a public collection's 3-D temperature-trend posterior: y_t ~ N(α + β t, σ) over
the years 1952–2013 (not centred), α ~ N(ȳ, 100), β ~ N(0, 1/30), σ ~ HalfNormal(1), written in
NumPyro as a user writes it. Intercept and slope are correlated −0.99996 (the Laplace covariance
at the mode has condition number 6.5·10¹⁰).
Exact moments by quadrature over log σ with (α, β) Gaussian given σ (``trend_exact``).
Per seed (0, 1, 2): ``fit()`` with the defaults, and with ``gaussian_stage="off"`` (what the
defaults did in d ≤ 3 before the stage ran where p̃ is badly scaled); 20 000 draws; the largest
mean error in exact sds and sd error on (α, β, log σ), the verdict and the seconds."""
from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

YEARS = np.arange(1952, 2014).astype(float)
PRIOR = {"alpha_sd": 100.0, "beta_sd": 1 / 30}


def trend_data(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 8.0 + 0.02 * (YEARS - 1952) + 0.7 * rng.normal(size=YEARS.size)


def trend_exact(y: np.ndarray, grid: int = 4001) -> tuple[np.ndarray, np.ndarray]:
    """Exact means and sds of (α, β, log σ): quadrature over log σ in [−1.5, 0.5] (the
    posterior is ~0.09 wide around −0.5), (α, β) | σ Gaussian in closed form."""
    m0 = np.array([y.mean(), 0.0])
    p0 = np.diag([PRIOR["alpha_sd"] ** -2, PRIOR["beta_sd"] ** -2])
    X = np.stack([np.ones_like(YEARS), YEARS], 1)
    ls = np.linspace(-1.5, 0.5, grid)
    logw, means, variances = [], [], []
    for lsig in ls:
        s2 = math.exp(2 * lsig)
        cov = np.linalg.inv(p0 + X.T @ X / s2)
        m = cov @ (p0 @ m0 + X.T @ y / s2)
        r = y - X @ m
        lml = -0.5 * (r @ r / s2 + (m - m0) @ p0 @ (m - m0)) - y.size * lsig + 0.5 * np.linalg.slogdet(cov)[1]
        logw.append(lml - 0.5 * s2 + lsig)                 # HalfNormal(1) on σ, Jacobian of log σ
        means.append(m)
        variances.append(np.diag(cov))
    w = np.exp(np.array(logw) - max(logw))
    w /= w.sum()
    M = np.array(means)
    mean_ab = w @ M
    var_ab = w @ np.array(variances) + w @ (M - mean_ab) ** 2
    ml = w @ ls
    return np.array([*mean_ab, ml]), np.sqrt([*var_ab, w @ (ls - ml) ** 2])


def trend_model(x, y, y_mean):
    import numpyro
    import numpyro.distributions as dist
    alpha = numpyro.sample("alpha", dist.Normal(y_mean, PRIOR["alpha_sd"]))
    beta = numpyro.sample("beta", dist.Normal(0.0, PRIOR["beta_sd"]))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(alpha + beta * x, sigma), obs=y)


def main():
    import jax.numpy as jnp
    import torch

    import freeflow as ff
    torch.set_num_threads(1)
    y = trend_data()
    mean, sd = trend_exact(y)
    post = ff.from_numpyro(trend_model, jnp.asarray(YEARS), jnp.asarray(y), float(y.mean()))
    rows = []
    for seed in (0, 1, 2):
        for label, kw in (("defaults", {}), ("gaussian_stage='off'", {"gaussian_stage": "off"})):
            t0 = time.perf_counter()
            s = ff.OneStepSampler(post, seed=seed, **kw)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s.fit(progress=False)
            z = np.asarray(s.sample_unconstrained(20000, seed=100 + seed), dtype=float)
            rel = s.last_reliability
            rows.append({"seed": seed, "run": label, "seconds": time.perf_counter() - t0, "steps": s.state.step,
                         "max_mean_err_sd": float((np.abs(z.mean(0) - mean) / sd).max()),
                         "max_sd_err": float(np.abs(z.std(0) / sd - 1).max()),
                         "trusted": bool(rel.trusted) if rel is not None else None,
                         "verdict": rel.verdict[:200] if rel is not None else None, "stage": s.gaussian_fit})
            r = rows[-1]
            print(seed, label, f"mean err {r['max_mean_err_sd']:.3f} sd, sd err {r['max_sd_err']:.3f}, "
                  f"trusted {r['trusted']}, {r['seconds']:.0f} s, {r['steps']} steps", flush=True)
            write_result("lowdim_scaling", {"exact_mean": mean.tolist(), "exact_sd": sd.tolist(), "rows": rows})


if __name__ == "__main__":
    main()
