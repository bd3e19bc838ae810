"""KDE log-density and mean-shift score against scipy.stats.gaussian_kde and finite differences."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import gaussian_kde

from freeflow.density.kde import KDE, bandwidth_factor


def _data(seed, n=300, d=3):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ A.T + 1.0


@pytest.mark.parametrize("rule", ["scott", "silverman"])
def test_log_prob_matches_scipy(seed, rule):
    x = _data(seed)
    q = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 10)) * 2
    kde = KDE(rule, covariance="full", jitter=0.0).fit(x)
    ref = gaussian_kde(x.numpy().T, bw_method=rule)
    np.testing.assert_allclose(kde.log_prob(q).numpy(), ref.logpdf(q.numpy().T), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("covariance", ["full", "diag", "iso"])
def test_score_matches_finite_differences(seed, covariance):
    x = _data(seed)
    kde = KDE("scott", factor=0.7, covariance=covariance).fit(x)
    q = x[:20] + 0.1
    score = kde.score(q)
    eps = 1e-5
    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = eps
        fd = (kde.log_prob(q + e) - kde.log_prob(q - e)) / (2 * eps)
        torch.testing.assert_close(score[:, k], fd, rtol=1e-6, atol=1e-7)


def test_leave_one_out_equals_kde_of_the_others():
    x = _data(0, n=60)
    kde = KDE(0.4, covariance="iso").fit(x)
    lq, s = kde.log_prob_and_score(x, same_batch=True)
    L = kde._chol
    for i in (0, 17, 59):
        others = torch.cat([x[:i], x[i + 1:]])
        k2 = KDE(0.4, covariance="iso")
        k2._ref, k2._chol = others, L  # same kernel, reference without point i
        lq2, s2 = k2.log_prob_and_score(x[i:i + 1])
        torch.testing.assert_close(lq[i:i + 1], lq2)
        torch.testing.assert_close(s[i:i + 1], s2)


def test_self_term_biases_score_toward_zero_in_high_dimension():
    # d = 30: with the point itself in the reference its own kernel dominates and the score
    # shrinks towards 0; leave-one-out does not.  (The reason the sampler never uses it.)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 30, generator=g, dtype=torch.float64)
    kde = KDE("scott").fit(x)
    with_self = kde.score(x).norm(dim=1).mean()
    loo = kde.log_prob_and_score(x, same_batch=True)[1].norm(dim=1).mean()
    assert with_self < 0.2 * loo


def test_bandwidth_rules():
    assert math.isclose(bandwidth_factor(1000, 2, "scott"), 1000 ** (-1 / 6))
    assert math.isclose(bandwidth_factor(1000, 2, "silverman"), (1000 * 4 / 4) ** (-1 / 6))
    x = _data(1)
    kde = KDE("median").fit(x)
    assert torch.isfinite(kde.kernel_std).all() and (kde.kernel_std > 0).all()


@pytest.mark.parametrize("kwargs,match", [({"bandwidth": "nope"}, "bandwidth"), ({"bandwidth": -1.0}, "bandwidth"),
                                          ({"covariance": "x"}, "covariance"), ({"factor": 0}, "factor")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KDE(**kwargs)


def test_misuse_errors():
    with pytest.raises(RuntimeError, match="fit"):
        KDE().log_prob(torch.zeros(2, 2))
    kde = KDE().fit(torch.randn(10, 2))
    with pytest.raises(ValueError, match="shape"):
        kde.log_prob(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="samples"):
        KDE().fit(torch.zeros(1, 2))
