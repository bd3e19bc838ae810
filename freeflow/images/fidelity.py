"""FID, Inception Score and KID of ImageNet-style images through torch-fidelity.

A thin wrapper around ``torch_fidelity.calculate_metrics`` with the Inception-v3 weights from a
local file (nothing is downloaded). torch-fidelity imports torchvision at import time, so it
needs a torchvision built for the installed torch; it is imported lazily, only when called.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import to_uint8

__all__ = ["torch_fidelity_metrics"]


def _as_uint8_dataset(x, name: str):
    """An in-memory torch Dataset of uint8 (3, H, W) images from (N, C, H, W) or (N, H, W):
    uint8 as is, floats read as [-1, 1] (→ round((x + 1) · 127.5), clipped); 1 channel repeated."""
    from torch.utils.data import Dataset

    t = torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a directory path, a registered input name, a torch Dataset or an "
                        f"(N, C, H, W) array, got {type(x).__name__}")
    t = t.detach().cpu()
    if t.ndim == 3:
        t = t[:, None]
    if t.ndim != 4 or t.shape[1] not in (1, 3) or t.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, 1 or 3, H, W) or (N, H, W), got {tuple(t.shape)}")
    if t.dtype != torch.uint8:
        if not t.dtype.is_floating_point:
            raise TypeError(f"{name}: integer images must be uint8, got {t.dtype}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} has NaN or inf entries")
        t = to_uint8(t)
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    t = t.contiguous()

    class _Images(Dataset):
        def __len__(self):
            return t.shape[0]

        def __getitem__(self, i):
            return t[i]

    return _Images()


def torch_fidelity_metrics(generated_dir_or_array, reference, *, inception_weights: str | os.PathLike,
                           cuda: bool | None = None, batch_size: int = 64, kid_subset_size: int | None = None,
                           kid_subsets: int = 100, isc_splits: int = 10, seed: int = 2020,
                           verbose: bool = False, **kwargs: Any) -> dict[str, float]:
    """FID, Inception Score and KID by ``torch_fidelity.calculate_metrics`` (torch-fidelity 0.3).

    ``generated_dir_or_array`` / ``reference``: a directory of image files, a torch-fidelity
    registered input name (its dataset must already be under ``datasets_root``: downloading
    is off), a torch Dataset of uint8 (3, H, W) tensors, or an (N, C, H, W) / (N, H, W) array
    (uint8, or floats in [-1, 1]; grey images are repeated to 3 channels). IS is computed on
    the generated input. ``inception_weights``: a local file of the Inception-v3 state dict
    (torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``), passed as
    ``feature_extractor_weights_path``. Nothing is downloaded and torch-fidelity's on-disk
    feature cache is off (``cache=False``) unless overridden in ``kwargs`` (passed on to
    ``calculate_metrics``). ``cuda`` defaults to ``torch.cuda.is_available()``;
    ``kid_subset_size`` to min(1000, n1, n2) for in-memory inputs (torch-fidelity's 1000
    otherwise). Returns torch-fidelity's dict (``frechet_inception_distance``,
    ``inception_score_mean``/``_std``, ``kernel_inception_distance_mean``/``_std``).

    FileNotFoundError naming ``inception_weights`` if that file is missing (checked before
    importing torch-fidelity); ImportError if torch-fidelity cannot be imported."""
    weights = Path(inception_weights)
    if not weights.is_file():
        raise FileNotFoundError(f"Inception weights file {str(weights)!r} does not exist "
                                "(torch_fidelity_metrics never downloads; pass a local copy)")
    try:
        import torch_fidelity
    except ImportError as e:
        raise ImportError(
            "torch_fidelity_metrics needs torch-fidelity: `pip install torch-fidelity` (it imports torchvision, "
            f"so it also needs a torchvision build matching torch {torch.__version__}); import failed: {e}"
        ) from e
    from torch.utils.data import Dataset

    def prepare(x, name):
        if isinstance(x, (str, os.PathLike)):
            return os.fspath(x), None
        if isinstance(x, Dataset):
            return x, len(x)
        ds = _as_uint8_dataset(x, name)
        return ds, len(ds)

    input1, n1 = prepare(generated_dir_or_array, "generated_dir_or_array")
    input2, n2 = prepare(reference, "reference")
    if kid_subset_size is None:
        kid_subset_size = min([1000] + [n for n in (n1, n2) if n is not None])
    options = dict(cache=False, datasets_download=False, save_cpu_ram=True)
    options.update(kwargs)
    return torch_fidelity.calculate_metrics(
        input1=input1, input2=input2, cuda=torch.cuda.is_available() if cuda is None else bool(cuda),
        batch_size=batch_size, fid=True, isc=True, kid=True,
        feature_extractor_weights_path=str(weights), kid_subset_size=kid_subset_size,
        kid_subsets=kid_subsets, isc_splits=isc_splits, rng_seed=seed, verbose=verbose, **options,
    )
