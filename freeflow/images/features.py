"""Feature maps for the image drift (MATH.md §3): where the Sinkhorn velocity is computed.

The drift is computed per class and per feature *location*: a feature map turns a batch of
images/latents (N, C, H, W) into groups, each a tensor (N, L, D) of L locations with a
D-vector each.  The velocity of every group is computed on the N points of each location
independently (batched over classes × locations with the shared
:mod:`freeflow.velocities` functions), RMS-normalised, and pulled back to the generator by
the regression loss on the features (the trainer regresses φ(G(z)) onto sg(φ + η V)).

:class:`MultiScaleFeatures` (the default): the latent itself as one vector, non-overlapping
p×p patches (one location per patch), average-pooled copies, and per-channel means/stds
over p×p windows — the "multi-scale pooled means/stds" statistics.  All differentiable.

:class:`EncoderFeatures`: a frozen network loaded from a local path (TorchScript or a
``torch.save``-d module), whose activations are flattened per spatial location.  Nothing is
downloaded.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor

__all__ = ["MultiScaleFeatures", "EncoderFeatures", "build_feature_map", "FEATURE_MAPS"]

FEATURE_MAPS = ("multiscale", "encoder")


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise ValueError(f"images must be a tensor (N, C, H, W), got {getattr(x, 'shape', type(x))}")


def patches(x: Tensor, p: int) -> Tensor:
    """(N, C, H, W) -> (N, L, C·p·p): non-overlapping p×p patches, L = (H/p)(W/p)."""
    n, c, h, w = x.shape
    t = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return t.reshape(n, (h // p) * (w // p), c * p * p)


def window_stats(x: Tensor, p: int) -> Tensor:
    """(N, C, H, W) -> (N, L, 2C): per-channel mean and std over each p×p window."""
    t = patches(x, p).reshape(x.shape[0], -1, x.shape[1], p * p)
    mean, std = t.mean(-1), (t.var(-1, unbiased=False) + 1e-6).sqrt()
    return torch.cat([mean, std], -1)


class MultiScaleFeatures(nn.Module):
    """Groups: ``whole`` (N, 1, C·H·W), ``patch{p}`` (N, L, C·p·p) for p in ``patch_sizes``,
    ``pool{s}`` (N, 1, C·H/s·W/s) for s in ``pool_sizes``, ``stats{p}`` (N, L, 2C) for p in
    ``stat_sizes``.  Sizes that do not divide the image are skipped (checked at first call)."""

    def __init__(self, patch_sizes: Sequence[int] = (4,), pool_sizes: Sequence[int] = (2,),
                 stat_sizes: Sequence[int] = (4,), whole: bool = True) -> None:
        super().__init__()
        for name, sizes in (("patch_sizes", patch_sizes), ("pool_sizes", pool_sizes), ("stat_sizes", stat_sizes)):
            if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
                raise ValueError(f"{name} must be positive ints, got {list(sizes)!r}")
        self.patch_sizes, self.pool_sizes, self.stat_sizes = tuple(patch_sizes), tuple(pool_sizes), tuple(stat_sizes)
        self.whole = bool(whole)
        if not (self.whole or self.patch_sizes or self.pool_sizes or self.stat_sizes):
            raise ValueError("MultiScaleFeatures needs at least one group")

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        _check_images(x)
        n, c, h, w = x.shape
        out: dict[str, Tensor] = {}
        if self.whole:
            out["whole"] = x.reshape(n, 1, c * h * w)
        for p in self.patch_sizes:
            if h % p == 0 and w % p == 0 and p < max(h, w):
                out[f"patch{p}"] = patches(x, p)
        for s in self.pool_sizes:
            if h % s == 0 and w % s == 0 and s < max(h, w):
                out[f"pool{s}"] = F.avg_pool2d(x, s).reshape(n, 1, -1)
        for p in self.stat_sizes:
            if h % p == 0 and w % p == 0 and p > 1:
                out[f"stats{p}"] = window_stats(x, p)
        if not out:
            raise ValueError(f"no feature group fits images of size {h}x{w}")
        return out


class EncoderFeatures(nn.Module):
    """A frozen encoder from a local file; its (N, C', H', W') output (or a dict/list whose
    tensors are such) becomes one group per tensor with a location per spatial position.
    Images are mapped from the pipeline's value range by ``x * input_scale + input_shift``."""

    def __init__(self, path: str | os.PathLike, *, input_scale: float = 1.0, input_shift: float = 0.0) -> None:
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feature encoder file not found: {str(path)!r} (a TorchScript file "
                                    "or a torch.save-d nn.Module; nothing is downloaded)")
        try:
            net = torch.jit.load(str(path), map_location="cpu")
        except Exception:  # noqa: BLE001 - not TorchScript: a pickled module
            net = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(net, nn.Module):
            raise ValueError(f"{str(path)!r} does not hold an nn.Module (got {type(net).__name__})")
        for p in net.parameters():          # (ScriptModules have no requires_grad_)
            p.requires_grad_(False)
        self.net = net.eval()
        self.input_scale, self.input_shift = float(input_scale), float(input_shift)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        _check_images(x)
        y = self.net(x * self.input_scale + self.input_shift)
        items = y.items() if isinstance(y, dict) else enumerate(y if isinstance(y, (list, tuple)) else [y])
        out = {}
        for k, t in items:
            if t.ndim == 2:
                t = t[:, :, None, None]
            out[f"enc{k}"] = t.flatten(2).transpose(1, 2)          # (N, H'W', C')
        return out


def build_feature_map(name: str = "multiscale", **kwargs) -> nn.Module:
    """``"multiscale"`` (kwargs: patch_sizes, pool_sizes, stat_sizes, whole) or ``"encoder"``
    (kwargs: path, input_scale, input_shift)."""
    from ..validation import check_choice

    check_choice(name, FEATURE_MAPS, "features")
    if name == "multiscale":
        return MultiScaleFeatures(**kwargs)
    if "path" not in kwargs:
        raise ValueError("features='encoder' needs encoder_path (a local file)")
    return EncoderFeatures(**kwargs)
