"""OneStepSampler: bad input, save/load, resume equality, non-finite handling."""

import math
import warnings

import pytest
import torch

import freeflow as ff
from freeflow.reliability import ReliabilityWarning

SMALL = dict(batch_size=64, reference_size=64, hidden=32, depth=1)


def gauss(x):
    return -0.5 * (x**2).sum(-1)


def test_bad_log_density_shape():
    with pytest.raises(ValueError, match=r"log_density must map a batch of shape \(8, 2\) to shape \(8,\)"):
        ff.OneStepSampler(lambda x: -0.5 * x**2, dim=2)


def test_bad_log_density_nan_and_inf():
    with pytest.raises(FloatingPointError, match="log_density returned NaN"):
        ff.OneStepSampler(lambda x: x.sum(-1) * float("nan"), dim=2)
    with pytest.raises(FloatingPointError, match=r"\+inf"):
        ff.OneStepSampler(lambda x: x.sum(-1) + float("inf"), dim=2)


def test_not_differentiable():
    with pytest.raises(TypeError, match="not differentiable"):
        ff.OneStepSampler(lambda x: gauss(x).detach(), dim=2)
    with pytest.raises(TypeError, match="torch.Tensor"):
        ff.OneStepSampler(lambda x: gauss(x).detach().numpy(), dim=2)


def test_dim_mismatch_named():
    def needs_3(x):
        return -(x @ torch.ones(3, 3) * x).sum(-1)

    with pytest.raises(ValueError, match="dim=2"):
        ff.OneStepSampler(needs_3, dim=2)
    with pytest.raises(ValueError, match="dim"):
        ff.OneStepSampler(gauss, dim=0)
    with pytest.raises(ValueError, match="dim is required"):
        ff.OneStepSampler(gauss)


@pytest.mark.parametrize("key,value", [("batch_size", 0), ("batch_size", -5), ("lr", 0.0), ("noise_dim", 1)])
def test_bad_settings_named(key, value):
    with pytest.raises(ValueError, match=key):
        ff.OneStepSampler(gauss, dim=2, **{key: value})


def test_unknown_setting_and_divergence():
    with pytest.raises(TypeError, match="unknown setting"):
        ff.OneStepSampler(gauss, dim=2, batchsize=10)
    with pytest.raises(ValueError, match="unknown divergence"):
        ff.OneStepSampler(gauss, dim=2, divergence="kl")


@pytest.mark.parametrize("steps, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError)])
def test_bad_steps(steps, error):
    s = ff.OneStepSampler(gauss, dim=2, **SMALL)
    with pytest.raises(error, match="steps"):
        s.fit(steps, progress=False)


def test_save_load_round_trip(tmp_path):
    s = ff.OneStepSampler(gauss, dim=2, seed=3, **SMALL)
    s.fit(20, progress=False)
    s.save(tmp_path / "s.pt")
    again = ff.OneStepSampler.load(tmp_path / "s.pt", gauss)
    assert again.steps_done == 20 and len(again.history) == 20
    torch.testing.assert_close(again.sample(100, seed=1), s.sample(100, seed=1), rtol=0, atol=0)


def test_load_rejects_other_log_density_and_dimension(tmp_path):
    s = ff.OneStepSampler(gauss, dim=2, **SMALL)
    s.save(tmp_path / "s.pt")
    with pytest.raises(ValueError, match="different log-density"):
        ff.OneStepSampler.load(tmp_path / "s.pt", lambda x: -((x - 1) ** 2).sum(-1))
    # same function up to a constant (an unknown normaliser) is accepted
    ff.OneStepSampler.load(tmp_path / "s.pt", lambda x: gauss(x) + 5.0)
    with pytest.raises(ValueError):
        ff.OneStepSampler.load(tmp_path / "s.pt", lambda x: gauss(x[:, :1]))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        ff.OneStepSampler.load(tmp_path / "junk.pt", gauss)


def test_resume_equals_straight_run(tmp_path):
    straight = ff.OneStepSampler(gauss, dim=2, seed=7, **SMALL)
    straight.fit(30, progress=False)

    class Interrupt(ff.train.Callback):
        def on_step_end(self, trainer, state, info):
            if state.step == 23:
                raise KeyboardInterrupt

    first = ff.OneStepSampler(gauss, dim=2, seed=7, **SMALL)
    with pytest.raises(KeyboardInterrupt):
        first.fit(30, progress=False, checkpoint=tmp_path / "c.pt", checkpoint_every=10,
                  log=tmp_path / "log.jsonl", callbacks=[Interrupt()])
    resumed = ff.OneStepSampler.load(tmp_path / "c.pt", gauss)
    assert resumed.steps_done == 20
    resumed.fit(30, progress=False, log=tmp_path / "log.jsonl")
    for a, b in zip(straight.generator.state_dict().values(), resumed.generator.state_dict().values()):
        assert torch.equal(a, b)
    torch.testing.assert_close(straight.sample(50, seed=0), resumed.sample(50, seed=0), rtol=0, atol=0)
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 31))


def test_nan_mid_training_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path):
    """log p̃ turns NaN everywhere for good: the step fails, is retried max_recoveries times, and
    training stops there without an exception; the verdict is "do not trust" (its reason the
    failure; the reliability check itself cannot run on a NaN log-density) and the checkpoint
    on disk is the last good state: it loads, finite, at the step where training stopped."""
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        out = gauss(x)
        return out * float("nan") if calls["n"] > 12 else out

    s = ff.OneStepSampler(flaky, dim=2, **SMALL)
    with pytest.warns(ff.train.TrainingStoppedWarning, match=r"log_density returned NaN .* at step \d+"):
        with pytest.warns(ReliabilityWarning, match="do not trust these samples: training stopped at step") as w:
            s.fit(50, progress=False, checkpoint=tmp_path / "c.pt", checkpoint_every=5)
    assert not any("refine=" in str(m.message) for m in w)  # (no MCMC advice for a failed training)
    assert 0 < s.steps_done < 50 and s.state.recoveries == 20
    assert s.last_reliability.trusted is False
    assert any("reliability check could not run" in r for r in s.last_reliability.reasons)
    calls["n"] = -10**9  # the checkpoint on disk loads and is finite
    back = ff.OneStepSampler.load(tmp_path / "c.pt", flaky, check_target=False)
    assert back.steps_done == s.steps_done
    assert all(torch.isfinite(p).all() for p in back.generator.parameters())


def test_non_finite_gradient_named():
    def bad_grad(x):
        return -(x.abs() + 1e-30).sqrt().sum(-1) * 0 + torch.where(x[:, 0] > 100, x[:, 0], -x[:, 0] ** 2) + 0 * torch.sqrt(x[:, 1] - x[:, 1])

    # d/dx sqrt(0) = inf at every point: the sampler refuses before training
    with pytest.raises(FloatingPointError, match="gradient"):
        ff.OneStepSampler(bad_grad, dim=2)


def test_annealed_paths_closed_form():
    """annealed(): tempered = β·(log p̃, ∇log p̃); geometric adds (1−β)·log N(0, s²I) and its
    score (checked against autograd); both equal (log p̃, ∇log p̃) at β = 1."""
    from freeflow.datafree import annealed

    torch.manual_seed(0)
    x = torch.randn(50, 3, dtype=torch.float64, requires_grad=True)
    lp = -(x.pow(4)).sum(1) + x[:, 0]
    (sp,) = torch.autograd.grad(lp.sum(), x, retain_graph=True)
    s, beta = 2.0, 0.3
    lt, st = annealed(lp.detach(), sp, x.detach(), beta, "tempered")
    assert torch.allclose(lt, beta * lp.detach()) and torch.allclose(st, beta * sp)
    lg, sg = annealed(lp.detach(), sp, x.detach(), beta, "geometric", s)
    ref = beta * lp + (1 - beta) * (-0.5 * (x / s).pow(2).sum(1))
    (ref_score,) = torch.autograd.grad(ref.sum(), x)
    assert torch.allclose(lg, ref.detach()) and torch.allclose(sg, ref_score)
    for path in ("tempered", "geometric"):
        l1, s1 = annealed(lp.detach(), sp, x.detach(), 1.0, path, s)
        assert torch.equal(l1, lp.detach()) and torch.equal(s1, sp)
    with pytest.raises(ValueError, match="anneal_path"):
        annealed(lp.detach(), sp, x.detach(), beta, "linear")
    with pytest.raises(ValueError, match="anneal_path"):
        ff.OneStepSampler(lambda x: -x.pow(2).sum(1), dim=2, anneal_path="linear")


def test_default_annealing_stays_bounded_on_the_funnel():
    """funnel10 with the default settings (flow generator, geometric annealing path from
    N(0, I)): the tempered path p̃^0.02 is so broad in the neck that the samples grew ~1.5×
    per step and overflowed the funnel's gradient at step 19 (measured); the geometric path
    keeps the batch bounded.  60 steps; x₀ of the target has std 3, bound |x| < 50."""
    from targets import get_target

    t = get_target("funnel10")
    s = ff.OneStepSampler(t, seed=0)
    assert s.settings["anneal_path"] == "geometric"
    s.fit(60, progress=False)
    x = s.sample(4000, seed=1)
    assert torch.isfinite(x).all() and float(x.abs().max()) < 50, float(x.abs().max())


def test_verdict_mcmc_check_shows_progress_only_when_fit_does(capsys):
    """fit(progress=True) shows a bar for the verdict's MCMC check (it can take minutes on an
    expensive log-density); progress=False prints nothing, and reliability() called by the user
    afterwards shows no bar."""
    def log_density(x):
        return -0.5 * (x ** 2).sum(1)

    s = ff.OneStepSampler(log_density, dim=4, seed=0)
    s.fit(60, progress=True)
    assert "verdict: MCMC check" in capsys.readouterr().err
    s.reliability()
    assert "verdict: MCMC check" not in capsys.readouterr().err
    s2 = ff.OneStepSampler(log_density, dim=4, seed=0)
    s2.fit(60, progress=False)
    assert capsys.readouterr().err == ""


def test_cheap_first_round_check_same_verdict_without_the_costly_checks():
    """reliability(cheap_first=True), the check before an auto run's last round: where the
    importance checks fail (a 2-D Gaussian after 5 steps) it stops there (``partial``: no Gibbs
    or MCMC numbers), with the same "do not trust" and the importance reasons of the full
    check; where they pass (after 300 steps) it is the full check, number for number."""
    def log_density(x):
        return -0.5 * ((x - torch.tensor([3.0, -2.0])) ** 2 / torch.tensor([1.0, 4.0])).sum(1)

    s = ff.OneStepSampler(log_density, dim=2, seed=0)
    with pytest.warns(ReliabilityWarning, match=r"do not trust.*sampler.sample\(n, refine=100\).*"
                      r"about 603 log-density rows a draw, 6.0e\+05 per 1000 draws \(this fit's training: "):
        s.fit(5, progress=False)   # (the warning says how to correct the draws, and at what cost)
    cheap, full = s.reliability(cheap_first=True), s.reliability()
    assert cheap.trusted is False and full.trusted is False and cheap.partial and not full.partial
    assert cheap.gibbs_shift is None and cheap.mcmc_statistic is None and full.gibbs_shift is not None
    assert cheap.reasons == full.reasons[:len(cheap.reasons)] and cheap.pareto_k == full.pareto_k
    s.fit(300, progress=False, check=False)
    cheap, full = s.reliability(cheap_first=True), s.reliability()
    assert full.trusted is True and not cheap.partial and cheap.to_dict() == full.to_dict()


def test_nan_at_some_probe_points_is_a_failed_evaluation_not_an_error(tmp_path):
    """A log-density that fails (NaN) on part of the space, as an ODE solver gives up at extreme
    parameters, builds and trains: the probe treats those rows as outside the support (as NUTS
    does); only NaN at every probe point is an error (test above). Here NaN on the half-space
    x₀ > 0, so p is N(0, I) restricted to x₀ < 0: E x₀ = −√(2/π) (closed form). A hard edge is
    hard for a smooth q, so the raw draws may be flagged; the importance-weighted mean (weight 0
    past the edge) must be right within 0.05 (~15 standard errors of 20 000 draws) and the fit
    either trusted with raw draws within 0.1 or flagged."""
    from freeflow.validation import noise_generator

    def log_density(x):
        out = -0.5 * x.pow(2).sum(-1)
        return torch.where(x[:, 0] < 0, out, torch.full_like(out, math.nan))

    probe = torch.randn(8, 2, generator=noise_generator(1234))  # the probe's own batch
    assert 0 < int((probe[:, 0] > 0).sum()) < 8
    s = ff.OneStepSampler(log_density, dim=2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReliabilityWarning)
        s.fit(300, progress=False)
    mean, _ = s.expectation(lambda x: x[:, 0], 20000, seed=1)
    assert abs(float(mean) + math.sqrt(2 / math.pi)) < 0.05
    x = s.sample(4000, seed=1)
    assert torch.isfinite(x).all()
    raw_ok = abs(float(x[:, 0].mean()) + math.sqrt(2 / math.pi)) < 0.1
    assert raw_ok or s.last_reliability.trusted is False
    # its checkpoint reloads: the fingerprint's NaN probe points compare equal (NaN == NaN there)
    s.save(tmp_path / "s.pt")
    t = ff.OneStepSampler.load(tmp_path / "s.pt", log_density)
    assert torch.equal(t.sample(100, seed=3), s.sample(100, seed=3))
    with pytest.raises(ValueError, match="different log-density"):
        ff.OneStepSampler.load(tmp_path / "s.pt", lambda x: log_density(x) * 2)
