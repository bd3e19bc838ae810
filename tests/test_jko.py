"""The JKO (implicit, proximal) step of the one trainer (freeflow.train.jko).

* τ → 0: the JKO update of a linear generator under a fixed linear drift approaches the
  explicit regression's update (relative difference O(τ)); the trainer's inner loop reaches
  the closed-form proximal solution;
* the mechanism: the same noise in every inner step, side effects (update=True) only in the
  last inner call, jko_inner=1 reproduces step="explicit" bit for bit;
* OneStepSampler / DataFlow with step="jko" fit a 2-D Gaussian; save/load/resume is exact;
  bad settings give clear errors; a NaN inside the inner loop is undone and named.
"""
import pytest
import torch
from torch import nn

import freeflow as ff
from freeflow.data import DataFlow
from freeflow.train import TrainConfig, Trainer

SMALL = dict(batch_size=64, reference_size=64, hidden=32, depth=1)


def gauss(x):
    return -0.5 * (x**2).sum(-1)


# -- τ → 0: the implicit step tends to the explicit one ------------------------------------------

NOISE, N = 3, 512
MU = torch.tensor([1.0, -2.0], dtype=torch.float64)
# SPD, eigenvalues 1 and 3 (rotated): V(x) = A(μ − x) = −∇U, U = ½(x − μ)ᵀA(x − μ)
_R = torch.tensor([[0.8, -0.6], [0.6, 0.8]], dtype=torch.float64)
A = _R @ torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64)) @ _R.T


class LinearGenerator(nn.Module):
    """G_Θ(z) = [z, 1] Θ, in float64."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.theta = nn.Parameter(torch.randn(NOISE + 1, 2, generator=g, dtype=torch.float64))

    def forward(self, z):
        return torch.cat([z.double(), torch.ones(z.shape[0], 1, dtype=torch.float64)], 1) @ self.theta


class LinearDrift:
    """A fixed drift V(x) = A(μ − x) on a batch of N noise draws; records every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, generator, step, rng, *, total_steps, update=True):
        z = torch.randn(N, NOISE, generator=rng)
        x = generator(z)
        self.calls.append((step, z, update))
        return x, (MU - x.detach()) @ A.T, {}


def _jko_update_by_trainer(tau: float, inner: int = 200):
    """One JKO step through Trainer.step, the inner loop run by full-batch gradient descent
    (SGD, lr 0.25: the inner objective's Hessian in Θ is ≈ 2(I + τA) ⊗ I, so each step
    contracts the error by ≤ 0.6; 200 steps solve it to float64 precision)."""
    gen, drift = LinearGenerator(), LinearDrift()
    cfg = TrainConfig(lr=0.25, lr_schedule="constant", grad_clip=None, step="jko", jko_tau=tau, jko_inner=inner)
    trainer = Trainer(gen, drift, cfg, seed=0)
    state = trainer.init()
    state.optimizer = torch.optim.SGD(gen.parameters(), lr=0.25)
    state.total_steps = 1
    theta0 = gen.theta.detach().clone()
    trainer.step(state)
    z = drift.calls[0][1]
    return theta0, gen.theta.detach().clone(), z


def _design(z):
    return torch.cat([z.double(), torch.ones(z.shape[0], 1, dtype=torch.float64)], 1)


def test_jko_inner_loop_reaches_the_closed_form_proximal_step():
    """The fixed point of the inner loop solves Zᵀ(ZΘ(I + τA)ᵀ − a − τ 1 (Aμ)ᵀ) = 0 (the
    normal equations of the proximal step of U within the linear model): matched to 1e-9."""
    tau = 0.1
    theta0, theta1, z = _jko_update_by_trainer(tau)
    Z = _design(z)
    a = Z @ theta0
    rhs = Z.T @ (a + tau * (A @ MU)[None, :])
    closed = torch.linalg.solve(Z.T @ Z, rhs) @ torch.linalg.inv((torch.eye(2, dtype=torch.float64) + tau * A).T)
    torch.testing.assert_close(theta1, closed, rtol=0, atol=1e-9)


def test_jko_step_tends_to_the_explicit_step_as_tau_goes_to_zero():
    """Acceptance: relative difference of the parameter updates ‖ΔΘ_jko − ΔΘ_exp‖/‖ΔΘ_exp‖,
    the explicit update being the exact least-squares regression of G onto sg(a + τV(a)).

    Both are solved to float64 precision, so the difference is the scheme's own: implicit
    x = a + τV(x) vs explicit a + τV(a) differ by τ²AV + O(τ³) on a move of size τV, i.e. a
    relative O(τ‖A‖) = O(3τ).  Measured: 0.23, 0.029, 0.0029 at τ = 1e-1, 1e-2, 1e-3.
    Asserted: ≤ 1e-2 at τ = 1e-3 (the acceptance bound; 3× margin), and a drop by more than
    5× per decade of τ (first order: 10×)."""
    rel = []
    for tau in (1e-1, 1e-2, 1e-3):
        theta0, theta_jko, z = _jko_update_by_trainer(tau)
        Z = _design(z)
        a = Z @ theta0
        target = a + tau * (MU - a) @ A.T
        theta_exp = torch.linalg.lstsq(Z, target).solution
        d_jko, d_exp = theta_jko - theta0, theta_exp - theta0
        rel.append(float((d_jko - d_exp).norm() / d_exp.norm()))
    assert rel[-1] <= 1e-2, rel
    assert rel[0] / rel[1] > 5 and rel[1] / rel[2] > 5, rel


# -- the mechanism -------------------------------------------------------------------------------

def test_same_noise_in_every_inner_step_and_side_effects_once():
    """Each inner call draws the same z; only the last has update=True; afterwards the rng is
    where one drift call leaves it (so the next outer step draws fresh noise)."""
    gen, drift = LinearGenerator(), LinearDrift()
    trainer = Trainer(gen, drift, TrainConfig(step="jko", jko_inner=4), seed=5)
    state = trainer.init()
    state.total_steps = 2
    trainer.step(state)
    assert [c[2] for c in drift.calls] == [False, False, False, True]
    assert all(torch.equal(c[1], drift.calls[0][1]) for c in drift.calls)
    ref = torch.Generator().manual_seed(5)
    torch.randn(N, NOISE, generator=ref)
    assert torch.equal(state.rng.get_state(), ref.get_state())
    trainer.step(state)
    assert not torch.equal(drift.calls[4][1], drift.calls[0][1]) and drift.calls[4][0] == 1


def test_jko_inner_1_is_the_explicit_step_bit_for_bit():
    """jko_inner=1, jko_tau=step_size: the first inner iterate's loss is the explicit loss, so
    the runs agree exactly (mixture generator with its Fisher–Rao step; DataFlow components)."""
    a = ff.OneStepSampler(gauss, dim=2, seed=1, batch_size=64)
    b = ff.OneStepSampler(gauss, dim=2, seed=1, batch_size=64, step="jko", jko_inner=1)
    a.fit(15, progress=False, check=False)
    b.fit(15, progress=False, check=False)
    for p, q in zip(a.generator.state_dict().values(), b.generator.state_dict().values()):
        assert torch.equal(p, q)
    data = torch.randn(300, 2, generator=torch.Generator().manual_seed(0)) + 2.0
    c = DataFlow(2, seed=2, batch_size=64, components=4)
    d = DataFlow(2, seed=2, batch_size=64, components=4, step="jko", jko_inner=1, jko_tau=1.0)
    c.fit(data, steps=10)
    d.fit(data, steps=10)
    for p, q in zip(c.generator.state_dict().values(), d.generator.state_dict().values()):
        assert torch.equal(p, q)


# -- the user-facing classes ---------------------------------------------------------------------

TARGET_MEAN, TARGET_STD = torch.tensor([2.0, -1.0]), 0.5


def shifted(x):
    return -0.5 * ((x - TARGET_MEAN) ** 2).sum(-1) / TARGET_STD**2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampler_jko_fits_a_gaussian(seed):
    """OneStepSampler(step="jko"), default mixture generator, 150 steps of batch 256 from
    N(0, I) towards N((2, −1), 0.5² I).  Measured over seeds 0–2: |Δmean| ≤ 0.006, std within
    1%.  Asserted: |Δmean| < 0.15 (and > 1 before training), std within 20%."""
    s = ff.OneStepSampler(shifted, dim=2, seed=seed, batch_size=256, step="jko", jko_inner=3)
    assert (s.sample(20_000, seed=seed).mean(0) - TARGET_MEAN).abs().max() > 1
    s.fit(150, progress=False, check=False)
    x = s.sample(20_000, seed=10 + seed)
    assert (x.mean(0) - TARGET_MEAN).abs().max() < 0.15
    assert ((x.std(0) / TARGET_STD) - 1).abs().max() < 0.2
    assert s.history[-1]["jko_loss"] >= 0 and "jko_move" in s.history[-1]


MEAN = torch.tensor([3.0, -1.0])
CHOL = torch.tensor([[2.0, 0.0], [1.6, 0.3]])  # cov [[4, 3.2], [3.2, 2.65]]
COV = CHOL @ CHOL.T


@pytest.mark.parametrize("seed", [0, 1])
def test_dataflow_jko_learns_a_correlated_gaussian(seed):
    """DataFlow(step="jko"), one MLP map, sinkhorn; it starts at the data's mean and diagonal
    std, so the covariance 3.2 must be learned.  Measured after 100 steps (batch 128, width 64,
    M = 3), seeds 0, 1: max |Δcov| 0.16, 0.19; |Δmean| 0.02, 0.10.  Asserted: max |Δcov| < 0.4
    (> 2.5 after one step), |Δmean| < 0.25."""
    data = torch.randn(4000, 2, generator=torch.Generator().manual_seed(seed)) @ CHOL.T + MEAN
    flow = DataFlow(2, "sinkhorn", seed=seed, batch_size=128, hidden=64, generator="mlp", step="jko",
                    jko_inner=3)
    flow.fit(data, steps=1)
    assert (torch.cov(flow.sample(20_000, seed=5).T) - COV).abs().max() > 2.5
    flow.fit(data, steps=100)
    x = flow.sample(20_000, seed=6)
    assert (x.mean(0) - MEAN).abs().max() < 0.25
    assert (torch.cov(x.T) - COV).abs().max() < 0.4


class Interrupt(ff.train.Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, trainer, state, info):
        if state.step == self.at:
            raise KeyboardInterrupt


def test_sampler_jko_save_load_resume_is_exact(tmp_path):
    kw = dict(seed=4, step="jko", jko_tau=1.0, jko_inner=3, batch_size=64)
    straight = ff.OneStepSampler(gauss, dim=2, **kw)
    straight.fit(20, progress=False, check=False)
    first = ff.OneStepSampler(gauss, dim=2, **kw)
    with pytest.raises(KeyboardInterrupt):
        first.fit(20, progress=False, check=False, checkpoint=tmp_path / "c.pt", checkpoint_every=5,
                  callbacks=[Interrupt(13)])
    back = ff.OneStepSampler.load(tmp_path / "c.pt", gauss)
    assert back.steps_done == 10
    assert back.settings["step"] == "jko" and back.settings["jko_inner"] == 3
    back.fit(20, progress=False, check=False)
    for a, b in zip(straight.generator.state_dict().values(), back.generator.state_dict().values()):
        assert torch.equal(a, b)


def test_dataflow_jko_save_load_resume_is_exact(tmp_path):
    data = torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    kw = dict(seed=3, batch_size=64, step="jko", jko_inner=2, components=4)
    straight = DataFlow(2, **kw)
    straight.fit(data, steps=12)
    first = DataFlow(2, **kw)
    with pytest.raises(KeyboardInterrupt):
        first.fit(data, steps=12, checkpoint=tmp_path / "f.pt", checkpoint_every=3, callbacks=[Interrupt(7)])
    back = DataFlow.load(tmp_path / "f.pt")
    assert back.steps_done == 6 and back.settings["step"] == "jko"
    back.fit(data, steps=12)
    for a, b in zip(straight.generator.state_dict().values(), back.generator.state_dict().values()):
        assert torch.equal(a, b)
    torch.testing.assert_close(straight.sample(200, seed=1), back.sample(200, seed=1), rtol=0, atol=0)


@pytest.mark.parametrize("make", [
    lambda **kw: ff.OneStepSampler(gauss, dim=2, **kw),
    lambda **kw: DataFlow(2, **kw),
    lambda **kw: TrainConfig(**kw),
], ids=["sampler", "dataflow", "trainconfig"])
@pytest.mark.parametrize("kw, exc, pattern", [
    (dict(step="jko", jko_tau=0.0), ValueError, "jko_tau"),
    (dict(step="jko", jko_tau=-0.5), ValueError, "jko_tau"),
    (dict(step="jko", jko_tau=float("nan")), ValueError, "jko_tau"),
    (dict(step="jko", jko_inner=0), ValueError, "jko_inner"),
    (dict(step="jko", jko_inner=2.5), TypeError, "jko_inner"),
    (dict(step="implicit"), ValueError, r"unknown step 'implicit'.*valid: explicit, jko"),
])
def test_bad_jko_settings_named(make, kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make(**kw)


def test_nan_inside_the_inner_loop_is_undone_and_the_last_good_state_kept(tmp_path):
    """log p̃ turns NaN in the second inner call of step 12 (after one inner optimiser step).
    With no retry allowed (max_recoveries=0) the run stops cleanly there: no exception, the
    failure names the step, the generator is back at its state after step
    12's predecessors (bit for bit), and the checkpoint written at the end holds that state."""
    import dataclasses

    state = {"armed": False, "calls": 0}
    good = {}

    def flaky(x):
        if state["armed"]:
            state["calls"] += 1
            if state["calls"] >= 2:
                return gauss(x) * float("nan")
        return gauss(x)

    class Arm(ff.train.Callback):
        def on_step_end(self, trainer, st, info):
            if st.step == 12:
                state["armed"] = True
                good.update({k: v.clone() for k, v in st.generator.state_dict().items()})

        def on_fit_end(self, trainer, st):  # (before the final checkpoint, which calls flaky too)
            state["calls_in_training"] = state["calls"]

    s = ff.OneStepSampler(flaky, dim=2, density="kde", step="jko", jko_inner=3, **SMALL)
    s.trainer.config = dataclasses.replace(s.trainer.config, max_recoveries=0)
    s.trainer.callbacks.append(Arm())  # the trainer's own callbacks run first
    with pytest.warns(ff.train.TrainingStoppedWarning, match=r"stopped at step 12 of 40 .*NaN.* at step 12"):
        s.fit(40, progress=False, check=False, checkpoint=tmp_path / "c.pt", checkpoint_every=5)
    assert state["calls_in_training"] == 2  # it failed inside the inner loop, not at its first call
    assert s.steps_done == 12 and "log_density returned NaN" in s.state.failure
    for k, v in s.generator.state_dict().items():
        assert torch.equal(v, good[k]), k
    state["armed"] = False
    back = ff.OneStepSampler.load(tmp_path / "c.pt", flaky, check_target=False)
    assert back.steps_done == 12
    for k, v in back.generator.state_dict().items():
        assert torch.equal(v, good[k]), k


def test_nan_velocity_in_an_inner_step_is_named():
    """A drift whose velocity turns NaN at the third inner call: the error names the inner step."""

    class Flaky(LinearDrift):
        def __call__(self, generator, step, rng, *, total_steps, update=True):
            x, v, info = super().__call__(generator, step, rng, total_steps=total_steps, update=update)
            return x, (v * float("nan") if len(self.calls) == 3 else v), info

    trainer = Trainer(LinearGenerator(), Flaky(), TrainConfig(step="jko", jko_inner=4))
    state = trainer.init()
    state.total_steps = 1
    with pytest.raises(ff.train.NonFiniteError, match=r"non-finite velocity at step 0 \(JKO inner step 3 of 4\)"):
        trainer.step(state)


def test_replay_buffer_grows_once_per_outer_step():
    """divergence="lv" with a replay reference: the inner evaluations (update=False) push
    nothing, so after 4 JKO steps of batch 64 the buffer holds 4 × 64 samples, as explicit."""
    kw = dict(divergence="lv", density="kde", lv_reference="replay", lv_options={"per_step": 64}, **SMALL)
    e = ff.OneStepSampler(gauss, dim=2, **kw)
    j = ff.OneStepSampler(gauss, dim=2, step="jko", jko_inner=3, **kw)
    e.fit(4, progress=False, check=False)
    j.fit(4, progress=False, check=False)
    assert e.drift.ref.buffer.shape[0] == j.drift.ref.buffer.shape[0] == 4 * 64
