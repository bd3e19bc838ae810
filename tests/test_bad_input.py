"""Bad input across the public entry points: each case asserts the error type and that the
message names the argument (issue 15). One table, run in the suite; no case may pass silently."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import freeflow as ff
from freeflow.compare.baselines import SVGDBaseline
from freeflow.compare.reference import nuts
from freeflow.validation import check_points


def gauss(x):
    return -0.5 * (x**2).sum(-1)


S = ff.OneStepSampler
D = ff.DataFlow
DATA = torch.randn(600, 2)

CASES = [
    # OneStepSampler: dims, seeds, names, settings
    ("dim zero", lambda: S(gauss, dim=0), ValueError, "dim"),
    ("dim float", lambda: S(gauss, dim=2.0), TypeError, "dim"),
    ("dim missing", lambda: S(gauss), ValueError, "dim"),
    ("seed negative", lambda: S(gauss, dim=2, seed=-1), ValueError, "seed"),
    ("seed str", lambda: S(gauss, dim=2, seed="0"), TypeError, "seed"),
    ("divergence typo", lambda: S(gauss, dim=2, divergence="kl_qpp"), ValueError, "did you mean 'kl_qp'"),
    ("divergence type", lambda: S(gauss, dim=2, divergence=3), TypeError, "divergence"),
    ("generator typo", lambda: S(gauss, dim=2, generator="mixtur"), ValueError, "did you mean 'mixture'"),
    ("density typo", lambda: S(gauss, dim=2, density="kd"), ValueError, "did you mean 'kde'"),
    ("density type", lambda: S(gauss, dim=2, density=3), TypeError, "density"),
    ("setting typo", lambda: S(gauss, dim=2, batchsize=8), TypeError, "did you mean 'batch_size'"),
    ("batch_size 1", lambda: S(gauss, dim=2, batch_size=1), ValueError, "batch_size"),
    ("lr negative", lambda: S(gauss, dim=2, lr=-1e-3), ValueError, "lr"),
    ("lr nan", lambda: S(gauss, dim=2, lr=float("nan")), ValueError, "lr"),
    ("step_size zero", lambda: S(gauss, dim=2, step_size=0.0), ValueError, "step_size"),
    ("ema_decay > 1", lambda: S(gauss, dim=2, ema_decay=1.5), ValueError, "ema_decay"),
    ("anneal_path typo", lambda: S(gauss, dim=2, anneal_path="temperd"), ValueError, "anneal_path"),
    ("reference name", lambda: S(gauss, dim=2, reference="lo"), ValueError, "reference"),
    ("flow_kind", lambda: S(gauss, dim=2, flow_kind="maf"), ValueError, "flow_kind"),
    ("components zero", lambda: S(gauss, dim=2, components=0), ValueError, "components"),
    # the log-density probe
    ("not callable", lambda: S(3.0, dim=2), TypeError, "log_density"),
    ("wrong shape", lambda: S(lambda x: x, dim=2), ValueError, "log_density"),
    ("scalar out", lambda: S(lambda x: (x**2).sum(), dim=2), ValueError, "log_density"),
    ("numpy out", lambda: S(lambda x: -(x.detach().numpy() ** 2).sum(-1), dim=2), TypeError, "log_density"),
    ("detached", lambda: S(lambda x: gauss(x).detach(), dim=2), TypeError, "log_density"),
    ("integer dtype", lambda: S(lambda x: gauss(x).long(), dim=2), TypeError, "log_density"),
    ("all nan", lambda: S(lambda x: gauss(x) * float("nan"), dim=2), FloatingPointError, "log_density"),
    ("all -inf", lambda: S(lambda x: gauss(x) - float("inf"), dim=2), ValueError, "log_density"),
    ("raises", lambda: S(lambda x: gauss(x[:, :3] @ torch.ones(3, 3)), dim=2), ValueError, "log_density"),
    # fit / sample
    ("fit steps 0", lambda: S(gauss, dim=2, batch_size=16).fit(0, progress=False), ValueError, "steps"),
    ("fit steps float", lambda: S(gauss, dim=2, batch_size=16).fit(2.5, progress=False), TypeError, "steps"),
    ("sample n 0", lambda: S(gauss, dim=2, batch_size=16).sample(0), ValueError, "n"),
    # DataFlow
    ("data velocity typo", lambda: D(2, velocity="sinkorn"), ValueError, "did you mean 'sinkhorn'"),
    ("data seed", lambda: D(2, seed=-3), ValueError, "seed"),
    ("data setting typo", lambda: D(2, rel_epss=0.1), TypeError, "did you mean 'rel_eps'"),
    ("data rel_eps", lambda: D(2, rel_eps=-0.1), ValueError, "rel_eps"),
    ("data guidance", lambda: D(2, guidance="vel"), ValueError, "guidance"),
    ("data empty", lambda: D(2).fit(torch.zeros(0, 2), steps=1), ValueError, "data is empty"),
    ("data nan", lambda: D(2).fit(torch.tensor([[0.0, float("nan")]] * 600), steps=1), ValueError, "data"),
    ("data wrong dim", lambda: D(2).fit(torch.randn(600, 3), steps=1), ValueError, "data has dimension 3"),
    ("data 1-D", lambda: D(1).fit(torch.randn(600), steps=1), ValueError, "reshape"),
    ("data str", lambda: D(2).fit("data.npy", steps=1), TypeError, "data"),
    ("data ragged list", lambda: check_points([[1.0, 2.0], [3.0]]), ValueError, "data"),
    ("data complex", lambda: check_points(np.ones((4, 2), complex)), TypeError, "data"),
    ("data labels shape", lambda: D(2, num_classes=2).fit(DATA, torch.zeros(3, dtype=torch.long), steps=1),
     ValueError, "labels"),
    ("sample refine negative", lambda: ff.OneStepSampler(gauss, 2, generator="mlp").sample(8, refine=-1),
     ValueError, "refine"),
    ("sample refine float", lambda: ff.OneStepSampler(gauss, 2, generator="mlp").sample(8, refine=1.5),
     TypeError, "refine"),
    ("check_chains", lambda: ff.OneStepSampler(gauss, 2, check_chains=0), ValueError, "check_chains"),
    # compare, NUTS, baselines, Posterior
    ("compare n", lambda: ff.compare(DATA, DATA, n=5), ValueError, "n"),
    ("compare seed", lambda: ff.compare(DATA, DATA, seed=-1), ValueError, "seed"),
    ("nuts chains", lambda: nuts(gauss, 2, chains=0), ValueError, "chains"),
    ("nuts draws type", lambda: nuts(gauss, 2, draws=10.5), TypeError, "draws"),
    ("nuts no dim", lambda: nuts(gauss), ValueError, "dim"),
    ("svgd particles", lambda: SVGDBaseline(gauss, 2, n_particles=1), ValueError, "n_particles"),
    ("svgd probe", lambda: SVGDBaseline(lambda x: x, 2), ValueError, "log_density"),
    ("svgd budget", lambda: SVGDBaseline(gauss, 2, n_particles=8).fit(-1.0), ValueError, "time_budget_s"),
    ("posterior constraint typo", lambda: ff.Posterior(lambda p: -p["t"].sum(-1), params={"t": "positiv"}),
     ValueError, "did you mean 'positive'"),
    ("posterior params", lambda: ff.Posterior(lambda p: 0, params={}), TypeError, "params"),
]


@pytest.mark.parametrize("make, error, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_by_name(make, error, needle):
    with pytest.raises(error) as info:
        make()
    assert needle in str(info.value), f"message does not name {needle!r}: {info.value}"


def test_the_table_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("argv, needle", [
    (["sample", "--target", "rign8", "--out", "X"], "did you mean 'ring8'"),
    (["sample", "--target", "ring8", "--divergence", "hellinge", "--steps", "5", "--out", "X"], "did you mean 'hellinger'"),
    (["sample", "--target", "ring8", "--seed", "-1", "--steps", "5", "--out", "X"], "seed"),
    (["sample", "--target", "ring8", "--set", "lr=-1", "--steps", "5", "--out", "X"], "lr"),
])
def test_cli_bad_input_one_line(argv, needle, tmp_path, capsys):
    from freeflow.cli import main

    argv = [str(tmp_path / "o") if a == "X" else a for a in argv]
    try:
        rc = main(argv)
    except SystemExit as e:  # checks done before the sampler exist as SystemExit(message)
        rc, msg = 1, str(e.code)
    else:
        msg = capsys.readouterr().err
    assert rc != 0 and needle in msg and "Traceback" not in msg
