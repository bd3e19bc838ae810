"""Ablation: the RealNVP coupling masks, fixed parity (before) against complementary random
partitions (``freeflow.density.flow.coupling_masks``, the default now), with ``fit()`` defaults.

    python benchmarks/coupling_masks.py                         # -> results/coupling_masks.json
    python benchmarks/coupling_masks.py --models funnel10 --seeds 0 1 2 --out results/coupling_masks_funnel.json

Models: ``hier_logreg`` (56-D; the model the change was made for) and the held-out
``val_hier_linreg`` (79-D; built afterwards, never run while choosing the masks), both through
the hand-written ``ff.Posterior`` route of ``benchmarks/posterior_models.py`` against
JAX-native blackjax NUTS (4 chains × 1000 warm-up + 2000 draws) on the NumPyro version; and
``funnel10`` (``targets``) against exact draws.  Per model, masks and seed: steps that ``fit()``
took, the verdict, the importance ESS fraction and Pareto k̂ (10⁵ fresh draws), and the largest
|mean| / |sd| error of the constrained scalars in reference-sd units (raw draws).  The parity
masks are the ones ``build_flow`` used before (mask_j = (j + i) mod 2); the ablation patches
``coupling_masks`` for those rows only.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine  # noqa: E402
import posterior_cost as pc  # noqa: E402
import posterior_models as models  # noqa: E402

import freeflow as ff  # noqa: E402
import freeflow.density.flow as flow_module  # noqa: E402
from freeflow import importance as iw  # noqa: E402
from freeflow.io import atomic_write_json  # noqa: E402

RANDOM_MASKS = flow_module.coupling_masks


def parity_masks(dim: int, layers: int) -> list[torch.Tensor]:
    """The masks before: coordinate j conditions layer i when (j + i) is odd."""
    return [torch.tensor([(j + i) % 2 for j in range(dim)], dtype=torch.float32) for i in range(layers)]


MASKS = {"parity": parity_masks, "random": RANDOM_MASKS}


def reference(name: str, args):
    """(posterior, {name: (means, sds)}) of the reference draws."""
    if name == "funnel10":
        import targets

        t = targets.get_target(name)
        x = t.sample(200_000, torch.Generator().manual_seed(0)).double()
        return t, {"x": (x.mean(0).numpy(), x.std(0).numpy())}
    npost = models.numpyro_posterior(name)
    _, z = pc.run_nuts(npost, args, draws=args.draws, warmup=args.warmup, label="jax")
    return models.torch_posterior(name), pc._scalars(npost, z)


def run(post, ref: dict, masks: str, seed: int) -> dict:
    flow_module.coupling_masks = MASKS[masks]
    try:
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        s = ff.OneStepSampler(post, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ff.ReliabilityWarning)
            s.fit(progress=False)
        fit_s = time.perf_counter() - t0
    finally:
        flow_module.coupling_masks = RANDOM_MASKS
    z, lw = s.importance_weights(100_000, seed=seed + 100, constrained=False)
    fin = torch.isfinite(lw)
    if isinstance(post, ff.Posterior):
        est = pc._scalars(post, z)
    else:
        zd = z.double()
        est = {"x": (zd.mean(0).numpy(), zd.std(0).numpy())}
    acc = pc._errors(est, ref)
    rel = s.last_reliability
    return {"masks": masks, "seed": seed, "steps": s.steps_done, "fit_s": fit_s,
            "trusted": rel.trusted, "verdict": rel.verdict,
            "is_ess_fraction": float(iw.reverse_ess(lw[fin])), "pareto_khat": float(iw.pareto_k(lw[fin])),
            "mean_err_max": acc["mean_err_max"], "sd_err_max": acc["sd_err_max"],
            "mean_err_at": acc["mean_err_at"], "sd_err_at": acc["sd_err_at"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["hier_logreg", "val_hier_linreg"],
                   choices=["hier_logreg", "val_hier_linreg", "funnel10"])
    p.add_argument("--masks", nargs="+", default=["parity", "random"], choices=list(MASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--out", default=None, help="default: results/coupling_masks.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else RESULTS / "coupling_masks.json"
    payload = {"command": " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
               "rows": []}
    for name in args.models:
        post, ref = reference(name, args)
        for masks in args.masks:
            for seed in args.seeds:
                row = {"model": name, **run(post, ref, masks, seed)}
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "verdict"},
                      flush=True)
                payload["rows"].append(row)
                payload["machine"] = machine()
                atomic_write_json(pc._plain(payload), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
