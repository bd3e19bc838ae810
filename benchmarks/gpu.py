"""Speed and memory of the data-free core and of the DiT step, on the CPU and (where present) a GPU.

Per device (``cpu``, and ``cuda`` where ``torch.cuda.is_available()``) and standard target
(targets/: Many Well d = 32/128/512, funnel 10-D, the 25-mode grid, the pines LGCP 1600-D), in
one script so that the two devices are measured the same way:

* steps per second of ``OneStepSampler(target, device=dev).fit(steps)`` (defaults otherwise;
  the Gaussian stage excluded, it is timed apart as ``gaussian_stage_seconds``);
* peak memory: on a GPU ``torch.cuda.max_memory_allocated`` over the fit; on the CPU the
  process's peak resident set size after the fit (``ru_maxrss``, cumulative over the run, so an
  upper bound for the target measured, not its own figure);
* log Ẑ ± se from ``n`` importance samples after the fit (a short fit: this is the pipeline's
  log Ẑ at that length, not the converged number of benchmarks/standard.py), and its error
  against the known log Z (the LGCP: the reference 501.806).

The DiT: one training step (forward, MSE to a fixed target, backward, Adam) of DiT-B/2 at the
published shape (batch 256 of 32×32×4 SD-VAE latents, 1000 classes) on a GPU, with and without
activation checkpointing (``DiTConfig.activation_checkpointing``): step time and peak memory.
On the CPU a tiny DiT (hidden 64, depth 4, batch 16) stands in, timing the same code path.

    python benchmarks/gpu.py --quick        # CPU in a few minutes: 30 steps, 2000 IS samples
    python benchmarks/gpu.py                # 200 steps, 20 000 IS samples per target and device

Writes results/gpu.json (``results/gpu_quick.json`` with ``--quick``) with the machine named.
"""
from __future__ import annotations

import argparse
import math
import resource
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

import freeflow as ff  # noqa: E402
import targets  # noqa: E402
from freeflow.images.dit import DiT, DiTConfig, dit  # noqa: E402

TARGETS = ["manywell32", "manywell128", "manywell512", "funnel10", "grid25", "lgcp_pines"]


def devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # (kB on Linux)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def target_row(name: str, device: str, steps: int, n_is: int) -> dict:
    t = targets.get_target(name)
    if device.startswith("cuda"):
        for k, v in vars(t).items():  # the target's own tensors (data, covariances) onto the device
            if isinstance(v, torch.Tensor):
                setattr(t, k, v.to(device))
        torch.cuda.reset_peak_memory_stats()
    try:
        s = ff.OneStepSampler(t, device=device, seed=0)
    except ValueError as e:  # a target whose log_prob cannot run on the device: say so, go on
        return {"target": name, "device": device, "error": str(e)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        s._gaussian_stage()
        sync(device)
        t_gauss = time.perf_counter() - t0
        s.fit(steps, progress=False, check=False)
        sync(device)
    sps = steps / max(s.training_seconds, 1e-9)
    mem = peak_memory_mb(device)
    log_z, se = s.log_normalizer(n_is, seed=1)
    true = t.log_Z if t.log_Z is not None else getattr(t, "log_z_reference", None)  # (LGCP: 501.806)
    return {"target": name, "device": device, "dim": t.dim, "steps": steps, "steps_per_second": round(sps, 2),
            "gaussian_stage_seconds": round(t_gauss, 2), "peak_memory_mb": round(mem, 1),
            "peak_memory_kind": "cuda max_memory_allocated" if device.startswith("cuda") else "process peak RSS",
            "log_z": log_z, "log_z_se": se, "log_z_true": true,
            "abs_log_z_error": abs(log_z - true) if true is not None and math.isfinite(log_z) else None,
            "generator": s.generator_name, "is_samples": n_is}


def dit_row(device: str, checkpointing: bool, repeats: int) -> dict:
    if device.startswith("cuda"):
        model = dit("DiT-B/2", input_size=32, in_channels=4, num_classes=1000,
                    activation_checkpointing=checkpointing).to(device)
        batch, shape, label = 256, (4, 32, 32), "DiT-B/2, batch 256, 32x32x4 latents"
        torch.cuda.reset_peak_memory_stats()
    else:
        model = DiT(DiTConfig(input_size=8, in_channels=4, hidden=64, depth=4, heads=4, num_classes=10,
                              activation_checkpointing=checkpointing))
        batch, shape, label = 16, (4, 8, 8), "tiny DiT (hidden 64, depth 4), batch 16, 8x8x4"
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *shape, generator=g).to(device)
    y = torch.randint(0, model.config.num_classes, (batch,), generator=g).to(device)
    target = torch.randn(batch, *shape, generator=g).to(device)
    times = []
    for i in range(repeats + 1):  # the first step warms up (allocator, kernels)
        sync(device)
        t0 = time.perf_counter()
        loss = (model(x, y) - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    return {"model": label, "device": device, "activation_checkpointing": checkpointing,
            "step_seconds_median": sorted(times)[len(times) // 2], "repeats": repeats,
            "peak_memory_mb": round(peak_memory_mb(device), 1),
            "peak_memory_kind": "cuda max_memory_allocated" if device.startswith("cuda") else "process peak RSS",
            "parameters": sum(p.numel() for p in model.parameters())}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="30 steps, 2000 IS samples, 3 DiT steps")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--targets", nargs="+", default=TARGETS, choices=TARGETS)
    args = ap.parse_args(argv)
    steps = args.steps or (30 if args.quick else 200)
    n_is, repeats = (2000, 3) if args.quick else (20_000, 10)
    rows, dit_rows = [], []
    for device in devices():
        for name in args.targets:
            row = target_row(name, device, steps, n_is)
            print(row, flush=True)
            rows.append(row)
        for ckpt in (False, True):
            row = dit_row(device, ckpt, repeats)
            print(row, flush=True)
            dit_rows.append(row)
    ratios = {}
    for r in rows:
        if r["device"] != "cpu":
            cpu = next(c for c in rows if c["device"] == "cpu" and c["target"] == r["target"])
            ratios[r["target"]] = round(r["steps_per_second"] / cpu["steps_per_second"], 2)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    write_result("gpu_quick" if args.quick else "gpu", {
        "targets": rows, "dit": dit_rows, "gpu_over_cpu_steps_per_second": ratios, "gpu": gpu,
        "note": None if gpu else "no GPU on this machine: CPU figures only; the GPU figures are pending"})


if __name__ == "__main__":
    main()
