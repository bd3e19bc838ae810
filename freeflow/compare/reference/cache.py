"""On-disk cache of reference draws, keyed by what produced them.

Layout, for a key ``k = sha256(json(key material, settings))[:20]`` in ``cache_dir``::

    <name>-<k>.npz    the arrays (draws and per-chain diagnostics)
    <name>-<k>.json   {"format": 1, "key": ..., "settings": ..., "scalars": ..., "sha256": ...}

The JSON is written last and carries the sha256 of the .npz bytes, so it is the commit
record: a missing, unreadable, truncated or mismatched pair (wrong settings, wrong checksum,
wrong shapes, non-finite draws) is reported as a miss with a reason and recomputed, never
used.  Both files are written atomically (temporary file in the same folder + ``os.replace``).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ...io import atomic_write_bytes, atomic_write_text, jsonable

FORMAT = 1


def _jsonable_key(o: Any) -> Any:
    return jsonable(o, fallback=repr)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable_key)




def cache_key(key_material: Any, settings: dict) -> str:
    """sha256 (first 20 hex digits) of the canonical JSON of (key material, settings)."""
    blob = _canonical({"key": key_material, "settings": settings, "format": FORMAT})
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class DrawCache:
    """Store and fetch reference draws in ``cache_dir`` (see module docstring)."""

    def __init__(self, cache_dir: str | os.PathLike, name: str = "nuts") -> None:
        self.dir = Path(cache_dir)
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "nuts"
        self.last_miss_reason: str | None = None

    def paths(self, key: str) -> tuple[Path, Path]:
        stem = f"{self.name}-{key}"
        return self.dir / f"{stem}.npz", self.dir / f"{stem}.json"

    def load(
        self,
        key_material: Any,
        settings: dict,
        expected_shape: tuple[int, ...] | None = None,
        required: tuple[str, ...] = (),
    ) -> tuple[dict[str, np.ndarray], dict] | None:
        """Arrays and scalars stored for (key_material, settings), or None (reason in
        ``last_miss_reason``).  ``required``: array names that must be present besides draws."""
        key = cache_key(key_material, settings)
        npz_path, json_path = self.paths(key)
        if not json_path.exists() or not npz_path.exists():
            self.last_miss_reason = "no cached draws"
            return None
        try:
            meta = json.loads(json_path.read_text())
            raw = npz_path.read_bytes()
        except (OSError, ValueError, UnicodeDecodeError) as e:
            self.last_miss_reason = f"unreadable cache files ({type(e).__name__}: {e})"
            return None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            self.last_miss_reason = "cache format mismatch"
            return None
        # Compare through the canonical JSON so tuples/lists and numpy scalars compare equal.
        if _canonical(meta.get("settings")) != _canonical(settings) or _canonical(
            meta.get("key")
        ) != _canonical(key_material):
            self.last_miss_reason = "settings stored beside the draws differ from the requested ones"
            return None
        if meta.get("sha256") != hashlib.sha256(raw).hexdigest():
            self.last_miss_reason = "checksum mismatch (damaged or truncated draws file)"
            return None
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                arrays = {k: np.array(z[k]) for k in z.files}
        except Exception as e:  # noqa: BLE001 - any failure to parse is a miss
            self.last_miss_reason = f"unreadable draws file ({type(e).__name__})"
            return None
        draws = arrays.get("draws")
        if draws is None or (expected_shape is not None and draws.shape != tuple(expected_shape)):
            self.last_miss_reason = "draws have the wrong shape"
            return None
        missing = [k for k in required if k not in arrays]
        if missing:
            self.last_miss_reason = f"arrays {missing} missing from the draws file"
            return None
        if not np.isfinite(draws).all():
            self.last_miss_reason = "draws contain non-finite values"
            return None
        self.last_miss_reason = None
        return arrays, meta.get("scalars", {})

    def save(
        self, key_material: Any, settings: dict, arrays: dict[str, np.ndarray], scalars: dict
    ) -> Path:
        """Write arrays (.npz) then the JSON record with settings and checksum; returns the npz path."""
        key = cache_key(key_material, settings)
        npz_path, json_path = self.paths(key)
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        raw = buf.getvalue()
        atomic_write_bytes(raw, npz_path)
        meta = {
            "format": FORMAT,
            "key": key_material,
            "settings": settings,
            "scalars": scalars,
            "sha256": hashlib.sha256(raw).hexdigest(),
        }
        atomic_write_text(json.dumps(meta, indent=2, sort_keys=True, default=_jsonable_key), json_path)
        return npz_path
