"""Unimodal and funnel posteriors with the defaults now and before issue 10 (no worse?).

    python benchmarks/posteriors_defaults.py      # -> benchmarks/results/posteriors_defaults.json

logreg_breast_cancer (31-D) against blackjax NUTS (4 chains × 2000 draws, cached under
.cache/freeflow/nuts); funnel10 against exact draws (NUTS is biased there, MATH.md §4).
Reported: the largest per-coordinate |mean error| and |std error| in reference-std units over
8000 samples, training seconds and the reliability verdict; for funnel10 also the mean and
std of the neck coordinate x₀ (exactly 0 and 3; the other coordinates' stds are heavy-tailed
and their sample std is noisy even between exact draws).
  after   OneStepSampler(target, seed=0).fit()            (product mixture, rounds until trusted)
  after_3000  the same generator with fit(3000): the length the old default trained
  before  OneStepSampler(target, seed=0, generator="flow").fit(3000)   (the default before)
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

import freeflow as ff  # noqa: E402
import targets  # noqa: E402


def reference(t) -> torch.Tensor:
    if t.has_exact_sampler:
        return t.sample(20_000, torch.Generator().manual_seed(0)).double()
    from freeflow.compare.reference import nuts

    ref = nuts(t, chains=4, warmup=1000, draws=2000, seed=0, cache_dir=ROOT / ".cache" / "freeflow" / "nuts",
               progress=False)
    return ref.samples().reshape(-1, t.dim).double()


def main():
    torch.set_num_threads(2)
    rows = []
    for name in ("logreg_breast_cancer", "funnel10"):
        t = targets.get_target(name)
        ref = reference(t)
        for method, kw, steps in (("after", {}, None), ("after_3000", {}, 3000),
                                  ("before", {"generator": "flow"}, 3000)):
            s = ff.OneStepSampler(t, seed=0, **kw)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ff.ReliabilityWarning)
                s.fit(steps, progress=False)
            sec = time.perf_counter() - t0
            x = s.sample(8000, seed=3).double()
            sd = ref.std(0)
            row = {"target": name, "method": method, "generator": s.generator_name, "steps": s.steps_done,
                   "train_seconds": sec,
                   "mean_err_max": float(((x.mean(0) - ref.mean(0)).abs() / sd).max()),
                   "std_err_max": float(((x.std(0) - sd).abs() / sd).max()),
                   "verdict": s.last_reliability.verdict, "khat": s.last_reliability.pareto_k}
            if name == "funnel10":  # the neck coordinate: x₀ ~ N(0, 3²) exactly
                row.update(x0_mean=float(x[:, 0].mean()), x0_std=float(x[:, 0].std()))
            print(row, flush=True)
            rows.append(row)
    write_result("posteriors_defaults", {"rows": rows})


if __name__ == "__main__":
    main()
