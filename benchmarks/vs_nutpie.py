"""freeflow (defaults) against nutpie (PyMC's Rust NUTS) on the same PyMC models, one thread each.

    pip install -e .[bench]                                    # nutpie
    python benchmarks/vs_nutpie.py                             # 3 models x seeds 0 1 2 -> results/vs_nutpie.json
    python benchmarks/vs_nutpie.py --quick --models eight_schools   # smoke run -> results/vs_nutpie_quick.json
    python benchmarks/vs_nutpie.py --table benchmarks/results/vs_nutpie.json   # the markdown table again

Models: the PyMC forms of ``benchmarks/posterior_models.py`` (``pymc_posterior(name).model``, the
very ``pm.Model`` freeflow's ``from_pymc`` wraps): eight schools non-centred (10-D), the
breast-cancer logistic regression (31-D), the hierarchical logistic regression (12 groups x 4
coefficients, 56-D).

Zoo posteriors in their PyMC form (``--models eight_schools_centered funnel10 poisson_hier``,
``zoo_models_pymc.py``): also judged against the zoo's long reference (``results/zoo_reference``),
nutpie's draws and 20 000 raw draws of freeflow's, on the model's own parameters, in reference sds.

One thread: OMP/MKL/OPENBLAS/NUMBA threads = 1 and XLA single-threaded (set before numpy is
imported), ``torch.set_num_threads(1)``, ``nutpie.sample(..., cores=1)``.

nutpie, per seed: ``compile_pymc_model`` (numba backend; once per model, its seconds reported and
counted in every seed's wall time) + ``sample(draws, tune, chains=4, cores=1)``.  ESS = arviz
bulk ESS, the minimum over all posterior variables.  Gradient evaluations = the sum of
``n_steps`` over all draws, tuning included.  The sampling wall time is split into tuning and
draws in proportion to their gradient evaluations (the cost of one NUTS step is the same in
both).  Time to E effective samples is EXTRAPOLATED LINEARLY (ESS grows linearly with draws
after tuning, as in posterior_cost.py): t(E) = compile + tuning + E x (draw seconds / ESS);
gradients(E) = tuning gradients + E x (draw gradients / ESS).

freeflow, per seed: ``OneStepSampler(ff.from_pymc(model), seed=s).fit()`` with the defaults
(``from_pymc``'s PyTensor compile once per model, reported and counted like nutpie's);
training seconds and log-density evaluations = the sum over the stages of ``sampler.cost()``
(gaussian_stage, training, checks; training rows carry gradients).  Then n importance-weighted
draws, ``importance_summary(n)`` timed (draws, log q, log p̃, constrained values): ESS = ESS
fraction x n; t(E) = compile + training + (E / ESS fraction) x seconds per draw; evaluations(E)
= training evaluations + E / ESS fraction (log p̃ values, no gradients).
Accuracy: the means and sds of every constrained scalar from n RAW draws (``sample``) and
importance-weighted, against nutpie's draws, in units of nutpie's sd (goal < 0.1).
"""
from __future__ import annotations

import os

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
for _k, _v in ONE_THREAD.items():  # before numpy / torch / jax are imported
    os.environ.setdefault(_k, _v)

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine  # noqa: E402
import posterior_models as models  # noqa: E402
from posterior_cost import _errors, _median, _plain, _scalars  # noqa: E402

import freeflow as ff  # noqa: E402
from freeflow.io import atomic_write_json  # noqa: E402

MODELS = ("eight_schools", "logreg_breast_cancer", "hier_logreg")
#: zoo posteriors with a PyMC form (zoo_models_pymc.py) and a long reference (results/zoo_reference)
ZOO_MODELS = ("eight_schools_centered", "funnel10", "poisson_hier", "irt_1pl")
TARGETS = (1e3, 1e4, 1e6)
BENCH_HINT = "this benchmark needs nutpie: pip install -e .[bench]  (or pip install 'nutpie>=0.16')"


def import_nutpie():
    """nutpie (and PyMC, whose models it compiles), or exit with the install command."""
    try:
        import nutpie
    except ImportError as e:
        raise SystemExit(f"{BENCH_HINT} ({e})") from e
    try:
        import pymc  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"this benchmark needs PyMC: pip install -e .[ppl,bench] ({e})") from e
    return nutpie


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("nutpie", "pymc", "pytensor", "numba", "arviz", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _stat_sum(group, name: str) -> float:
    return float(group[name].values.sum()) if group is not None and name in group else 0.0


def run_nutpie(compiled, *, compile_s: float, draws: int, tune: int, chains: int, seed: int) -> tuple[dict, object]:
    """One nutpie run: timings, min bulk ESS, R-hat, divergences, gradient evaluations and the
    linear extrapolation to TARGETS effective samples. Returns (row, InferenceData)."""
    import arviz as az

    nutpie = import_nutpie()
    t0 = time.perf_counter()
    idata = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed, cores=1, progress_bar=False)
    sample_s = time.perf_counter() - t0
    warm = getattr(idata, "warmup_sample_stats", None)
    grads_tune, grads_draws = _stat_sum(warm, "n_steps"), _stat_sum(idata.sample_stats, "n_steps")
    tune_s = sample_s * grads_tune / max(grads_tune + grads_draws, 1.0)
    draws_s = sample_s - tune_s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = az.ess(idata, method="bulk")
        ess_tail = az.ess(idata, method="tail")
        rhat = az.rhat(idata)
    ess_min = float(min(np.nanmin(ess[k].values) for k in ess.data_vars))
    row = {"seed": seed, "chains": chains, "tune": tune, "draws": draws, "compile_s": compile_s,
           "sample_s": sample_s, "tune_s_est": tune_s, "draws_s_est": draws_s, "wall_s": compile_s + sample_s,
           "ess_bulk_min": ess_min,
           "ess_tail_min": float(min(np.nanmin(ess_tail[k].values) for k in ess_tail.data_vars)),
           "rhat_max": float(max(np.nanmax(rhat[k].values) for k in rhat.data_vars)),
           "divergences": int(idata.sample_stats["diverging"].values.sum()),
           "grad_evals": grads_tune + grads_draws, "grad_evals_tune": grads_tune, "grad_evals_draws": grads_draws}
    for e in TARGETS:
        row[f"time_to_{e:.0e}_ess_s"] = compile_s + tune_s + e * draws_s / ess_min if ess_min > 0 else math.inf
        row[f"grads_to_{e:.0e}_ess"] = grads_tune + e * grads_draws / ess_min if ess_min > 0 else math.inf
    return row, idata


def idata_moments(idata, names) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (means, sds)} of each named variable of ``idata.posterior``, flattened per scalar."""
    out = {}
    for k in names:
        if k in idata.posterior:
            v = idata.posterior[k].values
            v = v.reshape(v.shape[0] * v.shape[1], -1).astype(np.float64)
            out[k] = (v.mean(0), v.std(0, ddof=1))
    return out


def fit_freeflow(post, seed: int) -> tuple[ff.OneStepSampler, dict]:
    """``OneStepSampler(post, seed).fit()`` with the defaults; the row of its cost and verdict."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    s = ff.OneStepSampler(post, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ff.ReliabilityWarning)
        s.fit(progress=False)
    fit_wall = time.perf_counter() - t0
    cost = s.cost()
    stages = {k: v for k, v in cost.items() if k != "other"}
    rel = s.last_reliability
    return s, {"seed": seed, "generator": s.generator_name, "steps": s.steps_done, "fit_wall_s": fit_wall,
               "precision": (s.gaussian_fit or {}).get("precision"),
               "cost": cost, "training_s": sum(v["seconds"] for v in stages.values()),
               "training_evals": sum(v["evaluations"] for v in stages.values()),
               "verdict": rel.verdict if rel is not None else None,
               "trusted": rel.trusted if rel is not None else None}


def run_freeflow(post, seed: int, *, build_s: float, n: int, ref: dict) -> tuple[ff.OneStepSampler, dict]:
    s, row = fit_freeflow(post, seed)
    s.importance_summary(min(n, 2048), seed=seed + 99)  # warm the path (allocation, first calls)
    t0 = time.perf_counter()
    summ = s.importance_summary(n, seed=seed + 100)
    per_draw = (time.perf_counter() - t0) / n
    frac = float(summ.ess_fraction)
    row.update(build_s=build_s, n=n, seconds_per_draw=per_draw, is_ess_fraction=frac, is_ess=frac * n,
               log_z=summ.log_normalizer, log_z_se=summ.log_normalizer_se, elbo=summ.elbo,
               pareto_khat=summ.pareto_k)
    for e in TARGETS:
        row[f"time_to_{e:.0e}_ess_s"] = build_s + row["training_s"] + e / frac * per_draw if frac > 0 else math.inf
        row[f"evals_to_{e:.0e}_ess"] = row["training_evals"] + e / frac if frac > 0 else math.inf
    raw = _scalars(post, s.sample_unconstrained(n, seed=seed + 101))
    x, lw = s.importance_weights(n, seed=seed + 100, constrained=False)
    fin = torch.isfinite(lw)
    weighted = _scalars(post, x, lw.masked_fill(~fin, -math.inf))
    row["accuracy_raw_vs_nutpie"] = _errors(raw, ref)
    row["accuracy_weighted_vs_nutpie"] = {k: v for k, v in _errors(weighted, ref).items() if k != "per_parameter"}
    return s, row


def run_model(name: str, args, save=None) -> dict:
    nutpie = import_nutpie()
    t0 = time.perf_counter()
    zoo = name in ZOO_MODELS
    if zoo:   # a zoo posterior in its PyMC form, judged also against its long reference
        import zoo_models_pymc
        post = ff.from_pymc(zoo_models_pymc.build(name), name=f"pymc:{name}")
    else:
        post = models.pymc_posterior(name)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(post.model)
    compile_s = time.perf_counter() - t0
    print(f"[{name}] {post.dim}-D: from_pymc {build_s:.1f} s (backend {getattr(post, 'backend', None)}), nutpie compile {compile_s:.1f} s", flush=True)
    rec = {"model": name, "dim": post.dim, "freeflow_backend": getattr(post, "backend", None), "params": {k: list(v) for k, v in post.shapes.items()},
           "freeflow_build_s": build_s, "nutpie_compile_s": compile_s, "seeds": []}
    for seed in args.seeds:
        nrow, idata = run_nutpie(compiled, compile_s=compile_s, draws=args.draws, tune=args.tune,
                                 chains=args.chains, seed=seed)
        ref = idata_moments(idata, post.constrain(torch.zeros(1, post.dim)).keys())
        print(f"[{name}] nutpie seed {seed}: {nrow['sample_s']:.1f} s sampling (+{compile_s:.1f} s compile), "
              f"min bulk ESS {nrow['ess_bulk_min']:.0f}, R-hat {nrow['rhat_max']:.3f}, "
              f"{nrow['grad_evals']:.0f} gradients, {nrow['divergences']} divergences", flush=True)
        sampler, frow = run_freeflow(post, seed, build_s=build_s, n=args.n, ref=ref)
        if zoo:
            nrow["accuracy_vs_reference"], frow["accuracy_raw_vs_reference"] = zoo_accuracy(name, idata, sampler, seed)
            a, b = nrow["accuracy_vs_reference"], frow["accuracy_raw_vs_reference"]
            print(f"[{name}] against the reference: nutpie max |Δmean| {a['mean_err_max']:.3f} ({a['mean_err_at']}), "
                  f"sd {a['sd_err_max']:.3f} ({a['sd_err_at']}); freeflow {b['mean_err_max']:.3f} ({b['mean_err_at']}), "
                  f"sd {b['sd_err_max']:.3f} ({b['sd_err_at']}) (reference sd)", flush=True)
        acc = frow["accuracy_raw_vs_nutpie"]
        print(f"[{name}] freeflow seed {seed}: training {frow['training_s']:.1f} s ({frow['steps']} steps, "
              f"{frow['training_evals']} evals, {frow['verdict']}); ESS {frow['is_ess_fraction']:.3f}·n, "
              f"{1e6 * frow['seconds_per_draw']:.1f} µs/draw; to 1e4 ESS {frow['time_to_1e+04_ess_s']:.1f} s "
              f"vs nutpie {nrow['time_to_1e+04_ess_s']:.1f} s; raw max |Δmean| {acc['mean_err_max']:.3f} "
              f"sd {acc['sd_err_max']:.3f} (nutpie sd)", flush=True)
        rec["seeds"].append({"seed": seed, "nutpie": nrow, "freeflow": frow})
        if save is not None:
            save(rec)
    return rec


def zoo_accuracy(name: str, idata, sampler, seed: int) -> tuple[dict, dict]:
    """nutpie's draws and 20 000 raw draws of freeflow's fitted sampler against the zoo's long
    reference, on the model's own parameters (posteriors_zoo.compare_constrained)."""
    import posteriors_zoo as pz

    ref = pz.load_reference(name)
    nut = {k: idata.posterior[k].values.reshape(-1, *idata.posterior[k].shape[2:])
           for k in ref["constrained"] if k in idata.posterior}
    draws = {k: np.asarray(v) for k, v in sampler.sample(pz.N_DRAWS, seed=10_000 + seed).items()}
    return pz.compare_constrained(nut, ref), pz.compare_constrained(draws, ref)


def table(payload: dict) -> str:
    """Markdown: medians over seeds."""
    head = ("| posterior | seeds | nutpie compile + sampling s | nutpie min bulk ESS | nutpie gradients "
            "| nutpie to 10³ / 10⁴ / 10⁶ ESS s | freeflow compile + training s | freeflow evaluations (training) "
            "| trusted | ESS / n | µs / draw | freeflow to 10³ / 10⁴ / 10⁶ ESS s "
            "| raw max mean / sd error (nutpie sd; worst seed) |")
    lines = [head, "|" + "---|" * 13]
    for m in payload["models"]:
        rows = m["seeds"]
        if not rows:
            continue
        nu = [r["nutpie"] for r in rows]
        fr = [r["freeflow"] for r in rows]

        def med(rs, k):
            return _median([r[k] for r in rs])

        me = [r["accuracy_raw_vs_nutpie"]["mean_err_max"] for r in fr]
        se = [r["accuracy_raw_vs_nutpie"]["sd_err_max"] for r in fr]
        lines.append(
            f"| {m['model']} ({m['dim']}-D) | {len(rows)} | {m['nutpie_compile_s']:.0f} + {med(nu, 'sample_s'):.1f} "
            f"| {med(nu, 'ess_bulk_min'):.0f} | {med(nu, 'grad_evals'):.0f} "
            f"| {med(nu, 'time_to_1e+03_ess_s'):.1f} / {med(nu, 'time_to_1e+04_ess_s'):.1f} / "
            f"{med(nu, 'time_to_1e+06_ess_s'):.0f} "
            f"| {m['freeflow_build_s']:.0f} + {med(fr, 'training_s'):.0f} | {med(fr, 'training_evals'):.0f} "
            f"| {sum(bool(r['trusted']) for r in fr)}/{len(fr)} | {med(fr, 'is_ess_fraction'):.2f} "
            f"| {1e6 * med(fr, 'seconds_per_draw'):.0f} "
            f"| {med(fr, 'time_to_1e+03_ess_s'):.0f} / {med(fr, 'time_to_1e+04_ess_s'):.0f} / "
            f"{med(fr, 'time_to_1e+06_ess_s'):.0f} "
            f"| {_median(me):.3f} / {_median(se):.3f} ({max(me):.3f} / {max(se):.3f}) |")
    return "\n".join(lines)


def breakdown(payload: dict) -> str:
    """Markdown: where freeflow's time went, per stage of ``sampler.cost()`` (medians over seeds):
    seconds and log-density evaluations (rows; training and Gaussian-stage rows carry gradients)."""
    stages = ("gaussian_stage", "training", "checks")
    lines = ["| posterior | steps | " + " | ".join(f"{k} s (evaluations)" for k in stages) + " | nutpie compile + tune + draws s |",
             "|" + "---|" * (len(stages) + 3)]
    for m in payload["models"]:
        fr = [r["freeflow"] for r in m["seeds"]]
        nu = [r["nutpie"] for r in m["seeds"]]
        if not fr:
            continue
        cells = []
        for k in stages:
            sec = _median([r["cost"].get(k, {}).get("seconds", 0.0) for r in fr])
            ev = _median([r["cost"].get(k, {}).get("evaluations", 0) for r in fr])
            cells.append(f"{sec:.1f} ({ev:.2g})")
        tune = _median([r["sample_s"] * r["grad_evals_tune"] / max(r["grad_evals"], 1) for r in nu])
        draws = _median([r["sample_s"] - r["sample_s"] * r["grad_evals_tune"] / max(r["grad_evals"], 1) for r in nu])
        lines.append(f"| {m['model']} ({m['dim']}-D) | {_median([r['steps'] for r in fr]):.0f} | " + " | ".join(cells)
                     + f" | {m['nutpie_compile_s']:.0f} + {tune:.1f} + {draws:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(models.MODELS + models.VALIDATION + ZOO_MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000, help="nutpie draws per chain after tuning")
    p.add_argument("--n", type=int, default=100_000, help="freeflow importance-weighted draws (ESS, timing, moments)")
    p.add_argument("--quick", action="store_true", help="smoke run: first seed, 300 tune + 300 draws, n = 20000")
    p.add_argument("--out", default=None, help="default: results/vs_nutpie.json (--quick: vs_nutpie_quick.json)")
    p.add_argument("--table", default=None, metavar="FILE", help="print the markdown table of a results file")
    args = p.parse_args(argv)
    if args.table:
        import json

        payload = json.loads(Path(args.table).read_text())
        print(table(payload) + "\n\n" + breakdown(payload))
        return
    import_nutpie()
    if args.quick:
        args.seeds, args.tune, args.draws, args.n = args.seeds[:1], 300, 300, min(args.n, 20_000)
    torch.set_num_threads(1)
    out = Path(args.out) if args.out else RESULTS / ("vs_nutpie_quick.json" if args.quick else "vs_nutpie.json")
    payload = {"config": {k: v for k, v in vars(args).items() if k not in ("out", "table")},
               "env": {k: os.environ.get(k) for k in ONE_THREAD}, "versions": versions(), "notes": [
                   "one thread each (env above, torch.set_num_threads(1), nutpie cores=1)",
                   "time_to_*_ess_s EXTRAPOLATED LINEARLY: nutpie compile + tuning + E x draw seconds / min bulk "
                   "ESS (tuning/draw seconds split by their share of n_steps); freeflow from_pymc compile + "
                   "training (sum of cost() stages) + E / ESS fraction x seconds per importance-weighted draw",
                   "nutpie grad_evals = sum of n_steps, tuning included; freeflow training_evals = rows of "
                   "log p̃ in cost() stages gaussian_stage/training/checks; each further draw costs one log p̃ value",
                   "accuracy: constrained scalars' means/sds of freeflow's raw (and weighted) draws vs nutpie's "
                   "draws, in nutpie sd units (goal < 0.1); nutpie's own Monte Carlo error is part of it"],
               "models": []}
    t_all = time.perf_counter()

    def save(partial: dict | None = None) -> None:
        """Write what is measured so far (a model in progress with its finished seeds)."""
        done = payload["models"] + ([partial] if partial is not None else [])
        payload_now = {**payload, "models": done, "machine": machine(), "wall_s": time.perf_counter() - t_all,
                       "command": " ".join(["python", Path(sys.argv[0]).as_posix(),
                                            *(argv if argv is not None else sys.argv[1:])])}
        atomic_write_json(_plain(payload_now), out)
        payload.update(wall_s=payload_now["wall_s"])

    for name in args.models:
        payload["models"].append(run_model(name, args, save))
        save()  # after every seed and every model: a stopped run keeps what it measured
    print(table(payload))
    print(f"wrote {out} ({payload['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
