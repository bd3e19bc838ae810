"""freeflow.images.data and freeflow.images.latents: class-folder images, digits, the per-class
memory bank, the VAE wrapper and checksummed latent shards (kill + resume)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from freeflow.images.data import ClassMemoryBank, ImageFolderDataset, LatentShards, load_digits_images

torch.set_num_threads(1)

Image = pytest.importorskip("PIL.Image")

COLOURS = [(255, 0, 0), (0, 0, 255)]


def _image_folder(root, n=(3, 2), size=(48, 32)):
    """Two classes of non-square images (w, h) = size: black, with a coloured centre square of
    side h (the part the centre crop keeps); the first image of class 1 is portrait (h, w)."""
    w, h = size
    for c, colour in enumerate(COLOURS):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(n[c]):
            a = np.zeros((h, w, 3), np.uint8)
            left = (w - h) // 2
            a[:, left:left + h] = colour
            if i == 0 and c == 1:  # portrait variant: crop rows instead of columns
                a = np.zeros((w, h, 3), np.uint8)
                a[left:left + h, :] = colour
            Image.fromarray(a).save(d / f"{i}.png")
    (root / "class0" / "notes.txt").write_text("not an image, ignored by extension")
    return root


# -- ImageFolderDataset ------------------------------------------------------------------------
@pytest.mark.parametrize("crop", ["adm", "simple"])
def test_image_folder_shapes_range_labels_and_centre(tmp_path, crop):
    ds = ImageFolderDataset(_image_folder(tmp_path / "img"), 16, crop=crop)
    assert ds.class_names == ["class0", "class1"] and len(ds) == 5 and ds.labels == [0, 0, 0, 1, 1]
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == ds.labels[i]
        assert x.min() >= -1 and x.max() <= 1
        # the crop is the coloured centre square: the colour's channel is ~+1, the others ~-1
        ch = 0 if y == 0 else 2
        assert float(x[ch].mean()) > 0.95, (i, float(x[ch].mean()))
        assert float(x[1].max()) < -0.95
    # a crop of the wrong region (e.g. the left edge) would be black: check the border columns too
    x, _ = ds[0]
    assert float(x[0, :, 0].min()) > 0.95 and float(x[0, :, -1].min()) > 0.95
    x, _ = ds[3]  # portrait: the kept rows are the blue ones
    assert float(x[2, 0].min()) > 0.95 and float(x[2, -1].min()) > 0.95


def test_image_folder_adm_crop_matches_reference(tmp_path):
    """The ADM/DiT crop, BOX-halving while large, on a big random image vs. a hand-rolled copy."""
    from freeflow.images.data import center_crop_arr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (70, 100, 3), dtype=np.uint8)
    im = Image.fromarray(a)
    ref = im.resize((50, 35), resample=Image.BOX)              # short side 70 >= 2*16 -> halve
    ref = ref.resize((25, 17), resample=Image.BOX)             # 35 >= 32 -> halve again
    ref = ref.resize((round(25 * 16 / 17), 16), resample=Image.BICUBIC)
    ref = np.array(ref)
    left = (ref.shape[1] - 16) // 2
    assert np.array_equal(center_crop_arr(im, 16), ref[:, left:left + 16])


def test_image_folder_errors_name_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolderDataset(missing, 16)
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        ImageFolderDataset(tmp_path / "flat", 16)
    root = _image_folder(tmp_path / "img")
    (root / "zzz_hollow").mkdir()
    with pytest.raises(ValueError, match="zzz_hollow"):
        ImageFolderDataset(root, 16)
    (root / "zzz_hollow").rmdir()
    (root / "class1" / "garbage.png").write_bytes(b"\x89PNG but not really" * 10)
    ds = ImageFolderDataset(root, 16)
    with pytest.raises(ValueError, match="garbage.png"):
        [ds[i] for i in range(len(ds))]
    with pytest.raises(ValueError, match="crop"):
        ImageFolderDataset(root, 16, crop="random")
    with pytest.raises(ValueError, match="image_size"):
        ImageFolderDataset(root, 0)


# -- digits ------------------------------------------------------------------------------------
def test_digits_split():
    tx, ty = load_digits_images("train")
    vx, vy = load_digits_images("test")
    ax, ay = load_digits_images("all")
    assert tx.shape == (1347, 1, 8, 8) and vx.shape == (450, 1, 8, 8) and ax.shape == (1797, 1, 8, 8)
    assert tx.dtype == torch.float32 and ty.dtype == torch.int64
    assert float(ax.min()) == -1.0 and float(ax.max()) == 1.0
    # the values are x/8 - 1 of the integer pixels 0..16
    assert torch.equal((ax + 1) * 8, ((ax + 1) * 8).round())
    assert set(ty.tolist()) == set(vy.tolist()) == set(range(10))
    # stratified: class proportions agree to within one image per class
    pt, pv = torch.bincount(ty, minlength=10) / len(ty), torch.bincount(vy, minlength=10) / len(vy)
    assert (pt - pv).abs().max() < 1.5 / len(vy)
    # disjoint and complete: train + test is exactly the data set, as a multiset of rows
    from sklearn.datasets import load_digits

    raw = torch.from_numpy(load_digits().images.astype(np.float32) / 8 - 1).flatten(1)
    both = torch.cat([tx, vx]).flatten(1)
    srt = lambda m: m[np.lexsort(m.numpy().T[::-1])]  # noqa: E731 (rows sorted lexicographically)
    assert torch.equal(srt(both), srt(raw))
    assert torch.equal(torch.sort(torch.cat([ty, vy]))[0], torch.sort(torch.from_numpy(load_digits().target))[0])
    # the same seed gives the same split, another seed another
    assert torch.equal(load_digits_images("train", seed=0)[0], tx)
    assert not torch.equal(load_digits_images("train", seed=1)[0], tx)
    with pytest.raises(ValueError, match="split"):
        load_digits_images("validation")


# -- memory bank -------------------------------------------------------------------------------
def test_memory_bank_push_sample_and_ring():
    bank = ClassMemoryBank(3, 4, (2,))
    x = (2 * torch.arange(10.0)).repeat_interleave(2).view(10, 2)  # row i = (2i, 2i)
    y = torch.tensor([0, 0, 1, 0, 1, 0, 0, 0, 1, 0])  # class 0: rows 0,1,3,5,6,7,9; class 1: 2,4,8
    bank.push(x, y)
    assert bank.counts().tolist() == [4, 3, 0]
    g = torch.Generator().manual_seed(0)
    s = bank.sample([0, 1], 200, g)
    assert s.shape == (2, 200, 2)
    # class 0 keeps only the newest 4 of its 7 rows (5, 6, 7, 9); class 1 all 3
    assert set(s[0, :, 0].tolist()) == {10.0, 12.0, 14.0, 18.0}
    assert set(s[1, :, 0].tolist()) == {4.0, 8.0, 16.0}
    bank.push(torch.zeros(0, 2), [])            # an empty push is a no-op
    assert bank.counts().tolist() == [4, 3, 0]
    bank.push(torch.full((1, 2), 99.0), [0])   # overwrites the oldest (row 5)
    s = bank.sample(torch.tensor([0]), 300, g)
    assert set(s[0, :, 0].tolist()) == {12.0, 14.0, 18.0, 99.0}
    # one big push longer than the ring: the last `capacity` rows of it
    bank.fill_from(torch.arange(10.0).repeat_interleave(2).view(10, 2), torch.full((10,), 2))
    assert set(bank.sample([2], 300, g)[0, :, 0].tolist()) == {6.0, 7.0, 8.0, 9.0}
    u = bank.sample_unconditional(500, g)
    assert u.shape == (500, 2)
    assert set(u[:, 0].tolist()) == {12.0, 14.0, 18.0, 99.0, 4.0, 8.0, 16.0, 6.0, 7.0, 8.0, 9.0}


def test_memory_bank_errors():
    bank = ClassMemoryBank(3, 4, (1, 2, 2))
    bank.push(torch.zeros(2, 1, 2, 2), [0, 2])
    with pytest.raises(ValueError, match="class 1"):
        bank.sample([0, 1], 3, torch.Generator())
    with pytest.raises(ValueError, match="class 5"):
        bank.sample([5], 3, torch.Generator())
    with pytest.raises(ValueError, match="shape"):
        bank.push(torch.zeros(2, 4), [0, 1])
    with pytest.raises(ValueError, match="labels"):
        bank.push(torch.zeros(1, 1, 2, 2), [3])
    with pytest.raises(ValueError, match="empty"):
        ClassMemoryBank(2, 2, (1,)).sample_unconditional(1, torch.Generator())


def test_memory_bank_state_dict_exact_resume():
    x, y = load_digits_images("train")
    bank = ClassMemoryBank(10, 16, (1, 8, 8))
    bank.fill_from(x[:600], y[:600])
    sd = bank.state_dict()
    g = torch.Generator().manual_seed(7)
    gs = g.get_state()
    cls = torch.tensor([3, 1, 4])
    a1, u1 = bank.sample(cls, 5, g), bank.sample_unconditional(6, g)
    bank.push(x[600:], y[600:])     # change the bank after the "checkpoint"
    again = ClassMemoryBank(10, 16, (1, 8, 8))
    again.load_state_dict(sd)
    g2 = torch.Generator()
    g2.set_state(gs)
    assert torch.equal(again.sample(cls, 5, g2), a1) and torch.equal(again.sample_unconditional(6, g2), u1)
    assert torch.equal(again.counts(), torch.full((10,), 16))
    with pytest.raises(ValueError, match="memory bank state"):
        ClassMemoryBank(10, 8, (1, 8, 8)).load_state_dict(sd)


# -- VAE and latent shards ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    pytest.importorskip("diffusers")
    from freeflow.images.latents import tiny_vae

    return tiny_vae(tmp_path_factory.mktemp("vae") / "tiny")


def _batch(ds):
    return torch.stack([ds[i][0] for i in range(len(ds))]), torch.tensor(ds.labels)


def test_vae_encode_decode(vae_dir, tmp_path):
    from freeflow.images.latents import SD_VAE_SCALE, decode, encode, load_vae

    assert (vae_dir / "config.json").is_file()
    vae = load_vae(vae_dir)
    x, _ = _batch(ImageFolderDataset(_image_folder(tmp_path / "img"), 16))
    z = encode(vae, x)
    assert z.shape == (5, 4, 8, 8) and z.dtype == torch.float32 and torch.isfinite(z).all()
    assert torch.equal(z, encode(vae, x))                           # deterministic (the mean)
    assert torch.allclose(encode(vae, x, batch_size=2), z, atol=1e-6)          # batching does not matter
    assert torch.allclose(encode(vae, x, scale=1.0) * SD_VAE_SCALE, z, atol=1e-7, rtol=1e-6)
    back = decode(vae, z)
    assert back.shape == x.shape and torch.isfinite(back).all() and back.abs().max() <= 1
    assert torch.equal(decode(vae, z), back)
    # decode undoes the scale: decode(scale·m, scale) == decode(m, 1)
    assert torch.allclose(decode(vae, encode(vae, x, scale=1.0), scale=1.0), back, atol=1e-5)
    g = torch.Generator().manual_seed(0)
    zs = encode(vae, x, sample=True, generator=g)
    assert zs.shape == z.shape and not torch.equal(zs, z)
    assert torch.equal(encode(vae, x, sample=True, generator=torch.Generator().manual_seed(0)), zs)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        encode(vae, (x + 1) * 127.5)
    # the same seed gives the same weights
    from freeflow.images.latents import tiny_vae

    other = load_vae(tiny_vae(tmp_path / "vae2"))
    assert torch.equal(encode(other, x), z)


def test_load_vae_missing_path_names_it(tmp_path):
    from freeflow.images.latents import load_vae

    with pytest.raises(FileNotFoundError, match="no-such-vae.*sd-vae-ft-ema"):
        load_vae(tmp_path / "no-such-vae")
    (tmp_path / "empty-vae").mkdir()
    with pytest.raises(FileNotFoundError, match="empty-vae.*config.json"):
        load_vae(tmp_path / "empty-vae")


def test_encode_folder_and_latent_shards(vae_dir, tmp_path):
    from freeflow.images.latents import SD_VAE_SCALE, encode, encode_folder, load_vae

    root = _image_folder(tmp_path / "img")
    ds = ImageFolderDataset(root, 16)
    x, y = _batch(ds)
    z = encode(load_vae(vae_dir), x)
    out = encode_folder(root, vae_dir, tmp_path / "lat", image_size=16, shard_size=2, batch_size=3, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard_00000.pt", "shard_00001.pt",
                                                     "shard_00002.pt"]
    shards = LatentShards(out)
    assert shards.shape == (4, 8, 8) and len(shards) == 5 and shards.scale == SD_VAE_SCALE
    assert shards.class_names == ["class0", "class1"] and shards.dtype == "float32"
    assert [s["count"] for s in shards.shards] == [2, 2, 1]
    zl, yl = shards.tensors()
    assert torch.allclose(zl, z, atol=1e-5) and torch.equal(yl, y)
    # float16 storage
    half = encode_folder(ds, vae_dir, tmp_path / "lat16", shard_size=4, dtype="float16", progress=False,
                         num_workers=1)
    zh, yh = LatentShards(half).tensors()
    assert zh.dtype == torch.float32 and torch.allclose(zh, z, atol=1e-2) and torch.equal(yh, y)
    # a complete folder is refused, overwrite=True replaces it (and drops shards it no longer has)
    with pytest.raises(FileExistsError, match="lat"):
        encode_folder(ds, vae_dir, out, shard_size=2, progress=False)
    encode_folder(ds, vae_dir, out, shard_size=4, progress=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard_00000.pt", "shard_00001.pt"]
    assert torch.allclose(LatentShards(out).tensors()[0], z, atol=1e-5)
    # a tampered shard is named
    shard = out / "shard_00001.pt"
    shard.write_bytes(shard.read_bytes()[:-8] + b"tampered")
    with pytest.raises(ValueError, match="shard_00001.pt"):
        LatentShards(out).tensors()


def test_latent_shards_errors(vae_dir, tmp_path):
    from freeflow.images.latents import encode_folder

    with pytest.raises(FileNotFoundError, match="no-latents"):
        LatentShards(tmp_path / "no-latents")
    (tmp_path / "bare").mkdir()
    with pytest.raises(FileNotFoundError, match="index.json"):
        LatentShards(tmp_path / "bare")
    ds = ImageFolderDataset(_image_folder(tmp_path / "img"), 16)
    out = encode_folder(ds, vae_dir, tmp_path / "lat", shard_size=2, progress=False)
    index = json.loads((out / "index.json").read_text())
    # a shard whose content is valid but of another shape than the index says
    bad = dict(index, shape=[4, 4, 4])
    (out / "index.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="shard_00000.pt.*index.json says"):
        LatentShards(out).tensors()
    (out / "index.json").write_text(json.dumps(dict(index, count=99)))
    with pytest.raises(ValueError, match="count"):
        LatentShards(out)
    (out / "index.json").write_text("{not json")
    with pytest.raises(ValueError, match="index"):
        LatentShards(out)
    (out / "index.json").write_text(json.dumps(index))
    (out / "shard_00002.pt").unlink()
    with pytest.raises(FileNotFoundError, match="shard_00002.pt"):
        LatentShards(out).tensors()


def test_killed_encode_leaves_no_index_and_resume_completes_it(vae_dir, tmp_path, monkeypatch):
    import freeflow.images.latents as lat

    ds = ImageFolderDataset(_image_folder(tmp_path / "img"), 16)
    real, calls = lat.encode, []

    def dying(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(*a, **k)

    monkeypatch.setattr(lat, "encode", dying)
    with pytest.raises(RuntimeError, match="killed"):
        lat.encode_folder(ds, vae_dir, tmp_path / "lat", shard_size=2, progress=False)
    names = sorted(p.name for p in (tmp_path / "lat").iterdir())
    assert "index.json" not in names and "shard_00000.pt" in names and "shard_00001.pt" not in names
    assert not [n for n in names if n.endswith(".tmp")]
    with pytest.raises(FileNotFoundError, match="index.json"):
        LatentShards(tmp_path / "lat")
    monkeypatch.setattr(lat, "encode", real)
    # without resume the unfinished folder is refused; with other settings resume is refused
    with pytest.raises(FileExistsError, match="resume"):
        lat.encode_folder(ds, vae_dir, tmp_path / "lat", shard_size=2, progress=False)
    with pytest.raises(ValueError, match="shard_size"):
        lat.encode_folder(ds, vae_dir, tmp_path / "lat", shard_size=3, progress=False, resume=True)
    first = (tmp_path / "lat" / "shard_00000.pt").stat().st_mtime_ns
    calls.clear()
    monkeypatch.setattr(lat, "encode", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    lat.encode_folder(ds, vae_dir, tmp_path / "lat", shard_size=2, progress=False, resume=True)
    assert len(calls) == 2                                                   # shards 1 and 2 only
    assert (tmp_path / "lat" / "shard_00000.pt").stat().st_mtime_ns == first  # shard 0 kept
    assert not (tmp_path / "lat" / "progress.json").exists()
    monkeypatch.setattr(lat, "encode", real)
    full = lat.encode_folder(ds, vae_dir, tmp_path / "full", shard_size=2, progress=False)
    (za, ya), (zb, yb) = LatentShards(tmp_path / "lat").tensors(), LatentShards(full).tensors()
    assert torch.equal(za, zb) and torch.equal(ya, yb)


def test_resume_reencodes_a_corrupt_shard(vae_dir, tmp_path, monkeypatch):
    """A shard listed as done but damaged afterwards is encoded again, with the ones after it."""
    import freeflow.images.latents as lat

    ds = ImageFolderDataset(_image_folder(tmp_path / "img"), 16)
    real = lat.encode

    def dying(*a, **k):
        if dying.n == 2:
            raise KeyboardInterrupt
        dying.n += 1
        return real(*a, **k)

    dying.n = 0
    monkeypatch.setattr(lat, "encode", dying)
    with pytest.raises(KeyboardInterrupt):
        lat.encode_folder(ds, vae_dir, tmp_path / "lat", shard_size=2, progress=False)
    shard = tmp_path / "lat" / "shard_00001.pt"
    shard.write_bytes(b"garbage")
    monkeypatch.setattr(lat, "encode", real)
    lat.encode_folder(ds, vae_dir, tmp_path / "lat", shard_size=2, progress=False, resume=True)
    full = lat.encode_folder(ds, vae_dir, tmp_path / "full", shard_size=2, progress=False)
    assert torch.equal(LatentShards(tmp_path / "lat").tensors()[0], LatentShards(full).tensors()[0])
