"""benchmarks/results/new_targets.json -> the markdown table in docs/benchmarks.md.

    python benchmarks/new_targets_report.py

One row per target and method: medians over seeds [worst in square brackets] of mass TV (noise
floor), energy distance over its floor, per-pair |P(x₁>0) − exact|, |log Ẑ − log Z|, steps
and training seconds, and how many seeds the reliability verdict distrusted.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "new_targets.json"


def _fmt(rows, key, digits=3, absolute=False):
    vals = [abs(r[key]) if absolute else r[key] for r in rows if r.get(key) is not None]
    if not vals:
        return "—"
    return f"{statistics.median(vals):.{digits}f} [{max(vals):.{digits}f}]"


def table(data: dict) -> str:
    rows = data["rows"]
    order = []
    for r in rows:
        if r["target"] not in order:
            order.append(r["target"])
    out = ["| target | d | method (generator) | seeds | mass TV (floor) | ED / floor | pair err | "
           "\\|log Ẑ err\\| | steps | train s | distrusted |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in order:
        for method in ("before", "after"):
            rs = [r for r in rows if r["target"] == name and r["method"] == method]
            if not rs:
                continue
            tv = _fmt(rs, "mass_tv")
            if tv != "—":
                tv += f" (floor {statistics.median(r['mass_tv_floor'] for r in rs):.3f})"
            distrust = sum(1 for r in rs if r["trusted"] is False)
            unver = sum(1 for r in rs if r["trusted"] is None)
            out.append(
                f"| {name} | {rs[0]['dim']} | {method} ({rs[0]['generator']}) | {len(rs)} | {tv} | "
                f"{_fmt(rs, 'ed_over_floor', 2)} | {_fmt(rs, 'pair_err_mean', 4)} | "
                f"{_fmt(rs, 'log_z_error', 4, absolute=True)} | {_fmt(rs, 'steps', 0)} | "
                f"{_fmt(rs, 'train_seconds', 0)} | {distrust}/{len(rs)}" + (f" ({unver} unverified)" if unver else "") + " |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table(json.loads(RESULTS.read_text())))
