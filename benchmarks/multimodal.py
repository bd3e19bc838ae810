"""Where NUTS cannot go: label switching in Gaussian mixtures, nutpie (4 chains) against freeflow defaults.

    pip install -e .[bench]                                     # nutpie
    python benchmarks/multimodal.py                             # all cases, seeds 0 1 2 -> results/multimodal.json
    python benchmarks/multimodal.py --quick --cases k2          # smoke run -> results/multimodal_quick.json
    python benchmarks/multimodal.py --table benchmarks/results/multimodal.json   # the table of docs/multimodal.md

The model (PyMC): y_i ~ sum_k w_k N(mu_k, 1), i = 1..200, weights w FIXED, mu_k ~ N(0, 5²) iid and
UNORDERED (no ordering constraint, no label fixing), so the posterior has one mode per labelling
of the components: K! modes, separated by barriers of hundreds of nats (the data's clusters are
4 sd apart).  Data: 200 points from the equal-weight mixture of N(4 (k − (K − 1)/2), 1), k < K,
simulated with a fixed seed per K.

Cases and the truth they are compared with (the statistic: P(mu_0 is the smallest of the mu_k)):

* ``k2``, ``k3``, ``k5``: K = 2, 3, 5 and equal weights 1/K.  Prior and likelihood are
  invariant under permuting the labels, so every labelling has the same posterior mass and
  P(mu_0 smallest) = 1/K EXACTLY (0.5, 1/3, 0.2).  (k2 is also integrated numerically, below.)
* ``k2_unequal``: the k2 data, model weights fixed at (0.7, 0.3).  Swapping the labels is no
  longer a symmetry: the labelling that puts the 0.7 component on the bigger cluster has more
  mass.  (Equal mass would need data symmetric under y -> −y, which these are not.)  The truth
  is computed: the posterior is 2-D, so P(mu_0 < mu_1) is integrated on a midpoint grid over
  [−8, 8]² (spacing 0.02 and 0.04, both given; the modes' sds are ~0.1, the box holds all
  their mass); it is not 1/2.

nutpie: ``compile_pymc_model`` + ``sample(chains=4, cores=1)`` (default initialisation).  Its
estimate pools the 4 chains' draws; its own diagnostics: max R-hat (rank-normalised, > 1.01
flags), min bulk ESS (< 400 flags), divergences (> 0 flags).
freeflow: ``OneStepSampler(ff.from_pymc(model), seed=s).fit()`` with the defaults; estimates
from n raw draws (``sample``) and importance-weighted (self-normalised; its standard error
from the weights); its own diagnostic: the verdict (``last_reliability.trusted``).
An estimate is RIGHT when within TOL = 0.05 of the truth.  Outcomes: right / right, flagged /
wrong, flagged / WRONG, NOT FLAGGED.  Single thread for both (see vs_nutpie.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_nutpie as vn  # noqa: E402  (first: it sets the one-thread environment before numpy is imported)

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import RESULTS, machine  # noqa: E402
from posterior_cost import _plain  # noqa: E402

import freeflow as ff  # noqa: E402
from freeflow.io import atomic_write_json  # noqa: E402

CASES = {"k2": (2, (0.5, 0.5)), "k3": (3, (1 / 3,) * 3), "k5": (5, (0.2,) * 5), "k2_unequal": (2, (0.7, 0.3))}
N_DATA, SEP, PRIOR_SD, TOL = 200, 4.0, 5.0, 0.05
RHAT_MAX, ESS_MIN = 1.01, 400


def data(k: int, seed: int = 20261206) -> np.ndarray:
    """200 points from the equal-weight mixture of N(SEP (j − (k − 1)/2), 1), j < k."""
    rng = np.random.default_rng(seed + k)
    means = SEP * (np.arange(k) - (k - 1) / 2)
    return means[rng.integers(0, k, size=N_DATA)] + rng.normal(size=N_DATA)


def pymc_model(case: str):
    import pymc as pm

    k, w = CASES[case]
    with pm.Model(name="") as model:
        mu = pm.Normal("mu", 0.0, PRIOR_SD, shape=k)
        pm.NormalMixture("y", w=np.array(w), mu=mu, sigma=1.0, observed=data(k))
    return model


def quadrature_p_first_smaller(w, y, h: float, lim: float = 8.0) -> float:
    """P(mu_0 < mu_1) of the 2-component model, midpoint rule on [−lim, lim]² with spacing h."""
    g = np.arange(-lim, lim, h) + h / 2
    m0, m1 = (a.ravel() for a in np.meshgrid(g, g, indexing="ij"))
    lp = np.empty(m0.size)
    for s in range(0, m0.size, 8192):
        a, b = m0[s:s + 8192, None], m1[s:s + 8192, None]
        lp[s:s + 8192] = (-0.5 * (a[:, 0] ** 2 + b[:, 0] ** 2) / PRIOR_SD**2
                          + np.logaddexp(math.log(w[0]) - 0.5 * (y - a) ** 2, math.log(w[1]) - 0.5 * (y - b) ** 2).sum(1))
    p = np.exp(lp - lp.max())
    return float(p[m0 < m1].sum() / p.sum())


def truth(case: str) -> dict:
    k, w = CASES[case]
    out = {"statistic": "P(mu_0 is the smallest)", "orderings": math.factorial(k)}
    if len(set(w)) == 1:
        out.update(value=1.0 / k, how="symmetry: equal weights and exchangeable prior, every labelling has "
                                      "equal mass, P = 1/K exactly")
    if k == 2:
        t0 = time.perf_counter()
        fine, coarse = (quadrature_p_first_smaller(w, data(k), h) for h in (0.02, 0.04))
        out["quadrature"] = {"h=0.02": fine, "h=0.04": coarse, "box": [-8, 8], "seconds": time.perf_counter() - t0}
        if "value" not in out:
            out.update(value=fine, how="2-D midpoint quadrature on [-8, 8]^2, spacing 0.02 (0.04 agrees to "
                                       f"{abs(fine - coarse):.1e})")
    return out


def _orderings(mu: np.ndarray) -> dict[str, float]:
    """Fraction of draws (n, K) in each ordering of the mu_k (key: labels from smallest up)."""
    keys, counts = np.unique(np.argsort(mu, axis=1), axis=0, return_counts=True)
    return {"".join(map(str, key)): c / len(mu) for key, c in sorted(zip(keys.tolist(), counts), key=lambda t: -t[1])}


def _outcome(est: float, true: float, flagged: bool) -> str:
    right = abs(est - true) < TOL
    return ("right, flagged" if flagged else "right") if right else ("wrong, flagged" if flagged else "WRONG, NOT FLAGGED")


def run_nutpie_case(compiled, compile_s: float, seed: int, args, true: float) -> dict:
    row, idata = vn.run_nutpie(compiled, compile_s=compile_s, draws=args.draws, tune=args.tune,
                               chains=args.chains, seed=seed)
    mu = idata.posterior["mu"].values                                     # (chains, draws, K)
    per_chain = [float((np.argmin(c, 1) == 0).mean()) for c in mu]
    est = float(np.mean(per_chain))
    reasons = ([f"R-hat {row['rhat_max']:.3g} > {RHAT_MAX}"] if row["rhat_max"] > RHAT_MAX else []) + (
        [f"min bulk ESS {row['ess_bulk_min']:.0f} < {ESS_MIN}"] if row["ess_bulk_min"] < ESS_MIN else []) + (
        [f"{row['divergences']} divergences"] if row["divergences"] > 0 else [])
    row.update(estimate=est, per_chain=per_chain, chain_orderings=[next(iter(_orderings(c))) for c in mu],
               orderings=_orderings(mu.reshape(-1, mu.shape[-1])), flagged=bool(reasons), flag_reasons=reasons,
               outcome=_outcome(est, true, bool(reasons)))
    return row


def run_freeflow_case(post, seed: int, n: int, true: float) -> dict:
    s, row = vn.fit_freeflow(post, seed)
    raw = s.sample(n, seed=seed + 101)["mu"].double().numpy()
    x, lw = s.importance_weights(n, seed=seed + 100)
    w = torch.softmax(lw.double().masked_fill(~torch.isfinite(lw), -math.inf), 0).numpy()
    hit = (np.argmin(x["mu"].double().numpy(), 1) == 0).astype(np.float64)
    est_w = float((w * hit).sum())
    summ = s.importance_summary(n, seed=seed + 100)
    est_raw = float((np.argmin(raw, 1) == 0).mean())
    flagged = row["trusted"] is not True
    row.update(n=n, estimate_raw=est_raw, estimate_weighted=est_w,
               estimate_weighted_se=float(np.sqrt((w**2 * (hit - est_w) ** 2).sum())),
               orderings_raw=_orderings(raw), is_ess_fraction=float(summ.ess_fraction), pareto_khat=summ.pareto_k,
               log_z=summ.log_normalizer, flagged=flagged,
               outcome_raw=_outcome(est_raw, true, flagged), outcome_weighted=_outcome(est_w, true, flagged))
    return row


def run_case(case: str, args) -> dict:
    nutpie = vn.import_nutpie()
    tr = truth(case)
    model = pymc_model(case)
    t0 = time.perf_counter()
    post = ff.from_pymc(model, name=f"pymc:gmm_{case}")
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    compile_s = time.perf_counter() - t0
    print(f"[{case}] truth {tr['statistic']} = {tr['value']:.4f} ({tr['how']}); from_pymc {build_s:.1f} s, "
          f"nutpie compile {compile_s:.1f} s", flush=True)
    rec = {"case": case, "K": CASES[case][0], "weights": list(CASES[case][1]), "dim": post.dim, "truth": tr,
           "freeflow_build_s": build_s, "nutpie_compile_s": compile_s, "seeds": []}
    for seed in args.seeds:
        nrow = run_nutpie_case(compiled, compile_s, seed, args, tr["value"])
        print(f"[{case}] nutpie seed {seed}: estimate {nrow['estimate']:.3f} (chains {nrow['per_chain']}), "
              f"R-hat {nrow['rhat_max']:.3g}, ESS {nrow['ess_bulk_min']:.0f} -> {nrow['outcome']}", flush=True)
        frow = run_freeflow_case(post, seed, args.n, tr["value"])
        print(f"[{case}] freeflow seed {seed}: {frow['steps']} steps, {frow['training_s']:.0f} s; raw "
              f"{frow['estimate_raw']:.3f}, weighted {frow['estimate_weighted']:.3f} ± "
              f"{frow['estimate_weighted_se']:.3f}; {len(frow['orderings_raw'])} orderings in raw draws; "
              f"{frow['verdict']} -> {frow['outcome_raw']} (raw) / {frow['outcome_weighted']} (weighted)", flush=True)
        rec["seeds"].append({"seed": seed, "nutpie": nrow, "freeflow": frow})
    return rec


def command(case: str) -> str:
    return f"python benchmarks/multimodal.py --cases {case} --out benchmarks/results/multimodal_{case}.json"


def table(payloads: list[dict]) -> str:
    """The table of docs/multimodal.md (one row per case and seed; 'pending' for cases not run)."""
    head = ("| case | truth P(μ₀ smallest) | seed | nutpie estimate (per-chain) | nutpie R-hat / min ESS "
            "| nutpie outcome | freeflow raw / weighted ± se | freeflow verdict | freeflow outcome (raw / weighted) "
            "| run |")
    lines = [head, "|" + "---|" * 10]
    done = {m["case"]: (m, p) for p in payloads for m in p["models"]}
    for case, (k, w) in CASES.items():
        if case not in done:
            lines.append(f"| {case} (K={k}, w={'/'.join(f'{x:.2g}' for x in w)}) | | | pending | | | pending | | "
                         f"| `{command(case)}` |")
            continue
        m, p = done[case]
        for r in m["seeds"]:
            nu, fr = r["nutpie"], r["freeflow"]
            chains = ", ".join(f"{c:.2f}" for c in nu["per_chain"])
            lines.append(
                f"| {case} (K={k}, w={'/'.join(f'{x:.2g}' for x in w)}) | {m['truth']['value']:.4f} | {r['seed']} "
                f"| {nu['estimate']:.3f} ({chains}) | {nu['rhat_max']:.3g} / {nu['ess_bulk_min']:.0f} | {nu['outcome']} "
                f"| {fr['estimate_raw']:.3f} / {fr['estimate_weighted']:.3f} ± {fr['estimate_weighted_se']:.3f} "
                f"| {'trusted' if fr['trusted'] else 'not trusted'} | {fr['outcome_raw']} / {fr['outcome_weighted']} "
                f"| `{p['command']}` |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000, help="nutpie draws per chain after tuning")
    p.add_argument("--n", type=int, default=100_000, help="freeflow draws (raw and importance-weighted)")
    p.add_argument("--quick", action="store_true", help="smoke run: first seed, 300 tune + 300 draws, n = 20000")
    p.add_argument("--out", default=None, help="default: results/multimodal.json (--quick: multimodal_quick.json)")
    p.add_argument("--table", nargs="+", default=None, metavar="FILE", help="print the table of results files")
    args = p.parse_args(argv)
    if args.table:
        import json

        print(table([json.loads(Path(f).read_text()) for f in args.table]))
        return
    vn.import_nutpie()
    if args.quick:
        args.seeds, args.tune, args.draws, args.n = args.seeds[:1], 300, 300, min(args.n, 20_000)
    torch.set_num_threads(1)
    out = Path(args.out) if args.out else RESULTS / ("multimodal_quick.json" if args.quick else "multimodal.json")
    payload = {"config": {k: v for k, v in vars(args).items() if k not in ("out", "table")},
               "env": {k: os.environ.get(k) for k in vn.ONE_THREAD}, "versions": vn.versions(),
               "notes": [f"statistic P(mu_0 is the smallest); an estimate is right within {TOL} of the truth",
                         f"nutpie flags: R-hat > {RHAT_MAX}, min bulk ESS < {ESS_MIN}, divergences > 0; "
                         "freeflow flags: verdict not trusted",
                         "nutpie estimate pools its chains; freeflow raw = sample(n), weighted = self-normalised "
                         "importance weights (se from the weights)"],
               "models": []}
    t_all = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ff.ReliabilityWarning)
        for case in args.cases:
            payload["models"].append(run_case(case, args))
            payload.update(machine=machine(), wall_s=time.perf_counter() - t_all,
                           command=" ".join(["python", Path(sys.argv[0]).as_posix(),
                                             *(argv if argv is not None else sys.argv[1:])]))
            atomic_write_json(_plain(payload), out)
    print(table([payload]))
    print(f"wrote {out} ({payload['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
