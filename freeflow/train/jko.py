"""The parametric JKO (proximal, implicit Euler) step of the one trainer (``TrainConfig.step="jko"``).

One outer step solves, approximately, by M inner optimiser steps,

    θ_{k+1} = argmin_θ  D(G_θ#μ₀ ‖ p) + (1/2τ) · E_z ‖G_θ(z) − G_{θ_k}(z)‖²,

with the proximity E_z‖·‖² estimated as the MEAN over the batch of the SUM over dimensions
(the convention of the explicit step's loss ``(x - target).pow(2).sum(-1).mean()``).

D is known only through its first variation: the gradient of D with respect to a sample is
−V (the drift), so at the current iterate x_θ = G_θ(z) the objective's gradient equals that of
the surrogate −⟨sg V(x_θ), x_θ⟩ + (1/2τ)‖x_θ − sg G_{θ_k}(z)‖² (per-sample sum, batch mean).
We minimise 2τ times it, which up to a constant is

    L_j(θ) = mean_i ‖x_i(θ) − sg(a_i + τ V(x_i(θ_j)))‖²,    a_i = G_{θ_k}(z_i),

i.e. the explicit regression with its target anchored at the frozen sample a and the velocity
re-evaluated at the current iterate: at a fixed point x = a + τ V(x), the implicit Euler step.
The factor 2τ keeps the loss (and hence lr, grad_clip) in the explicit step's units: the
first inner step (θ_j = θ_k, x = a) IS the explicit step with η = τ, so ``jko_inner=1`` with
``jko_tau=step_size`` reproduces ``step="explicit"`` exactly.

Mechanics (all inside :func:`jko_update`):

* The frozen copy G_{θ_k} enters only through its outputs a = G_{θ_k}(z) on this step's fixed
  noise, which are the first inner iterate's samples; they are stored (N × d, detached)
  instead of a copy of the network, and refreshed every outer step.
* Same noise in every inner step: the drift draws z (and reference batches, data batches,
  classes) from the trainer's ``rng``; its state is snapshot before the first inner call and
  restored before every later one, so each call draws the same inputs and only θ differs.
  After the outer step the rng is where a single drift call leaves it.
* Side effects once per outer step: a drift that accepts the keyword ``update`` is called
  with ``update=False`` in inner steps 1..M−1 (no Fisher–Rao step on mixture weights, no
  divergence-schedule update, no replay-buffer insertion) and with ``update=True`` in the
  LAST inner call, so the reaction sees the proximal iterate and runs once, after which the
  last optimiser step is taken (the explicit step's order: drift, reaction, regression). The
  mixture weights therefore stay fixed while the anchor is in use. An estimator of q refitted
  inside the drift (KDE points, an auxiliary flow's warm-started ML steps) is refitted in
  every inner call: it must describe the current G_θ. A drift without ``update`` (e.g. a
  critic drift that trains its critic) runs in full at every inner call.
* One optimiser (the trainer's Adam, its state carried across outer steps) takes M steps per
  outer step at the outer step's learning rate; the EMA is updated once per outer step.
"""
from __future__ import annotations

import inspect

import torch

__all__ = ["STEPS", "jko_update", "accepts_update"]

#: the step rules of ``TrainConfig.step``
STEPS = ("explicit", "jko")


def accepts_update(drift) -> bool:
    """Whether ``drift(..., update=False)`` is understood (side effects can be switched off)."""
    try:
        params = inspect.signature(drift).parameters
    except (TypeError, ValueError):
        return False
    return "update" in params


def jko_update(trainer, state, k: int) -> tuple[float, float, dict]:
    """The M inner optimiser steps of outer step ``k`` of ``trainer`` (a
    :class:`~freeflow.train.Trainer`; this module does not import it, which imports this one)
    on ``state`` (its TrainState); returns (loss at the first inner iterate, gradient norm of
    the last inner step, the last drift call's info + diagnostics).

    Diagnostics: ``jko_loss`` (L at the last inner iterate, before its step) and
    ``jko_move`` = RMS‖x_θ − a‖ / τ at the last inner iterate (≈ RMS‖V‖ = √d when the
    proximal move has the explicit step's length).
    """
    cfg = trainer.config
    tau = cfg.jko_tau if cfg.jko_tau is not None else cfg.step_size
    inner = cfg.jko_inner
    rng = state.rng
    snapshot = rng.get_state()
    quiet = accepts_update(trainer.drift)
    anchor = None
    first_loss = None
    for j in range(inner):
        last = j == inner - 1
        if j > 0:
            rng.set_state(snapshot)  # the same z, reference and data batches as inner step 0
        kwargs = {"update": last} if quiet else {}
        where = f"step {k} (JKO inner step {j + 1} of {inner})"
        x, v, info = trainer.drift(state.generator, k, rng, total_steps=state.total_steps, **kwargs)
        trainer._check_drift(x, v, info, where)
        if anchor is None:
            anchor = x.detach()  # a = G_{θ_k}(z): the frozen copy's outputs on this step's noise
        elif x.shape != anchor.shape:
            raise RuntimeError(f"the drift returned {tuple(x.shape)} samples at {where}, "
                               f"{tuple(anchor.shape)} at inner step 1: it must draw the same inputs "
                               "from the same rng state")
        target = (anchor + tau * v).detach()
        loss = (x - target).pow(2).sum(-1).mean()
        if first_loss is None:
            first_loss = loss
        grad_norm = trainer._descend(state, loss, where)
    with torch.no_grad():
        move = float((x.detach() - anchor).pow(2).sum(-1).mean().sqrt()) / tau
    info = {**info, "jko_loss": float(loss.detach()), "jko_move": move}
    return float(first_loss.detach()), grad_norm, info
