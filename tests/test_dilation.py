"""Dilation moves (freeflow.mcmc.dilation) leave p invariant and walk along a funnel.

Exact draws stay exact: after 60 kernel steps with dilations (and nothing else), every
coordinate's mean and sd agree with the closed form within 4.5 Monte Carlo standard errors
(4000 chains; means se = sd/√n; sds se ≈ sd·√(1/(2n)) for the Gaussian, and for the funnel's
v ~ N(0, 3²)). A q whose funnel variable is 30% too narrow widens to within 10% of the true
sd in 200 steps of dilations alone."""
import math

import pytest
import torch

from freeflow.mcmc.dilation import build_dilation_kernel, build_ensemble_dilation_kernel
from freeflow.mcmc.kernel import run_chains

N = 4000


def funnel(x):
    v, rest = x[:, 0], x[:, 1:]
    return -v ** 2 / 18 - 0.5 * (rest ** 2).sum(1) * torch.exp(-v) - 0.5 * rest.shape[1] * v


def funnel_draws(n, d, gen, v_sd=3.0):
    v = v_sd * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    return torch.cat([v, torch.exp(v / 2) * torch.randn(n, d - 1, generator=gen, dtype=torch.float64)], 1)


def run_dilations(log_p, x, steps, seed, step=0.5, build=build_dilation_kernel):
    kernel = build(log_p)
    gen = torch.Generator().manual_seed(seed)
    lp = log_p(x)
    acc = []
    for _ in range(steps):
        coords = torch.randperm(x.shape[1], generator=gen)[:3].tolist()
        x, lp, a = kernel(gen, x, lp, coords, torch.full((x.shape[1],), step, dtype=torch.float64))
        acc.append(a.mean())
    return x, float(torch.stack(acc).mean())


KERNELS = [build_dilation_kernel, build_ensemble_dilation_kernel]


@pytest.mark.parametrize("build", KERNELS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_gaussian_draws_stay_exact(seed, build):
    gen = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.5, 1.0, 2.0, 1.0, 3.0], dtype=torch.float64)
    x0 = torch.randn(N, 5, generator=gen, dtype=torch.float64) * scale + 1.0
    x, acc = run_dilations(lambda x: -0.5 * (((x - 1.0) / scale) ** 2).sum(1), x0, 60, seed, build=build)
    assert acc > 0.05                                     # it moves
    assert ((x.mean(0) - 1.0).abs() / (scale / math.sqrt(N)) < 4.5).all()
    assert ((x.std(0) - scale).abs() / (scale / math.sqrt(2 * N)) < 4.5).all()


@pytest.mark.parametrize("build", KERNELS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_funnel_draws_stay_exact(seed, build):
    gen = torch.Generator().manual_seed(seed)
    x, acc = run_dilations(funnel, funnel_draws(N, 6, gen), 60, seed, build=build)
    assert acc > 0.05
    v = x[:, 0]
    assert abs(float(v.mean())) < 4.5 * 3 / math.sqrt(N)
    assert abs(float(v.std()) - 3) < 4.5 * 3 / math.sqrt(2 * N)


def test_a_too_narrow_funnel_widens_to_the_truth():
    gen = torch.Generator().manual_seed(7)
    x0 = funnel_draws(N, 6, gen, v_sd=2.1)                # v 30 % too narrow, the x's consistent with it
    x, _ = run_dilations(funnel, x0, 200, 7, step=1.0)
    assert abs(float(x[:, 0].std()) / 3 - 1) < 0.10


# a scale pinning coordinates to different centres (a random walk's observed states pinned to
# their data as the observation scale shrinks): b ~ N(0, 1.5²), x_k | b ~ N(c_k, e^{2b})
CENTRES = torch.tensor([-3.0, -1.0, 0.5, 2.0, 4.0], dtype=torch.float64)


def pinned(x):
    b, rest = x[:, 0], x[:, 1:]
    return -b ** 2 / 4.5 - 0.5 * ((rest - CENTRES) ** 2).sum(1) * torch.exp(-2 * b) - rest.shape[1] * b


def pinned_draws(n, gen, b_sd=1.5):
    b = b_sd * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    return torch.cat([b, CENTRES + torch.exp(b) * torch.randn(n, 5, generator=gen, dtype=torch.float64)], 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_pinned_draws_stay_exact_under_the_ensemble_frame(seed):
    gen = torch.Generator().manual_seed(seed)
    x, acc = run_dilations(pinned, pinned_draws(N, gen), 60, seed, build=build_ensemble_dilation_kernel)
    assert acc > 0.2
    b = x[:, 0]
    assert abs(float(b.mean())) < 4.5 * 1.5 / math.sqrt(N)
    assert abs(float(b.std()) - 1.5) < 4.5 * 1.5 / math.sqrt(2 * N)


def test_the_ensemble_frame_walks_into_a_neck_the_chains_mean_cannot():
    # b 30 % too narrow (the x's consistent with it): 100 steps of dilations alone. The frame
    # learnt from the other chains (centres c_k, spread e^b) widens b to within 10 % of 1.5 on
    # 3 seeds; scaling about each chain's own mean (the c_k differ) leaves it more than 10 % narrow
    for seed in range(3):
        gen = torch.Generator().manual_seed(20 + seed)
        x0 = pinned_draws(N, gen, b_sd=1.05)
        ens, _ = run_dilations(pinned, x0, 100, seed, step=1.0, build=build_ensemble_dilation_kernel)
        own, _ = run_dilations(pinned, x0, 100, seed, step=1.0)
        assert abs(float(ens[:, 0].std()) / 1.5 - 1) < 0.10, seed
        assert float(own[:, 0].std()) / 1.5 < 0.9, seed   # (measured: 0.76-0.79 against 0.99-1.01)


def test_run_chains_with_dilations_counts_and_keeps_exact_draws():
    gen = torch.Generator().manual_seed(3)
    x0 = funnel_draws(2000, 4, gen)
    r = run_chains(funnel, x0, 20, warmup=20, local_step_size=True, coordinates_per_step=2, dilations_per_step=2,
                   seed=3)
    assert r.density_evals == 2000 * (2 + 2) * 40
    v = r.state.position[:, 0]
    assert abs(float(v.std()) - 3) < 4.5 * 3 / math.sqrt(2 * 2000)
