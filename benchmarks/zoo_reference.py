"""Long NUTS references for the zoo (benchmarks/zoo_models.py): moments per unconstrained
coordinate and per named constrained parameter, with R-hat, bulk/tail ESS and wall time.

    nice -n 10 timeout 1800 python benchmarks/zoo_reference.py --models eight_schools_centered
    # -> benchmarks/results/zoo_reference/eight_schools_centered.json

Sampler: blackjax NUTS through ``freeflow.compare.reference.nuts`` on NumPyro's own potential
(``posterior.log_prob_jax``, JAX-native, float64): 4 chains vmapped, each with its own Stan-style
window adaptation (default 1000 warm-up steps, diagonal mass; dense for linreg_illcond), 5000
kept draws per chain, seed 0.  Where NUTS on the model as written is unreliable (divergences
above 0.1 % of draws, R-hat > 1.01 or ESS < 100 per chain) and the model has a non-centred
twin (``zoo_models.TWINS``), or when it has any divergence, the twin is run as well; if the twin is
reliable with fewer divergences, its draws, mapped to the written model's unconstrained coordinates
(twin -> constrained values -> ``posterior.unconstrain``), become the reference; the direct run's
diagnostics and (biased) moments stay in the file (``direct``).
funnel10: exact draws (4 x 5000, for R-hat/ESS) and closed-form moments (mean 0, sd 3 for v,
e^{9/4} for x_i).  linreg_illcond: also an exact check by quadrature over log sigma (beta given
sigma is Gaussian) gives exact moments and exact draws, which are the reference there (NUTS
with a dense mass matrix does not mix on it: blackjax's/Stan's mass-matrix regularisation,
1e-3 * 5/(n+5) on the diagonal, swamps coordinates with posterior variance ~1e-10); the NUTS run
stays in ``direct`` with its gap to the exact moments.

The JSON holds moments only (no draws): ``unconstrained`` {names, mean, sd, rhat, ess_bulk,
ess_tail, kurtosis (the excess-free 4th standardised moment, for the sd noise floor of n iid
draws: sd_rel ≈ sqrt((kurtosis - 1) / (4 n)))}, ``constrained`` {name: {shape, mean, sd, rhat,
ess_bulk}} (latent and deterministic sites), ``diagnostics``, ``timings``, ``settings``,
``reliable`` / ``reasons``, ``note``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine  # noqa: E402
import zoo_models as zm  # noqa: E402

from freeflow.io import atomic_write_json  # noqa: E402

OUT = RESULTS / "zoo_reference"
#: per-model NUTS options beyond the defaults
#: NUTS settings per model: the horseshoe and SV diverge at the default target acceptance (SV:
#: 300 divergences in 10⁵ draws at 0.9, mu's sd 2.2 % wider than at 0.99 with 40)
OPTIONS = {"linreg_illcond": {"dense_mass": True}, "horseshoe_logreg": {"target_acceptance_rate": 0.99},
           "stochastic_volatility": {"target_acceptance_rate": 0.99}}


def _stats(draws: dict[str, np.ndarray]) -> dict[str, dict]:
    """{name: (chains, draws, *shape)} -> {name: {shape, mean, sd, rhat, ess_bulk, ess_tail}} (flat lists)."""
    import arviz as az

    ds = az.convert_to_dataset({k: np.asarray(v, dtype=np.float64) for k, v in draws.items()})
    rhat, bulk, tail = az.rhat(ds), az.ess(ds, method="bulk"), az.ess(ds, method="tail")
    out = {}
    for k, v in draws.items():
        flat = np.asarray(v, dtype=np.float64).reshape(v.shape[0] * v.shape[1], -1)
        out[k] = {"shape": list(v.shape[2:]), "mean": flat.mean(0).tolist(), "sd": flat.std(0, ddof=1).tolist(),
                  "kurtosis": _kurtosis(flat),
                  "rhat": np.ravel(rhat[k].values).tolist(), "ess_bulk": np.ravel(bulk[k].values).tolist(),
                  "ess_tail": np.ravel(tail[k].values).tolist()}
    return out


def _kurtosis(flat: np.ndarray) -> list[float]:
    c = flat - flat.mean(0)
    return ((c**4).mean(0) / np.maximum((c**2).mean(0), 1e-300) ** 2).tolist()


def _constrained(post, draws: np.ndarray) -> dict[str, np.ndarray]:
    """(chains, n, dim) unconstrained -> {site: (chains, n, *shape)} latent and deterministic sites."""
    c, n, d = draws.shape
    z = torch.from_numpy(draws.reshape(c * n, d))
    vals = {**post.constrain(z), **post.derived(z)}
    return {k: v.double().numpy().reshape((c, n) + tuple(v.shape[1:])) for k, v in vals.items()}


def _summary(post, draws: np.ndarray) -> dict:
    unc = _stats({"z": draws})["z"]
    unc.pop("shape")
    unc["names"] = post.coordinate_names()
    unc["kurtosis"] = _kurtosis(draws.reshape(-1, draws.shape[2]))
    return {"unconstrained": unc, "constrained": _stats(_constrained(post, draws))}


def _nuts_run(post, args, opts) -> tuple[np.ndarray, dict]:
    from freeflow.compare.reference import nuts

    ref = nuts(post, chains=args.chains, warmup=args.warmup, draws=args.draws, seed=args.seed,
               progress=False, **opts)
    d = ref.diagnostics
    info = {"divergences": ref.divergences, "divergences_per_chain": d["divergences_per_chain"],
            "rhat_max": ref.rhat, "ess_bulk_min": ref.ess_bulk, "ess_tail_min": ref.ess_tail,
            "step_size": d["step_size"], "mean_tree_size": d["mean_tree_size"],
            "grad_evals_warmup": d["grad_evals_warmup"], "grad_evals_sampling": d["grad_evals_sampling"],
            "timings": ref.timings, "reliable": ref.reliable, "reasons": ref.reasons,
            "settings": {k: v for k, v in ref.settings.items() if k != "init"}}
    print(f"  {post.name}: {ref.summary()}", flush=True)
    return ref.draws, info


def _twin_to_written(post, twin, draws: np.ndarray) -> np.ndarray:
    """Twin draws (chains, n, d_twin) -> the written model's unconstrained coordinates."""
    vals = _constrained(twin, draws)
    c, n = draws.shape[:2]
    values = {k: torch.from_numpy(vals[k].reshape((c * n,) + vals[k].shape[2:])) for k in post.names}
    return post.unconstrain(values).double().numpy().reshape(c, n, post.dim)


def _linreg_grid(grid: int = 2001):
    """linreg_illcond's posterior of log sigma on a grid and beta | sigma in the SVD basis of X
    (prior beta ~ N(0, s0^2 I), sigma ~ HalfNormal(100)): y | sigma ~ N(0, sigma^2 I + s0^2 X X^T),
    beta | sigma, y ~ N(V m, V diag(1 / prec) V^T), X = U diag(S) V^T."""
    X, y = zm.diabetes_design()
    n, p = X.shape
    s0, s_sigma = 100.0, 100.0
    U, S, Vt = np.linalg.svd(X, full_matrices=False)
    uy = U.T @ y
    rest = y @ y - uy @ uy
    ls = np.linspace(math.log(20.0), math.log(120.0), grid)
    sig2 = np.exp(2 * ls)
    ev = sig2[:, None] + s0**2 * S[None, :] ** 2
    loglik = -0.5 * (np.log(ev).sum(1) + (n - p) * np.log(sig2) + (uy**2 / ev).sum(1) + rest / sig2)
    logpost = loglik - 0.5 * sig2 / s_sigma**2 + ls  # HalfNormal density in sigma, + log-Jacobian
    w = np.exp(logpost - logpost.max())
    w /= w.sum()
    prec = S[None, :] ** 2 / sig2[:, None] + 1 / s0**2                # (grid, p), V basis
    m_v = (S[None, :] / sig2[:, None]) * uy[None, :] / prec           # conditional means, V basis
    return ls, w, prec, m_v, Vt


def linreg_quadrature() -> dict:
    """Exact moments of linreg_illcond's unconstrained coordinates (beta, log sigma) by
    quadrature over log sigma (see _linreg_grid)."""
    ls, w, prec, m_v, Vt = _linreg_grid()
    mb = m_v @ Vt
    mean_b = w @ mb
    cov = np.einsum("g,gp,pi,pj->ij", w, 1 / prec, Vt, Vt) + np.einsum("g,gi,gj->ij", w, mb, mb) - np.outer(mean_b, mean_b)
    mean_ls = float(w @ ls)
    sd_ls = float(np.sqrt(w @ (ls - mean_ls) ** 2))
    return {"mean": mean_b.tolist() + [mean_ls], "sd": np.sqrt(np.diag(cov)).tolist() + [sd_ls],
            "grid_edge_mass": float(max(w[:5].sum(), w[-5:].sum()))}


def linreg_exact(n: int, seed: int = 0) -> np.ndarray:
    """Exact draws (n, 26) of (beta, log sigma): log sigma from the grid (uniform within its
    cell), then beta | sigma Gaussian."""
    ls, w, prec, m_v, Vt = _linreg_grid()
    rng = np.random.default_rng([seed, 26])
    g = rng.choice(ls.size, size=n, p=w)
    h = ls[1] - ls[0]
    beta = (m_v[g] + rng.normal(size=(n, Vt.shape[0])) / np.sqrt(prec[g])) @ Vt  # sigma at the grid point
    return np.concatenate([beta, (ls[g] + h * (rng.uniform(size=n) - 0.5))[:, None]], 1)


def _exact_gaps(mean, sd, exact_draws: dict, direct: dict) -> dict:
    """The largest gaps of the exact draws' and of NUTS's moments to the exact ``mean``/``sd``
    (mean gaps in sds, sd gaps relative)."""
    gaps = {}
    for label, mom in (("exact_draws", exact_draws), ("nuts", direct)):
        gaps[f"{label}_max_mean_gap_sd"], gaps[f"{label}_max_sd_gap_rel"] = _moment_gaps(mean, sd, mom)
    return gaps


def _moment_gaps(mean, sd, mom: dict) -> tuple[float, float]:
    """(largest |mom's mean − mean| in sds, largest |mom's sd / sd − 1|)."""
    mean, sd = np.asarray(mean), np.asarray(sd)
    return (float(np.max(np.abs(np.asarray(mom["mean"]) - mean) / sd)),
            float(np.max(np.abs(np.asarray(mom["sd"]) / sd - 1))))


def _random_walk_exact(post, out: dict, draws: np.ndarray, direct: dict, args) -> None:
    """random_walk_missing's exact reference (benchmarks/zoo_exact.py): moments by quadrature
    over (log σ_w, log σ_obs) with x | scales Gaussian; R-hat/ESS/kurtosis from exact draws; the
    NUTS run stays in ``direct`` with its gap to the exact moments."""
    import zoo_exact as ze

    flat = draws.reshape(-1, post.dim)
    direct.update(mean=flat.mean(0).tolist(), sd=flat.std(0, ddof=1).tolist())
    n = args.chains * args.draws
    exact = ze.rw_unconstrained(post, ze.rw_exact(n, seed=args.seed)).reshape(args.chains, args.draws, post.dim)
    out.update(_summary(post, exact))
    q = ze.rw_quadrature()
    mean, sd, cons = ze.rw_reference(post, q)
    u = out["unconstrained"]
    gaps = {**_exact_gaps(mean, sd, u, direct),
            "nuts_sd_gap_rel": (np.asarray(direct["sd"]) / np.asarray(sd) - 1).round(4).tolist(),
            "grid_edge_mass": q["grid_edge_mass"], "grid_points_used": q["grid_points_used"]}
    u["mean"], u["sd"] = mean, sd
    for k, (m, s) in cons.items():
        out["constrained"][k]["mean"], out["constrained"][k]["sd"] = np.ravel(m).tolist(), np.ravel(s).tolist()
    out["quadrature_check"] = gaps
    out["method"] = ("exact: (log sigma_w, log sigma_obs) by quadrature on a 326 x 876 grid, x | scales Gaussian "
                     "(benchmarks/zoo_exact.py); mean/sd from the quadrature, R-hat/ESS/kurtosis from "
                     f"{args.chains} x {args.draws} exact draws; NUTS as written ({out['method']}) in 'direct'")
    out["reliable"], out["reasons"] = True, []
    print(f"  NUTS vs quadrature: mean gap {gaps['nuts_max_mean_gap_sd']:.4f} sd, sd gap "
          f"{gaps['nuts_max_sd_gap_rel']:.4f}; exact draws vs quadrature: {gaps['exact_draws_max_mean_gap_sd']:.4f} sd, "
          f"{gaps['exact_draws_max_sd_gap_rel']:.4f}", flush=True)


def run_model(name: str, args) -> dict:
    post = zm.posterior(name)
    model, _, _, description = zm.get(name)
    out = {"name": name, "description": description, "dim": post.dim, "model": model.__name__,
           "parameters": {k: {"constraint": post.constraints[k], "shape": list(post.shapes[k])} for k in post.names},
           "derived": list(post.derived_names), "note": args.note or ""}
    t0 = time.perf_counter()
    if name == "funnel10":
        draws = zm.funnel_exact(args.chains * args.draws, seed=args.seed).reshape(args.chains, args.draws, 10)
        out.update(_summary(post, draws))
        out["unconstrained"]["sample_mean"] = out["unconstrained"]["mean"]
        out["unconstrained"]["sample_sd"] = out["unconstrained"]["sd"]
        out["unconstrained"]["mean"] = zm.FUNNEL_MOMENTS["mean"]
        out["unconstrained"]["sd"] = zm.FUNNEL_MOMENTS["sd"]
        out["unconstrained"]["kurtosis"] = [3.0] + [3.0 * math.exp(9.0)] * 9  # E x^4 / (E x^2)^2 = 3 e^{18} / e^{9}
        out["method"] = (f"exact draws ({args.chains} x {args.draws}) for R-hat/ESS; mean/sd closed form "
                         "(sample_mean/sample_sd: of the exact draws)")
        out["reliable"], out["reasons"] = True, []
    else:
        opts = dict(OPTIONS.get(name, {}))
        if args.target_accept is not None:
            opts["target_acceptance_rate"] = args.target_accept
        draws, direct = _nuts_run(post, args, opts)
        out["direct"] = direct
        out["method"] = (f"blackjax NUTS via freeflow.compare.reference.nuts (JAX-native log_prob_jax), "
                         f"{args.chains} chains x {args.draws} draws after {args.warmup} warm-up, "
                         f"{'dense' if opts.get('dense_mass') else 'diagonal'} mass, target acceptance "
                         f"{opts.get('target_acceptance_rate', 0.8)}, seed {args.seed}")
        used = draws
        unsure = not direct["reliable"] or direct["divergences"] > 0 or args.with_twin
        if unsure and name in zm.TWINS and not args.no_twin:
            flat = draws.reshape(-1, post.dim)
            direct.update(mean=flat.mean(0).tolist(), sd=flat.std(0, ddof=1).tolist())  # (biased) moments as written
            twin = zm.posterior(name, twin=True)
            tdraws, tinfo = _nuts_run(twin, args, opts)
            out["twin"] = tinfo
            mapped = _twin_to_written(post, twin, tdraws).reshape(-1, post.dim)
            gap_mean, gap_sd = _moment_gaps(mapped.mean(0), mapped.std(0, ddof=1), direct)
            out["twin_gap"] = {"max_mean_gap_sd": gap_mean, "max_sd_gap_rel": gap_sd,
                               "where": "as written minus the twin, in the twin's sds"}
            print(f"  as written vs twin: mean gap {gap_mean:.4f} sd, sd gap {gap_sd:.4f}", flush=True)
            better = tinfo["divergences"] < direct["divergences"] or (
                args.with_twin and tinfo["ess_bulk_min"] > direct["ess_bulk_min"])
            if tinfo["reliable"] and better:
                used = mapped.reshape(tdraws.shape[:2] + (post.dim,))
                why = "; ".join(direct["reasons"]) or (
                    f"{direct['divergences']} divergent transitions" if direct["divergences"] else
                    f"bulk ESS {direct['ess_bulk_min']:.0f} as written, {tinfo['ess_bulk_min']:.0f} in the twin")
                out["method"] += (f"; the model as written was unreliable or diverged ({why}): "
                                  f"reference = NUTS on the non-centred twin {zm.TWINS[name].__name__}, "
                                  "mapped to the written model's unconstrained coordinates")
        out.update(_summary(post, used))
        final = out.get("twin") if used is not draws else direct
        out["reliable"], out["reasons"] = final["reliable"], final["reasons"]
        if name == "linreg_illcond":  # exact draws are available: they are the reference, NUTS is checked
            flat = draws.reshape(-1, post.dim)
            direct.update(mean=flat.mean(0).tolist(), sd=flat.std(0, ddof=1).tolist())
            exact = linreg_exact(args.chains * args.draws, seed=args.seed).reshape(args.chains, args.draws, post.dim)
            out.update(_summary(post, exact))
            q = linreg_quadrature()
            u = out["unconstrained"]
            q.update(_exact_gaps(q["mean"], q["sd"], u, direct))
            u["mean"], u["sd"] = q["mean"], q["sd"]  # the quadrature's moments (the draws' R-hat/ESS/kurtosis stay)
            out["quadrature_check"] = q
            out["design_condition_number"] = zm.design_condition_number()
            out["method"] = ("exact: log sigma by quadrature on a 2001-point grid, beta | sigma Gaussian (SVD of X); "
                             "mean/sd from the quadrature, R-hat/ESS/kurtosis and constrained moments from "
                             f"{args.chains} x {args.draws} exact draws; NUTS as written ({out['method']}) in 'direct'")
            out["reliable"], out["reasons"] = True, []
            print(f"  cond(X) = {out['design_condition_number']:.3e}; NUTS vs quadrature: mean gap "
                  f"{q['nuts_max_mean_gap_sd']:.4f} sd, sd gap {q['nuts_max_sd_gap_rel']:.4f}; exact draws vs "
                  f"quadrature: {q['exact_draws_max_mean_gap_sd']:.4f} sd, {q['exact_draws_max_sd_gap_rel']:.4f}", flush=True)
        if name == "random_walk_missing":  # conditionally Gaussian: exact by quadrature (zoo_exact.py)
            _random_walk_exact(post, out, draws, direct, args)
    out["wall_seconds"] = time.perf_counter() - t0
    if args.previous:  # agreement with an earlier run (another setting) of the same model
        prev = json.loads(Path(args.previous).read_text())
        pu, u = prev["unconstrained"], out["unconstrained"]
        sd = np.asarray(u["sd"])
        out["previous_run"] = {
            "method": prev.get("method"), "divergences": prev.get("direct", {}).get("divergences"),
            "rhat_max": prev.get("rhat_max"), "ess_bulk_min": prev.get("ess_bulk_min"),
            "max_mean_diff_sd": float(np.max(np.abs(np.asarray(pu["mean"]) - u["mean"]) / sd)),
            "max_sd_diff_rel": float(np.max(np.abs(np.asarray(pu["sd"]) / sd - 1)))}
        print(f"  vs previous run: {out['previous_run']}", flush=True)
    u = out["unconstrained"]
    out["rhat_max"] = float(np.max(u["rhat"]))
    out["ess_bulk_min"] = float(np.min(u["ess_bulk"]))
    out["ess_tail_min"] = float(np.min(u["ess_tail"]))
    out["rhat_below_1_01"] = out["rhat_max"] < 1.01
    out["settings"] = {"chains": args.chains, "draws": args.draws, "warmup": args.warmup, "seed": args.seed,
                       "target_accept": args.target_accept}
    out["machine"] = machine()
    out["command"] = " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    path = atomic_write_json(out, Path(args.out_dir) / f"{name}.json")
    print(f"{name}: dim {post.dim}, {out['wall_seconds']:.0f} s, R-hat max {out['rhat_max']:.4f}, ESS bulk min "
          f"{out['ess_bulk_min']:.0f}, reliable {out['reliable']} {out['reasons']} -> {path}", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(zm.ORDER), choices=list(zm.ORDER))
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target-accept", type=float, default=None, help="NUTS target acceptance (default 0.8)")
    ap.add_argument("--note", default="", help="a remark stored in the JSON (e.g. why draws were reduced)")
    ap.add_argument("--out-dir", default=str(OUT))
    ap.add_argument("--no-twin", action="store_true", help="never run the non-centred twin")
    ap.add_argument("--with-twin", action="store_true",
                    help="run the twin also where NUTS as written is reliable; its draws are the reference "
                         "when they are reliable with a larger bulk ESS (the gap between the two is stored)")
    ap.add_argument("--previous", default=None, help="an earlier JSON of the same model: report the moment differences")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.models:
        run_model(name, args)


if __name__ == "__main__":
    main()
