"""One validation layer: the trainer's settings, the data-free drift's and the Sinkhorn
velocities' integer arguments are checked by freeflow.validation, with errors naming the
argument; no module keeps its own copy of the positive-int check."""
import ast
from pathlib import Path

import pytest
import torch

from freeflow.datafree.drift import DataFreeDrift, annealed
from freeflow.density.kde import KDE
from freeflow.divergences import get_divergence
from freeflow.train import TrainConfig
from freeflow.velocities.guidance import distribution_guidance_log_weights
from freeflow.velocities.sinkhorn import sinkhorn_potentials, sinkhorn_velocity

PACKAGE = Path(__file__).resolve().parents[1] / "freeflow"


@pytest.mark.parametrize("kw, exc, pattern", [
    (dict(lr=-1e-3), ValueError, r"^lr must be a finite number in \(0, inf\)"),
    (dict(lr=float("nan")), ValueError, "^lr "),
    (dict(lr="0.1"), TypeError, "^lr must be a number"),
    (dict(lr_schedule="cosin"), ValueError, r"unknown lr_schedule 'cosin' \(did you mean 'cosine'\?\)"),
    (dict(warmup_steps=-1), ValueError, r"^warmup_steps must be an int in \[0, inf\]"),
    (dict(warmup_steps=1.5), TypeError, "^warmup_steps must be an int"),
    (dict(step_size=0.0), ValueError, "^step_size "),
    (dict(grad_clip=-1.0), ValueError, "^grad_clip "),
])
def test_train_config_names_the_setting(kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        TrainConfig(**kw)
    TrainConfig(grad_clip=None, warmup_steps=0)  # the valid edge values pass


def _drift(**kw):
    args = dict(log_density=lambda x: -0.5 * x.pow(2).sum(-1), divergence=get_divergence("kl_qp"),
                density=KDE(), noise_dim=2, batch_size=8)
    return DataFreeDrift(**{**args, **kw})


@pytest.mark.parametrize("kw, exc, pattern", [
    (dict(anneal_path="geometrik"), ValueError, r"unknown anneal_path 'geometrik' \(did you mean 'geometric'\?\)"),
    (dict(base_scale=0.0), ValueError, "^base_scale "),
    (dict(reference="lo"), ValueError, r"unknown reference 'lo'.*valid: independent, loo"),
    (dict(beta0=0.0), ValueError, r"^beta0 must be a finite number in \(0, 1\]"),
    (dict(beta0=1.5), ValueError, "^beta0 "),
])
def test_data_free_drift_names_the_setting(kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        _drift(**kw)
    _drift(beta0=1.0, reference="loo", anneal_path="geometric")


def test_annealed_path_checked():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="unknown anneal_path 'geometrik'"):
        annealed(torch.zeros(3), torch.zeros(3, 2), x, 0.5, "geometrik")


@pytest.mark.parametrize("call", [
    lambda n: sinkhorn_potentials(torch.randn(4, 2), torch.randn(5, 2), 1.0, num_iters=n),
    lambda n: sinkhorn_velocity(torch.randn(4, 2), torch.randn(5, 2), torch.randn(4, 2), num_iters=n),
])
def test_sinkhorn_num_iters(call):
    with pytest.raises(ValueError, match=r"^num_iters must be an int in \[1, inf\], got 0"):
        call(0)
    with pytest.raises(TypeError, match="^num_iters must be an int"):
        call(2.0)
    with pytest.raises(TypeError, match="^num_iters must be an int"):
        call(True)


def test_guidance_counts():
    with pytest.raises(ValueError, match="^n_neg must be an int"):
        distribution_guidance_log_weights(0, 3, 2.0)
    with pytest.raises(TypeError, match="^n_unc must be an int"):
        distribution_guidance_log_weights(3, 1.5, 2.0)


def test_no_private_copy_of_the_int_checks():
    """No module outside freeflow/validation.py defines its own positive-int checker."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "validation.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in ("check_positive_int", "check_int"):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    assert not found, found
