"""The verdict of a :class:`~freeflow.datafree.sampler.OneStepSampler`: its draws, log q and
log p̃ handed to :func:`freeflow.reliability.assess` (importance checks, the defensive tail
check, the Gibbs check, the MCMC check), and the final verdict's longer MCMC check."""
from __future__ import annotations

import math

import torch

from .. import importance as _iw
from ..mcmc import final_options, mcmc_shift, refine_rows_per_draw
from ..placement import noise_generator
from ..reliability import TAIL_WIDEN, Reliability, assess, gibbs_shift, mcmc_reason
from . import space as _space

Tensor = torch.Tensor

__all__ = ["reliability", "round_check", "confirm", "final", "mcmc_check", "draw", "ROUND_MCMC_STEPS", "FINAL_MCMC_STEPS"]

#: what the warning after a fit that should not be trusted suggests
ADVICE = ("To correct the draws: sampler.sample(n, refine=100) moves each one with a p-invariant "
          "MCMC kernel, R-hat and ESS in sampler.last_refine (docs/refine.md says when it helps)")
#: the refine=k the advice names, and the draws its cost estimate is quoted for
ADVICE_REFINE, ADVICE_DRAWS = 100, 1000
#: MCMC-check lengths: every round's verdict, and the final one (docs/refine.md)
ROUND_MCMC_STEPS, FINAL_MCMC_STEPS = 40, 200
#: the final check runs this many times the round check's chains (all 4000 checked draws by
#: default): twice the paired test's power, for shifts of 0.1–0.15 sd that 1024 chains see
#: only at |t| ≈ 3.6–4.8 against a threshold of 3.6 (the 32-D random walk, docs/refine.md)
CONFIRM_CHAINS_FACTOR = 4
#: the final check's length: one step per this many training steps (≈ a quarter of the
#: training time on the posteriors measured: a 1000-step fit gets the full 200)
CONFIRM_STEPS_DIVISOR = 5
#: a draw whose log p̃ lies more than max(SPIKE_NATS, SPIKE_SPREADS × the draws' robust sd of
#: log p̃) below their median is one p rules out: for q ≈ p, log p̃'s lower tail is Gaussian (a
#: χ²) or at most exponential (Cauchy-like priors: P(20 sd) ≈ e⁻²⁰ a draw)
SPIKE_NATS, SPIKE_SPREADS = 100.0, 20.0
#: the final verdict looks for such draws among this many fresh draws (log p̃ values only)
SPIKE_DRAWS = 20_000
#: q's importance estimate of log Z may lie this far below the Gaussian stage's best ELBO (a lower
#: bound on log Z, its estimate from 256 draws) before the verdict says q misses mass (basin_reason)
BASIN_NATS = 2.0


def warning_text(sampler, rep: Reliability) -> str:
    """The ReliabilityWarning after a fit: the verdict, and (unless training itself failed) how
    to correct the draws."""
    advice = "" if sampler.state.failure is not None else f". {ADVICE}{refine_cost_text(sampler)}"
    return f"freeflow fit after {sampler.steps_done} steps: {rep.verdict}{advice}"


def refine_cost_text(sampler) -> str:
    """What the advice's refine=100 would spend, in log-density rows, beside what this fit's
    training spent (rows, not seconds: a check's seconds per row carry its own overheads)."""
    per_draw = refine_rows_per_draw(sampler.dim, ADVICE_REFINE)
    trained = sampler.cost().get("training", {}).get("evaluations", 0)
    spent = f" (this fit's training: {trained:.1e})" if trained else ""
    return (f"; it spends about {per_draw} log-density rows a draw, {per_draw * ADVICE_DRAWS:.1e} per "
            f"{ADVICE_DRAWS} draws{spent}")


def reliability(sampler, n: int, seed: int, *, cheap_first: bool = False) -> Reliability:
    """The round verdict from n draws of the sampler (see :mod:`freeflow.reliability`).

    ``cheap_first``: where the importance checks alone already say "do not trust", return
    that (``partial=True``) without the Gibbs and MCMC checks, which cost ~100× more log p̃
    evaluations and could only add reasons; the verdict (trusted or not) is the same."""
    net = sampler.state.ema.module
    if not sampler.spec.exact:
        x = sampler._draw(n, seed=seed)
        return assess(x, None, None, gibbs=gibbs_check(sampler, x, seed),
                      mcmc=mcmc_check(sampler, x, seed), unverified_reason=(
            f"density={sampler.density_name!r} gives no exact log q, so importance checks are "
            "unavailable; compare with a reference (freeflow.compare) instead"))
    u, log_q = draw(net, n, seed, sampler.settings["noise_dim"])
    x = sampler.frame.to_x(u)
    with torch.no_grad():
        log_p = sampler._log_density_chunked(x).to(log_q.dtype)
        log_resp = net.log_responsibilities(u)
        # defensive proposal ρ = ½ q + ½ q_f: draws from q_f, and both densities everywhere
        # (all in the generator's frame u; log p̃_u = log p̃ + log|det|, the same shift for all)
        with net.widened(TAIL_WIDEN):
            uw, log_qf_w = draw(net, n, seed + 1, sampler.settings["noise_dim"])
            log_qf_u = torch.cat([net.log_prob(c) for c in u.split(_iw.LOG_DENSITY_CHUNK)])
        log_q_w = torch.cat([net.log_prob(c) for c in uw.split(_iw.LOG_DENSITY_CHUNK)])
        log_rho = torch.logaddexp(torch.cat([log_q, log_q_w]), torch.cat([log_qf_u, log_qf_w])) - math.log(2)
        log_p_w = sampler._log_density_chunked(sampler.frame.to_x(uw)).to(log_q.dtype)
        log_w_def = torch.cat([log_p, log_p_w]) + sampler.frame.log_det - log_rho
    log_q_x = log_q - sampler.frame.log_det                     # q's density where p̃ is evaluated
    bound = (sampler.gaussian_fit or {}).get("elbo_bound")
    if cheap_first:
        rep = assess(x, log_p, log_q_x, log_resp, log_w_defensive=log_w_def)
        if rep.trusted is False:
            rep.partial = True
            return _add_basin(_add_spikes(rep, log_p), log_p - log_q_x, bound)
    rep = assess(x, log_p, log_q_x, log_resp, log_w_defensive=log_w_def,
                 gibbs=gibbs_check(sampler, x, seed), mcmc=mcmc_check(sampler, x, seed))
    return _add_basin(_add_spikes(rep, log_p), log_p - log_q_x, bound)


def basin_reason(log_w: Tensor, elbo_bound: float | None) -> str | None:
    """Why q misses mass, measured against the Gaussian stage: an ELBO is a lower bound on log Z,
    so where the stage's best Gaussian has an ELBO above q's importance estimate of log Z (from
    these draws' log weights ``log_w``) by more than ``BASIN_NATS``, q cannot hold more than
    e^−gap of p's mass. Importance weights, the Gibbs and the MCMC checks all work from q's draws
    and cannot see a basin q never visits; this sees one the stage's searches found. None when
    there is no bound or no such gap."""
    if elbo_bound is None or not math.isfinite(elbo_bound):
        return None
    finite = log_w[torch.isfinite(log_w)].double()
    log_z = float(torch.logsumexp(finite, 0) - math.log(log_w.numel())) if finite.numel() else -math.inf
    gap = elbo_bound - log_z
    if gap <= BASIN_NATS:
        return None
    return (f"q misses part of p: the Gaussian stage found a Gaussian whose ELBO ({elbo_bound:.1f}), a lower bound "
            f"on log Z, exceeds q's importance estimate of log Z ({log_z:.1f}) by {gap:.1f} nats, so q holds at "
            f"most {math.exp(-gap):.1e} of p's mass where its draws go (another basin, or a region q never reaches)")


def _add_basin(rep: Reliability, log_w: Tensor, elbo_bound: float | None) -> Reliability:
    reason = basin_reason(log_w, elbo_bound)
    if reason is not None:
        rep.trusted, rep.reasons = False, [*rep.reasons, reason]
    return rep


def spike_reason(log_p: Tensor) -> str | None:
    """Why draws with these log p̃ values should not be trusted because some of them lie where p
    has (numerically) no mass: log p̃ more than max(``SPIKE_NATS``, ``SPIKE_SPREADS`` × half the
    16–84 % range of the finite values) below their median; None when there are none.
    Importance weights and every rank-based check are blind to such draws (their weight is 0,
    their rank merely the last), but a raw average of an unbounded function is not: a GARCH fit
    whose q sent ~10⁻⁴ of its mass far out along log α₀ (up to 26, posterior sd 0.5, log p̃ down
    to −10¹⁷) was trusted, and one draw in 20 000 made the raw mean of α₀ 1.3·10⁷ instead of
    0.49 (benchmarks/spike_check.py)."""
    finite = log_p[torch.isfinite(log_p)]
    if finite.numel() < 2:
        return None
    q16, q50, q84 = torch.quantile(finite.double(), torch.tensor([0.16, 0.5, 0.84], dtype=torch.float64)).tolist()
    gap = max(SPIKE_NATS, SPIKE_SPREADS * (q84 - q16) / 2)
    far = int((finite < q50 - gap).sum())
    if far == 0:
        return None
    return (f"{far} of {log_p.numel()} draws lie where log p̃ is more than {gap:.0f} below the draws' "
            f"median: q sends a little mass ({far / log_p.numel():.1e}) where p has none, so raw averages of "
            "unbounded functions (e.g. a scale parameter's mean) are wrong; importance weights give them weight 0")


def _add_spikes(rep: Reliability, log_p: Tensor) -> Reliability:
    reason = spike_reason(log_p)
    if reason is not None:
        rep.trusted, rep.reasons = False, [*rep.reasons, reason]
    return rep


def gibbs_check(sampler, x: Tensor, seed: int):
    """The Gibbs check (:func:`freeflow.reliability.gibbs_shift`): 256 base points × 128 grid
    points × up to 64 coordinates of log p̃ values; where the cost probe reduced the batch (an
    expensive log-density, :mod:`freeflow.datafree.cost`), base points in proportion to the
    check's chains and up to 32 coordinates."""
    chains = sampler.settings.get("check_chains") or 1024
    if chains >= 1024:
        return gibbs_shift(sampler.log_density, x, seed=seed)
    return gibbs_shift(sampler.log_density, x, seed=seed, n=max(32, 256 * chains // 1024), max_coords=32)


def mcmc_check(sampler, x: Tensor, seed: int, steps: int = ROUND_MCMC_STEPS, chains: int | None = None,
               **options):
    """Does a p-invariant kernel move q's draws (:func:`freeflow.mcmc.mcmc_shift`)? The check
    that a q too narrow or misplaced in a direction importance weights cannot see fails.
    ``chains``: default the ``check_chains`` setting (1024); ``options`` go to ``mcmc_shift``."""
    chains = chains or sampler.settings.get("check_chains") or 1024
    label = f"verdict: MCMC check, {steps} steps" if getattr(sampler, "show_progress", False) else None
    return mcmc_shift(sampler.log_density, x, steps=steps, seed=seed, n=chains, progress=label, **options)


def round_check(sampler, last: bool) -> Reliability:
    """The check at the end of a round of an auto run: :func:`reliability` (n = 4000, the
    seed of ``sampler.reliability()``) confirmed by :func:`confirm` when it passes. Before the
    last round (``last`` False) it stops at the importance checks when they fail: the run goes
    on either way, and on the 1600-D Cox process the skipped Gibbs and MCMC checks are ~2
    minutes a round."""
    rep = sampler.reliability(cheap_first=not last)
    return confirm(sampler, rep) if rep.trusted is True else rep


def derived_features(sampler) -> dict:
    """The final check's extra columns: a posterior's deterministic sites (e.g. a latent path
    computed from standardised innovations and scales), which a q right on every coordinate can
    still get wrong (stochastic volatility: every coordinate within 8.4 %, the path's sds up to
    12 % wide); where training ran in a twin's coordinates (``sampler.reparam``), the model's own
    coordinates first. {} where there are none."""
    post = getattr(sampler, "posterior", None)
    twin = getattr(sampler, "reparam", None) is not None
    if post is None or not (getattr(post, "derived_names", ()) or twin):
        return {}
    try:   # (a model whose deterministic sites cannot be computed in batches: the check without them)
        shapes = dict(post.derived(sampler.sample_unconstrained(2, seed=0))) if post.derived_names else {}
    except Exception:  # noqa: BLE001
        shapes = {}
    names = [f"{k}[{i}]" if v[0].numel() > 1 else k for k, v in shapes.items() for i in range(v[0].numel())]
    if twin:
        names = [f"model:{c}" for c in post.coordinate_names()] + names
    if not names:
        return {}

    def features(w):
        z = _space.to_model(sampler, w)
        cols = [z] if twin else []
        if shapes:
            cols += [v.reshape(len(z), -1).to(z.dtype) for v in post.derived(z).values()]
        return torch.cat(cols, 1)
    return {"features": features, "feature_names": names}


def confirm(sampler, rep: Reliability, seed: int = 12345) -> Reliability:
    """The final verdict: a trusted verdict (whose MCMC check ran ``ROUND_MCMC_STEPS``
    steps) is confirmed by a longer MCMC check on the same draws: one step per
    ``CONFIRM_STEPS_DIVISOR`` training steps, up to ``FINAL_MCMC_STEPS``, on
    ``CONFIRM_CHAINS_FACTOR`` times the round check's 1024 chains (an expensive log-density,
    whose chains the cost probe reduced, keeps its ``check_chains``). A kernel that mixes slowly
    along a funnel's neck moves q's draws measurably only after ~200 steps (the 32-D random
    walk with unknown scales, docs/refine.md). The length is set by the training's length, not
    by seconds, so that a seed gives the same verdict on every machine and under any load; the
    run ends sooner once its chains have forgotten their starts (:func:`freeflow.mcmc.mixing_stop`).
    It adds dilation moves and the tail tests (:func:`freeflow.mcmc.final_options`): a q that
    misses the deep neck of a hierarchical funnel (centred eight schools, log τ 12% too narrow)
    moves its draws there only along the funnel, and the mass that moves is in the tails.
    Before it, ``SPIKE_DRAWS`` fresh draws are searched for points p rules out
    (:func:`spike_reason`: a q with a rare spike far out is right on every check that ranks or
    weights its draws, and wrong on raw averages)."""
    if rep.trusted is not True or rep.mcmc_statistic is None:
        return rep
    with sampler.counted.stage("checks"), torch.no_grad():   # rare spikes of q (spike_reason)
        log_p = sampler._log_density_chunked(sampler._draw(SPIKE_DRAWS, seed=seed + 7))
    if _add_spikes(rep, log_p).trusted is not True:
        return rep
    steps = min(FINAL_MCMC_STEPS, sampler.steps_done // CONFIRM_STEPS_DIVISOR)
    if steps <= ROUND_MCMC_STEPS:
        return rep
    x = sampler._draw(4000, seed=seed)   # the draws reliability() checked
    base = sampler.settings.get("check_chains")
    chains = min(len(x), CONFIRM_CHAINS_FACTOR * 1024 if base is None else base)
    with sampler.counted.stage("checks"):
        m = mcmc_check(sampler, x, seed, steps, chains, **final_options(x.shape[1]), **derived_features(sampler))
    rep.mcmc_shift, rep.mcmc_statistic, rep.mcmc_threshold = m.shift, m.statistic, m.threshold
    rep.mcmc_coordinate, rep.mcmc_grad_evals = m.coordinate, m.grad_evals
    if m.fired:
        rep.trusted, rep.reasons = False, [*rep.reasons, mcmc_reason(m)]
    return rep


def final(sampler, auto_run: bool) -> Reliability:
    """The verdict at the end of ``fit``: never trusted after training stopped on failures
    (:mod:`freeflow.train.recovery`); an auto run's round check at this very step (its last
    round's, or one just before a time limit ended the fit) already judged this state;
    otherwise :func:`reliability` confirmed by :func:`confirm`."""
    rep = sampler.last_reliability
    if sampler.state.failure is not None:  # training stopped early (train.recovery): never trusted
        try:
            rep = sampler.reliability()
        except (ValueError, FloatingPointError, RuntimeError) as e:
            rep = Reliability(None, [f"the reliability check could not run ({e})"])
        rep.trusted, rep.reasons = False, [sampler.state.failure, *rep.reasons]
        return rep
    if auto_run and rep is not None and not rep.partial and sampler.auto.rounds and sampler.auto.rounds[-1]["step"] == sampler.steps_done:
        return rep
    return confirm(sampler, sampler.reliability())


@torch.no_grad()
def draw(net, n: int, seed: int | None, noise_dim: int, rng=None, chunk_size: int = 16384):
    """n draws u of an exact generator in its own frame and log q_u(u)."""
    rng = noise_generator(seed) if seed is not None else rng
    us, lqs = [], []
    for start in range(0, n, chunk_size):
        z = torch.randn(min(chunk_size, n - start), noise_dim, generator=rng)
        u, lq = net.forward_and_log_prob(z)
        us.append(u)
        lqs.append(lq)
    return torch.cat(us), torch.cat(lqs)

