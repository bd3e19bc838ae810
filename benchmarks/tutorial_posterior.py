"""The numbers and figures of docs/tutorial-posterior.md, section 1, measured by running its code.

    python benchmarks/tutorial_posterior.py              # -> benchmarks/results/tutorial_posterior.json
    python benchmarks/tutorial_posterior.py --skip-logreg --threads 2

1. Eight schools (non-centred, 10-D) as a NumPyro model, ``ff.from_numpyro``; freeflow with the
   defaults, ``OneStepSampler(posterior, seed=0).fit()``; NUTS in the same arviz layout,
   ``ff.bayes.nuts_inference_data(posterior, ff.reference.nuts(posterior, ...))`` (blackjax,
   JAX-native on NumPyro's potential, 4 chains).  Figures: ``az.plot_forest`` of mu, tau, eta for
   both (docs/figures/tutorial_eight_schools_forest.png) and ``az.plot_pair`` of mu, tau
   (docs/figures/tutorial_eight_schools_pair.png, both overlaid).
2. The breast-cancer logistic regression (31-D) as a PyMC model, ``ff.from_pymc``; the same
   comparison.  NUTS through the torch bridge on the PyMC log-density (what
   ``nuts_inference_data(posterior)`` does for a model without a JAX log-density) does not run on
   this model (PyMC's Bernoulli(logit_p) has non-finite gradients / raises
   ``ParameterValueError`` at large |X w|; see ``logreg``), so the reference is JAX-native NUTS on
   the same regression written in NumPyro, in the PyMC posterior's layout.  Figure: a
   forest plot of w[0..7] (docs/figures/tutorial_logreg_forest.png).

Per model: the reliability verdict, the fit's wall time (compilation of the model included) and
``training_seconds``, the time of ``sampler.sample(1_000_000)`` (median of 3 after one warm-up
call; constrained values, the dict the tutorial shows), a save/load round trip, and the
side-by-side table (``ff.bayes.side_by_side``: freeflow and NUTS means/sds per scalar, the
differences in NUTS sd) from ``to_inference_data(4000)`` against all NUTS draws.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine  # noqa: E402  (sets sys.path to the repository)

import freeflow as ff  # noqa: E402
from freeflow.io import atomic_write_json  # noqa: E402
from freeflow.reliability import ReliabilityWarning  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
N_MILLION = 1_000_000
N_IDATA = 4000


def _save_figure(fig, path: Path) -> Path:
    """Write a PNG atomically: a temporary file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {path}")
    return path


def _time_million(sampler) -> dict:
    sampler.sample(N_MILLION)  # warm-up (allocations, the model's constraining map compiled)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        draws = sampler.sample(N_MILLION)
        times.append(time.perf_counter() - t0)
    shapes = {k: list(v.shape) for k, v in draws.items()} if isinstance(draws, dict) else list(draws.shape)
    return {"n": N_MILLION, "seconds_median": statistics.median(times), "seconds": times, "shapes": shapes}


def _fit(posterior) -> tuple[ff.OneStepSampler, dict]:
    t0 = time.perf_counter()
    sampler = ff.OneStepSampler(posterior, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReliabilityWarning)
        sampler.fit(progress=False)
    wall = time.perf_counter() - t0
    rel = sampler.last_reliability
    info = {"verdict": rel.verdict, "trusted": rel.trusted, "steps": int(sampler.steps_done),
            "fit_wall_s": wall, "training_seconds": float(sampler.training_seconds),
            "khat": rel.khat, "ess_fraction": rel.ess_fraction,
            "warnings": [str(w.message) for w in caught]}
    print(f"{posterior.name}: {rel.verdict} after {sampler.steps_done} steps, fit {wall:.1f} s")
    return sampler, info


def _nuts(posterior, args) -> tuple[object, dict]:
    t0 = time.perf_counter()
    ref = ff.reference.nuts(posterior, chains=4, warmup=args.warmup, draws=args.draws, seed=0, progress=False)
    wall = time.perf_counter() - t0
    idata = ff.bayes.nuts_inference_data(posterior, ref)
    info = {"backend": ref.settings["backend"], "chains": 4, "warmup": args.warmup, "draws": args.draws,
            "wall_s": wall, "reliable": bool(ref.reliable), "reasons": list(ref.reasons),
            "divergences": int(ref.divergences), "rhat_max": float(ref.rhat), "ess_bulk_min": float(ref.ess_bulk),
            "summary": ref.summary()}
    print(f"NUTS[{posterior.name}] ({info['backend']}): {wall:.1f} s; {ref.summary()}")
    return idata, info


def _table(idata_ff, idata_nuts, var_names) -> dict:
    table = ff.bayes.side_by_side(idata_ff, idata_nuts, names=("freeflow", "NUTS"), var_names=var_names)
    print(table.round(3).to_string())
    rows = {label: {k: float(v) for k, v in row.items()} for label, row in table.iterrows()}
    return {"rows": rows,
            "max_abs_mean_diff_nuts_sd": float(table["mean diff"].abs().max()),
            "max_abs_mean_diff_at": str(table["mean diff"].abs().idxmax()),
            "max_abs_sd_diff_nuts_sd": float(table["sd diff"].abs().max()),
            "max_abs_sd_diff_at": str(table["sd diff"].abs().idxmax()),
            "text": table.round(3).to_string()}


def _summaries(idata_ff, idata_nuts, var_names) -> dict:
    import arviz as az

    out = {}
    for label, idata in (("freeflow", idata_ff), ("NUTS", idata_nuts)):
        s = az.summary(idata, var_names=var_names, kind="stats")
        out[label] = s.to_string()
        print(f"az.summary ({label}):\n{s}")
    return out


def _round_trip(sampler, posterior) -> dict:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "sampler.pt"
        t0 = time.perf_counter()
        sampler.save(path)
        size = path.stat().st_size
        loaded = ff.OneStepSampler.load(path, posterior)
        wall = time.perf_counter() - t0
        a = sampler.sample_unconstrained(1000, seed=7)
        b = loaded.sample_unconstrained(1000, seed=7)
        return {"save_load_s": wall, "same_draws": bool(torch.equal(a, b)), "file_bytes": size}


# --------------------------------------------------------------------------------- models -------
def eight_schools(args) -> dict:
    import arviz as az
    import matplotlib.pyplot as plt
    import numpyro
    import numpyro.distributions as dist

    y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])

    def eight_schools(sigma, y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("J", len(sigma)):
            eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
            numpyro.sample("y", dist.Normal(mu + tau * eta, sigma), obs=y)

    posterior = ff.from_numpyro(eight_schools, sigma, y=y)
    sampler, fit = _fit(posterior)
    million = _time_million(sampler)
    print(f"sample(1_000_000): {million['seconds_median']:.2f} s (median of 3)")
    idata_ff = sampler.to_inference_data(N_IDATA)
    idata_nuts, nuts = _nuts(posterior, args)
    var_names = ["mu", "tau", "eta"]
    same_layout = {v: [list(idata_ff.posterior[v].dims), list(idata_nuts.posterior[v].dims)] for v in var_names}
    table = _table(idata_ff, idata_nuts, var_names)
    summaries = _summaries(idata_ff, idata_nuts, ["mu", "tau"])

    axes = az.plot_forest([idata_ff, idata_nuts], model_names=["freeflow", "NUTS"], var_names=var_names,
                          combined=True, figsize=(6, 6))
    fig = np.ravel(axes)[0].figure
    fig.suptitle("eight schools: freeflow (fit() defaults) vs NUTS, 94% HDI", fontsize=10)
    _save_figure(fig, FIGURES / "tutorial_eight_schools_forest.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4.2))
    az.plot_pair(idata_nuts, var_names=["mu", "tau"], ax=ax,
                 scatter_kwargs={"color": "C1", "alpha": 0.25, "s": 3, "label": "NUTS"})
    az.plot_pair(idata_ff, var_names=["mu", "tau"], ax=ax,
                 scatter_kwargs={"color": "C0", "alpha": 0.25, "s": 3, "label": "freeflow"})
    ax.set_yscale("log")
    ax.legend(markerscale=5, loc="lower right")
    ax.set_title(f"eight schools: {N_IDATA} freeflow draws, {4 * args.draws} NUTS draws", fontsize=10)
    _save_figure(fig, FIGURES / "tutorial_eight_schools_pair.png")
    plt.close(fig)

    return {"dim": posterior.dim, "fit": fit, "sample_1e6": million, "nuts": nuts, "dims": same_layout,
            "side_by_side": table, "az_summary": summaries, "save_load": _round_trip(sampler, posterior),
            "idata_ff_attrs": {k: str(v) for k, v in idata_ff.posterior.attrs.items()},
            "pareto_khat_4000": float(idata_ff.sample_stats.attrs.get("pareto_khat", float("nan")))}


def logreg(args) -> dict:
    import arviz as az
    import matplotlib.pyplot as plt
    import pymc as pm
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    X = np.c_[np.ones(len(X)), X]
    with pm.Model() as model:
        w = pm.Normal("w", 0.0, 1.0, shape=X.shape[1])
        pm.Bernoulli("y", logit_p=pm.math.dot(X, w), observed=y)
    posterior = ff.from_pymc(model)
    sampler, fit = _fit(posterior)
    million = _time_million(sampler)
    print(f"sample(1_000_000): {million['seconds_median']:.2f} s (median of 3)")
    idata_ff = sampler.to_inference_data(N_IDATA)
    # NUTS through the torch bridge on this PyMC log-density does not run: PyMC's
    # Bernoulli(logit_p) has non-finite gradients where |X w| is large (about 37), which the
    # default starting points reach, and from PyMC-style starts a warmup trajectory still hits
    # pytensor's "ParameterValueError: 0 <= p <= 1" (BridgeError, run invalid).  The reference is
    # therefore JAX-native NUTS on the same model written in NumPyro: the same unconstrained
    # coordinates (w itself), the same log-density up to a constant (checked below), put in the
    # PyMC posterior's layout by nuts_inference_data(posterior, reference).
    import numpyro
    import numpyro.distributions as dist

    def logreg_numpyro(X, y=None):
        w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
        numpyro.sample("y", dist.Bernoulli(logits=X @ w), obs=y)

    twin = ff.from_numpyro(logreg_numpyro, X, y=y.astype(np.float64))
    z = torch.randn(8, posterior.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.5
    gap = (posterior.log_density(z) - twin.log_density(z)).detach()
    same_density = float((gap - gap.mean()).abs().max())
    t0 = time.perf_counter()
    ref = ff.reference.nuts(twin, chains=4, warmup=args.warmup, draws=args.draws, seed=0, progress=False)
    wall = time.perf_counter() - t0
    idata_nuts = ff.bayes.nuts_inference_data(posterior, ref)
    nuts = {"backend": ref.settings["backend"], "model": "the same regression as a NumPyro model (JAX-native)",
            "log_density_gap_max_minus_constant": same_density, "chains": 4, "warmup": args.warmup,
            "draws": args.draws, "wall_s": wall, "reliable": bool(ref.reliable), "reasons": list(ref.reasons),
            "divergences": int(ref.divergences), "rhat_max": float(ref.rhat), "ess_bulk_min": float(ref.ess_bulk),
            "summary": ref.summary(),
            "bridge_on_pymc": "fails: non-finite gradient at the default starts; from uniform [-1, 1] starts "
                              "BridgeError (pytensor ParameterValueError: 0 <= p <= 1) during the run"}
    print(f"NUTS (NumPyro twin, {wall:.1f} s, log-density gap {same_density:.2e}): {ref.summary()}")
    table = _table(idata_ff, idata_nuts, ["w"])
    dim = [d for d in idata_ff.posterior["w"].dims if d not in ("chain", "draw")][0]
    axes = az.plot_forest([idata_ff, idata_nuts], model_names=["freeflow", "NUTS"], var_names=["w"],
                          coords={dim: list(range(8))}, combined=True, figsize=(6, 5))
    fig = np.ravel(axes)[0].figure
    fig.suptitle("breast-cancer logistic regression, w[0..7]: freeflow vs NUTS, 94% HDI", fontsize=10)
    _save_figure(fig, FIGURES / "tutorial_logreg_forest.png")
    plt.close(fig)
    return {"dim": posterior.dim, "fit": fit, "sample_1e6": million, "nuts": nuts,
            "dims": {"w": [list(idata_ff.posterior["w"].dims), list(idata_nuts.posterior["w"].dims)]},
            "side_by_side": table}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--warmup", type=int, default=1000, help="NUTS warmup steps per chain")
    p.add_argument("--draws", type=int, default=1000, help="NUTS draws per chain")
    p.add_argument("--skip-logreg", action="store_true", help="eight schools only")
    p.add_argument("--out", default=str(RESULTS / "tutorial_posterior.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import matplotlib

    matplotlib.use("Agg")
    t0 = time.perf_counter()
    result = {"command": " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "config": {"threads": args.threads, "nuts_chains": 4, "nuts_warmup": args.warmup,
                         "nuts_draws": args.draws, "freeflow": "OneStepSampler(posterior, seed=0).fit()",
                         "idata_draws": N_IDATA},
              "eight_schools": eight_schools(args)}
    if not args.skip_logreg:
        result["logreg_breast_cancer"] = logreg(args)
    result["wall_s"] = time.perf_counter() - t0
    result["machine"] = machine()
    path = atomic_write_json(result, Path(args.out))
    print(f"wrote {path} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
