"""The DiT's activation-checkpointing switch: the same loss and gradients as without it."""
from __future__ import annotations

import pytest
import torch

from freeflow.images.dit import DiT, DiTConfig


def _loss_and_grads(checkpointing: bool, seed: int):
    torch.manual_seed(0)
    cfg = DiTConfig(input_size=8, in_channels=2, patch_size=2, hidden=32, depth=3, heads=2, num_classes=5,
                    guidance_embed=True, activation_checkpointing=checkpointing)
    model = DiT(cfg)
    with torch.no_grad():  # leave DiT's zero init, so that every block's gradient is non-zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    calls = []
    block, forward = model.blocks[0], model.blocks[0].forward  # (hooks do not fire in the recomputation)
    block.forward = lambda *a: (calls.append(1), forward(*a))[1]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 2, 8, 8, generator=g)
    y = torch.randint(0, 6, (6,), generator=g)
    out = model(x, y, guidance=torch.rand(6, generator=g) + 1.0)
    loss = (out - torch.randn(out.shape, generator=g)).pow(2).mean()
    loss.backward()
    assert len(calls) == (2 if checkpointing else 1)  # checkpointing recomputes the block in backward
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("seed", [0, 1])
def test_checkpointing_keeps_loss_and_gradients(seed):
    loss0, g0 = _loss_and_grads(False, seed)
    loss1, g1 = _loss_and_grads(True, seed)
    assert g0.keys() == g1.keys() and any("blocks.2" in k for k in g0)
    # the recomputed forward runs the same CPU kernels on the same inputs: equal to float32 rounding
    assert torch.allclose(loss0, loss1, rtol=0, atol=1e-7)
    for k in g0:
        assert torch.allclose(g0[k], g1[k], rtol=1e-5, atol=1e-7), k
    assert max(float(v.abs().max()) for k, v in g0.items() if "blocks.0" in k) > 1e-4


def test_checkpointing_is_a_checked_bool():
    with pytest.raises(TypeError, match="activation_checkpointing"):
        DiTConfig(activation_checkpointing="yes")
