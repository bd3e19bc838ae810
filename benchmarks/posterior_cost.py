"""End-to-end cost of a posterior: freeflow (defaults) against blackjax NUTS, JAX-native and bridged.

    python benchmarks/posterior_cost.py                      # -> benchmarks/results/posterior_cost.json
    python benchmarks/posterior_cost.py --quick              # smoke run -> posterior_cost_quick.json
    python benchmarks/posterior_cost.py --models logreg_wine eight_schools --routes numpyro --seeds 0 1 2

Run in two shards side by side (one thread each, JAX too: XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1"; every model's NUTS and freeflow rows stay in
one shard, so their ratios are measured side by side), then merge and print the table:

    python benchmarks/posterior_cost.py --seeds 0 1 2 --threads 1 --models logreg_breast_cancer eight_schools --out benchmarks/results/posterior_cost_a.json
    python benchmarks/posterior_cost.py --seeds 0 1 2 --threads 1 --models logreg_wine hier_logreg --out benchmarks/results/posterior_cost_b.json
    python benchmarks/posterior_cost.py --merge benchmarks/results/posterior_cost_a.json benchmarks/results/posterior_cost_b.json

Posteriors (``benchmarks/posterior_models.py``): the breast-cancer (31-D) and wine (14-D)
logistic regressions, eight schools (non-centred, 10-D) and a 56-D hierarchical logistic
regression, each as a NumPyro model (``ff.from_numpyro``), a hand-written ``ff.Posterior``
and a PyMC model (``ff.from_pymc``): the *routes*.

freeflow, per route and seed: ``OneStepSampler(posterior, seed=seed).fit()`` with the
library defaults (wall seconds, JIT/compilation of the model included); then n_eval fresh
draws with their log q and log p̃: the importance-weighted ESS (n / (n Σ w̄²)) per second of
that sampling, the cost per effective sample after training, and the time to 10⁶ effective
samples including training.  Accuracy: the posterior mean and sd of every scalar of the
constrained parameters from the raw draws (what ``sample``/``to_inference_data`` return) and
importance-weighted, against NUTS (JAX-native), in units of the NUTS sd (goal: < 0.1).

NUTS: ``ff.reference.nuts`` (4 chains, window adaptation, 1000 warmup + 2000 draws by default)
JAX-native on NumPyro's potential (``posterior.log_prob_jax``, no host callback), and through
the torch -> JAX bridge on the ``ff.Posterior`` route.  ESS = arviz's bulk ESS over chains,
the minimum over the unconstrained coordinates; ESS per second of sampling after warmup.

Time to 10⁶ effective samples is EXTRAPOLATED LINEARLY from the measured run:
t = (training, or NUTS warmup incl. JIT) + 10⁶ / (ESS per second of sampling).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine  # noqa: E402
import posterior_models as models  # noqa: E402

import freeflow as ff  # noqa: E402
from freeflow import importance as iw  # noqa: E402
from freeflow.io import atomic_write_json  # noqa: E402

TARGET_ESS = 1e6
GOAL_SD = 0.1


def _plain(obj):
    """numpy scalars/arrays -> Python numbers/lists (for json)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _scalars(post, z: torch.Tensor, log_w: torch.Tensor | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (means, sds)} of every parameter's constrained values (flattened), raw or
    self-normalised importance-weighted (float64)."""
    out: dict[str, list] = {}
    w = None if log_w is None else torch.softmax(log_w.double(), 0)
    with torch.no_grad():
        for part, wp in zip(z.split(65536), (w.split(65536) if w is not None else [None] * len(z.split(65536)))):
            for k, v in post.constrain(part).items():
                v = v.double().reshape(v.shape[0], -1)
                ww = torch.full((v.shape[0],), 1.0, dtype=torch.float64) if wp is None else wp
                acc = out.setdefault(k, [0.0, 0.0, 0.0])
                acc[0] = acc[0] + ww.sum()
                acc[1] = acc[1] + (ww[:, None] * v).sum(0)
                acc[2] = acc[2] + (ww[:, None] * v * v).sum(0)
    res = {}
    for k, (s0, s1, s2) in out.items():
        mean = s1 / s0
        var = (s2 / s0 - mean**2).clamp_min(0)
        if log_w is None:
            n = z.shape[0]
            var = var * n / max(n - 1, 1)
        res[k] = (mean.numpy(), var.sqrt().numpy())
    return res


def _errors(est: dict, ref: dict) -> dict:
    """Largest |mean − mean_ref| / sd_ref and |sd − sd_ref| / sd_ref over all scalars, and the
    parameter where it occurs."""
    worst = {"mean_err_max": 0.0, "sd_err_max": 0.0, "mean_err_at": None, "sd_err_at": None}
    per = {}
    for k, (m_ref, s_ref) in ref.items():
        m, s = est[k]
        em, es = np.abs(m - m_ref) / s_ref, np.abs(s - s_ref) / s_ref
        per[k] = {"mean_err": em.round(4).tolist(), "sd_err": es.round(4).tolist()}
        if em.max() > worst["mean_err_max"]:
            worst.update(mean_err_max=float(em.max()), mean_err_at=f"{k}[{int(em.argmax())}]")
        if es.max() > worst["sd_err_max"]:
            worst.update(sd_err_max=float(es.max()), sd_err_at=f"{k}[{int(es.argmax())}]")
    worst["within_goal"] = worst["mean_err_max"] < GOAL_SD and worst["sd_err_max"] < GOAL_SD
    return {**worst, "per_parameter": per}


def run_nuts(post, args, *, draws: int, warmup: int, label: str) -> tuple[dict, torch.Tensor]:
    from freeflow.compare.reference import nuts

    t0 = time.perf_counter()
    ref = nuts(post if label == "jax" else post.log_density, None if label == "jax" else post.dim,
               chains=args.chains, warmup=warmup, draws=draws, seed=0, progress=False)
    wall = time.perf_counter() - t0
    ess = float(ref.ess_bulk)
    samp = float(ref.timings["sampling_s"])
    row = {"backend": ref.settings["backend"], "chains": args.chains, "warmup": warmup, "draws": draws,
           "warmup_s": float(ref.timings["warmup_s"]), "sampling_s": samp, "wall_s": wall,
           "ess_bulk_min": ess, "ess_tail_min": float(ref.ess_tail), "rhat_max": ref.rhat,
           "divergences": ref.divergences, "reliable": ref.reliable, "reasons": list(ref.reasons),
           "ess_per_s": ess / samp, "seconds_per_effective_sample": samp / ess,
           "time_to_1e6_ess_s": float(ref.timings["warmup_s"]) + TARGET_ESS * samp / ess,
           "time_to_1e6_ess_extrapolated": True}
    return row, torch.from_numpy(ref.draws.reshape(-1, post.dim))


def run_freeflow(post, seed: int, args) -> tuple[dict, dict, dict]:
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    s = ff.OneStepSampler(post, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ff.ReliabilityWarning)
        s.fit(args.steps, progress=False)
    fit_s = time.perf_counter() - t0
    rel = s.last_reliability
    n = args.n_eval
    s.sample_unconstrained(1024, seed=seed + 99)  # warm the sampling path (allocation, JIT of log p)
    t0 = time.perf_counter()
    s.sample_unconstrained(n, seed=seed + 100)
    sample_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    z, log_q = s.sample_and_log_prob(n, seed=seed + 100)
    log_p = iw.log_density_at(post.log_density, z)
    weights_s = time.perf_counter() - t0
    lw = iw.log_importance_weights(log_p, log_q)
    fin = torch.isfinite(lw)
    ess = float(iw.reverse_ess(lw[fin]) * n) if fin.any() else 0.0
    ess_per_s = ess / weights_s if weights_s > 0 else math.nan
    row = {"seed": seed, "generator": s.generator_name, "steps": s.steps_done, "fit_s": fit_s,
           "verdict": rel.verdict if rel is not None else None, "trusted": rel.trusted if rel is not None else None,
           "khat_fit": rel.pareto_k if rel is not None else None,
           "n_eval": n, "draws_per_s": n / sample_s, "sample_s": sample_s, "sample_and_weights_s": weights_s,
           "pareto_khat": float(iw.pareto_k(lw[fin])), "is_ess": ess, "is_ess_fraction": ess / n,
           "ess_per_s": ess_per_s, "seconds_per_effective_sample": 1.0 / ess_per_s if ess_per_s > 0 else math.inf,
           "time_to_1e6_ess_s": fit_s + TARGET_ESS / ess_per_s if ess_per_s > 0 else math.inf,
           "time_to_1e6_ess_extrapolated": True}
    return row, _scalars(post, z), _scalars(post, z, lw.masked_fill(~fin, -math.inf))


def run_model(name: str, args) -> dict:
    rec: dict = {"model": name, "routes": {}}
    t0 = time.perf_counter()
    npost = models.numpyro_posterior(name)
    rec["dim"] = npost.dim
    rec["params"] = {k: list(v) for k, v in npost.shapes.items()}
    print(f"[{name}] {npost} built in {time.perf_counter() - t0:.1f} s", flush=True)
    nuts_jax, zj = run_nuts(npost, args, draws=args.draws, warmup=args.warmup, label="jax")
    ref = _scalars(npost, zj)
    rec["nuts_jax"] = nuts_jax
    print(f"[{name}] NUTS jax: ESS {nuts_jax['ess_bulk_min']:.0f} in {nuts_jax['sampling_s']:.1f} s "
          f"(+{nuts_jax['warmup_s']:.1f} s warmup), {nuts_jax['divergences']} divergences", flush=True)
    rec["reference_moments"] = {k: {"mean": m.round(5).tolist(), "sd": s.round(5).tolist()} for k, (m, s) in ref.items()}
    posts = {"numpyro": npost}
    for route in args.routes:
        if route == "numpyro":
            continue
        try:
            t0 = time.perf_counter()
            posts[route] = models.ROUTES[route](name)
            rec["routes"].setdefault(route, {})["build_s"] = time.perf_counter() - t0
        except ImportError as e:
            rec["routes"][route] = {"skipped": str(e)}
            print(f"[{name}] route {route} skipped: {e}", flush=True)
    if args.bridge and "posterior" in posts:
        nb, zb = run_nuts(posts["posterior"], args, draws=args.bridge_draws, warmup=args.bridge_warmup, label="bridge")
        nb["accuracy_vs_nuts_jax"] = {k: v for k, v in _errors(_scalars(posts["posterior"], zb), ref).items()
                                      if k != "per_parameter"}
        rec["nuts_bridge"] = nb
        print(f"[{name}] NUTS bridge: ESS {nb['ess_bulk_min']:.0f} in {nb['sampling_s']:.1f} s "
              f"(+{nb['warmup_s']:.1f} s warmup)", flush=True)
    for route in args.routes:
        if route not in posts:
            continue
        runs = []
        for seed in args.seeds:
            row, raw, weighted = run_freeflow(posts[route], seed, args)
            row["accuracy_raw"] = _errors(raw, ref)
            row["accuracy_weighted"] = {k: v for k, v in _errors(weighted, ref).items() if k != "per_parameter"}
            row["after_training_speedup_vs_nuts_jax"] = nuts_jax["seconds_per_effective_sample"] / row["seconds_per_effective_sample"]
            row["faster_to_1e6_than_nuts_jax"] = row["time_to_1e6_ess_s"] < nuts_jax["time_to_1e6_ess_s"]
            acc = row["accuracy_raw"]
            print(f"[{name}] freeflow/{route} seed {seed}: fit {row['fit_s']:.1f} s ({row['steps']} steps, "
                  f"{row['verdict']}); IS-ESS {row['is_ess_fraction']:.2f}·n, {row['ess_per_s']:.0f} ESS/s "
                  f"(x{row['after_training_speedup_vs_nuts_jax']:.0f} NUTS-jax); to 1e6 ESS "
                  f"{row['time_to_1e6_ess_s']:.1f} s vs NUTS-jax {nuts_jax['time_to_1e6_ess_s']:.1f} s; "
                  f"max err mean {acc['mean_err_max']:.3f} sd {acc['sd_err_max']:.3f} (NUTS sd)", flush=True)
            runs.append(row)
        rec["routes"].setdefault(route, {})["freeflow"] = runs
    return rec


def _median(vals):
    vals = sorted(v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v)))
    return float(np.median(vals)) if vals else math.nan


def table(payload: dict) -> str:
    """The markdown table of docs/benchmarks.md: medians over seeds (ranges where they matter)."""
    head = ("| posterior | route | seeds trusted | training s / steps (median) | max mean / sd error, NUTS sd "
            "(median; worst seed) | IS-ESS / n | freeflow ESS/s | NUTS-jax ESS/s | NUTS-bridge ESS/s "
            "| after training vs NUTS-jax (median; range) | to 10⁶ ESS: freeflow | NUTS-jax | NUTS-bridge |")
    lines = [head, "|" + "---|" * 13]
    for m in payload["models"]:
        nj, nb = m["nuts_jax"], m.get("nuts_bridge", {})
        for route, rec in m["routes"].items():
            runs = rec.get("freeflow")
            if not runs:
                continue
            me = [r["accuracy_raw"]["mean_err_max"] for r in runs]
            se = [r["accuracy_raw"]["sd_err_max"] for r in runs]
            sp = [r["after_training_speedup_vs_nuts_jax"] for r in runs]
            lines.append(
                f"| {m['model']} ({m['dim']}-D) | {route} | {sum(bool(r['trusted']) for r in runs)}/{len(runs)} "
                f"| {_median([r['fit_s'] for r in runs]):.0f} / {_median([r['steps'] for r in runs]):.0f} "
                f"| {_median(me):.3f} / {_median(se):.3f} ({max(me):.3f} / {max(se):.3f}) "
                f"| {_median([r['is_ess_fraction'] for r in runs]):.2f} | {_median([r['ess_per_s'] for r in runs]):.0f} "
                f"| {nj['ess_per_s']:.0f} | {nb.get('ess_per_s', math.nan):.0f} "
                f"| {_median(sp):.0f}× ({min(sp):.0f}–{max(sp):.0f}×) "
                f"| {_median([r['time_to_1e6_ess_s'] for r in runs]):.0f} s | {nj['time_to_1e6_ess_s']:.0f} s "
                f"| {nb.get('time_to_1e6_ess_s', math.nan):.0f} s |")
    return "\n".join(lines)


def merge(paths: list[str], out: Path) -> dict:
    """One results file from shards (models concatenated; each shard's config and machine kept)."""
    import json

    shards = [json.loads(Path(p).read_text()) for p in paths]
    payload = {"shards": [{"file": Path(p).name, "command": s.get("command"), "config": s["config"],
                           "machine": s.get("machine"), "wall_s": s.get("wall_s"), "env": s.get("env")} for p, s in zip(paths, shards)],
               "notes": shards[0]["notes"], "models": [m for s in shards for m in s["models"]]}
    atomic_write_json(_plain(payload), out)
    return payload


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(models.MODELS), choices=list(models.MODELS + models.VALIDATION))
    p.add_argument("--routes", nargs="+", default=list(models.ROUTES), choices=list(models.ROUTES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=None, help="freeflow steps (default: fit() without steps)")
    p.add_argument("--n-eval", type=int, default=100_000, help="freeflow draws for ESS and moments")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--bridge", action=argparse.BooleanOptionalAction, default=True,
                   help="also run NUTS through the torch->JAX bridge on the ff.Posterior route")
    p.add_argument("--bridge-warmup", type=int, default=None, help="default: --warmup")
    p.add_argument("--bridge-draws", type=int, default=None, help="default: --draws")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: eight_schools and logreg_wine, 300 steps, 20k draws, short NUTS")
    p.add_argument("--out", default=None, help="default: results/posterior_cost.json (--quick: posterior_cost_quick.json)")
    p.add_argument("--merge", nargs="+", default=None, metavar="SHARD",
                   help="merge shard files into --out (default results/posterior_cost.json), print the table")
    p.add_argument("--table", default=None, metavar="FILE", help="print the markdown table of a results file")
    args = p.parse_args(argv)
    if args.table or args.merge:
        import json

        payload = (json.loads(Path(args.table).read_text()) if args.table
                   else merge(args.merge, Path(args.out) if args.out else RESULTS / "posterior_cost.json"))
        print(table(payload))
        return
    if args.quick:
        if args.models == list(models.MODELS):
            args.models = ["eight_schools", "logreg_wine"]
        args.steps = args.steps or 300
        args.n_eval = min(args.n_eval, 20_000)
        args.chains, args.warmup, args.draws = 2, 300, 300
    args.bridge_warmup = args.bridge_warmup or args.warmup
    args.bridge_draws = args.bridge_draws or args.draws
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else RESULTS / ("posterior_cost_quick.json" if args.quick else "posterior_cost.json")
    payload = {"config": {k: v for k, v in vars(args).items() if k != "out"},
               "notes": ["time_to_1e6_ess_s is extrapolated linearly from the measured run: training (freeflow) "
                         "or warmup incl. JIT (NUTS) + 1e6 / (ESS per second of sampling)",
                         "freeflow ESS: importance-weighted, n / (n sum w̄²) over n_eval fresh draws; its sampling "
                         "time includes log q and log p̃ of every draw",
                         "NUTS ESS: arviz bulk ESS over chains, minimum over unconstrained coordinates",
                         "accuracy: constrained parameters' means and sds vs NUTS (JAX-native), in NUTS sd units"],
               "env": {"XLA_FLAGS": os.environ.get("XLA_FLAGS")},
               "models": []}
    t_all = time.perf_counter()
    for name in args.models:
        payload["models"].append(run_model(name, args))
        payload["machine"] = machine()
        payload["wall_s"] = time.perf_counter() - t_all
        payload["command"] = " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])])
        atomic_write_json(_plain(payload), out)  # after every model: a partial run keeps what it measured
    print(f"wrote {out} ({payload['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
