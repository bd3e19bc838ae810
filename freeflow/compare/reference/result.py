"""The NUTS result (:class:`Reference`: draws, diagnostics, timings) and its reliability verdict."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: Default reliability thresholds (see module docstring).
MAX_RHAT = 1.01
MAX_DIVERGENCE_FRACTION = 1e-3
MIN_ESS_PER_CHAIN = 100.0


@dataclass
class Reference:
    """NUTS draws with their diagnostics.

    ``draws``: (chains, draws, dim) float64 numpy.  ``diagnostics``: divergences,
    rhat_max, ess_bulk_min, ess_tail_min, step sizes, gradient evaluations.  ``timings``:
    seconds for warmup (including JIT compilation), sampling and total.
    """

    draws: np.ndarray
    diagnostics: dict[str, Any]
    timings: dict[str, float]
    settings: dict[str, Any]
    reasons: list[str] = field(default_factory=list)
    from_cache: bool = False
    name: str = "NUTS"
    divergent: np.ndarray | None = None  # (chains, draws) bool

    @property
    def reliable(self) -> bool:
        return not self.reasons

    @property
    def dim(self) -> int:
        return int(self.draws.shape[2])

    @property
    def n_draws(self) -> int:
        return int(self.draws.shape[0] * self.draws.shape[1])

    @property
    def divergences(self) -> int:
        return int(self.diagnostics["divergences"])

    @property
    def rhat(self) -> float:
        return float(self.diagnostics["rhat_max"])

    @property
    def ess_bulk(self) -> float:
        return float(self.diagnostics["ess_bulk_min"])

    @property
    def ess_tail(self) -> float:
        return float(self.diagnostics["ess_tail_min"])

    @property
    def wall_time(self) -> float:
        return float(self.timings["total_s"])

    @property
    def ess_per_second(self) -> float:
        """min(bulk, tail) ESS per second of the whole run (warmup + sampling)."""
        return min(self.ess_bulk, self.ess_tail) / max(self.wall_time, 1e-12)

    def samples(self, n: int | None = None) -> torch.Tensor:
        """Draws pooled over chains as a float32 torch tensor (n, dim).

        With ``n`` < all draws, every chain is thinned evenly (chain-major order).
        """
        flat = self.draws.reshape(-1, self.dim)
        if n is not None:
            if not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"n must be a positive int, got {n!r}")
            if n > flat.shape[0]:
                raise ValueError(f"n={n} exceeds the {flat.shape[0]} stored draws")
            chains, per = self.draws.shape[:2]
            k = math.ceil(n / chains)
            idx = np.linspace(0, per - 1, k).round().astype(int)
            flat = self.draws[:, idx].reshape(-1, self.dim)[:n]
        return torch.from_numpy(np.array(flat, dtype=np.float32))

    def to_inference_data(self, var_names=None):
        """arviz InferenceData with the real chains and a ``diverging`` sample stat."""
        from ...interop import draws_to_inference_data

        stats = {"diverging": self.divergent} if self.divergent is not None else None
        return draws_to_inference_data(self.draws, var_names=var_names, sample_stats=stats)

    def summary(self) -> str:
        c, dr, d = self.draws.shape
        status = "reliable" if self.reliable else "UNRELIABLE: " + "; ".join(self.reasons)
        return (
            f"{self.name}: {c} chains x {dr} draws, dim {d}; divergences {self.divergences}, "
            f"R-hat max {self.rhat:.4f}, ESS bulk min {self.ess_bulk:.0f}, tail min "
            f"{self.ess_tail:.0f}; {self.wall_time:.1f} s"
            f"{' (from cache)' if self.from_cache else ''}; {status}"
        )

    def __repr__(self) -> str:
        return f"Reference({self.summary()})"


def _reliability_reasons(diag: dict, chains: int, n_total: int, thresholds: dict) -> list[str]:
    reasons = []
    if diag["divergences"] > thresholds["max_divergence_fraction"] * n_total:
        reasons.append(
            f"{diag['divergences']} divergent transitions "
            f"({100 * diag['divergences'] / n_total:.2f}% of draws; NUTS is likely biased here)"
        )
    if not diag["rhat_max"] <= thresholds["max_rhat"]:
        reasons.append(f"R-hat {diag['rhat_max']:.4f} > {thresholds['max_rhat']}")
    ess = min(diag["ess_bulk_min"], diag["ess_tail_min"])
    if not ess >= thresholds["min_ess_per_chain"] * chains:
        reasons.append(
            f"min ESS {ess:.0f} < {thresholds['min_ess_per_chain']:.0f} per chain x {chains} chains"
        )
    return reasons


def _diagnose(draws: np.ndarray, divergent: np.ndarray, n_steps: np.ndarray) -> dict:
    from ...interop import diagnostics

    diag = diagnostics(draws)
    diag["divergences"] = int(divergent.sum())
    diag["divergences_per_chain"] = divergent.sum(axis=1).astype(int).tolist()
    diag["grad_evals_sampling"] = int(n_steps.sum())
    diag["mean_tree_size"] = float(n_steps.mean())
    return diag
