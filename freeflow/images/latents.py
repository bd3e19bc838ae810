"""SD-VAE latents: load diffusers' AutoencoderKL from a local folder, encode/decode, and
pre-encode a class-folder image set into checksummed latent shards (once, before training).

Nothing is downloaded: ``load_vae(path)`` reads a folder written by ``save_pretrained`` (for
ImageNet: stabilityai/sd-vae-ft-ema, fetched by you).  Each shard is written atomically and the
index last, so a killed encode leaves no ``index.json`` (the reader refuses the folder) and
``resume=True`` continues after the last complete, checksum-verified shard.
"""
from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path

import torch

from ..io import atomic_torch_save, atomic_write_json
from ..validation import check_choice, check_positive_float, check_positive_int
from .data import INDEX_NAME, LATENT_FORMAT, ImageFolderDataset, sha256_file

Tensor = torch.Tensor

__all__ = ["SD_VAE_SCALE", "load_vae", "encode", "decode", "encode_folder", "tiny_vae"]

SD_VAE_SCALE = 0.18215   # the SD-VAE latent scale factor (latents ≈ unit variance after it)
PROGRESS_NAME = "progress.json"
_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def _diffusers():
    try:
        import diffusers
    except ImportError as e:
        raise ImportError("the VAE needs diffusers, which is not installed: pip install 'freeflow[image]'") from e
    return diffusers


def load_vae(path, *, device="cpu", dtype: torch.dtype = torch.float32):
    """``diffusers.AutoencoderKL.from_pretrained(path, local_files_only=True)``, in eval mode with
    gradients off.  ``path`` is a local folder (config.json + weights); never downloads."""
    path = Path(path)
    if not (path / "config.json").is_file():
        what = "does not exist" if not path.exists() else "has no config.json"
        raise FileNotFoundError(
            f"no VAE at {str(path)!r}: the folder {what}. Expected a diffusers AutoencoderKL folder "
            "(config.json + diffusion_pytorch_model.safetensors), e.g. stabilityai/sd-vae-ft-ema "
            "downloaded by hand or saved with AutoencoderKL.save_pretrained(path); freeflow never "
            "downloads it")
    diffusers = _diffusers()
    try:
        vae = diffusers.AutoencoderKL.from_pretrained(
            str(path), local_files_only=True, torch_dtype=dtype,
            low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"cannot load the VAE at {str(path)!r} (weights missing or unreadable?): {e}") from e
    return vae.to(device=device).eval().requires_grad_(False)


def _check_images(images: Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if len(images) and images.is_floating_point():
        lo, hi = float(images.min()), float(images.max())
        if lo < -1.01 or hi > 1.01:
            raise ValueError(f"images must be in [-1, 1] (uint8 / 127.5 - 1), got values in [{lo:.3g}, {hi:.3g}]")
    elif len(images):
        raise TypeError(f"images must be a floating-point tensor in [-1, 1], got {images.dtype}")


@torch.no_grad()
def encode(vae, images: Tensor, *, scale: float = SD_VAE_SCALE, sample: bool = False,
           generator: torch.Generator | None = None, batch_size: int = 32) -> Tensor:
    """images (N, 3, H, W) in [-1, 1] -> ``scale`` · posterior mean (or a posterior sample when
    ``sample``), float32 on CPU, (N, latent_channels, H/f, W/f) with f = 2^(levels − 1)."""
    _check_images(images)
    check_positive_int(batch_size, "batch_size")
    out = []
    for chunk in images.split(batch_size):
        dist = vae.encode(chunk.to(vae.device, vae.dtype)).latent_dist
        z = dist.sample(generator=generator) if sample else dist.mean
        out.append(scale * z.float().cpu())
    if not out:
        raise ValueError("images is empty")
    return torch.cat(out)


@torch.no_grad()
def decode(vae, latents: Tensor, *, scale: float = SD_VAE_SCALE, batch_size: int = 32) -> Tensor:
    """latents (N, C, h, w) (as returned by :func:`encode` with the same ``scale``) -> images
    (N, 3, H, W) float32 on CPU, clamped to [-1, 1]."""
    if not isinstance(latents, torch.Tensor) or latents.ndim != 4:
        raise ValueError(f"latents must be a tensor of shape (N, C, h, w), got "
                         f"{tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__}")
    check_positive_int(batch_size, "batch_size")
    out = [vae.decode((c.float() / scale).to(vae.device, vae.dtype)).sample.float().clamp(-1, 1).cpu()
           for c in latents.split(batch_size)]
    if not out:
        raise ValueError("latents is empty")
    return torch.cat(out)


def _shard_name(i: int) -> str:
    return f"shard_{i:05d}.pt"


def _verified_prefix(out: Path, meta: dict, progress_file: Path) -> list[dict]:
    """The shards of an interrupted encode that can be kept: the longest prefix listed in
    progress.json whose files exist and match their sha256; refuses a run with other settings."""
    if not progress_file.is_file():
        return []
    try:
        prog = json.loads(progress_file.read_text())
        done = list(prog["shards"])
    except (ValueError, KeyError, TypeError):
        return []
    for key, value in meta.items():
        if prog.get(key) != value:
            raise ValueError(f"cannot resume the encode in {str(out)!r}: it was started with {key}="
                             f"{prog.get(key)!r}, this call has {value!r} (pass the same settings, or "
                             "overwrite=True to start again)")
    keep = []
    for i, s in enumerate(done):
        f = out / str(s.get("file", ""))
        if s.get("file") != _shard_name(i) or not f.is_file() or sha256_file(f) != s.get("sha256"):
            break
        keep.append(s)
    return keep


def encode_folder(images, vae_path, out_dir, *, image_size: int = 256, batch_size: int = 32,
                  shard_size: int = 1024, progress: bool = True, resume: bool = False,
                  overwrite: bool = False, scale: float = SD_VAE_SCALE, dtype: str = "float32",
                  device="cpu", num_workers: int = 0) -> Path:
    """Encode ``images`` (a folder ``root/<class>/<files>`` or an :class:`ImageFolderDataset`; with
    a dataset ``image_size`` is the dataset's) with the VAE at ``vae_path`` into ``out_dir``:
    ``shard_00000.pt``, ... (``{"latents": (n, C, h, w) dtype, "labels": int64 (n,)}``, at most
    ``shard_size`` items each, dataset order) and, last, ``index.json`` (read it with
    :class:`~freeflow.images.data.LatentShards`).  Latents are ``scale`` · posterior mean.

    Every file is written atomically; ``progress.json`` lists the finished shards while the encode
    runs.  An interrupted encode leaves no index; ``resume=True`` keeps its checksum-verified
    shards and encodes the rest (the settings must match).  A folder that already holds an
    index is refused unless ``overwrite=True``.  Returns ``out_dir`` as a Path.
    """
    check_positive_int(shard_size, "shard_size")
    check_positive_int(batch_size, "batch_size")
    scale = check_positive_float(scale, "scale")
    check_choice(dtype, tuple(_DTYPES), "dtype")
    num_workers = int(num_workers)
    ds = images if isinstance(images, ImageFolderDataset) else ImageFolderDataset(images, image_size)
    out = Path(out_dir)
    index_file, progress_file = out / INDEX_NAME, out / PROGRESS_NAME
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"latent output {str(out)!r} exists and is not a directory")
    if index_file.exists() and not overwrite:
        raise FileExistsError(f"{str(out)!r} already holds a complete latent set ({INDEX_NAME}); pass "
                              "overwrite=True (--overwrite) or choose another output folder")
    if out.is_dir() and any(out.glob("shard_*.pt")) and not (resume or overwrite) and not index_file.exists():
        raise FileExistsError(f"{str(out)!r} holds shards of an unfinished encode; pass resume=True (--resume) "
                              "to continue it or overwrite=True to start again")
    vae = load_vae(vae_path, device=device)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": LATENT_FORMAT, "count": len(ds), "shard_size": shard_size, "scale": scale, "dtype": dtype,
            "image_size": ds.image_size, "class_names": list(ds.class_names), "crop": ds.crop}
    if overwrite:
        index_file.unlink(missing_ok=True)    # from here on the folder is "unfinished" until the end
        progress_file.unlink(missing_ok=True)
        done: list[dict] = []
    else:
        done = _verified_prefix(out, meta, progress_file) if resume else []
    n_shards = -(-len(ds) // shard_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(ds), initial=min(len(done) * shard_size, len(ds)), desc="encode", unit="img")
    try:
        for i in range(len(done), n_shards):
            idx = list(range(i * shard_size, min((i + 1) * shard_size, len(ds))))
            if num_workers > 0:
                loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx), batch_size=batch_size,
                                                     num_workers=num_workers)
                parts = [(x, y) for x, y in loader]
                x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            else:
                xs, ys = zip(*(ds[j] for j in idx))
                x, y = torch.stack(xs), torch.tensor(ys)
            lat = encode(vae, x, scale=scale, batch_size=batch_size).to(_DTYPES[dtype])
            name = _shard_name(i)
            atomic_torch_save({"latents": lat.contiguous(), "labels": y.long()}, out / name)
            done.append({"file": name, "count": len(idx), "sha256": sha256_file(out / name),
                         "shape": list(lat.shape[1:])})
            atomic_write_json({**meta, "shards": done}, progress_file)
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
    shapes = {tuple(s["shape"]) for s in done if "shape" in s}
    if len(shapes) != 1:
        raise ValueError(f"the shards in {str(out)!r} have different latent shapes {sorted(shapes)}")
    keep = {s["file"] for s in done}
    for stale in out.glob("shard_*.pt"):   # from an earlier, larger encode into this folder
        if stale.name not in keep:
            stale.unlink()
    shards = [{"file": s["file"], "count": s["count"], "sha256": s["sha256"]} for s in done]
    atomic_write_json({**meta, "shape": list(shapes.pop()), "vae": str(vae_path), "shards": shards}, index_file)
    progress_file.unlink(missing_ok=True)
    return out


def tiny_vae(path, *, seed: int = 0, in_channels: int = 3, latent_channels: int = 4) -> Path:
    """A tiny randomly initialised AutoencoderKL (block_out_channels (8, 16), 2 levels, so the
    latents are (latent_channels, H/2, W/2)) saved with ``save_pretrained(path)``, for tests and
    examples without downloaded weights.  Deterministic in ``seed``; the global RNG is untouched."""
    diffusers = _diffusers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = diffusers.AutoencoderKL(
            in_channels=in_channels, out_channels=in_channels, latent_channels=latent_channels,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=32)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        vae.save_pretrained(tmp)   # then each file moved in whole: no half-written weights at `path`
        for f in sorted(Path(tmp).iterdir(), key=lambda f: f.name == "config.json"):  # config last
            os.replace(f, path / f.name)
    return path
