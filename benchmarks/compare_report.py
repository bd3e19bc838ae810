"""Markdown table from benchmarks/results/compare_mcmc.json (written by compare_mcmc.py).

    python benchmarks/compare_report.py [path/to/compare_mcmc.json]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT = Path(__file__).parent / "results" / "compare_mcmc.json"
ORDER = ["logreg_breast_cancer", "funnel10", "gmm40", "ring8"]


def _g(v, fmt="{:.3g}"):
    return "–" if v is None else fmt.format(v)


def rows(results: dict):
    for name in sorted(results["targets"], key=lambda n: ORDER.index(n) if n in ORDER else 99):
        rec = results["targets"][name]
        rep = rec["report"]
        floor = rep["floors"].get("energy_distance", {}).get("median")
        ref = rep["reference"]
        ref_txt = "exact" if ref["kind"] != "nuts" else "NUTS" + ("" if ref["reliable"] else " (unreliable)")
        nuts = rec.get("nuts", {})
        for i, m in enumerate(rep["methods"]):
            met, cost = m["metrics"], m["costs"]
            label = m["name"]
            if m["kind"] == "nuts" and not nuts.get("reliable", True):
                label += " (unreliable: " + "; ".join(nuts.get("reasons", []))[:60] + ")"
            ed = met.get("energy_distance")
            ed_txt = "–" if ed is None else f"{ed:.3g}" + (f" (×{ed / floor:.1f})" if floor else "")
            modes = "–"
            if "mode_tv" in met:
                cov = met.get("modes_covered")
                k = met.get("num_modes")
                modes = f"{met['mode_tv']:.3f}" + (f" ({cov}/{k})" if cov is not None and k else "")
            yield (name if i == 0 else "", ref_txt if i == 0 else "", label, ed_txt,
                   _g(met.get("mean_err_max"), "{:.3f}"), _g(met.get("std_err_max"), "{:.3f}"), modes,
                   _g(cost.get("train_s"), "{:.0f}"), _g(cost.get("s_per_1e4"), "{:.3g}"),
                   _g(cost.get("ess_per_s"), "{:,.0f}"), _g(cost.get("is_ess_frac"), "{:.2f}"))


def main(argv=None) -> int:
    path = Path((argv or sys.argv[1:] or [str(DEFAULT)])[0])
    results = json.loads(path.read_text())
    print("| target | reference | method | energy (× floor) | mean err | std err | mode TV (modes) "
          "| train s | s/1e4 | ESS/s | IS ESS/n |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows(results):
        print("| " + " | ".join(r) + " |")
    print()
    for name, rec in results["targets"].items():
        print(f"- {name}: goals {json.dumps(rec.get('goals', {}))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
