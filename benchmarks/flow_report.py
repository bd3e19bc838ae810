"""Markdown tables from benchmarks/results/{flow_dimsweep,manywell*,flow_lv}.json."""
from __future__ import annotations

import json
import sys
from pathlib import Path

R = Path(__file__).parent / "results"


def _load(name):
    p = R / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def f(v, nd=3):
    return "–" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def main(out=sys.stdout):
    d = _load("flow_dimsweep")
    geo = _load("flow_dimsweep_geometric")  # the flow generator on the geometric path (d > 3 default)
    if d and geo:
        d["rows"] = d["rows"] + geo["rows"]
    if d:
        print(f"### Dimension sweep (4-mode mixture, weights 0.4/0.3/0.2/0.1; {d['settings']['steps']} steps, batch {d['settings']['batch']})\n", file=out)
        print("| d | method | modes | mass TV | energy (floor) | s/step | log Ẑ ± se (true 0) | ESS | k̂ |", file=out)
        print("|---|---|---|---|---|---|---|---|---|", file=out)
        for r in sorted(d["rows"], key=lambda r: (r["dim"], r["method"])):
            if "error" in r:
                print(f"| {r['dim']} | {r['method']} | error: {r['error'][:80]} |||||||", file=out)
                continue
            lz = f"{r['log_Z_hat']:.3f} ± {r['log_Z_se']:.3f}" if "log_Z_hat" in r else "–"
            print(f"| {r['dim']} | {r['method']} | {r['modes_covered']}/{r['num_modes']} | {f(r['tv'])} | "
                  f"{f(r['energy'])} ({f(r['energy_noise_floor'], 4)}) | {f(r['s_per_step'], 2)} | {lz} | "
                  f"{f(r.get('ess'))} | {f(r.get('pareto_k'), 2)} |", file=out)
        print(file=out)
    rows = []  # older single-seed RealNVP runs first, then the current benchmark's rows
    for name in ("manywell_realnvp_1500", "manywell_realnvp_3000", "manywell", "manywell_geometric",
                 "manywell_defaults"):
        part = _load(name)
        rows += part["rows"] if part else []
    m = {"rows": rows} if rows else None
    if m:
        print("### manywell32 (log Z = 164.6957, P(x₁ > 0) = 0.8443 per pair)\n", file=out)
        print("| method | seed | steps | log Ẑ ± se | abs error (SOTA ≈ 0.03) | ESS | k̂ | P(x₁>0) mean | max pair error | IS-weighted max pair error | energy (floor) | s/step |", file=out)
        print("|---|---|---|---|---|---|---|---|---|---|---|---|", file=out)
        for r in m["rows"]:
            if "error" in r:
                print(f"| {r['method']} | {r.get('seed', 0)} | error: {r['error'][:80]} ||||||||||", file=out)
                continue
            print(f"| {r['method']} ({r['log_q']}) | {r.get('seed', 0)} | {r['steps']} | {r['log_Z_hat']:.3f} ± {r['log_Z_se']:.3f} | "
                  f"{r['abs_log_Z_error']:.3f} | {f(r['ess'], 4)} | {f(r['pareto_k'], 2)} | {f(r['p_x1_positive_mean'])} | "
                  f"{f(r['p_x1_positive_max_abs_err'])} | {f(r.get('p_x1_positive_is_max_abs_err'))} | {f(r['energy'])} ({f(r['energy_noise_floor'], 4)}) | {f(r['s_per_step'], 2)} |", file=out)
        print(file=out)
    lv = _load("flow_lv")
    if lv:
        print(f"### Log-variance variants (KDE route, 2-D, {lv['settings']['steps']} steps, batch {lv['settings']['batch']}; mass TV / modes covered / energy)\n", file=out)
        targets = list(dict.fromkeys(r["target"] for r in lv["rows"]))
        print("| variant | " + " | ".join(targets) + " |", file=out)
        print("|---|" + "---|" * len(targets), file=out)
        for v in dict.fromkeys(r["variant"] for r in lv["rows"]):
            cells = []
            for t in targets:
                r = next((r for r in lv["rows"] if r["target"] == t and r["variant"] == v), None)
                if r is None:
                    cells.append("–")
                elif "error" in r:
                    cells.append("error")
                else:
                    cells.append(f"{r['tv']:.3f} / {r['modes_covered']}/{r['num_modes']} / {r['energy']:.3f}")
            print(f"| {v} | " + " | ".join(cells) + " |", file=out)
        floors = {r["target"]: r.get("energy_noise_floor") for r in lv["rows"] if "energy_noise_floor" in r}
        print("\nEnergy noise floors: " + ", ".join(f"{k} {v:.4f}" for k, v in floors.items()), file=out)


if __name__ == "__main__":
    main()
