"""Log-Gaussian Cox process on the Finnish pines (Møller et al. 1998), unwhitened, d = 1600.

The benchmark of the neural-sampler literature (Heng et al. 2020; annealed flow transport, FAB,
PIS/DDS, diffusion samplers), exactly as specified in the project's data note: the 126
saplings of ``data/pines.csv`` (coordinates in [0, 1]², shipped with this package; public data,
MIT-licensed in lollcat/fab-jax) are binned on a G × G grid, G = 40 (a point on the upper edge
goes to the last bin); cell i = G·r + c holds the points with ⌊G·x⌋ = r, ⌊G·y⌋ = c, count n_i.
The latent intensity f ∈ R^{G²} has the Gaussian prior N(μ₀·1, K),

    K(m, n) = σ² exp(−‖m − n‖₂ / (G β)),  σ² = 1.91, β = 1/33,  m, n integer grid indices,
    μ₀ = log N − σ²/2 (N = 126 points),

and the Poisson log-likelihood with cell area a = 1/G² (the −log n_i! term is left out, as in
the published target):

    log p̃(f) = log N(f; μ₀·1, K) + Σ_i [f_i n_i − a exp(f_i)].

The prior term is −½‖L⁻¹(f − μ₀)‖² − Σ log L_ii − (G²/2) log 2π with K = L Lᵀ, the Cholesky
factor computed once in float64 (cond K = 27.6 at G = 40, so the triangular solve is accurate
to ~2e-7 relative in float32 too; L is cast to the input's dtype and device once and cached).

log Z is not known in closed form: ``log_z_reference = 501.806`` (a long SMC run, as quoted in
fab-jax for this file; independently, annealed importance sampling from the Laplace
approximation with 1000 temperatures gave 501.77). ``log_z_laplace`` (511.21 at G = 40) is the
Laplace approximation at the MAP, which overestimates; ``map_estimate`` (Newton's method, the
log-density is strictly concave) and ``laplace_std`` set ``plot_range`` (MAP ± 5 Laplace sd).
A min–max-rescaled copy of the data with a duplicated first row circulates with log Z 512.6: a
different target, not this one. No exact sampler.
"""
from __future__ import annotations

import functools
import importlib.resources
import math

import numpy as np
import torch

from .base import Target, check_int
from .registry import register_target

SIGNAL_VARIANCE = 1.91
BETA = 1.0 / 33
LOG_Z_REFERENCE = 501.806            # G = 40 only: long SMC run, as quoted in fab-jax
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@functools.lru_cache(maxsize=1)
def pines_points() -> np.ndarray:
    """The 126 pine locations (126, 2), float64 in [0, 1]², from the packaged ``data/pines.csv``.

    Read with the header row and the index column dropped. Cached; read-only."""
    resource = importlib.resources.files(__package__).joinpath("data/pines.csv")
    try:
        with resource.open("r") as fh:
            pts = np.loadtxt(fh, delimiter=",", skiprows=1, usecols=(1, 2), dtype=np.float64)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"the Finnish pines data is missing: expected {resource} inside the installed 'targets' "
            "package (package-data 'data/*.csv' in pyproject.toml); reinstall the package, or copy "
            "pines.csv (header row, index column, data_x, data_y) there") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.all((pts >= 0) & (pts <= 1)):
        raise ValueError(f"{resource}: expected rows of (x, y) in [0, 1]², got shape {pts.shape}")
    pts.setflags(write=False)
    return pts


def bin_counts(points: np.ndarray, grid_size: int) -> np.ndarray:
    """Counts n (grid_size²,) float64 of ``points`` (m, 2) on the grid; cell G·r + c holds
    ⌊G·x⌋ = r, ⌊G·y⌋ = c, with a point on the upper edge in the last bin."""
    idx = np.minimum(np.floor(np.asarray(points) * grid_size).astype(np.int64), grid_size - 1)
    counts = np.zeros((grid_size, grid_size))
    np.add.at(counts, (idx[:, 0], idx[:, 1]), 1.0)
    return counts.reshape(-1)


def grid_indices(grid_size: int) -> np.ndarray:
    """Integer grid coordinates (G², 2) of the cells, in the order of :func:`bin_counts`."""
    r, c = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
    return np.stack([r.reshape(-1), c.reshape(-1)], axis=1).astype(np.float64)


def prior_covariance(grid_size: int) -> np.ndarray:
    """K (G², G²) float64: σ² exp(−‖m − n‖ / (G β)) over integer grid indices."""
    ij = grid_indices(grid_size)
    dist = np.sqrt(((ij[:, None, :] - ij[None, :, :]) ** 2).sum(-1))
    return SIGNAL_VARIANCE * np.exp(-dist / (grid_size * BETA))


@functools.lru_cache(maxsize=4)
def _lgcp_constants(grid_size: int) -> dict:
    """Counts, μ₀, a, the Cholesky factor of K, the MAP and the Laplace approximation (float64)."""
    pts = pines_points()
    counts = bin_counts(pts, grid_size)
    d = grid_size * grid_size
    mu0 = math.log(pts.shape[0]) - 0.5 * SIGNAL_VARIANCE
    area = 1.0 / d
    chol = torch.linalg.cholesky(torch.tensor(prior_covariance(grid_size)))
    half_logdet = float(chol.diagonal().log().sum())
    # MAP by Newton's method on the concave log-density: H = −K⁻¹ − diag(a e^f)
    prec = torch.cholesky_inverse(chol)
    n = torch.tensor(counts)
    f = torch.full((d,), mu0, dtype=torch.float64)
    for _ in range(100):
        grad = -prec @ (f - mu0) + n - area * f.exp()
        step = torch.linalg.solve(prec + torch.diag(area * f.exp()), grad)
        f = f + step
        if float(step.abs().max()) < 1e-11:
            break
    neg_hess = prec + torch.diag(area * f.exp())
    r = torch.linalg.solve_triangular(chol, (f - mu0)[:, None], upper=False)[:, 0]
    log_p_map = float(-0.5 * r.pow(2).sum() - half_logdet - d * _HALF_LOG_2PI
                      + (f * n - area * f.exp()).sum())
    log_z_laplace = log_p_map + d * _HALF_LOG_2PI - 0.5 * float(torch.linalg.slogdet(neg_hess)[1])
    laplace_std = torch.linalg.inv(neg_hess).diagonal().sqrt()
    return dict(counts=counts, mu0=mu0, area=area, chol=chol, half_logdet=half_logdet,
                map=f.numpy(), laplace_std=laplace_std.numpy(), log_z_laplace=log_z_laplace)


@register_target("lgcp_pines")
class LogGaussianCoxProcess(Target):
    """The Finnish-pines LGCP on a ``grid_size`` × ``grid_size`` grid (40: the benchmark, d = 1600)."""

    name = "lgcp_pines"
    has_exact_sampler = False
    log_Z = None

    def __init__(self, grid_size: int = 40) -> None:
        grid_size = check_int("grid_size", grid_size, 2)
        super().__init__(grid_size=grid_size)
        c = _lgcp_constants(grid_size)
        self.grid_size = grid_size
        self.dim = grid_size * grid_size
        self.counts = torch.tensor(c["counts"])             # (d,) float64
        self.mu0, self.area, self.half_logdet = c["mu0"], c["area"], c["half_logdet"]
        self.chol = c["chol"]                               # (d, d) float64, K = L Lᵀ
        self.map_estimate, self.laplace_std = c["map"], c["laplace_std"]
        self.log_z_laplace = c["log_z_laplace"]
        self.log_z_reference = LOG_Z_REFERENCE if grid_size == 40 else None
        self.plot_range = [(float(m - 5 * s), float(m + 5 * s))
                           for m, s in zip(self.map_estimate, self.laplace_std)]
        self._cast: dict = {}

    def _constants_like(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (x.dtype, x.device)
        if key not in self._cast:
            self._cast[key] = (self.chol.to(x), self.counts.to(x))
        return self._cast[key]

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        chol, counts = self._constants_like(x)
        batch = x.shape[:-1]
        r = (x - self.mu0).reshape(-1, self.dim)                                 # (m, d)
        white = torch.linalg.solve_triangular(chol, r.T, upper=False)           # (d, m) = L⁻¹(f − μ₀)
        log_prior = (-0.5 * white.pow(2).sum(0).reshape(batch)
                     - self.half_logdet - self.dim * _HALF_LOG_2PI)
        log_lik = (x * counts - self.area * x.exp()).sum(-1)                   # (...)
        return log_prior + log_lik

    def log_prob_jax(self, x):
        import jax.numpy as jnp
        from jax.scipy.linalg import solve_triangular

        chol = jnp.asarray(self.chol.numpy(), dtype=x.dtype)
        counts = jnp.asarray(self.counts.numpy(), dtype=x.dtype)
        white = solve_triangular(chol, x - self.mu0, lower=True)
        log_prior = -0.5 * jnp.sum(white * white) - self.half_logdet - self.dim * _HALF_LOG_2PI
        return log_prior + jnp.sum(x * counts - self.area * jnp.exp(x))
