"""After a fit: should these samples be trusted?  A verdict from importance diagnostics.

Where log q is exact (flow and mixture generators), n fresh samples x ~ q give importance weights
w = p̃/q, and four checks, each with a threshold a user can read:

* Pareto k̂ of the weights (Vehtari et al., PSIS): k̂ > 0.7 means the importance estimates,
  and the samples' agreement with p, cannot be relied on. (Only where the weights are not
  nearly uniform, ESS fraction < 0.9: for near-constant weights k̂ fits float noise.)
* Reverse ESS fraction (Σw)²/(n Σw²) < 0.05: almost all weight sits on a few samples.
* Raw against importance-weighted estimates: the largest per-coordinate gap between the raw
  sample mean and the self-normalised weighted mean, in units of the raw std, and the same for
  the fraction of samples above each coordinate's raw median. Over 0.1 means the raw samples
  carry a bias that reweighting removes (e.g. mass in the wrong proportion between modes).
* Mixture weights still moving (mixture generator only): the TV distance between the weights π
  and their importance-weighted values π*_k = Ê_q[γ_k w]/Ê_q[w] (the fixed point of the
  Fisher–Rao step). Over 0.02 means the weights had not settled.

* Tails: importance sampling from q cannot see mass that q never reaches. A defensive
  proposal ρ = ½ q + ½ q_f (q_f: q with its components or base noise 1.5× wider) estimates
  log Z again; if log Ẑ_ρ exceeds log Ẑ_q by more than 0.02 nats (≈ 2% of the mass) and 3
  standard errors, q misses mass in its tails (a funnel's neck, heavy tails).

* Gibbs invariance (every generator, KDE route included): if q = p, replacing one coordinate
  x_j of x ~ q by a draw from p's conditional p(x_j | x_{−j}) leaves the distribution
  unchanged. For each coordinate (64 at most) the conditional is evaluated on a 128-point grid
  spanning q's range ± twice its width, averaged over 256 samples of q, and compared with q's
  own marginal by the 1-D Wasserstein distance in units of q's std. A shift above 0.3 says q
  misses part of p along that coordinate — e.g. a whole mode, which no importance weight of q
  can reveal because q never samples it (a collapsed double well: q has no mass in the other
  well, p's conditional puts 16% there).

* MCMC shift (every generator): if q = p, a p-invariant kernel leaves q's draws distributed
  as they are. :func:`freeflow.mcmc.mcmc_shift` runs a few dozen steps of preconditioned MALA
  with Metropolis-within-Gibbs coordinate updates from ~1000 of q's draws and tests, per
  coordinate and for log p̃, whether the mean or the spread moved (paired tests on
  rank-normalised values, Bonferroni over the 2(d + 1) tests: family-wise false-alarm rate
  ≤ 2% on exact draws; the calibration over seven targets is in :mod:`freeflow.mcmc.check`),
  and whether the move is at least 0.05 sd. Importance weights cannot see a q too narrow in a
  direction where p̃/q stays flat over q's support (a posterior's scale parameter), nor a
  region that q never samples and a one-step Gibbs move cannot reach (a funnel's neck): the
  chains drift out of q's too-narrow marginal, or down into the neck, and the check fires.

A KDE route has no usable log q: its importance checks are "unverified", with the reason;
the Gibbs and MCMC checks still run.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import KW_ONLY, asdict, dataclass, field

import torch

from . import importance as _iw
from .mcmc.check import MCMC_ALPHA, MIN_SHIFT, MCMCShift

__all__ = ["Reliability", "assess", "ReliabilityWarning", "THRESHOLDS"]

THRESHOLDS = {"pareto_k": 0.7, "ess_fraction": 0.05, "raw_vs_weighted": 0.1, "weights_moving": 0.02,
              "tail_gap": 0.02, "gibbs_shift": 0.3,
              # MCMC shift: family-wise false-alarm rate on exact draws, and the least movement (sd)
              "mcmc_false_alarm": MCMC_ALPHA, "mcmc_shift": MIN_SHIFT}
#: the defensive proposal's widening: ρ = ½ q + ½ q_f, q_f with every component (or the base
#: noise of a flow) 1.5× wider
TAIL_WIDEN = 1.5


class ReliabilityWarning(UserWarning):
    """Issued after a fit whose samples fail a reliability check."""


@dataclass
class Reliability:
    """The verdict and the numbers behind it (arviz's names: ``pareto_k``, ``ess`` a count,
    ``ess_fraction`` the fraction of ``n``). Everything after ``reasons`` is keyword-only."""

    trusted: bool | None  # None: could not be checked
    reasons: list[str] = field(default_factory=list)
    _: KW_ONLY
    pareto_k: float | None = None  # PSIS k̂ of the importance weights
    ess_fraction: float | None = None  # reverse importance ESS as a fraction of n
    raw_vs_weighted: float | None = None
    weights_moving: float | None = None
    log_normalizer: float | None = None
    log_normalizer_se: float | None = None
    n: int = 0
    nonfinite: int = 0  # samples with a non-finite log-density: outside the support, dropped
    tail_gap: float | None = None  # log Ẑ_ρ − log Ẑ_q (defensive proposal; see the module docstring)
    gibbs_shift: float | None = None  # largest W1(q_j, Gibbs-resampled q_j) / sd_j over coordinates
    gibbs_coordinate: int | None = None
    mcmc_shift: float | None = None       # movement (sd) at the MCMC check's largest statistic
    mcmc_statistic: float | None = None   # that paired-test |t|
    mcmc_threshold: float | None = None   # its Bonferroni threshold (depends on d)
    mcmc_coordinate: int | None = None    # where (−1: log p̃; ≥ d: a deterministic site, named in the reason)
    mcmc_grad_evals: int | None = None    # the check's cost: rows of log p̃ with a gradient
    #: a round check that stopped once the importance checks had failed: the Gibbs and MCMC
    #: checks, which could not have made it trusted, did not run (their fields are None)
    partial: bool = False

    @property
    def ess(self) -> float | None:
        """The importance ESS as a count of draws (``ess_fraction`` · ``n``)."""
        return None if self.ess_fraction is None else self.ess_fraction * self.n

    @property
    def khat(self) -> float | None:
        """Deprecated name of :attr:`pareto_k`."""
        warnings.warn("Reliability.khat is deprecated: use Reliability.pareto_k", DeprecationWarning, stacklevel=2)
        return self.pareto_k

    @property
    def verdict(self) -> str:
        if self.trusted is None:
            return "unverified: " + "; ".join(self.reasons)
        if self.trusted:
            return "trusted: every check passed"
        return "do not trust these samples: " + "; ".join(self.reasons)

    def to_dict(self) -> dict:
        return {**asdict(self), "ess": self.ess, "verdict": self.verdict, "thresholds": dict(THRESHOLDS)}


def _raw_vs_weighted(x: torch.Tensor, lw: torch.Tensor) -> float:
    """max over coordinates of |mean − weighted mean|/std and |P(x>median) − weighted P|."""
    x = x.double()
    w = _iw.normalized_weights(lw).double()
    std = x.std(0).clamp_min(1e-12)
    mean_gap = ((x.mean(0) - (w[:, None] * x).sum(0)).abs() / std).max()
    above = (x > x.median(0).values).double()
    frac_gap = (above.mean(0) - (w[:, None] * above).sum(0)).abs().max()
    return float(torch.maximum(mean_gap, frac_gap))


def _log_mean_exp_and_se(lw: torch.Tensor, n_total: int) -> tuple[float, float]:
    """log of mean(w) over n_total draws (rows with −inf or NaN count as w = 0) and its
    delta-method standard error."""
    lw = lw.double()
    lw = torch.where(torch.isfinite(lw), lw, torch.full_like(lw, -math.inf))
    m = lw.max()
    w = torch.zeros(n_total, dtype=torch.float64, device=lw.device)
    w[: lw.numel()] = (lw - m).exp()
    mean = w.mean()
    return float(m + mean.log()), float(w.std() / math.sqrt(n_total) / mean)


@torch.no_grad()
def gibbs_shift(log_density, x: torch.Tensor, *, n: int = 256, grid: int = 128, max_coords: int = 64,
                seed: int = 0) -> tuple[float, int]:
    """The largest Gibbs-invariance shift over coordinates (see the module docstring) and the
    coordinate where it occurs. ``x``: samples of q (n_q, d); log p̃ is evaluated n·grid times
    per coordinate."""
    g = torch.Generator().manual_seed(seed)  # (the CPU stream whatever x's device: same coordinates)
    dtype = x.dtype                                                            # log p̃ is called in it
    x = x[torch.isfinite(x).all(1)].double()
    nq, d = x.shape
    coords = torch.arange(d) if d <= max_coords else torch.randperm(d, generator=g, device="cpu")[:max_coords]
    base = x[torch.randperm(nq, generator=g, device="cpu").to(x.device)[: min(n, nq)]]   # (m, d)
    worst, where = 0.0, -1
    for j in coords.tolist():
        lo, hi = float(x[:, j].min()), float(x[:, j].max())
        width = max(hi - lo, 1e-6)
        t = torch.linspace(lo - 2 * width, hi + 2 * width, grid, dtype=torch.float64)
        lps = []
        for chunk in base.split(16):                                             # 16·grid rows at a time
            pts = chunk.repeat_interleave(grid, 0)
            pts[:, j] = t.repeat(chunk.shape[0])
            lps.append(log_density(pts.to(dtype)).double().reshape(chunk.shape[0], grid))
        lp = torch.cat(lps)
        lp = torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -math.inf))
        ok = torch.isfinite(lp).any(1)
        if not bool(ok.any()):
            continue
        cond = torch.softmax(lp[ok], 1).mean(0)                                   # Gibbs marginal pmf
        idx = torch.bucketize(x[:, j].contiguous(), (t[1:] + t[:-1]) / 2)                     # q's marginal, snapped
        qm = torch.bincount(idx, minlength=grid).double() / nq
        w1 = float((cond.cumsum(0) - qm.cumsum(0)).abs().sum() * (t[1] - t[0]))
        shift = w1 / float(x[:, j].std().clamp_min(1e-12))
        if shift > worst:
            worst, where = shift, j
    return worst, where


def assess(x: torch.Tensor, log_p: torch.Tensor | None, log_q: torch.Tensor | None,
           log_resp: torch.Tensor | None = None, *, log_w_defensive: torch.Tensor | None = None,
           gibbs: tuple[float, int] | None = None, mcmc: MCMCShift | None = None,
           unverified_reason: str = "") -> Reliability:
    """The verdict from samples x ~ q, log p̃(x), exact log q(x) and, for a mixture, the
    log responsibilities (n, J, K) (J = 1, or one mixture per coordinate). ``log_q=None``
    gives an unverified verdict. ``log_w_defensive``: log p̃ − log ρ at draws from the
    defensive proposal ρ = ½ q + ½ q_f (see the module docstring). ``mcmc``: the result of
    :func:`freeflow.mcmc.mcmc_shift` on draws of q; when it fired, the verdict is "do not trust"."""
    gibbs_reason = []
    if gibbs is not None and gibbs[0] > THRESHOLDS["gibbs_shift"]:
        gibbs_reason = [f"resampling coordinate {gibbs[1]} from p's conditional moves q's marginal by "
                        f"{gibbs[0]:.2f} sd (> {THRESHOLDS['gibbs_shift']}): q misses part of p there (e.g. a mode)"]
    if mcmc is not None and mcmc.fired:
        gibbs_reason.append(mcmc_reason(mcmc))
    g_val, g_at = (gibbs if gibbs is not None else (None, None))
    m_fields = {} if mcmc is None else {
        "mcmc_shift": mcmc.shift, "mcmc_statistic": mcmc.statistic, "mcmc_threshold": mcmc.threshold,
        "mcmc_coordinate": mcmc.coordinate, "mcmc_grad_evals": mcmc.grad_evals}
    if log_q is None or log_p is None:
        reasons = [unverified_reason or "no exact log q: importance checks unavailable"]
        return Reliability(False if gibbs_reason else None, gibbs_reason + reasons, n=int(x.shape[0]),
                           gibbs_shift=g_val, gibbs_coordinate=g_at, **m_fields)
    finite = torch.isfinite(log_p) & torch.isfinite(log_q) & torch.isfinite(x).all(1)
    reasons = []
    n_bad = int((~finite).sum())
    if n_bad > 0.5 * len(finite):
        reasons.append(f"{n_bad} of {len(finite)} samples have a non-finite log-density (outside the support)")
    x, log_p, log_q = x[finite], log_p[finite], log_q[finite]
    lw = _iw.log_importance_weights(log_p, log_q)
    pareto_k = _iw.pareto_k(lw)
    ess_fraction = _iw.reverse_ess(lw)
    gap = _raw_vs_weighted(x, lw)
    log_z, se = _iw.log_normalizer(lw)
    moving = None
    if log_resp is not None:
        resp = log_resp[finite].double().exp()                          # (n, J, K)
        pi = resp.mean(0)
        w = _iw.normalized_weights(lw).double()
        pi_star = (w[:, None, None] * resp).sum(0)
        moving = float(0.5 * (pi - pi_star).abs().sum(-1).max())
    tail_gap = None
    if log_w_defensive is not None:
        lz_q, se_q = _log_mean_exp_and_se(lw, len(lw))
        lz_r, se_r = _log_mean_exp_and_se(log_w_defensive, len(log_w_defensive))
        tail_gap = lz_r - lz_q
    t = THRESHOLDS
    if tail_gap is not None and tail_gap > max(t["tail_gap"], 3 * math.hypot(se_q, se_r)):
        reasons.append(f"q misses mass in its tails: a 1.5x wider proposal finds {math.expm1(tail_gap):.1%} "
                       f"more (log Z gap {tail_gap:.3f} > {t['tail_gap']})")
    # nearly uniform weights have no tail to speak of: k̂ then fits float noise, so it only
    # counts once the ESS fraction is below 0.9
    if (not math.isfinite(pareto_k) or pareto_k > t["pareto_k"]) and ess_fraction < 0.9:
        reasons.append(f"Pareto k̂ = {pareto_k:.2f} > {t['pareto_k']} (importance weights heavy-tailed: "
                       "q misses part of p)")
    if ess_fraction < t["ess_fraction"]:
        reasons.append(f"importance ESS fraction {ess_fraction:.3f} < {t['ess_fraction']}")
    if gap > t["raw_vs_weighted"]:
        reasons.append(f"raw and importance-weighted estimates differ by {gap:.2f} sd (> {t['raw_vs_weighted']}): "
                       "the raw samples are biased, e.g. mass in the wrong proportion between modes")
    if moving is not None and moving > t["weights_moving"]:
        reasons.append(f"mixture weights not settled: TV {moving:.3f} to their importance-weighted values "
                       f"(> {t['weights_moving']}); train longer")
    reasons += gibbs_reason
    return Reliability(not reasons, reasons, pareto_k=pareto_k, ess_fraction=ess_fraction, raw_vs_weighted=gap,
                       weights_moving=moving, log_normalizer=log_z, log_normalizer_se=se, n=int(x.shape[0]),
                       nonfinite=n_bad, tail_gap=tail_gap, gibbs_shift=g_val, gibbs_coordinate=g_at, **m_fields)


def mcmc_reason(m: MCMCShift) -> str:
    """The verdict's reason when the MCMC check fired."""
    where = m.where or ("log p̃" if m.coordinate < 0 else f"coordinate {m.coordinate}")
    if m.kind.endswith("tail"):
        moved = (f"changes the mass in the {m.kind} (beyond the 2.5% quantile) of {where} by "
                 f"{100 * m.shift:.1f} percentage points")
    else:
        what = "the mean of" if m.kind == "mean" else "the log sd of"
        moved = f"moves {what} {where} by {m.shift:.2f} sd"
    return (f"a p-invariant MCMC kernel started from q's draws {moved} in {m.steps} steps (paired-test "
            f"|t| {m.statistic:.1f} > {m.threshold:.1f}): q is too narrow or misplaced there")
