"""An ODE posterior of the zoo (benchmarks/zoo_models.py registers it), written after the rest and
not tuned on: the Lotka–Volterra predator–prey model of the Hudson's Bay Company lynx and hare
pelts, 1900–1920, as NumPyro's own example writes it (``jax.experimental.ode.odeint``, an adaptive
Dormand–Prince solver, rtol 1e-6, at most 1000 steps), the shape of the public collection's
``hudson_lynx_hare-lotka_volterra``. Four rate parameters (truncated normals at 0), the two initial
populations and two log-normal noise scales: 8 unconstrained coordinates. The solver fails (NaN) at
extreme rates, and L-BFGS from the origin ends in a local optimum 40 nats below the mode
(docs/benchmarks.md). The counts are the published table (thousands of pelts)."""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.experimental.ode import odeint

HARE = (30, 47.2, 70.2, 77.4, 36.3, 20.6, 18.1, 21.4, 22, 25.4, 27.1, 40.3, 57, 76.6, 52.3, 19.5, 11.2, 7.6,
        14.6, 16.2, 24.7)
LYNX = (4, 6.1, 9.8, 35.2, 59.4, 41.7, 19, 13, 8.3, 9.1, 7.4, 8, 12.3, 19.5, 45.7, 51.1, 29.7, 15.8, 9.7, 10.1,
        8.6)


def dz_dt(z, t, theta):
    """du/dt = (α − βv)u, dv/dt = (−γ + δu)v (u hares, v lynx)."""
    u, v = z[0], z[1]
    alpha, beta, gamma, delta = theta[..., 0], theta[..., 1], theta[..., 2], theta[..., 3]
    return jnp.stack([(alpha - beta * v) * u, (-gamma + delta * u) * v])


def lotka_volterra_ode(N, y=None):
    z_init = numpyro.sample("z_init", dist.LogNormal(jnp.log(10), 1).expand([2]))
    ts = jnp.arange(float(N))
    theta = numpyro.sample("theta", dist.TruncatedNormal(low=0.0, loc=jnp.array([1.0, 0.05, 1.0, 0.05]),
                                                         scale=jnp.array([0.5, 0.05, 0.5, 0.05])))
    z = odeint(dz_dt, z_init, ts, theta, rtol=1e-6, atol=1e-5, mxstep=1000)
    sigma = numpyro.sample("sigma", dist.LogNormal(-1, 1).expand([2]))
    numpyro.sample("y", dist.LogNormal(jnp.log(z), sigma), obs=y)


@functools.lru_cache(maxsize=None)
def lynx_data():
    """(N, y (N, 2) [hare, lynx])."""
    y = np.stack([np.asarray(HARE), np.asarray(LYNX)], axis=1)
    return y.shape[0], y


def entries() -> dict:
    n, y = lynx_data()
    return {"lotka_volterra_ode": (lotka_volterra_ode, (n,), {"y": y},
                                   "Lotka-Volterra ODE (odeint, NumPyro's example), Hudson's Bay lynx and hare "
                                   "1900-1920, theta ~ TruncatedNormal(0, .), sigma ~ LogNormal(-1, 1)")}


DIMS = {"lotka_volterra_ode": 8}
TWINS: dict = {}
DATA = (lynx_data,)
