"""The arithmetic of the ImageNet recipe (issue 12): parameters, FLOPs per step, memory, GPU-hours.

    python benchmarks/images_cost.py          # -> benchmarks/results/images_cost.json

No GPU was lent to this task, so the GPU figures are ESTIMATES from counted FLOPs and an assumed
sustained throughput, not measurements.  What is counted here: parameters of each shipped
ImageNet config's DiT; forward FLOPs per image (torch.utils.flop_counter on one 4×32×32 latent;
FLOPs = 2 × multiply-adds); per training step, the generated batch with gradient (forward +
backward ≈ 3 × forward) plus the independent second batch without gradient (1 × forward), i.e.
4 × forward × classes_per_step × gen_per_class; the feature map and Sinkhorn couplings are
small beside it (reported).  Memory: fp32 weights, gradients and AdamW moments (16 bytes per
parameter) plus the EMA copy (4), sharded across nothing (DDP replicates).  One measured point:
a forward + backward of DiT-B/2 on 4 latents on this CPU, for a FLOP rate that says the counts
are in the right range.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from freeflow.images.config import load_config  # noqa: E402
from freeflow.images.train import build_generator  # noqa: E402

#: assumed sustained bf16 throughput per GPU (40 % of an H100's 989 dense TFLOP/s): an assumption
ASSUMED_TFLOPS_PER_GPU = 400.0
GPUS = 8


def sinkhorn_flops(cfg) -> float:
    """Cost matrices and 5 log-domain iterations per (class, feature location) for the three
    couplings (x→p_c, x→p_∅, x→x′) of velocity guidance; D the feature size per location."""
    d = cfg.drift
    c, n, m, u = d.classes_per_step, d.gen_per_class, d.real_per_class, d.uncond_reals
    h = cfg.model.input_size
    ch = cfg.model.in_channels
    locs = [(1, ch * h * h)] if d.whole else []
    locs += [((h // p) ** 2, ch * p * p) for p in d.patch_sizes]
    locs += [(1, ch * (h // s) ** 2) for s in d.pool_sizes]
    locs += [((h // p) ** 2, 2 * ch) for p in d.stat_sizes]
    total = 0.0
    for L, D in locs:
        for cols in (m, u, n):
            total += c * L * (2 * n * cols * D + d.num_iters * 4 * n * cols)
    return total


def main() -> None:
    torch.set_num_threads(1)
    rows = {}
    for name in ("imagenet_B2", "imagenet_L2", "imagenet_XL2"):
        cfg = load_config(name)
        net = build_generator(cfg)
        params = sum(p.numel() for p in net.parameters())
        x = torch.randn(1, cfg.model.in_channels, cfg.model.input_size, cfg.model.input_size)
        with FlopCounterMode(display=False) as fc:
            net(x, torch.tensor([1]), torch.tensor([1.5]))
        fwd = fc.get_total_flops()
        d = cfg.drift
        gen = d.classes_per_step * d.gen_per_class
        step_flops = 4 * fwd * gen
        sk = sinkhorn_flops(cfg)
        step_s = (step_flops + sk) / (GPUS * ASSUMED_TFLOPS_PER_GPU * 1e12)
        rows[name] = {
            "model": cfg.model.name, "params": params, "forward_gflops_per_image": fwd / 1e9,
            "generated_per_step": gen, "generator_pflops_per_step": step_flops / 1e15,
            "sinkhorn_tflops_per_step": sk / 1e12, "steps": cfg.train.steps,
            "estimated_step_s_on_8_gpus": step_s,
            "estimated_gpu_hours": step_s * cfg.train.steps * GPUS / 3600,
            "optimizer_state_gb": params * 20 / 1e9,
            "generated_per_gpu_per_step": gen // GPUS}
        print(name, rows[name], flush=True)
        del net
    cfg = load_config("imagenet_B2")
    net = build_generator(cfg)
    x = torch.randn(4, 4, 32, 32)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        net(x, torch.arange(4), torch.full((4,), 1.5)).square().mean().backward()
        times.append(time.perf_counter() - t0)
    t = sorted(times)[1]
    cpu = {"model": "DiT-B/2", "batch": 4, "median_fwd_bwd_s": t,
           "gflop_per_s": 3 * rows["imagenet_B2"]["forward_gflops_per_image"] * 4 / t}
    print("cpu", cpu)
    write_result("images_cost", {"estimates_not_measurements": True, "assumed_tflops_per_gpu": ASSUMED_TFLOPS_PER_GPU,
                                 "gpus": GPUS, "configs": rows, "cpu_check_one_thread": cpu})


if __name__ == "__main__":
    main()
