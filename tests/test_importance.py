"""Importance weights, log Ẑ and diagnostics (freeflow.importance)."""
import math

import numpy as np
import pytest
import torch

from freeflow.importance import (
    elbo,
    log_importance_weights,
    log_normalizer,
    normalized_weights,
    pareto_k,
    reverse_ess,
    self_normalized_expectation,
    summarize_importance,
)




def _draw(seed, n=4000, d=4, widen=1.25, const=17.3):
    """x ~ q = N(0, widen² I) (exact log q); target p̃ = N(0, I)·e^const, so log Z = const."""
    g = torch.Generator().manual_seed(seed)
    x = widen * torch.randn(n, d, generator=g, dtype=torch.float64)
    log_q = torch.distributions.Normal(0.0, widen).log_prob(x).sum(1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(1) + const
    return x, log_p, log_q, const


def test_log_normalizer_within_reported_error_band():
    """|log Ẑ − log Z| < 3 se for each of 8 seeds, and the z-scores are not all tiny."""
    zs = []
    for seed in range(8):
        _, lp, lq, c = _draw(seed)
        est, se = log_normalizer(lp - lq)
        assert 0 < se < 0.1
        zs.append((est - c) / se)
    zs = np.array(zs)
    assert np.all(np.abs(zs) < 3), zs
    assert np.abs(zs).max() > 0.2, zs  # the band is not absurdly wide


def test_ess_elbo_and_expectations():
    x, lp, lq, c = _draw(0, n=20000, d=2)
    lw = log_importance_weights(lp, lq)
    # exact ESS fraction (E_q w)²/E_q w² for q = N(0, a²I), p = N(0, I), d = 2: (√(2a²−1)/a²)^d
    a2 = 1.25**2
    ess_exact = ((2 * a2 - 1) ** 0.5 / a2) ** 2
    assert abs(reverse_ess(lw) - ess_exact) < 0.02
    kl_qp = 2 * 0.5 * (a2 - 1 - math.log(a2))  # KL(N(0,a²)‖N(0,1)) per dim × 2 dims
    assert abs(elbo(lw) - (c - kl_qp)) < 0.02
    est, se = self_normalized_expectation(lambda x: x**2, lw, x)
    assert torch.all((est - 1.0).abs() < 4 * se), (est, se)
    torch.testing.assert_close(normalized_weights(lw).sum(), torch.tensor(1.0, dtype=torch.float64))


def test_pareto_khat_flags_bad_proposals():
    """For q = N(0, a²I), p = N(0, I) the weights' tail index is k = 1 − a² (a < 1);
    a ≥ 1 gives bounded weights (k ≤ 0)."""
    _, lp, lq, _ = _draw(0, n=4000, d=2, widen=1.3)  # broad q: bounded weights
    assert pareto_k(lp - lq) < 0.5
    _, lp, lq, _ = _draw(1, n=4000, d=2, widen=0.4)  # narrow q: k = 0.84, infinite variance
    assert pareto_k(lp - lq) > 0.7
    s = summarize_importance(lp, lq)
    assert s.n == 4000 and s.pareto_k > 0.7


def test_bad_weights():
    with pytest.raises(ValueError, match="-inf"):
        log_normalizer(torch.full((10,), -math.inf))
    with pytest.raises(ValueError, match="-inf"):
        reverse_ess(np.full(5, -np.inf))
    with pytest.raises(ValueError, match="NaN"):
        log_normalizer(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match=r"\+inf"):
        elbo(torch.tensor([0.0, math.inf]))
    with pytest.raises(ValueError, match="shape"):
        log_importance_weights(torch.zeros(3), torch.zeros(4))
    # a few zero weights are fine
    est, se = log_normalizer(torch.tensor([0.0, -math.inf, 0.0, -math.inf]))
    assert est == pytest.approx(math.log(0.5))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampler_flow_generator_log_normalizer(seed):
    """OneStepSampler(generator="flow"): exact log q, so log Ẑ is consistent after any amount
    of training while q covers p.  Target N(1, 0.5² I)·e^C in 2-D: |log Ẑ − log Z| < 3 se."""
    from freeflow.datafree.sampler import OneStepSampler

    c = 3.0

    def log_p(x):
        return -0.5 * ((x - 1) / 0.5).pow(2).sum(1) + c

    log_z = c + math.log(2 * math.pi * 0.25)
    s = OneStepSampler(log_p, 2, generator="flow", seed=seed, batch_size=128, reference_size=128,
                       flow_layers=2, flow_hidden=16, init_scale=1.5)
    s.fit(15, progress=False)
    est, se = s.log_normalizer(4000, seed=seed)
    assert abs(est - log_z) < 3 * se, (est, se, log_z)
    summary = s.importance_summary(2000, seed=seed)
    assert 0 < summary.ess_fraction <= 1 and summary.elbo < log_z
    assert summary.ess == pytest.approx(summary.ess_fraction * summary.n)


def test_sampler_importance_needs_log_q():
    from freeflow.datafree.sampler import OneStepSampler

    s = OneStepSampler(lambda x: -0.5 * x.pow(2).sum(1), 2, seed=0, density="kde")
    with pytest.raises(ValueError, match="log q"):
        s.log_normalizer(100)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampler_log_normalizer_manywell_pairs(seed):
    """Many-Well with two double-well pairs (d = 4; the manywell32 target at dim=4, log Z known
    by quadrature): a spline flow generator trained briefly under target annealing covers both
    wells of each pair, so |log Ẑ − log Z| < 3 se.  A generator that missed a well would be off
    by log(1/0.8443) ≈ 0.17 or more per pair, far outside the band (se ≈ 0.005–0.02 here)."""
    from freeflow.datafree.sampler import OneStepSampler
    from targets import get_target

    t = get_target("manywell32", dim=4)
    s = OneStepSampler(t, generator="flow", flow_kind="spline", seed=seed, batch_size=128,
                       reference_size=128, flow_layers=3, flow_hidden=32)
    s.fit(150, progress=False)
    est, se = s.log_normalizer(8000, seed=seed)
    assert abs(est - t.log_Z) < 3 * se, (est, se, t.log_Z)
    assert se < 0.05, se  # the band is informative, not a wide net
    frac = t.positive_fraction(s.sample(8000, seed=seed))
    assert bool(((frac > 0.5) & (frac < 0.97)).all()), frac  # both wells of every pair (truth 0.8443)


def test_sampler_sample_and_log_prob_is_exact_for_flow_generator():
    """sample_and_log_prob: the forward log q equals the inverse-pass log q at the samples."""
    from freeflow.datafree.sampler import OneStepSampler

    s = OneStepSampler(lambda x: -0.5 * x.pow(2).sum(1), 3, generator="flow", seed=0,
                       batch_size=64, reference_size=64, flow_layers=2, flow_hidden=8)
    s.fit(3, progress=False)
    x, log_q = s.sample_and_log_prob(200, seed=1)
    assert x.shape == (200, 3) and log_q.shape == (200,)
    with torch.no_grad():
        inv = s.state.ema.module.log_prob(x)
    assert torch.allclose(log_q, inv, atol=1e-4), (log_q - inv).abs().max()
    kde = OneStepSampler(lambda x: -0.5 * x.pow(2).sum(1), 2, seed=0, density="kde")
    with pytest.raises(ValueError, match="log q"):
        kde.sample_and_log_prob(10)


def test_diagnostic_names_and_deprecated_aliases():
    """arviz's vocabulary: ``pareto_k``; ``ess`` a count, ``ess_fraction`` the fraction; the old
    names still answer, with a DeprecationWarning."""
    from freeflow import Reliability
    from freeflow.importance import pareto_khat, summarize

    _, lp, lq, _ = _draw(2, n=1000, d=2, widen=1.2)
    s = summarize(lp - lq)
    assert s.ess == pytest.approx(s.ess_fraction * 1000) and 0 < s.ess_fraction <= 1
    with pytest.warns(DeprecationWarning, match="pareto_k"):
        assert pareto_khat(lp - lq) == s.pareto_k
    with pytest.warns(DeprecationWarning, match="pareto_k"):
        assert summarize_importance(lp, lq, khat=False).pareto_k != summarize_importance(lp, lq).pareto_k
    rel = Reliability(True, [], pareto_k=0.3, ess_fraction=0.5, n=4000)
    assert rel.ess == 2000 and rel.to_dict()["ess"] == 2000 and rel.to_dict()["pareto_k"] == 0.3
    with pytest.warns(DeprecationWarning, match="pareto_k"):
        assert rel.khat == 0.3
    with pytest.raises(TypeError):
        Reliability(True, [], 0.3)  # the numbers are keyword-only
