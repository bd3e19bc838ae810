"""Every registered divergence: w(r) = r² f''(r), checked by autograd from its own f."""
import math

import pytest
import torch

from freeflow.divergences import available_divergences, get_divergence

NAMES = [n for n in available_divergences() if n != "alpha:<a>"] + ["alpha:0.5", "alpha:2", "alpha:-1"]


def _second_derivative(f, r):
    r = r.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(r).sum(), r, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), r)
    return h


@pytest.mark.parametrize("name", NAMES)
def test_weight_is_r2_fpp(name):
    div = get_divergence(name)
    r = torch.logspace(-3, 3, 61, dtype=torch.float64)
    expected = r**2 * _second_derivative(div.f, r)
    got = div.weight(torch.log(r))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_f_vanishes_at_one_and_weight_finite_for_extreme_log_r(name):
    div = get_divergence(name)
    one = torch.ones(1, dtype=torch.float64)
    assert abs(float(div.f(one))) < 1e-12  # a divergence is zero when p = q
    log_r = torch.tensor([-200.0, 0.0, 200.0], dtype=torch.float64)
    assert torch.isfinite(div.log_weight(log_r)).all()


def test_power_law_flags():
    assert {n for n in NAMES if not get_divergence(n).power_law} == {"js", "jeffreys"}


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="kl_pq") as e:
        get_divergence("forward_kl")
    assert "alpha:<a>" in str(e.value)


@pytest.mark.parametrize("bad", ["alpha:1", "alpha:0", "alpha:nan"])
def test_alpha_degenerate(bad):
    with pytest.raises(ValueError, match="alpha"):
        get_divergence(bad)


def test_names_case_and_objects():
    d = get_divergence("KL_PQ")
    assert d.name == "kl_pq" and get_divergence(d) is d
    assert get_divergence("alpha:0.5").name == "alpha:0.5"
    with pytest.raises(TypeError):
        get_divergence(3)
    assert math.isclose(float(get_divergence("alpha:0.5").weight(torch.tensor(math.log(4.0)))), 2.0)
