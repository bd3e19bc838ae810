"""Auxiliary normalizing flow q_φ kept fitted to the generator's samples (MATH.md §2, flow route (a)).

At every training step the flow takes a few warm-started maximum-likelihood steps on the
generator's current batch,

    φ ← φ − lr · ∇_φ [ −mean_i log q_φ(x_i) ],

and then answers log q_φ(x) and the score ∇_x log q_φ(x) (autograd through the flow) where the
drift is evaluated.  Unlike a KDE its error does not blow up with the dimension, and it gives a
log q usable for (approximate) importance weights.

Conventions and pitfalls handled here:

* **Standardisation.**  Rational-quadratic splines are the identity outside ±tail_bound, so
  the flow models u = (x − m) / s, with (m, s) running (exponential-moving) averages of the
  batch mean and per-dimension standard deviation.  The change of variables is accounted for:
  log q(x) = log q_u(u) − Σ_k log s_k.
* **NaN safety.**  Gradients are clipped.  A step whose loss or parameters are not finite is
  undone: the last good state (model + optimiser, saved at the start of :meth:`fit`) is
  restored, the learning rate halved, and after ``max_failures`` consecutive failed fits a
  :class:`FlowFitError` naming the step is raised.  Nothing NaN is silently kept.
* The negative log-likelihood is not a KL divergence: it can be negative.
"""
from __future__ import annotations

import copy
from typing import Literal

import normflows as nf
import numpy as np
import torch
from torch import nn

from .base import DensityEstimator

__all__ = ["FlowDensity", "FlowFitError", "build_flow", "coupling_masks"]


class FlowFitError(FloatingPointError):
    """Raised when fitting the flow keeps producing non-finite losses or parameters."""


def _identity_init_coupling(layer: nn.Module) -> None:
    """Zero the last layer of a coupled spline's conditioner so the layer starts as the identity.

    normflows 1.7.3's ``CoupledRationalQuadraticSpline`` has no ``init_identity`` argument.
    A constant bias leaves widths and heights uniform (softmax is shift-invariant) and sets
    every derivative to softplus(c) + min_derivative = 1.
    """
    from normflows.utils.splines import DEFAULT_MIN_DERIVATIVE

    net = layer.prqct.transform_net
    nn.init.zeros_(net.final_layer.weight)
    nn.init.constant_(net.final_layer.bias, float(np.log(np.exp(1 - DEFAULT_MIN_DERIVATIVE) - 1)))


def coupling_masks(dim: int, layers: int) -> list[torch.Tensor]:
    """Binary masks (1 = conditioning coordinate) of ``layers`` affine couplings.

    Layers come in pairs: a balanced random partition of the coordinates, then its complement,
    so every pair transforms each coordinate once. Each pair draws a new partition, from a
    generator seeded by ``dim`` (the same masks for every run, and the global RNG untouched).
    Fixed parity masks ((j + i) mod 2) never let two coordinates of equal parity condition one
    another; a flattened array parameter puts related coordinates at a stride of 2 or 4 (a
    hierarchical model's scale τ_k and its group effects z_jk), and measured on the 56-D
    hierarchical logistic regression of ``benchmarks/posterior_models.py`` the parity masks
    left an importance ESS of 0.3-1.8 % (not trusted) after 3000 steps, where these masks gave
    20-30 % (trusted) after 1000 (3 seeds; docs/benchmarks.md, "Coupling masks").
    """
    gen = torch.Generator().manual_seed(7919 * dim + 17)
    masks: list[torch.Tensor] = []
    for i in range(layers):
        if i % 2 == 0:
            mask = torch.zeros(dim)
            mask[torch.randperm(dim, generator=gen, device="cpu")[: dim // 2]] = 1.0
        else:
            mask = 1.0 - masks[-1]
        masks.append(mask)
    return masks


def build_flow(
    dim: int,
    *,
    layers: int,
    hidden: int,
    kind: str,
    bins: int = 8,
    tail_bound: float = 5.0,
    blocks: int = 2,
    max_log_scale: float = 3.0,
    for_sampling: bool = False,
) -> list[nn.Module]:
    """The list of normflows layers (ordered from noise z to data x).

    kind="spline": rational-quadratic spline layers with an LU-linear permutation between them.
    Autoregressive splines (cheap density, d-pass sampling) unless ``for_sampling``, where
    coupled splines (one pass both ways) are used.
    kind="realnvp": affine couplings with complementary random masks
    (:func:`coupling_masks`); the log-scale is
    ``max_log_scale · tanh(s / max_log_scale)`` so it can never overflow.
    """
    if not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim must be an int >= 2 for a normalizing flow, got {dim!r}")
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers!r}")
    if hidden < 1:
        raise ValueError(f"hidden must be >= 1, got {hidden!r}")
    flows: list[nn.Module] = []
    if kind == "spline":
        for i in range(layers):
            if for_sampling:
                layer = nf.flows.CoupledRationalQuadraticSpline(
                    dim, blocks, hidden, num_bins=bins, tail_bound=tail_bound, reverse_mask=bool(i % 2)
                )
                _identity_init_coupling(layer)
            else:
                layer = nf.flows.AutoregressiveRationalQuadraticSpline(
                    dim, blocks, hidden, num_bins=bins, tail_bound=tail_bound,
                    permute_mask=True, init_identity=True,
                )
            flows += [layer, nf.flows.LULinearPermute(dim)]
    elif kind == "realnvp":
        for mask in coupling_masks(dim, layers):
            s = nf.nets.MLP([dim, hidden, hidden, dim], init_zeros=True,
                            output_fn="tanh", output_scale=max_log_scale)
            t = nf.nets.MLP([dim, hidden, hidden, dim], init_zeros=True)
            flows += [nf.flows.MaskedAffineFlow(mask, t, s), nf.flows.AffineConstFlow((dim,))]
    else:
        raise ValueError(f"kind must be 'spline' or 'realnvp', got {kind!r}")
    return flows


def _finite_params(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


class FlowDensity(DensityEstimator):
    """Normalizing-flow estimate of the generator's density, refitted by a few ML steps per call.

    Parameters
    ----------
    dim: dimension d of the samples.
    layers, hidden, kind, bins, tail_bound: flow architecture (see :func:`build_flow`);
        ``tail_bound`` is in standardised units.
    fit_steps: maximum-likelihood steps per :meth:`fit` call (warm-started).
    lr: Adam learning rate.  grad_clip: gradient-norm clip.
    momentum: weight of the new batch in the running mean/std used to standardise
        (1.0 = use each batch's own statistics; first call always uses the batch's).
    max_failures: consecutive non-finite fits tolerated before :class:`FlowFitError`.
    seed: seeds the flow's initialisation (random permutations and weights).
    """

    normalized = True

    exact = False

    def __init__(
        self,
        dim: int,
        *,
        layers: int = 4,
        hidden: int = 64,
        kind: Literal["spline", "realnvp"] = "spline",
        bins: int = 8,
        tail_bound: float = 5.0,
        fit_steps: int = 5,
        lr: float = 1e-3,
        grad_clip: float = 5.0,
        momentum: float = 0.1,
        max_failures: int = 3,
        seed: int = 0,
    ) -> None:
        if fit_steps < 0:
            raise ValueError(f"fit_steps must be >= 0, got {fit_steps!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], got {momentum!r}")
        if max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, got {max_failures!r}")
        self.dim, self.kind = dim, kind
        self.fit_steps, self.grad_clip, self.momentum = fit_steps, grad_clip, momentum
        self.max_failures = max_failures
        devstate = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            flows = build_flow(dim, layers=layers, hidden=hidden, kind=kind, bins=bins,
                               tail_bound=tail_bound)
            self.flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows)
        finally:
            torch.random.set_rng_state(devstate)
        self.optimizer = torch.optim.Adam(self.flow.parameters(), lr=lr)
        self.mean = torch.zeros(dim)
        self.std = torch.ones(dim)
        self.initialized = False
        self.step = 0  # total ML steps taken (also counts failed ones)
        self.failures = 0  # consecutive failed fits
        self.last_loss = float("nan")
        self._good = self._snapshot()

    # ----------------------------------------------------------------- standardisation
    def _standardize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u = (x − m)/s and the log-det −Σ log s of x ↦ u."""
        u = (x - self.mean) / self.std
        return u, -self.std.log().sum().expand(x.shape[0])

    def _update_stats(self, x: torch.Tensor) -> None:
        m, s = x.mean(0), x.std(0).clamp_min(1e-6)
        if not self.initialized:
            self.mean, self.std, self.initialized = m, s, True
        else:
            a = self.momentum
            self.mean = (1 - a) * self.mean + a * m
            self.std = (1 - a) * self.std + a * s

    def _log_prob_graph(self, x: torch.Tensor) -> torch.Tensor:
        u, ld = self._standardize(x)
        return self.flow.log_prob(u) + ld

    # ----------------------------------------------------------------- fitting
    def _snapshot(self) -> dict:
        return copy.deepcopy({"model": self.flow.state_dict(), "optimizer": self.optimizer.state_dict()})

    def _restore(self, snap: dict) -> None:
        self.flow.load_state_dict(snap["model"])
        self.optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))

    def fit(self, samples: torch.Tensor, steps: int | None = None) -> "FlowDensity":
        """Take ``steps`` (default ``fit_steps``) ML steps on ``samples`` (m, d), warm-started.

        On a non-finite loss or parameter the state saved at the start of this call is
        restored, the learning rate halved and the call ends; ``max_failures`` consecutive
        failing calls raise :class:`FlowFitError`.
        """
        with torch.enable_grad():  # drifts call fit under no_grad
            return self._fit(samples, steps)

    def _fit(self, samples: torch.Tensor, steps: int | None) -> "FlowDensity":
        x = self._check(samples, "samples").detach().to(self._dtype)
        if not torch.isfinite(x).all():
            raise ValueError("samples contain NaN or inf; the generator has diverged")
        self._update_stats(x)
        self._good = self._snapshot()
        u, ld = self._standardize(x)
        for _ in range(self.fit_steps if steps is None else steps):
            self.step += 1
            self.optimizer.zero_grad(set_to_none=True)
            loss = -(self.flow.log_prob(u) + ld).mean()
            ok = bool(torch.isfinite(loss))
            if ok:
                loss.backward()
                nn.utils.clip_grad_norm_(self.flow.parameters(), self.grad_clip)
                self.optimizer.step()
                ok = _finite_params(self.flow)
            if not ok:
                self._restore(self._good)
                self.failures += 1
                for g in self.optimizer.param_groups:
                    g["lr"] *= 0.5
                if self.failures >= self.max_failures:
                    raise FlowFitError(
                        f"flow fit produced a non-finite loss or parameters at ML step {self.step} "
                        f"({self.failures} consecutive failures); last good state restored"
                    )
                return self
            self.last_loss = float(loss.detach())
        self.failures = 0
        return self

    # ----------------------------------------------------------------- evaluation
    @property
    def _dtype(self) -> torch.dtype:
        """The flow's own dtype (its parameters', the placed sampler's; float32 by default)."""
        return next(self.flow.parameters()).dtype

    def _check(self, x: torch.Tensor, name: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (n, {self.dim}), got {tuple(x.shape)}")
        return x

    def log_prob_and_score(
        self, x: torch.Tensor, *, same_batch: bool = False, chunk: int = 4096
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log q_φ(x) (n,) and ∇_x log q_φ(x) (n, d), detached, in x's dtype.

        ``same_batch`` is accepted for the protocol and ignored: a flow has no self term.
        """
        x = self._check(x, "x")
        lps, scores = [], []
        for xc in x.detach().to(self._dtype).split(chunk):
            with torch.enable_grad():
                xc = xc.clone().requires_grad_(True)
                lp = self._log_prob_graph(xc)
                (g,) = torch.autograd.grad(lp.sum(), xc)
            lps.append(lp.detach())
            scores.append(g)
        return torch.cat(lps).to(x.dtype), torch.cat(scores).to(x.dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check(x, "x")
        with torch.no_grad():
            return self._log_prob_graph(x.detach().to(self._dtype)).to(x.dtype)

    # ----------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """A detached copy (model, Adam moments, standardisation, counters)."""
        return copy.deepcopy({
            "model": self.flow.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "mean": self.mean.clone(),
            "std": self.std.clone(),
            "initialized": self.initialized,
            "step": self.step,
            "failures": self.failures,
        })

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; build with the same arguments first."""
        state = copy.deepcopy(state)  # Adam would otherwise update the caller's tensors in place
        self.flow.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        p = next(self.flow.parameters())  # (a checkpoint of another device or dtype is converted)
        self.mean, self.std = state["mean"].clone().to(p), state["std"].clone().to(p)
        self.initialized = bool(state["initialized"])
        self.step, self.failures = int(state["step"]), int(state["failures"])
        self._good = self._snapshot()

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.flow.parameters())
        return f"FlowDensity(dim={self.dim}, kind={self.kind!r}, params={n}, step={self.step})"

