"""One-step sampling of a trained image run, PNG grids and .npz files, and evaluation.

    freeflow images sample --run runs/digits --classes 3,7 --guidance 1.5 --n 16 --out grid.png
    freeflow images sample --run runs/L2 --classes 207,360 --guidance 1.14 --n 16 --out x.npz
    freeflow images eval --run runs/digits --n 2000                       # digits metrics
    freeflow images eval --run runs/L2 --inception /models/pt_inception.pth --reference /data/val --n 50000

``.npz`` holds ``images`` (N, C, H, W) in the data's value range ([-1, 1]; decoded through the
run's VAE for latent runs) and ``labels`` (N,).  A latent run without a VAE folder writes the
latents themselves (``images`` then holds latents and ``latents=True`` is stored).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write

__all__ = ["generate", "save_grid", "save_npz", "evaluate_digits", "parse_classes"]


@torch.no_grad()
def generate(net: torch.nn.Module, labels, *, guidance: float = 1.0, seed: int = 0, batch: int = 256,
             shape: tuple[int, int, int]) -> torch.Tensor:
    """One forward pass per batch: noise (N, *shape) and labels (N,) -> samples (N, *shape)."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    out = []
    for lab in labels.split(batch):
        z = torch.randn(len(lab), *shape, generator=g)
        kw = {}
        if getattr(getattr(net, "config", None), "guidance_embed", False):
            kw["guidance"] = torch.full((len(lab),), float(guidance))
        elif guidance != 1.0:
            raise ValueError("guidance needs a model trained with model.guidance_embed = true")
        out.append(net(z, lab, **kw).float())
    return torch.cat(out)


def parse_classes(text: str, num_classes: int) -> list[int]:
    """"3,7" -> [3, 7]; "all" -> 0..K-1; "null" is the unconditional (null) class K."""
    if text == "all":
        return list(range(num_classes))
    out = []
    for part in text.split(","):
        part = part.strip()
        if part == "null":
            out.append(num_classes)
            continue
        if not part.lstrip("-").isdigit():
            raise ValueError(f"--classes must be comma-separated ints, 'all' or 'null', got {text!r}")
        c = int(part)
        if not 0 <= c < num_classes:
            raise ValueError(f"--classes: class {c} is outside [0, {num_classes - 1}]")
        out.append(c)
    return out


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    from .data import to_uint8

    return to_uint8(images).permute(0, 2, 3, 1).numpy()


def save_grid(images: torch.Tensor, path, *, nrow: int | None = None, upscale: int = 1) -> Path:
    """A PNG grid of (N, C, H, W) images in [-1, 1] (1 or 3 channels), written atomically."""
    from PIL import Image

    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"a PNG grid needs (N, 1 or 3, H, W) images, got {tuple(images.shape)}")
    arr = _to_uint8(images)
    n, h, w, c = arr.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * (h + 1) + 1, nrow * (w + 1) + 1, c), dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = arr[i]
    img = Image.fromarray(grid[..., 0] if c == 1 else grid)
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def save_npz(path, images: torch.Tensor, labels: torch.Tensor, **extra) -> Path:
    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, images=images.numpy(), labels=np.asarray(labels), **extra)

    return atomic_write(path, write)


def evaluate_digits(net, *, n: int = 2000, guidance: float = 1.0, seed: int = 0, evaluator=None) -> dict:
    """Class-conditional digits metrics: held-out classifier accuracy of generated samples, the
    Fréchet distance in the digits feature space, and its real-vs-real floor at the same n."""
    from .metrics import DigitsEvaluator

    ev = evaluator or DigitsEvaluator.build(seed=0)
    labels = torch.arange(n) % 10
    x = generate(net, labels, guidance=guidance, seed=seed, shape=(1, 8, 8))
    return {"n": n, "guidance": guidance, "accuracy": float(ev.accuracy(x, labels)),
            "fid": float(ev.fid(x)), "fid_real_floor": float(ev.real_floor(n, seed=seed))}
