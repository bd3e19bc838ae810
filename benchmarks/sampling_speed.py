"""Sampling speed of the RealNVP mixture generator: the fused no-grad flow pass vs the normflows loop.

A ProductMixtureGenerator (K = 4 per coordinate, 4 RealNVP couplings, hidden 64, every flow
weight perturbed so no layer is the identity) at d = 10, 31, 56; ``forward_and_log_prob`` on
1e5 draws in chunks of 16384 under ``torch.no_grad()`` (as ``sample_and_log_prob`` runs it),
one thread, median of 5 repeats, the paths interleaved. Paths: ``loop`` (normflows layer by
layer, the old code), ``fused`` (freeflow.generators.fast_flow, oneDNN linear on the CPU in
float32), ``fused_addmm`` (the fused pass with its addmm path, i.e. oneDNN disabled). Also the
flow alone (``_push``) on one 16384 chunk. Writes benchmarks/results/sampling_speed.json.

    python benchmarks/sampling_speed.py
"""
from __future__ import annotations

import statistics
import time

import torch
from _common import write_result

import freeflow.generators.fast_flow as fast_flow
from freeflow.generators.mixture import ProductMixtureGenerator

N, CHUNK, REPEATS = 100_000, 16384, 5
PATHS = ("loop", "fused", "fused_addmm")


def _set(path: str) -> None:
    fast_flow.ENABLED = path != "loop"
    fast_flow._dnn_state["ok"] = None if path == "fused" else False  # None: probe oneDNN again


def _draw(g, z):
    xs, lqs = [], []
    for i in range(0, z.shape[0], CHUNK):
        x, lq = g.forward_and_log_prob(z[i:i + CHUNK])
        xs.append(x)
        lqs.append(lq)
    return torch.cat(xs), torch.cat(lqs)


def _time(fn, path):
    _set(path)
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    torch.set_num_threads(1)
    rows = []
    for dim in (10, 31, 56):
        torch.manual_seed(dim)
        g = ProductMixtureGenerator(dim, 4, flow_layers=4, flow_hidden=64, flow_kind="realnvp")
        with torch.no_grad():
            for p in g.flow.parameters():
                p.add_(0.1 * torch.randn_like(p))
        z = torch.randn(N, g.noise_dim, generator=torch.Generator().manual_seed(0))
        y0 = g._base_sample(z[:CHUNK]).detach()
        times = {p: [] for p in PATHS}
        flow_times = {p: [] for p in PATHS}
        outs = {}
        with torch.no_grad():
            for p in PATHS:  # warm-up (and the oneDNN probe)
                _time(lambda: _draw(g, z[:CHUNK]), p)
            for _ in range(REPEATS):
                for p in PATHS:
                    t, outs[p] = _time(lambda: _draw(g, z), p)
                    times[p].append(t)
                    flow_times[p].append(_time(lambda: g._push(y0), p)[0])
        _set("fused")
        x0, lq0 = outs["loop"]
        row = {"dim": dim, "n": N, "chunk": CHUNK, "repeats": REPEATS, "components": 4,
               "flow": {"kind": "realnvp", "layers": 4, "hidden": 64}}
        for p in PATHS:
            med = statistics.median(times[p])
            row[p] = {"median_seconds": med, "samples_per_second": N / med, "all_seconds": times[p],
                      "flow_only_chunk_median_seconds": statistics.median(flow_times[p])}
            if p != "loop":
                x, lq = outs[p]
                row[p]["speedup_vs_loop"] = statistics.median(times["loop"]) / med
                row[p]["flow_only_speedup_vs_loop"] = (statistics.median(flow_times["loop"])
                                                       / statistics.median(flow_times[p]))
                row[p]["max_rel_diff_x"] = float(((x - x0).abs() / x0.abs().clamp_min(1)).max())
                row[p]["max_rel_diff_log_q"] = float(((lq - lq0).abs() / lq0.abs().clamp_min(1)).max())
        rows.append(row)
        print({"dim": dim, **{p: round(row[p]["median_seconds"], 4) for p in PATHS},
               "speedup": round(row["fused"]["speedup_vs_loop"], 2),
               "speedup_addmm": round(row["fused_addmm"]["speedup_vs_loop"], 2),
               "flow_only_speedup": round(row["fused"]["flow_only_speedup_vs_loop"], 2)})
    write_result("sampling_speed", {"runs": rows, "threads": torch.get_num_threads(),
                                    "onednn_linear": bool(fast_flow._use_dnn(torch.zeros(1, 1)))})


if __name__ == "__main__":
    main()
