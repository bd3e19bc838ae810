"""Baselines a user would otherwise pick, run through the same comparison report.

``VIBaseline``: variational inference with a normalizing flow (normflows), trained by
minimising the reverse KL, KL(q‖p) = E_q[log q − log p̃] + log Z (Z-free), with the
reparameterisation gradient, under a wall-clock budget:

    z ~ N(0, I),  x = T_φ(z) = loc + scale ⊙ S_K ∘ P_K ∘ … ∘ S_1 ∘ P_1 (z),
    loss(φ) = mean_i [ log q_φ(x_i) − log p̃(x_i) ].

S_k are coupled rational-quadratic spline layers (normflows ``CoupledRationalQuadraticSpline``,
alternating masks), P_k learned LU-linear permutations, and a final learned elementwise
affine map (``AffineConstFlow``) initialised at ``loc``/``scale`` so that the splines (the
identity outside ±``tail_bound``) work on standardised coordinates (MATH.md §2 pitfalls).
Coupling splines are used rather than autoregressive ones because reverse-KL training samples
the flow, which is one pass for couplings and d sequential passes for autoregressive layers.
Non-finite losses skip the step (counted in ``history``); gradients are clipped.

Reverse KL is mode-seeking: expect it to drop modes of multimodal targets; it is the
baseline, not a strawman.  q is exact, so ``sample_and_log_prob`` gives importance weights.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from ...validation import check_choice, check_float, check_int, check_log_density, check_seed
from .common import _check_budget, _loc_scale_from_target, _unwrap_target

Tensor = torch.Tensor


class VIBaseline:
    """Reverse-KL normalizing-flow VI (see module docstring).

    Args:
        log_density: torch (n, d) -> (n,) unnormalised log-density, or a Target (its
            ``plot_range`` sets the initial loc/scale unless given).
        dim: dimension (from the target when omitted).
        layers, hidden, blocks, bins, tail_bound: flow size (each layer: a spline coupling
            with an MLP of ``blocks`` residual blocks of width ``hidden``, + an LU permutation).
        loc, scale: initial per-coordinate location and scale of the final affine layer.
        flow: ``"spline"`` (coupled rational-quadratic splines + LU permutations, default) or
            ``"realnvp"`` (affine couplings with a sigmoid scale map + shuffles: cheaper per
            step, less expressive).
        seed: seeds the initialisation and the training noise.
    """

    name = "normflows VI"
    kind = "vi"

    def __init__(
        self,
        log_density: Callable[[Tensor], Tensor] | Any,
        dim: int | None = None,
        *,
        layers: int = 8,
        hidden: int = 128,
        blocks: int = 2,
        bins: int = 8,
        tail_bound: float = 4.0,
        loc: Tensor | float | None = None,
        scale: Tensor | float | None = None,
        flow: str = "spline",
        seed: int = 0,
    ) -> None:
        import normflows as nf

        target, log_density, dim = _unwrap_target(log_density, dim)
        check_int(dim, "dim (coupling layers split coordinates)", minimum=2)
        for nm, v in (("layers", layers), ("hidden", hidden), ("blocks", blocks), ("bins", bins)):
            check_int(v, nm, minimum=1)
        check_float(tail_bound, "tail_bound", low=0.0, low_open=True)
        check_choice(flow, ("spline", "realnvp"), "flow")
        check_seed(seed)
        check_log_density(log_density, dim)
        self.log_density, self.dim, self.seed = log_density, dim, seed
        t_loc, t_scale = _loc_scale_from_target(target, dim)
        loc_t = t_loc if loc is None else torch.as_tensor(loc, dtype=torch.float32).expand(dim).clone()
        scale_t = t_scale if scale is None else torch.as_tensor(scale, dtype=torch.float32).expand(dim).clone()
        if not (scale_t > 0).all():
            raise ValueError("scale must be > 0")

        torch.manual_seed(seed)
        flows = []
        for i in range(layers):
            if flow == "spline":
                flows.append(nf.flows.CoupledRationalQuadraticSpline(
                    dim, blocks, hidden, num_bins=bins, tail_bound=float(tail_bound),
                    reverse_mask=bool(i % 2)))
                flows.append(nf.flows.LULinearPermute(dim))
            else:
                # torch.chunk: the first half has ceil(d/2) coordinates; "channel_inv" swaps roles.
                a, b = (dim + 1) // 2, dim // 2
                n_in, n_out = (a, b) if i % 2 == 0 else (b, a)
                net = nf.nets.MLP([n_in] + [hidden] * blocks + [2 * n_out], init_zeros=True)
                flows.append(nf.flows.AffineCouplingBlock(
                    net, scale_map="sigmoid", split_mode="channel" if i % 2 == 0 else "channel_inv"))
                flows.append(nf.flows.Permute(dim, mode="shuffle"))
        affine = nf.flows.AffineConstFlow((dim,))
        with torch.no_grad():
            affine.s.copy_(scale_t.log()[None])
            affine.t.copy_(loc_t[None])
        flows.append(affine)
        self.model = nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows)
        self.settings = {"flow": flow, "layers": layers, "hidden": hidden, "blocks": blocks, "bins": bins,
                         "tail_bound": float(tail_bound), "seed": seed}
        self.history: list[dict] = []
        self.train_seconds = 0.0
        self.steps_done = 0

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def fit(
        self,
        time_budget_s: float | None = None,
        *,
        max_steps: int | None = None,
        batch_size: int = 256,
        lr: float = 1e-3,
        grad_clip: float = 5.0,
        progress: bool = False,
    ) -> list[dict]:
        """Train until ``time_budget_s`` seconds (of this call) or ``max_steps`` steps."""
        _check_budget(time_budget_s, max_steps)
        check_int(batch_size, "batch_size", minimum=2)
        check_float(lr, "lr", low=0.0, low_open=True)
        opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        g = torch.Generator().manual_seed(self.seed + 1 + self.steps_done)
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        t0 = time.perf_counter()
        hist = []
        step = 0
        while True:
            elapsed = time.perf_counter() - t0
            if (time_budget_s is not None and elapsed >= time_budget_s) or (
                    max_steps is not None and step >= max_steps):
                break
            x, log_q = self.model.sample(batch_size)
            log_p = self.log_density(x)
            loss = (log_q - log_p).mean()
            rec = {"step": self.steps_done + step, "time": elapsed}
            if torch.isfinite(loss):
                opt.zero_grad(set_to_none=True)
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), grad_clip)
                if torch.isfinite(gn):
                    opt.step()
                    rec["loss"] = float(loss.detach())
                else:
                    rec["skipped"] = "non-finite gradient"
            else:
                rec["skipped"] = "non-finite loss"
            hist.append(rec)
            step += 1
            if progress and step % 200 == 0:
                print(f"VI step {self.steps_done + step}: loss {rec.get('loss', float('nan')):.4f}")
        self.train_seconds += time.perf_counter() - t0
        self.steps_done += step
        self.history.extend(hist)
        return hist

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """n samples (n, d), float32."""
        return self.sample_and_log_prob(n)[0]

    @torch.no_grad()
    def sample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """(x, log q(x)) for n fresh samples; chunked to bound memory."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        xs, lqs = [], []
        for start in range(0, n, 8192):
            x, lq = self.model.sample(min(8192, n - start))
            xs.append(x)
            lqs.append(lq)
        return torch.cat(xs), torch.cat(lqs)

    @torch.no_grad()
    def log_prob(self, x: Tensor) -> Tensor:
        return self.model.log_prob(x)

    @property
    def final_loss(self) -> float:
        """Mean loss over the last 100 steps (an upper bound on -log Z + KL(q‖p))."""
        vals = [h["loss"] for h in self.history[-100:] if "loss" in h]
        return float(sum(vals) / len(vals)) if vals else math.nan


def fit_vi(log_density, dim: int | None = None, *, time_budget_s: float, **kwargs) -> VIBaseline:
    """Build a :class:`VIBaseline` and train it for ``time_budget_s`` seconds.

    Flow-size keywords go to the constructor; ``batch_size``, ``lr``, ``grad_clip``,
    ``max_steps``, ``progress`` to :meth:`VIBaseline.fit`.
    """
    fit_keys = {"batch_size", "lr", "grad_clip", "max_steps", "progress"}
    fit_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in fit_keys}
    vi = VIBaseline(log_density, dim, **kwargs)
    vi.fit(time_budget_s, **fit_kw)
    return vi
