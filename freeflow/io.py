"""Crash-safe file output: write to a temporary file beside the target, then rename."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["atomic_write", "atomic_torch_save", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "atomic_save_npy",            "load_checkpoint"]


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then atomically move tmp_path onto ``path``.

    An exception or interruption during ``write`` leaves any earlier file at ``path`` intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:  # the bytes reach the disk before the rename makes them visible
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write(path, write)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write_bytes(text.encode(), path)


def atomic_write_json(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def atomic_save_npy(array, path: str | os.PathLike) -> Path:
    """``np.save`` through :func:`atomic_write` (a numpy array or a CPU tensor)."""
    import numpy as np

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array))

    return atomic_write(path, write)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """torch.load with ``weights_only=True`` (checkpoints hold plain dicts and tensors only)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated/corrupt files surface here
        raise ValueError(f"checkpoint {str(path)!r} cannot be read: {e}") from e


def jsonable(o: Any, fallback: Callable[[Any], str] = str) -> Any:
    """``json.dumps(default=...)``: numpy scalars/arrays and tensors as numbers/lists, paths as
    strings, anything else through ``fallback`` (``repr`` for cache keys)."""
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return fallback(o)
