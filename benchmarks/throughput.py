"""Sampling throughput of the default-size generators (samples/s): MLP at d = 2 and 32, flow at 32.

Median of repeated timings of `sampler.sample(n)` (one forward pass per 65 536-sample chunk).
Writes benchmarks/results/throughput.json.

    python benchmarks/throughput.py
"""
from __future__ import annotations

import statistics
import time

import torch
from _common import write_result

import freeflow as ff


def main():
    rows = []
    for d, generator in ((2, "mlp"), (32, "mlp"), (32, "flow")):
        sampler = ff.OneStepSampler(lambda x: -0.5 * (x**2).sum(-1), dim=d, seed=0, generator=generator)
        sampler.fit(5, progress=False)  # weights do not change the cost of a forward pass
        n = 200_000
        sampler.sample(10_000)  # warm-up
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            sampler.sample(n)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rows.append({"dim": d, "generator": generator, "n": n, "median_seconds": med, "samples_per_second": n / med,
                     "settings": {k: sampler.settings[k] for k in (("hidden", "depth", "noise_dim") if generator == "mlp"
                                                                    else ("flow_kind", "flow_layers", "flow_hidden"))}})
        print(rows[-1])
    write_result("throughput", {"runs": rows, "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
