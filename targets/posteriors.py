"""Eight schools (Rubin 1981; Gelman et al., BDA3 §5.5): a hierarchical posterior, 10-D.

Data: effects y_j and standard errors sigma_j of J = 8 schools.  Model:

    mu ~ N(0, 5²),   tau ~ HalfCauchy(5),   theta_j ~ N(mu, tau²),   y_j ~ N(theta_j, sigma_j²).

Sampled in unconstrained coordinates, both normalised as densities in those coordinates, so
that log_Z is the evidence log p(y) in both (the Jacobian of tau = e^s is included):

* ``eight_schools_centred``:     x = (mu, s = log tau, theta_1..8)
      log p̃(x) = log N(mu; 0, 5²) + log HalfCauchy(e^s; 5) + s
                 + Σ_j log N(theta_j; mu, e^{2s}) + Σ_j log N(y_j; theta_j, sigma_j²).
  Funnel-shaped in (s, theta): NUTS reports divergences and under-explores small tau.
* ``eight_schools_noncentred``:  x = (mu, s = log tau, eta_1..8), theta_j = mu + e^s eta_j
      log p̃(x) = log N(mu; 0, 5²) + log HalfCauchy(e^s; 5) + s
                 + Σ_j log N(eta_j; 0, 1) + Σ_j log N(y_j; mu + e^s eta_j, sigma_j²).
  The same posterior, reparameterised: NUTS is a valid reference here.

Exact sampler (both).  With mu integrated out analytically, p(s | y) ∝ HalfCauchy(e^s) e^s
p(y | tau = e^s), where (V_j = sigma_j² + tau², w_j = 1/V_j, P = 1/25 + Σ w_j)

    log p(y | tau) = -½ Σ log(2π V_j) - ½ Σ w_j y_j² - ½ log(2π·25) + ½ log(2π/P)
                     + ½ (Σ w_j y_j)² / P.

s is drawn by inverting its CDF tabulated on a fine grid (s ∈ [-20, 10], 40001 points,
linear interpolation), then mu | tau, y ~ N(Σ w_j y_j / P, 1/P) and
theta_j | mu, tau, y ~ N((mu/tau² + y_j/sigma_j²)/P_j, 1/P_j), P_j = 1/tau² + 1/sigma_j².
log_Z = log ∫ p(s, y) ds by the trapezoid rule on the same grid (error far below 1e-6).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .base import Target
from .registry import register_target

Y = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
SIGMA = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)
MU_SCALE = 5.0
TAU_SCALE = 5.0
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_S_GRID = (-20.0, 10.0, 40001)


def _log_half_cauchy(tau, scale: float, log1p):
    """log HalfCauchy(tau; scale) = log 2 - log(pi scale) - log1p((tau/scale)²).

    (``log1p`` is the backend's log1p: torch, numpy or jax.numpy.)"""
    return math.log(2.0 / (math.pi * scale)) - log1p((tau / scale) ** 2)


def _log_marginal_s(s: np.ndarray) -> np.ndarray:
    """log p(s, y) with mu and theta integrated out (see the module docstring), float64."""
    y, sig = np.asarray(Y), np.asarray(SIGMA)
    tau = np.exp(s)[:, None]
    V = sig**2 + tau**2
    w = 1.0 / V
    P = 1.0 / MU_SCALE**2 + w.sum(1)
    wy = (w * y).sum(1)
    log_lik = (-0.5 * np.log(2 * np.pi * V).sum(1) - 0.5 * (w * y**2).sum(1)
               - 0.5 * np.log(2 * np.pi * MU_SCALE**2) + 0.5 * np.log(2 * np.pi / P)
               + 0.5 * wy**2 / P)
    return _log_half_cauchy(np.exp(s), TAU_SCALE, np.log1p) + s + log_lik


class _EightSchools(Target):
    dim = 10
    has_exact_sampler = True
    centred: bool

    def __init__(self) -> None:
        super().__init__()
        self.y = torch.tensor(Y, dtype=torch.float64)
        self.sigma = torch.tensor(SIGMA, dtype=torch.float64)
        grid = np.linspace(*_S_GRID)
        logp = _log_marginal_s(grid)
        m = logp.max()
        dens = np.exp(logp - m)
        ds = grid[1] - grid[0]
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * ds)])
        self.log_Z = float(m + np.log(cdf[-1]))
        self._s_grid, self._s_cdf = grid, cdf / cdf[-1]
        self.plot_range = [(-15.0, 25.0), (-6.0, 4.0)] + (
            [(-30.0, 50.0)] * 8 if self.centred else [(-3.5, 3.5)] * 8
        )

    # log N(v; m, sd²) elementwise, with log sd passed in to keep log(e^s) = s exact.
    @staticmethod
    def _log_normal(v, m, sd, log_sd):
        return -0.5 * ((v - m) / sd) ** 2 - log_sd - _HALF_LOG_2PI

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        y, sig = self.y.to(x), self.sigma.to(x)
        mu, s, rest = x[..., 0], x[..., 1], x[..., 2:]
        tau = torch.exp(s)
        lp = self._log_normal(mu, 0.0, MU_SCALE, math.log(MU_SCALE))
        lp = lp + _log_half_cauchy(tau, TAU_SCALE, torch.log1p) + s
        if self.centred:
            theta = rest
            lp = lp + self._log_normal(theta, mu[..., None], tau[..., None], s[..., None]).sum(-1)
        else:
            theta = mu[..., None] + tau[..., None] * rest
            lp = lp + self._log_normal(rest, 0.0, 1.0, 0.0).sum(-1)
        return lp + self._log_normal(y, theta, sig, torch.log(sig)).sum(-1)

    def log_prob_jax(self, x):
        import jax.numpy as jnp

        y, sig = jnp.asarray(Y, dtype=x.dtype), jnp.asarray(SIGMA, dtype=x.dtype)
        mu, s, rest = x[0], x[1], x[2:]
        tau = jnp.exp(s)
        lp = self._log_normal(mu, 0.0, MU_SCALE, math.log(MU_SCALE))
        lp = lp + _log_half_cauchy(tau, TAU_SCALE, jnp.log1p) + s
        if self.centred:
            theta = rest
            lp = lp + jnp.sum(self._log_normal(theta, mu, tau, s))
        else:
            theta = mu + tau * rest
            lp = lp + jnp.sum(self._log_normal(rest, 0.0, 1.0, 0.0))
        return lp + jnp.sum(self._log_normal(y, theta, sig, jnp.log(sig)))

    def _sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
        s = torch.from_numpy(np.interp(u, self._s_cdf, self._s_grid))
        z = torch.randn(n, 9, generator=generator, dtype=torch.float64)
        tau = torch.exp(s)[:, None]
        y, sig = self.y, self.sigma
        w = 1.0 / (sig**2 + tau**2)                                    # (n, 8)
        P = 1.0 / MU_SCALE**2 + w.sum(1)                               # (n,)
        mu = (w * y).sum(1) / P + z[:, 0] / P.sqrt()                   # (n,)
        Pj = 1.0 / tau**2 + 1.0 / sig**2                               # (n, 8)
        theta = (mu[:, None] / tau**2 + y / sig**2) / Pj + z[:, 1:] / Pj.sqrt()
        rest = theta if self.centred else (theta - mu[:, None]) / tau
        return torch.cat([mu[:, None], s[:, None], rest], dim=1)

    def to_school_effects(self, x: torch.Tensor) -> torch.Tensor:
        """(mu, tau, theta_1..8) from samples in this target's coordinates: (n, 10) -> (n, 10)."""
        mu, s, rest = x[:, :1], x[:, 1:2], x[:, 2:]
        tau = torch.exp(s)
        theta = rest if self.centred else mu + tau * rest
        return torch.cat([mu, tau, theta], dim=1)

    def diagnostics(self, x: torch.Tensor) -> dict:
        """Posterior means of mu and tau and P(tau < 1) (small tau is what centred NUTS misses)."""
        eff = self.to_school_effects(torch.as_tensor(x, dtype=torch.float64))
        return {
            "mean_mu": float(eff[:, 0].mean()),
            "mean_tau": float(eff[:, 1].mean()),
            "p_tau_below_1": float((eff[:, 1] < 1).double().mean()),
        }


@register_target("eight_schools_centred")
class EightSchoolsCentred(_EightSchools):
    """Eight schools, centred: x = (mu, log tau, theta_1..8).  See the module docstring."""

    name = "eight_schools_centred"
    centred = True


@register_target("eight_schools_noncentred")
class EightSchoolsNonCentred(_EightSchools):
    """Eight schools, non-centred: x = (mu, log tau, eta_1..8).  See the module docstring."""

    name = "eight_schools_noncentred"
    centred = False
