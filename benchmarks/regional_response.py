"""The one-step regional response of every divergence (docs/theory.md §8, issue 11).

    python benchmarks/regional_response.py            # → benchmarks/results/regional_response/

On the 1-D example (p = 0.7 N(−1.5, ½²) + 0.3 N(1.5, ½²), q with a third of the right mode's
mass), for each divergence: the transport response dq_minor/dt and dU/dt of the RMS-normalised
drift by quadrature and as measured (one explicit step η = 1e-3 of the library's drift on 200
batches of 4096 samples of q, mean ± standard error), the Fisher–Rao reaction response both ways,
the share of the step's kinetic energy spent in the under-covered region, and, over a family of
compressions c (q holds c × 0.3 in the right mode), the log-log slopes of the three responses
against c ("elasticities"). Writes response.json, response.csv and figures (also to docs/figures/).
"""
from __future__ import annotations

import argparse
import csv
import io
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


from _common import machine  # noqa: E402
from freeflow.io import atomic_write, atomic_write_json, atomic_write_text  # noqa: E402
from freeflow.velocities.regional import example, measured_response, quadrature_response  # noqa: E402

DIVERGENCES = ("neyman", "kl_qp", "hellinger", "js", "jeffreys", "alpha:0.5", "kl_pq", "alpha:1.5", "pearson",
               "alpha:-1", "lv")
COMPRESSIONS = (0.05, 0.1, 0.2, 1 / 3, 0.5, 0.8)


def run(batches: int, n: int) -> dict:
    p, q, rho = example()
    rows = []
    for d in DIVERGENCES:
        t0 = time.perf_counter()
        quad = quadrature_response(p, q, d, rho=rho)
        meas = measured_response(p, q, d, rho=rho, n=n, batches=batches, seed=0)
        row = {"divergence": d if d != "lv" else "lv (surrogate, ρ = ½N₁ + ½N₂)",
               "transport_quadrature": quad["dq_dt"][1], "transport_measured": meas["dq_dt"][1],
               "transport_se": meas["dq_dt_se"][1],
               "transport_z": (meas["dq_dt"][1] - quad["dq_dt"][1]) / meas["dq_dt_se"][1],
               "dU_dt_quadrature": quad["dU_dt"], "dU_dt_measured": meas["dU_dt"], "dU_dt_se": meas["dU_dt_se"],
               "energy_share_minor": quad["energy_share"], "energy_boundary": quad["energy_boundary"],
               "energy_inside": quad["energy_inside"]}
        if "reaction_dq_dt" in meas:
            row.update(reaction_quadrature=quad["reaction_dq_dt"][1], reaction_measured=meas["reaction_dq_dt"][1],
                       reaction_se=meas["reaction_dq_dt_se"][1],
                       reaction_z=(meas["reaction_dq_dt"][1] - quad["reaction_dq_dt"][1]) / meas["reaction_dq_dt_se"][1])
        curves = {"transport": [], "reaction": [], "energy_share": []}
        for c in COMPRESSIONS:
            pc, qc, rc = example(c)
            r = quadrature_response(pc, qc, d, rho=rc)
            curves["transport"].append(r["dq_dt"][1])
            curves["energy_share"].append(r["energy_share"])
            curves["reaction"].append(r.get("reaction_dq_dt", [0, float("nan")])[1])
        row["by_compression"] = {"c": list(COMPRESSIONS), **curves}
        lc = np.log(COMPRESSIONS[:3])
        for k, v in curves.items():
            v = np.asarray(v[:3])
            row[f"elasticity_{k}"] = float(np.polyfit(lc, np.log(v), 1)[0]) if np.all(v > 0) else None
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(f"{d:10s} transport quad {row['transport_quadrature']:.4f} meas {row['transport_measured']:.4f} "
              f"± {row['transport_se']:.4f} (z {row['transport_z']:+.2f}); share {row['energy_share_minor']:.3f}")
    return {"rows": rows, "example": "p = 0.7 N(-1.5, 0.5^2) + 0.3 N(1.5, 0.5^2); q = 0.9 N(-1.5, 0.5^2) + 0.1 N(1.5, 0.5^2)",
            "eta": 1e-3, "batches": batches, "batch_size": n,
            "elasticity_fit": "slope of log response vs log c over c in {0.05, 0.1, 0.2}"}


def figures(res: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    names = [r["divergence"].split(" ")[0] for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, key, title in ((axes[0], "transport", "transport into the minor mode, dq/dt"),
                           (axes[1], "reaction", "Fisher–Rao reaction, dq/dt")):
        qv = [r.get(f"{key}_quadrature", np.nan) for r in rows]
        mv = [r.get(f"{key}_measured", np.nan) for r in rows]
        se = [3 * r.get(f"{key}_se", np.nan) for r in rows]
        ax.bar(x - 0.2, qv, 0.4, label="theory (quadrature)", color="C0")
        ax.bar(x + 0.2, mv, 0.4, yerr=se, capsize=2, label="measured (± 3 SE)", color="C1")
        ax.set_xticks(x, names, rotation=50, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    axes[2].bar(x, [r["energy_share_minor"] for r in rows], color="C2")
    axes[2].set_xticks(x, names, rotation=50, ha="right", fontsize=8)
    axes[2].set_title("share of the step's kinetic energy in the minor mode", fontsize=9)
    fig.suptitle("one-step response, RMS-normalised drift (docs/theory.md §8)", fontsize=10)
    fig.tight_layout()
    paths = [out / "response_bars.png"]
    atomic_write(paths[0], lambda t: fig.savefig(t, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for r, name in zip(rows, names):
        bc = r["by_compression"]
        for ax, key in zip(axes, ("transport", "reaction", "energy_share")):
            if not np.all(np.isnan(bc[key])):
                ax.plot(bc["c"], bc[key], marker="o", ms=3, label=name)
    for ax, t in zip(axes, ("transport dq/dt", "reaction dq/dt", "energy share in the minor mode")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compression c = q_minor / p_minor")
        ax.set_title(t, fontsize=9)
    axes[2].legend(fontsize=7, ncol=2)
    fig.suptitle("response against compression of the under-covered mode (elasticity = log-log slope)", fontsize=10)
    fig.tight_layout()
    paths.append(out / "elasticity.png")
    atomic_write(paths[1], lambda t: fig.savefig(t, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "regional_response"))
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=4096)
    args = ap.parse_args(argv)
    out = Path(args.out)
    res = run(args.batches, args.batch_size)
    res["machine"] = machine()
    res["command"] = "python benchmarks/regional_response.py " + " ".join(argv or sys.argv[1:])
    atomic_write_json(res, out / "response.json")
    cols = [k for k in res["rows"][0] if k != "by_compression"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=sorted({k for r in res["rows"] for k in r if k != "by_compression"},
                                              key=lambda k: (k not in cols, cols.index(k) if k in cols else 0)),
                       extrasaction="ignore")
    w.writeheader()
    w.writerows(res["rows"])
    atomic_write_text(buf.getvalue(), out / "response.csv")
    docs = Path(__file__).resolve().parents[1] / "docs" / "figures"
    for f in figures(res, out):
        shutil.copyfile(f, docs / f.name.replace("response_bars", "regional_response_bars")
                        .replace("elasticity", "regional_elasticity"))
        print(f"wrote {f}")
    bad = [r["divergence"] for r in res["rows"] if abs(r["transport_z"]) > 3 or abs(r.get("reaction_z", 0)) > 3]
    print("all within 3 SE" if not bad else f"outside 3 SE: {bad}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
