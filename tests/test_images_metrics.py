"""freeflow.images.metrics: Fréchet distance, KID, the digits feature net / evaluator, and the
torch-fidelity wrapper's failure modes (torch-fidelity itself is not installable here)."""
import builtins
import sys

import numpy as np
import pytest
import scipy.linalg
import torch

from freeflow.images import digits_eval
from freeflow.images import metrics as M

torch.set_num_threads(1)


def _spd(rng, d, scale=1.0):
    a = rng.standard_normal((d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def _direct_fd(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# -- Fréchet distance ----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_frechet_diagonal_closed_form(method):
    rng = np.random.default_rng(0)
    d = 7
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = ((mu1 - mu2) ** 2).sum() + (v1 + v2 - 2 * np.sqrt(v1 * v2)).sum()
    got = M.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2), method=method)
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("d", [3, 20, 64])
@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_frechet_matches_direct_sqrtm_on_random_spd(d, method):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _spd(rng, d), _spd(rng, d, scale=2.0)
    expected = _direct_fd(mu1, s1, mu2, s2)
    assert M.frechet_distance(mu1, s1, mu2, s2, method=method) == pytest.approx(expected, rel=1e-6)
    # symmetric in its two Gaussians
    assert M.frechet_distance(mu2, s2, mu1, s1, method=method) == pytest.approx(expected, rel=1e-6)


def test_frechet_self_is_zero_and_singular_is_fine():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((500, 16))
    mu, s = M.feature_statistics(f)
    assert mu.dtype == np.float64 and s.shape == (16, 16)
    assert abs(M.frechet_distance(mu, s, mu, s)) < 1e-8 * np.trace(s)
    # fewer samples than dimensions: singular covariances, still finite, real and ~0 for itself
    g = rng.standard_normal((10, 32))
    assert abs(M.frechet_from_features(g, g)) < 1e-6 * np.trace(np.cov(g, rowvar=False))
    assert np.isfinite(M.frechet_from_features(g, rng.standard_normal((12, 32))))
    # tensors are accepted; the two directions agree
    a, b = torch.randn(200, 5), torch.randn(300, 5) + 1
    assert M.frechet_from_features(a, b) == pytest.approx(M.frechet_from_features(b, a), rel=1e-9)


def test_frechet_bad_input():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="different lengths"):
        M.frechet_distance(mu, s, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="sigma2 must have shape"):
        M.frechet_distance(mu, s, mu, np.eye(4))
    with pytest.raises(ValueError, match="mu1.*NaN"):
        M.frechet_distance(np.array([0.0, np.nan, 0.0]), s, mu, s)
    with pytest.raises(ValueError, match="sigma1.*NaN or inf"):
        M.frechet_distance(mu, np.full((3, 3), np.inf), mu, s)
    with pytest.raises(ValueError, match="unknown method"):
        M.frechet_distance(mu, s, mu, s, method="svd")
    with pytest.raises(ValueError, match="feature dimensions"):
        M.frechet_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        M.feature_statistics(np.zeros((1, 3)))


# -- KID -----------------------------------------------------------------------------------------

def test_kid_same_distribution_and_shifted():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((1000, 16)), rng.standard_normal((1000, 16))
    mean, std = M.kernel_inception_distance(a, b, subsets=20, subset_size=200, seed=0)
    assert std > 0 and abs(mean) < 3 * std
    mean_s, std_s = M.kernel_inception_distance(a, b + 0.5, subsets=20, subset_size=200, seed=0)
    assert mean_s > 0 and mean_s > 3 * std_s and mean_s > 10 * abs(mean)
    # deterministic given the seed; subset_size checked
    assert M.kernel_inception_distance(a, b, subsets=5, subset_size=100, seed=3) == \
        M.kernel_inception_distance(a, b, subsets=5, subset_size=100, seed=3)
    with pytest.raises(ValueError, match="subset_size"):
        M.kernel_inception_distance(a[:50], b, subset_size=100)


# -- digits nets and evaluator --------------------------------------------------------------------

@pytest.fixture(scope="module")
def data():
    return M.digits_data()


@pytest.fixture(scope="module")
def evaluator():
    """Trained once for the module: feature net (seed 0) and classifier (seed 1), default epochs."""
    return M.DigitsEvaluator.build(seed=0)


def test_digits_split(data):
    tx, ty, vx, vy = data
    assert tx.shape == (1347, 1, 8, 8) and vx.shape == (450, 1, 8, 8)
    assert float(tx.min()) == -1.0 and float(tx.max()) == 1.0
    assert ty.dtype == torch.int64 and set(vy.tolist()) == set(range(10))
    # stratified: every class has a quarter of its 174-183 images (43-46) in the test split
    counts = torch.bincount(vy, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 46
    # the split definition: sklearn train_test_split(stratify=y, random_state=0, test_size=0.25)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    _, v_img, _, v_lab = train_test_split(d.images, d.target, test_size=0.25, stratify=d.target, random_state=0)
    assert torch.equal(vx[:, 0], torch.from_numpy(v_img / 8.0 - 1.0).float())
    assert np.array_equal(vy.numpy(), v_lab)


def test_feature_net_accuracy(evaluator):
    # measured at the default 20 epochs: 0.978 (seed 0), 0.980 (seed 1); required >= 0.97
    assert evaluator.feature_net_accuracy >= 0.97
    assert evaluator.classifier_accuracy >= 0.97
    f = evaluator.features(evaluator.test_x[:5])
    assert f.shape == (5, 64) and f.dtype == np.float64
    assert evaluator.feature_net(evaluator.test_x[:5]).shape == (5, 10)
    assert not evaluator.feature_net.training


def test_feature_net_deterministic(data):
    tx, ty, _, _ = data
    rng_state = torch.get_rng_state()
    a = M.train_digits_feature_net(tx[:256], ty[:256], epochs=1, seed=5)
    b = M.train_digits_feature_net(tx[:256], ty[:256], epochs=1, seed=5)
    c = M.train_digits_feature_net(tx[:256], ty[:256], epochs=1, seed=6)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the caller's RNG is untouched
    for (k, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), k
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_evaluator_fid_kid_accuracy(evaluator):
    ev = evaluator
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(450, 1, 8, 8, generator=g) * 2 - 1
    n = 225
    fid_real = ev.fid(ev.train_x[:n])  # real images the nets were not evaluated against
    floor = ev.real_floor(n, seed=0)
    fid_noise = ev.fid(noise[:n])
    assert 0 < floor < 20 and fid_real < 3 * floor  # real ≈ floor (measured: 6.4 vs 8.0)
    assert fid_noise > 20 * floor  # measured: 322 vs 8.0
    assert abs(ev.fid(ev.test_x)) < 1e-3  # the reference against itself
    assert ev.real_floor(n, seed=0) == floor and ev.real_floor(n, seed=1) != floor
    assert ev.real_floor(100, source="test") > 0
    with pytest.raises(ValueError, match="2n"):
        ev.real_floor(300, source="test")
    assert ev.accuracy(ev.test_x, ev.test_y) >= 0.95
    assert ev.accuracy(noise, torch.arange(450) % 10) < 0.25  # chance is 0.1
    k_real, s_real = ev.kid(ev.train_x[:450])
    k_noise, s_noise = ev.kid(noise)
    assert s_real > 0 and k_noise > 10 * max(abs(k_real), s_real)
    with pytest.raises(ValueError, match="shape"):
        ev.fid(torch.zeros(4, 3, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        ev.fid(torch.full((4, 1, 8, 8), float("nan")))


def test_feature_net_save_load_and_cache(tmp_path, data, monkeypatch):
    tx, ty, vx, _ = data
    net = M.train_digits_feature_net(tx[:128], ty[:128], epochs=1, seed=0)
    path = M.save_feature_net(net, tmp_path / "sub" / "net.pt", meta={"note": "x"})
    back, meta = M.load_feature_net(path, with_meta=True)
    assert meta == {"note": "x"}
    assert torch.equal(back.features(vx[:8]), net.features(vx[:8]))
    assert not list((tmp_path / "sub").glob(".*.tmp"))  # atomic write left nothing behind
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        M.load_feature_net(tmp_path / "missing.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a digits feature-net checkpoint"):
        M.load_feature_net(tmp_path / "other.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        M.load_feature_net(tmp_path / "garbage.pt")

    # evaluator cache: the first build trains and saves, the second only loads
    cache = tmp_path / "cache"
    ev1 = M.DigitsEvaluator.build(cache_dir=cache, seed=3, epochs=1)
    assert len(list(cache.glob("*.pt"))) == 2

    def no_training(*a, **k):
        raise AssertionError("trained although the cache had the nets")

    monkeypatch.setattr(digits_eval, "train_digits_feature_net", no_training)  # (where build looks it up)
    ev2 = M.DigitsEvaluator.build(cache_dir=cache, seed=3, epochs=1)
    for p, q in zip(ev1.feature_net.parameters(), ev2.feature_net.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(ev1.classifier.parameters(), ev2.classifier.parameters()):
        assert torch.equal(p, q)
    assert ev1.fid(vx[:100]) == ev2.fid(vx[:100])


# -- torch-fidelity wrapper -----------------------------------------------------------------------

def test_torch_fidelity_missing_weights(tmp_path):
    missing = tmp_path / "weights-inception.pth"
    with pytest.raises(FileNotFoundError, match="weights-inception.pth"):
        M.torch_fidelity_metrics(np.zeros((4, 3, 8, 8), np.uint8), np.zeros((4, 3, 8, 8), np.uint8),
                                 inception_weights=missing)


def test_torch_fidelity_not_importable(tmp_path, monkeypatch):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # makes `import torch_fidelity` fail
    with pytest.raises(ImportError, match="pip install torch-fidelity"):
        M.torch_fidelity_metrics(np.zeros((4, 3, 8, 8), np.uint8), np.zeros((4, 3, 8, 8), np.uint8),
                                 inception_weights=weights)
    # the same through a failing import (torchvision missing inside torch_fidelity)
    monkeypatch.delitem(sys.modules, "torch_fidelity")
    real_import = builtins.__import__

    def failing_import(name, *a, **k):
        if name == "torch_fidelity" or name.startswith("torch_fidelity."):
            raise ModuleNotFoundError("No module named 'torchvision'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", failing_import)
    with pytest.raises(ImportError, match="torchvision"):
        M.torch_fidelity_metrics("some_dir", "other_dir", inception_weights=weights)


def test_torch_fidelity_passes_arguments(tmp_path, monkeypatch):
    """With a stand-in torch_fidelity module: the keyword names and the array conversion."""
    import types

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    seen = {}

    def calculate_metrics(**kwargs):
        seen.update(kwargs)
        return {"frechet_inception_distance": 1.0}

    monkeypatch.setitem(sys.modules, "torch_fidelity", types.SimpleNamespace(calculate_metrics=calculate_metrics))
    gen = torch.rand(6, 1, 8, 8) * 2 - 1
    out = M.torch_fidelity_metrics(gen, str(tmp_path), inception_weights=weights, cuda=False)
    assert out == {"frechet_inception_distance": 1.0}
    assert seen["fid"] and seen["isc"] and seen["kid"]
    assert seen["feature_extractor_weights_path"] == str(weights)
    assert seen["input2"] == str(tmp_path) and seen["datasets_download"] is False and seen["cache"] is False
    assert seen["kid_subset_size"] == 6
    item = seen["input1"][0]
    assert item.dtype == torch.uint8 and item.shape == (3, 8, 8)
    expected = ((gen[0, 0].double() + 1) * 127.5).round().to(torch.uint8)
    assert torch.equal(item[1], expected)
