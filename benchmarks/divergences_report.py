"""Markdown tables for docs/divergences.md from a divergence grid's table.json.

    python benchmarks/divergences_report.py benchmarks/results/divergences > /tmp/tables.md
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def final_rows(rows):
    last = {}
    for r in rows:
        k = (r["target"], r["generator"], r["divergence"], r["seed"])
        if k not in last or r.get("step", -1) >= last[k].get("step", -1):
            last[k] = r
    return list(last.values())


def table(rows, spec, generator, metric, fmt="{:.3f}"):
    g = defaultdict(list)
    for r in rows:
        if r["generator"] == generator and r.get(metric) is not None:
            g[(r["target"], r["divergence"])].append(abs(r[metric]) if metric == "log_z_error" else r[metric])
    divs = spec["divergences"]
    out = ["| target | floor | " + " | ".join(divs) + " |", "|---" * (len(divs) + 2) + "|"]
    key = {"mass_tv": "mass_tv_floor", "energy_distance": "energy_floor"}.get(metric)
    floors = {r["target"]: r.get(key) for r in rows} if key else {}
    for t in spec["targets"]:
        vals = {d: float(np.median(g[(t, d)])) for d in divs if g.get((t, d))}
        best = min(vals.values()) if vals else None
        cells = []
        for d in divs:
            if d not in vals:
                cells.append("–")
                continue
            s = fmt.format(vals[d])
            cells.append(f"**{s}**" if vals[d] == best else s)
        fl = floors.get(t)
        out.append(f"| {t} | {fmt.format(fl) if fl is not None else ''} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def ranks(rows, spec, generator, metric="mass_tv"):
    """Median over targets of each divergence's rank (1 = best) by median-over-seeds metric."""
    g = defaultdict(list)
    for r in rows:
        if r["generator"] == generator and r.get(metric) is not None:
            g[(r["target"], r["divergence"])].append(r[metric])
    rk = defaultdict(list)
    for t in spec["targets"]:
        vals = sorted((float(np.median(g[(t, d)])), d) for d in spec["divergences"] if g.get((t, d)))
        for i, (_, d) in enumerate(vals):
            rk[d].append(i + 1)
    return sorted((float(np.median(v)), d) for d, v in rk.items())


def main(path):
    data = json.loads((Path(path) / "table.json").read_text())
    spec, rows = data["spec"], final_rows(data["rows"])
    errors = [r for r in rows if r.get("error")]
    print(f"cells: {len(rows)}, failed: {len(errors)}")
    for r in errors:
        print(f"- {r['target']} {r['generator']} {r['divergence']} seed {r['seed']}: {r['error'][:120]}")
    for gen in spec["generators"]:
        for metric in ("mass_tv", "energy_distance", "log_z_error"):
            name = "|log Ẑ error|" if metric == "log_z_error" else metric
            print(f"\n### {name}, generator '{gen}' (median over seeds {spec['seeds']}, step {spec['steps']})\n")
            print(table(rows, spec, gen, metric))
        print(f"\nmedian rank by mass TV over targets, '{gen}': " +
              ", ".join(f"{d} {m:g}" for m, d in ranks(rows, spec, gen)))
    print("\n### imbalanced2 minor-mode mass per seed (truth 0.2)\n")
    for t in [t for t in spec["targets"] if t.startswith("imbalanced2")]:
        for gen in spec["generators"]:
            line = []
            for d in spec["divergences"]:
                ms = [r["masses"][1] for r in sorted(rows, key=lambda r: r["seed"])
                      if r["target"] == t and r["generator"] == gen and r["divergence"] == d and r.get("masses")]
                line.append(f"{d} " + "/".join(f"{m:.3f}" for m in ms))
            print(f"- {t}, {gen}: " + "; ".join(line))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/divergences")
