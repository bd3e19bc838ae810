"""Seconds per log-density row (value and gradient, float64) of one posterior through each route
freeflow has to it, side by side in one run, one thread:

    python benchmarks/pymc_backends.py      # -> results/pymc_backends.json, a markdown table on stdout

Routes: the model written in torch (``posterior_models.torch_posterior``), in NumPyro
(``from_numpyro``: jit + vmap; "numpyro-float32": on float32 batches in float32), and in PyMC through each ``from_pymc`` backend ("jax": PyTensor's
JAX backend, jit + vmap; "pytensor": the vectorised graph compiled by PyTensor's C backend;
"rows": PyMC's one-point functions, row by row, on a 64-row batch only), "pymc:jax-float32": the JAX route on float32 batches in float32 (``freeflow.bayes.precision``;
what a float32 sampler gets where the probe after its Gaussian stage allows it), and "pymc:jax-as-written":
the JAX route without the exact simplifications of ``freeflow.bayes.pymc_rewrites``). A row is one call of
``posterior.log_density`` on an (n, d) float64 batch followed by its gradient through torch's
autograd, as training and the checks call it; the median of 7 timed calls after one warm call,
divided by n; also the value alone (no gradient), as the verdict's coordinate moves call it. The models: the posterior-cost models (``posterior_models.MODELS``)."""
from __future__ import annotations

import os

for _k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
import posterior_models as models  # noqa: E402

import freeflow as ff  # noqa: E402

ROUTES = ("torch", "numpyro", "numpyro-float32", "pymc:jax", "pymc:jax-float32", "pymc:jax-as-written", "pymc:pytensor", "pymc:rows")


def per_row_seconds(post, n: int, reps: int = 7, seed: int = 0, grad: bool = True,
                    dtype: torch.dtype = torch.float64) -> float:
    z = torch.from_numpy(np.random.default_rng(seed).normal(scale=0.3, size=(n, post.dim))).to(dtype)

    def call():
        if not grad:
            with torch.no_grad():
                return post.log_density(z)
        zz = z.clone().requires_grad_(True)
        torch.autograd.grad(post.log_density(zz).sum(), zz)
    call()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / n


def build(route: str, name: str):
    if route == "torch":
        return models.torch_posterior(name)
    if route == "numpyro":
        return models.numpyro_posterior(name)
    if route == "numpyro-float32":   # NumPyro's float32 log-density (freeflow.bayes.numpyro_single)
        post = models.numpyro_posterior(name)
        post.use_single_precision(decided=True)
        return post
    if route == "pymc:jax-float32":   # float32 batches in float32 (what a float32 sampler gets where
        post = ff.from_pymc(models.pymc_posterior(name).model, backend="jax")   # the probe allows it)
        post.use_single_precision(decided=True)
        return post
    if route == "pymc:jax-as-written":   # the JAX route without freeflow.bayes.pymc_rewrites
        from freeflow.bayes.pymc_jax import jax_value_and_grad
        post = ff.from_pymc(models.pymc_posterior(name).model, backend="jax")
        post._jax = jax_value_and_grad(post.model, post._values, post._sizes, post._raw_shapes, simplify=False)
        return post
    return ff.from_pymc(models.pymc_posterior(name).model, backend=route.split(":")[1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(models.MODELS))
    ap.add_argument("--rows", nargs="+", type=int, default=[1024, 4096])
    ap.add_argument("--name", default="pymc_backends")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)   # PyTensor's "could not link to a BLAS installation"
    rows = []
    for name in args.models:
        for route in ROUTES:
            t0 = time.perf_counter()
            post = build(route, name)
            row = {"model": name, "dim": post.dim, "route": route, "build_s": time.perf_counter() - t0,
                   "backend": getattr(post, "backend", None)}
            for n in ([64] if route == "pymc:rows" else args.rows):
                dtype = torch.float32 if route.endswith("float32") else torch.float64
                row[f"us_per_row_{n}"] = 1e6 * per_row_seconds(post, n, dtype=dtype)
                row[f"us_per_value_row_{n}"] = 1e6 * per_row_seconds(post, n, grad=False, dtype=dtype)
            rows.append(row)
            print(name, route, {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    write_result(args.name, {"rows_sizes": args.rows, "rows": rows})
    print(table(rows, args.rows))


def table(rows: list, sizes: list) -> str:
    n = max(sizes)
    head = f"| posterior (dim) | {' | '.join(ROUTES)} |\n|---|" + "---|" * len(ROUTES)
    lines = [head]
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = {r["route"]: r for r in rows if r["model"] == name}
        cells = [_cell(rs[k], n) if k in rs else "—" for k in ROUTES]
        lines.append(f"| {name} ({rs[ROUTES[0]]['dim']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n(µs per row: value and gradient / value alone, batches of {n} rows; pymc:rows on 64 rows)"


def _cell(row: dict, n: int) -> str:
    size = n if f"us_per_row_{n}" in row else 64
    vg, v = row[f"us_per_row_{size}"], row.get(f"us_per_value_row_{size}")
    return f"{vg:.1f}" if v is None else f"{vg:.1f} / {v:.1f}"


if __name__ == "__main__":
    main()
