"""Which coordinates the sampler trains in: the Gaussian stage in a zoo model as written and in
its non-centred twin (freeflow.bayes.reparam), the two measures the choice uses (the stage's
ELBO, the Pareto k̂ of the stage Gaussian's importance weights on 4000 common draws) and the
decision (freeflow.datafree.space.better), per model and stage seed. Stage only, no training:
the fits themselves are in posteriors_zoo.py's results ("coordinates" per row).

    OMP_NUM_THREADS=1 python benchmarks/twin_choice.py [--models ...] [--seeds 0 1 2]
        -> benchmarks/results/twin_choice.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import zoo_models as zm  # noqa: E402
from freeflow.datafree import space  # noqa: E402
from freeflow.datafree.gaussian_stage import stage_for_sampler  # noqa: E402

MODELS = ("eight_schools_centered", "funnel10", "radon_funnel", "poisson_hier", "radon", "radon85",
          "horseshoe_logreg", "radon_slopes", "random_walk_missing")
OUT = Path(__file__).resolve().parent / "results" / "twin_choice.json"


def one(name: str, seed: int) -> dict:
    post = zm.posterior(name)
    twins = post.reparametrizations()
    row = {"model": name, "seed": seed, "dim": post.dim, "twin_label": twins[0].label if twins else None}
    for label, ld in [("as_written", post.log_density)] + [("twin", t.posterior.log_density) for t in twins]:
        t0 = time.perf_counter()
        fit, _ = stage_for_sampler(ld, post.dim, mode="auto", seed=seed)
        row[label] = {"elbo": float(fit.elbo), "khat": space.gaussian_khat(ld, fit, seed),
                      "seconds": time.perf_counter() - t0}
    if twins:
        a, b = row["as_written"], row["twin"]
        row["chosen"] = "twin" if space.better(b["elbo"], b["khat"], a["elbo"], a["khat"]) else "as written"
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.models:
        for seed in args.seeds:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = one(name, seed)
            rows.append(r)
            if r["twin_label"] is None:
                print(f"{name:24s} seed {seed}: no twin", flush=True)
                continue
            a, b = r["as_written"], r["twin"]
            print(f"{name:24s} seed {seed}: as written ELBO {a['elbo']:9.2f} k̂ {a['khat']:5.2f} | "
                  f"{r['twin_label']}: ELBO {b['elbo']:9.2f} k̂ {b['khat']:5.2f} -> {r['chosen']}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"rule": {"margin_nats": space.MARGIN, "khat_gap": space.KHAT_GAP,
                                        "khat_draws": space.KHAT_DRAWS}, "rows": rows}, indent=1))
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
