"""The image pipeline on scikit-learn's 8x8 digits (issue 12 part 2): quality, throughput, drift cost.

    python benchmarks/images_digits.py quality            # -> results/images_digits_quality.json
    python benchmarks/images_digits.py quality --shard 0/2 --name images_digits_quality_s0   # halves
    python benchmarks/images_digits.py merge images_digits_quality_s0 images_digits_quality_s1
    python benchmarks/images_digits.py throughput         # -> results/images_digits_throughput.json
    python benchmarks/images_digits.py drift-cost         # -> results/images_digits_drift_cost.json

quality: the shipped ``configs/digits.toml`` (DiT-tiny/2 in pixel space, class-conditional,
one step), trained with the Sinkhorn drift (the config's) and with the drifting-kernel velocity
at the same budget (same steps, batch and optimiser: only ``drift.velocity`` differs), seeds
0, 1, 2.  Each run is evaluated at several guidance scales on n = 1000 conditional samples (100
per class): held-out classifier accuracy (a classifier trained on the train split, its own
accuracy on the test split reported beside it) and the Fréchet distance in the digits feature
space (a small net trained on the train split) against the test split, beside its real-vs-real
floor (1000 train images against the same test split).  Medians over the three seeds.

throughput: images/s of training (generated images per second) with 1 and 2 DDP processes
(torchrun, gloo, one thread each) at the same global batch, from the per-step times in
log.jsonl (median after warm-up).

drift-cost: seconds per training step and per drift evaluation for the Sinkhorn and the drifting
kernel velocities at the same batch, interleaved, medians; at the digits shape and at a latent
shape (4×32×32, the SD-VAE latent of a 256² image) with DiT-tiny/2.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, write_result  # noqa: E402

from freeflow.images.config import load_config  # noqa: E402
from freeflow.images.sample import evaluate_digits, generate, save_grid  # noqa: E402
from freeflow.images.train import ImageRun, load_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench_digits"
FIGURES = ROOT / "docs" / "figures"


# -- quality ----------------------------------------------------------------------------------
def train_run(velocity: str, seed: int, steps: int | None) -> Path:
    out = RUNS / (f"{velocity}_seed{seed}" + ("" if steps is None else f"_steps{steps}"))
    over = {"drift.velocity": velocity, "train.seed": seed}
    if steps is not None:
        over["train.steps"] = steps
    cfg = load_config("digits", over)
    ck = out / "checkpoint.pt"
    if ck.exists() and load_run(out).steps == cfg.train.steps:
        return out                                           # finished earlier: reuse
    t0 = time.perf_counter()
    ImageRun(cfg).fit(out, resume=ck.exists(), progress=False)
    (out / "fit_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    return out


def quality(args) -> None:
    from freeflow.images.metrics import DigitsEvaluator

    torch.set_num_threads(args.threads)
    ev = DigitsEvaluator.build(cache_dir=RUNS / "evaluator", seed=0)
    x_test, y_test = _test_split()
    reference = {"classifier_test_accuracy": float(ev.accuracy(x_test, y_test)),
                 "fid_real_floor_n1000": float(ev.real_floor(args.n, seed=0))}
    grid = [(v, s) for v in args.velocities for s in args.seeds][args.shard_index::args.shard_count]
    cells = []
    for v, s in grid:
        out = train_run(v, s, args.steps)
        run = load_run(out)
        fit_s = float((out / "fit_seconds.txt").read_text()) if (out / "fit_seconds.txt").exists() else None
        for g in args.guidance:
            m = evaluate_digits(run.generator, n=args.n, guidance=g, seed=1000 + s, evaluator=ev)
            cells.append({"velocity": v, "seed": s, "steps": run.steps, "fit_s": fit_s, **m})
            print(f"{v} seed {s} guidance {g}: accuracy {m['accuracy']:.3f} FD {m['fid']:.2f} "
                  f"(floor {m['fid_real_floor']:.2f})", flush=True)
        write_result(args.name, {"reference": reference, "cells": cells, "summary": summarize(cells)})


def _test_split():
    from freeflow.images.data import load_digits_images

    return load_digits_images("test", seed=0)


def summarize(cells) -> dict:
    out: dict = {}
    for c in cells:
        out.setdefault(c["velocity"], {}).setdefault(str(c["guidance"]), []).append(c)
    return {v: {g: {"median_accuracy": statistics.median(c["accuracy"] for c in cs),
                    "accuracy_per_seed": [round(c["accuracy"], 4) for c in cs],
                    "median_fid": statistics.median(c["fid"] for c in cs),
                    "fid_per_seed": [round(c["fid"], 3) for c in cs],
                    "median_fid_real_floor": statistics.median(c["fid_real_floor"] for c in cs),
                    "median_fit_s": statistics.median(c["fit_s"] for c in cs if c["fit_s"] is not None)
                    if any(c["fit_s"] is not None for c in cs) else None,
                    "seeds": [c["seed"] for c in cs]} for g, cs in by.items()} for v, by in out.items()}


def merge(args) -> None:
    parts = [json.loads((RESULTS / f"{n}.json").read_text()) for n in args.parts]
    cells = [c for p in parts for c in p["cells"]]
    write_result(args.name, {"reference": parts[0]["reference"], "shards": {n: p["machine"] for n, p in
                                                                          zip(args.parts, parts)},
                             "cells": cells, "summary": summarize(cells)})
    s = summarize(cells)
    best = min(s["sinkhorn"], key=lambda g: s["sinkhorn"][g]["median_fid"]) if "sinkhorn" in s else None
    if best is not None:
        run = load_run(RUNS / "sinkhorn_seed0")
        x = generate(run.generator, torch.arange(100) // 10, guidance=float(best), seed=0, shape=(1, 8, 8))
        x = x.view(10, 10, 1, 8, 8).transpose(0, 1).reshape(100, 1, 8, 8)  # rows: one sample of each class
        save_grid(x, FIGURES / "images_digits_grid.png", nrow=10, upscale=4)
        print(f"wrote {FIGURES / 'images_digits_grid.png'} (guidance {best})")


# -- throughput -------------------------------------------------------------------------------
def _torchrun_steps(nproc: int, steps: int, out: Path, gen_per_class: int) -> list[float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "freeflow.images.train", "--config", "digits", "--out", str(out), "--no-progress",
           f"--set=train.steps={steps}", f"--set=train.checkpoint_every={steps}",
           f"--set=drift.gen_per_class={gen_per_class}"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return [json.loads(line)["seconds"] for line in open(out / "log.jsonl")]


def throughput(args) -> None:
    cfg = load_config("digits")
    tables = {}
    for gpc in args.gen_per_class:
        per_step = cfg.drift.classes_per_step * gpc
        rows = {}
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.repeats):
                for nproc in (1, 2):
                    secs = _torchrun_steps(nproc, args.steps, Path(tmp) / f"p{nproc}_{rep}", gpc)[args.warmup:]
                    rows.setdefault(nproc, []).append(statistics.median(secs))
        table = {str(k): {"median_step_s": statistics.median(v), "per_repeat_step_s": v,
                          "images_per_s": per_step / statistics.median(v)} for k, v in rows.items()}
        table["speedup_2_over_1"] = table["1"]["median_step_s"] / table["2"]["median_step_s"]
        table["global_batch_images"] = per_step
        tables[f"gen_per_class={gpc}"] = table
        print(gpc, json.dumps(table, indent=1), flush=True)
    write_result(args.name, {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "tables": tables})


# -- drift cost -------------------------------------------------------------------------------
SHAPES = {"digits": {}, "latent4x32x32": {"model.input_size": 32, "model.in_channels": 4,
                                          "drift.classes_per_step": 4, "drift.patch_sizes": [8],
                                          "drift.pool_sizes": [4], "drift.stat_sizes": [8]}}


def drift_cost(args) -> None:
    torch.set_num_threads(args.threads)
    out = {}
    for shape, over in SHAPES.items():
        runs = {}
        for v in ("sinkhorn", "drifting"):
            cfg = load_config("digits", {**over, "drift.velocity": v})
            shp = (cfg.model.in_channels, cfg.model.input_size, cfg.model.input_size)
            data = (torch.randn(500, *shp).clamp(-1, 1), torch.arange(500) % 10) if shape != "digits" else None
            runs[v] = ImageRun(cfg, data=data)
        times = {v: {"step": [], "drift": []} for v in runs}
        for rep in range(args.warmup + args.repeats):
            for v, r in runs.items():                   # interleaved: same machine state for both
                t0 = time.perf_counter()
                r.state, _ = r.trainer.step(r.state)
                t1 = time.perf_counter()
                with torch.no_grad():
                    r.drift(r.generator, rep, torch.Generator().manual_seed(rep))
                t2 = time.perf_counter()
                if rep >= args.warmup:
                    times[v]["step"].append(t1 - t0)
                    times[v]["drift"].append(t2 - t1)
        med = {v: {k: statistics.median(t) for k, t in tt.items()} for v, tt in times.items()}
        out[shape] = {"median_s": med,
                      "ratio_step_sinkhorn_over_drifting": med["sinkhorn"]["step"] / med["drifting"]["step"],
                      "ratio_drift_sinkhorn_over_drifting": med["sinkhorn"]["drift"] / med["drifting"]["drift"],
                      "batch": {"classes": runs["sinkhorn"].drift.classes_per_step,
                                "gen_per_class": runs["sinkhorn"].drift.gen_per_class,
                                "real_per_class": runs["sinkhorn"].drift.real_per_class}}
        print(shape, json.dumps(out[shape], indent=1), flush=True)
    write_result(args.name, {"threads": args.threads, "repeats": args.repeats, "table": out})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--velocities", nargs="+", default=["sinkhorn", "drifting"])
    q.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    q.add_argument("--steps", type=int, default=None, help="default: the config's")
    q.add_argument("--guidance", nargs="+", type=float, default=[1.0, 1.25, 1.5, 2.0])
    q.add_argument("--n", type=int, default=1000)
    q.add_argument("--threads", type=int, default=1)
    q.add_argument("--shard", default="0/1")
    q.add_argument("--name", default="images_digits_quality")
    m = sub.add_parser("merge")
    m.add_argument("parts", nargs="+")
    m.add_argument("--name", default="images_digits_quality")
    t = sub.add_parser("throughput")
    t.add_argument("--steps", type=int, default=40)
    t.add_argument("--warmup", type=int, default=5)
    t.add_argument("--repeats", type=int, default=2)
    t.add_argument("--gen-per-class", type=int, nargs="+", default=[32, 128],
                   help="generated images per class per step (32: the digits config)")
    t.add_argument("--name", default="images_digits_throughput")
    d = sub.add_parser("drift-cost")
    d.add_argument("--repeats", type=int, default=15)
    d.add_argument("--warmup", type=int, default=3)
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--name", default="images_digits_drift_cost")
    args = p.parse_args(argv)
    if args.cmd == "quality":
        args.shard_index, args.shard_count = (int(v) for v in args.shard.split("/"))
        quality(args)
    elif args.cmd == "merge":
        merge(args)
    elif args.cmd == "throughput":
        throughput(args)
    else:
        drift_cost(args)


if __name__ == "__main__":
    main()
