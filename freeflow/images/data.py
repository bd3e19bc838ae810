"""Image data: a class-folder reader, scikit-learn's digits, latent shards, per-class memory banks.

* :class:`ImageFolderDataset` — ``root/<class>/<image>``, PIL, the ADM/DiT centre crop, values in [-1, 1];
* :func:`load_digits_images` — the 8×8 digits that ship with scikit-learn, a fixed stratified split;
* :class:`LatentShards` — the folder written by :func:`freeflow.images.latents.encode_folder`
  (shards + ``index.json`` with checksums);
* :class:`ClassMemoryBank` — per-class ring buffers of real samples the drift draws its
  positives from (MATH.md §3, "Published image pipeline").
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..validation import check_choice, check_float, check_int, check_positive_int, check_seed

Tensor = torch.Tensor

__all__ = ["ImageFolderDataset", "digits_data", "load_digits_images", "LatentShards", "ClassMemoryBank", "IMAGE_EXTENSIONS",
           "center_crop_arr", "sha256_file", "INDEX_NAME", "LATENT_FORMAT"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
INDEX_NAME = "index.json"
LATENT_FORMAT = 1  # index.json "format"; bump when the layout changes


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in the pipeline's range [-1, 1] (N, C, H, W) -> uint8 (N, C, H, W); the inverse of
    ``uint8 / 127.5 - 1`` (values outside [-1, 1] are clipped)."""
    return ((images.double().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def sha256_file(path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- class-folder images ---------------------------------------------------------------------------

def center_crop_arr(pil_image, image_size: int) -> np.ndarray:
    """The ADM / DiT centre crop (``guided_diffusion/image_datasets.py``): halve with BOX filtering
    while the short side is at least 2·image_size, resize with BICUBIC so the short side is
    ``image_size``, then crop the centre square.  Returns uint8 (image_size, image_size, C)."""
    from PIL import Image

    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    top = (arr.shape[0] - image_size) // 2
    left = (arr.shape[1] - image_size) // 2
    return arr[top:top + image_size, left:left + image_size]


def _simple_crop_arr(pil_image, image_size: int) -> np.ndarray:
    """Centre-crop to the short side, then one BICUBIC resize to image_size."""
    from PIL import Image

    w, h = pil_image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = pil_image.crop((left, top, left + s, top + s)).resize((image_size, image_size), Image.BICUBIC)
    return np.array(im)


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images under ``root/<class_name>/<file>``; class folders sorted by name give the labels
    (``class_names[label]``).  Each item is ``(image, label)``: image a float32 tensor
    (3, image_size, image_size) in [-1, 1] (``uint8 / 127.5 − 1``), RGB.

    ``crop="adm"`` (default) is the ADM/DiT preprocessing of the published ImageNet pipeline
    (:func:`center_crop_arr`); ``crop="simple"`` crops the centre square of the short side first
    and resizes it once with BICUBIC.  Files are listed (sorted, by extension, hidden files
    skipped) when the dataset is built; they are opened lazily, and a file PIL cannot read
    raises a ValueError naming it.
    """

    def __init__(self, root, image_size: int, *, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                 crop: str = "adm") -> None:
        self.root = Path(root)
        self.image_size = check_positive_int(image_size, "image_size")
        self.crop = check_choice(crop, ("adm", "simple"), "crop")
        exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        if not exts:
            raise ValueError("extensions is empty")
        if not self.root.exists():
            raise FileNotFoundError(f"image folder {str(self.root)!r} does not exist")
        if not self.root.is_dir():
            raise NotADirectoryError(f"image folder {str(self.root)!r} is not a directory")
        self.class_names: list[str] = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.class_names:
            raise ValueError(f"image folder {str(self.root)!r} has no class folders "
                             "(expected root/<class_name>/<image files>)")
        self.items: list[tuple[Path, int]] = []
        for label, name in enumerate(self.class_names):
            folder = self.root / name
            files = sorted(p for p in folder.iterdir()
                           if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts)
            if not files:
                raise ValueError(f"class folder {str(folder)!r} is empty: no image files "
                                 f"({', '.join(exts)})")
            self.items += [(f, label) for f in files]

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.items]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.items)

    def load_array(self, i: int) -> np.ndarray:
        """Item ``i`` as uint8 (image_size, image_size, 3) after the crop."""
        from PIL import Image

        path, _ = self.items[i]
        try:
            with Image.open(path) as im:
                im.load()
                im = im.convert("RGB")
        except Exception as e:  # UnidentifiedImageError, truncated files, decompression bombs
            raise ValueError(f"cannot read image {str(path)!r}: {type(e).__name__}: {e}") from None
        crop = center_crop_arr if self.crop == "adm" else _simple_crop_arr
        return crop(im, self.image_size)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        arr = self.load_array(i)
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)
        return x / 127.5 - 1.0, self.items[i][1]


# -- digits ------------------------------------------------------------------------------------------

def digits_data(seed: int = 0, test_fraction: float = 0.25) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's 8×8 digits as (train_x, train_y, test_x, test_y).

    Images float32 (N, 1, 8, 8) scaled 0..16 → [-1, 1] (x/8 - 1), labels int64. The split is
    ``train_test_split(images, labels, test_size=test_fraction, stratify=labels,
    random_state=seed)`` on the arrays in scikit-learn's order (1347 train / 450 test at the
    defaults) — the same definition as :func:`load_digits_images`."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    seed = check_seed(seed)
    test_fraction = check_float(test_fraction, "test_fraction", low=0.0, high=1.0, low_open=True, high_open=True)
    d = load_digits()
    x = (d.images.astype(np.float32) / 8.0 - 1.0)[:, None]
    y = d.target.astype(np.int64)
    tx, vx, ty, vy = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)
    return (torch.from_numpy(np.ascontiguousarray(tx)), torch.from_numpy(ty),
            torch.from_numpy(np.ascontiguousarray(vx)), torch.from_numpy(vy))


def load_digits_images(split: str = "train", *, seed: int = 0, test_fraction: float = 0.25) -> tuple[Tensor, Tensor]:
    """scikit-learn's 8×8 digits as ``(images, labels)``.

    images: float32 (N, 1, 8, 8); the raw pixel values 0..16 map to [-1, 1] by ``x / 8 − 1``
    (0 → −1 background, 16 → +1 ink).  labels: int64 (N,) in 0..9.

    ``split``: "train" or "test" — a fixed stratified split, ``train_test_split(images, labels,
    test_size=test_fraction, stratify=labels, random_state=seed)`` on the arrays in scikit-learn's
    order (1347 train / 450 test at the defaults), so train and test are disjoint and every class
    is in both in the same proportions (the same split as
    :func:`digits_data`) — or "all" (train then test, 1797 images).
    """
    check_choice(split, ("train", "test", "all"), "split")
    tx, ty, vx, vy = digits_data(seed=seed, test_fraction=test_fraction)
    if split == "train":
        return tx, ty
    if split == "test":
        return vx, vy
    return torch.cat([tx, vx]), torch.cat([ty, vy])


# -- latent shards -----------------------------------------------------------------------------------

class LatentShards:
    """Reader of a latent folder written by :func:`freeflow.images.latents.encode_folder`.

    ``index.json`` holds ``format``, ``shape`` (per item, e.g. [4, 32, 32]), ``dtype`` (of the
    stored latents), ``scale`` (the factor the VAE means were multiplied by), ``count``,
    ``class_names``, ``image_size`` and ``shards``: a list of ``{"file", "count", "sha256"}``.
    Each shard is a ``torch.save``'d dict ``{"latents": (n, *shape), "labels": int64 (n,)}``.

    Opening checks the index (missing folder / missing or unreadable index / counts that do not
    add up); :meth:`tensors` checks each shard against its sha256 and the index's shape before
    using it, and names the shard that fails.
    """

    def __init__(self, path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"latent folder {str(self.path)!r} does not exist "
                                    "(write it with `freeflow images encode` / encode_folder)")
        index = self.path / INDEX_NAME
        if not index.is_file():
            raise FileNotFoundError(
                f"{str(index)!r} is missing: {str(self.path)!r} is not a finished latent folder (the encode "
                "was interrupted or never ran; rerun `freeflow images encode ... --resume`)")
        try:
            self.index = json.loads(index.read_text())
            self.shape = tuple(int(s) for s in self.index["shape"])
            self.count = int(self.index["count"])
            shards = self.index["shards"]
            self.shards = [{"file": str(s["file"]), "count": int(s["count"]), "sha256": str(s["sha256"])}
                           for s in shards]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{str(index)!r} is not a valid latent index: {type(e).__name__}: {e}") from None
        self.dtype = str(self.index.get("dtype", "float32"))
        self.scale = float(self.index.get("scale", 1.0))
        self.class_names = list(self.index.get("class_names", []))
        self.image_size = self.index.get("image_size")
        total = sum(s["count"] for s in self.shards)
        if total != self.count:
            raise ValueError(f"{str(index)!r} is inconsistent: its shards hold {total} latents but count "
                             f"is {self.count}")
        for s in self.shards:
            if Path(s["file"]).name != s["file"]:
                raise ValueError(f"{str(index)!r} lists a shard outside the folder: {s['file']!r}")

    def __len__(self) -> int:
        return self.count

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def load_shard(self, i: int) -> tuple[Tensor, Tensor]:
        """Shard ``i`` (verified) as (latents float32, labels int64)."""
        sh = self.shards[i]
        f = self.path / sh["file"]
        if not f.is_file():
            raise FileNotFoundError(f"latent shard {str(f)!r} listed in index.json is missing")
        if sha256_file(f) != sh["sha256"]:
            raise ValueError(f"latent shard {str(f)!r} does not match its sha256 in index.json "
                             "(corrupt or modified; re-encode it)")
        try:
            d = torch.load(f, map_location="cpu", weights_only=True)
            z, y = d["latents"], d["labels"]
        except Exception as e:
            raise ValueError(f"latent shard {str(f)!r} cannot be read: {type(e).__name__}: {e}") from None
        if tuple(z.shape) != (sh["count"], *self.shape) or tuple(y.shape) != (sh["count"],):
            raise ValueError(f"latent shard {str(f)!r} has latents {tuple(z.shape)} and labels {tuple(y.shape)}; "
                             f"index.json says ({sh['count']}, {', '.join(map(str, self.shape))}) and "
                             f"({sh['count']},)")
        y = y.long()
        if self.class_names and len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.class_names)):
            raise ValueError(f"latent shard {str(f)!r} has labels outside [0, {len(self.class_names) - 1}]")
        return z.float(), y

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All latents (count, *shape) float32 and labels (count,) int64, in encode order."""
        if not self.shards:
            return torch.empty(0, *self.shape), torch.empty(0, dtype=torch.long)
        xs, ys = zip(*(self.load_shard(i) for i in range(len(self.shards))))
        return torch.cat(xs), torch.cat(ys)


# -- memory bank -------------------------------------------------------------------------------------

class ClassMemoryBank:
    """Per-class ring buffers of real samples (MATH.md §3: the drift's positives come from a
    per-class memory bank, 64–128 per class per step, plus unconditional reals).

    Each class keeps the newest ``capacity`` items pushed to it; :meth:`sample` draws with
    replacement from the stored items of each requested class, :meth:`sample_unconditional` from
    all stored items pooled (uniform over items, so classes in proportion to their stored counts).
    Storage is one (num_classes, capacity, *shape) tensor on CPU; samples come back on CPU with
    the bank's dtype.  ``state_dict``/``load_state_dict`` restore it exactly, so the samples
    drawn after a resume with the same generator state are the same.
    """

    def __init__(self, num_classes: int, capacity: int, shape: Sequence[int], *,
                 dtype: torch.dtype = torch.float32) -> None:
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.capacity = check_positive_int(capacity, "capacity")
        self.shape = tuple(check_positive_int(s, "shape") for s in shape)
        self.buffer = torch.zeros(self.num_classes, self.capacity, *self.shape, dtype=dtype)
        self.count = torch.zeros(self.num_classes, dtype=torch.long)   # items ever pushed, per class

    def push(self, x: Tensor, labels) -> None:
        """Append rows of ``x`` (n, *shape) to their classes' rings (oldest overwritten first)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have shape (n, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")
        labels = torch.as_tensor(labels).to("cpu")
        if labels.numel() == 0 and x.shape[0] == 0:
            return
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.shape != (x.shape[0],):
            raise ValueError(f"labels must be integers of shape ({x.shape[0]},), got {labels.dtype} {tuple(labels.shape)}")
        labels = labels.long()
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes - 1}], got values in "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        x = x.detach().to(device="cpu", dtype=self.buffer.dtype)
        for c in labels.unique().tolist():
            rows = x[labels == c]
            k = len(rows)
            pos = (int(self.count[c]) + torch.arange(k)) % self.capacity
            keep = slice(max(0, k - self.capacity), k)       # only the newest `capacity` survive
            self.buffer[c, pos[keep]] = rows[keep]
            self.count[c] += k

    def fill_from(self, x: Tensor, labels) -> None:
        """Push a whole data set (in its order: the last ``capacity`` rows per class stay)."""
        self.push(x, labels)

    def counts(self) -> Tensor:
        """Stored items per class (num_classes,) int64, at most ``capacity``."""
        return self.count.clamp_max(self.capacity)

    def _classes(self, classes) -> Tensor:
        classes = torch.as_tensor(classes).to("cpu")
        if classes.dtype.is_floating_point or classes.dtype == torch.bool or classes.ndim != 1:
            raise ValueError(f"classes must be a 1-D sequence of integer labels, got {classes.dtype} "
                             f"{tuple(classes.shape)}")
        classes = classes.long()
        if len(classes) and (int(classes.min()) < 0 or int(classes.max()) >= self.num_classes):
            bad = classes[(classes < 0) | (classes >= self.num_classes)][0]
            raise ValueError(f"memory bank: class {int(bad)} is not in [0, {self.num_classes - 1}]")
        return classes

    def sample(self, classes, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(len(classes), n, *shape): n draws with replacement from each listed class's bank."""
        classes = self._classes(classes)
        n = check_int(n, "n", minimum=0)
        sizes = self.counts()[classes]
        if (sizes == 0).any():
            raise ValueError(f"memory bank: class {int(classes[sizes == 0][0])} has no samples "
                             "(push some of its data first)")
        idx = (torch.rand(len(classes), n, generator=generator) * sizes[:, None]).long()
        idx = torch.minimum(idx, sizes[:, None] - 1)  # rand < 1, but guard float rounding
        return self.buffer[classes[:, None], idx]

    def sample_unconditional(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(n, *shape) draws with replacement from all stored items pooled."""
        n = check_int(n, "n", minimum=0)
        sizes = self.counts()
        total = int(sizes.sum())
        if total == 0:
            raise ValueError("memory bank is empty (push data first)")
        flat = torch.randint(0, total, (n,), generator=generator)
        ends = sizes.cumsum(0)
        cls = torch.searchsorted(ends, flat, right=True)
        idx = flat - (ends[cls] - sizes[cls])
        return self.buffer[cls, idx]

    def state_dict(self) -> dict:
        return {"num_classes": self.num_classes, "capacity": self.capacity, "shape": list(self.shape),
                "buffer": self.buffer.clone(), "count": self.count.clone()}

    def load_state_dict(self, sd: dict) -> None:
        want = (self.num_classes, self.capacity, *self.shape)
        got = tuple(sd["buffer"].shape)
        if got != want or tuple(sd["count"].shape) != (self.num_classes,):
            raise ValueError(f"memory bank state has buffer {got}, this bank is {want} "
                             "(num_classes, capacity, *shape)")
        self.buffer.copy_(sd["buffer"])
        self.count.copy_(sd["count"])
