"""Unit tests of aebook.generation (chapter 4.1): tiny tensors, a few seconds in all."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import aebook
from aebook import generation as G
from aebook.train import TrainConfig


@pytest.fixture(scope="module")
def tiny_vae():
    torch.manual_seed(0)
    return aebook.build_model("vae", (1, 8, 8), 3, width=4).eval()


@pytest.fixture(scope="module")
def tiny_ae():
    torch.manual_seed(0)
    return aebook.build_model("conv", (1, 8, 8), 3, width=4).eval()


def test_lerp_and_slerp_endpoints_and_norms():
    a, b = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 3.0, 0.0])
    for path in (G.lerp, G.slerp):
        p = path(a, b, 5)
        assert p.shape == (5, 3)
        assert torch.allclose(p[0], a, atol=1e-5) and torch.allclose(p[-1], b, atol=1e-5)
    # slerp keeps the norm of equal-norm endpoints; lerp's midpoint shrinks by cos(45°)
    assert torch.allclose(G.slerp(a, b, 7).norm(dim=1), torch.full((7,), 3.0), atol=1e-5)
    assert G.lerp(a, b, [0.5])[0].norm() == pytest.approx(3.0 * math.cos(math.pi / 4), rel=1e-5)
    # unequal norms: slerp's midpoint is never shorter than lerp's
    c = torch.tensor([1.0, 2.0, -1.0])
    assert G.slerp(a, c, [0.5])[0].norm() > G.lerp(a, c, [0.5])[0].norm()
    # parallel vectors fall back to the straight line
    assert torch.allclose(G.slerp(a, 2 * a, [0.5]), G.lerp(a, 2 * a, [0.5]))


def test_paths_reject_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        G.lerp(torch.zeros(3), torch.zeros(4), 3)
    with pytest.raises(ValueError, match="same shape"):
        G.slerp(torch.zeros(2, 3), torch.zeros(2, 3), 3)
    with pytest.raises(ValueError, match="at least 2"):
        G.lerp(torch.zeros(3), torch.ones(3), 1)


def test_interpolate_traverse_grid(tiny_vae, digits):
    x0, x1 = digits.test[0], digits.test[1]
    for mode in ("linear", "spherical"):
        path = G.interpolate(tiny_vae, x0, x1, steps=6, mode=mode)
        assert path.shape == (6, 1, 8, 8)
        assert torch.allclose(path[0], tiny_vae.reconstruct(x0[None])[0], atol=1e-5)
        assert torch.allclose(path[-1], tiny_vae.reconstruct(x1[None])[0], atol=1e-5)
    with pytest.raises(ValueError, match="unknown interpolation mode"):
        G.interpolate(tiny_vae, x0, x1, mode="cubic")
    with pytest.raises(ValueError, match="same shape"):
        G.interpolate(tiny_vae, x0, x1[:, :4], mode="linear")
    z = G.encode(tiny_vae, digits.test[:1])[0]
    trav = G.traverse(tiny_vae, z, 1, [-2.0, 0.0, 2.0])
    assert trav.shape == (3, 1, 8, 8)
    assert not torch.allclose(trav[0], trav[2])
    with pytest.raises(ValueError, match="out of range"):
        G.traverse(tiny_vae, z, 3, [0.0])
    with pytest.raises(ValueError, match="2-D latent"):
        G.decode_grid_2d(tiny_vae, 3)
    torch.manual_seed(0)
    vae2 = aebook.build_model("vae", (1, 8, 8), 2, width=4)
    assert G.decode_grid_2d(vae2, 4).shape == (16, 1, 8, 8)
    v = G.grid_values(5, 0.9)
    assert v[2] == pytest.approx(0.0) and v[0] == pytest.approx(-v[-1]) and v[-1] == pytest.approx(1.2816, abs=1e-3)


def test_kl_per_dim_matches_closed_form(tiny_vae, digits):
    x = digits.test[:16]
    kl = G.kl_per_dim(tiny_vae, x)
    mu, logvar = tiny_vae.encode_stats(x)
    expected = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).mean(0)
    assert kl.shape == (3,) and torch.allclose(kl, expected.detach(), atol=1e-5) and (kl >= 0).all()
    with pytest.raises(ValueError, match="VAE"):
        G.kl_per_dim(aebook.build_model("linear", (1, 8, 8), 2), x)


def test_negative_elbo_is_a_binomial_code_length(tiny_vae, digits):
    x = digits.test[:32]
    r = G.negative_elbo(tiny_vae, x, trials=16, samples=4)
    assert r["nats_per_image"] == pytest.approx(r["recon_nats"] + r["kl_nats"])
    assert r["bits_per_dim"] == pytest.approx(r["nats_per_image"] / (64 * math.log(2)))
    assert r["kl_nats"] > 0 and r["recon_nats"] > 0
    # the binomial log-likelihood is a proper distribution: probabilities of all 17 values sum to 1
    k = torch.arange(17.0)
    assert G._log_binomial(k, torch.tensor(0.3), 16).exp().sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="multiples of 1/10"):
        G.negative_elbo(tiny_vae, x, trials=10)
    with pytest.raises(ValueError, match="VAE"):
        G.negative_elbo(aebook.build_model("conv", (1, 8, 8), 2, width=4), x)


def test_pixel_histogram_bits():
    train = torch.zeros(10, 1, 2, 2)
    test = torch.zeros(3, 1, 2, 2)
    # every train pixel is 0: p(0) = 11 / 27 under add-one smoothing over 17 values
    assert G.pixel_histogram_bits(train, test) == pytest.approx(-math.log2(11 / 27), rel=1e-5)
    assert G.pixel_histogram_bits(train, test + 1.0) == pytest.approx(-math.log2(1 / 27), rel=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        G.pixel_histogram_bits(train, torch.zeros(3, 1, 3, 3))


def test_train_vae_sets_beta_per_trial(digits):
    cfg = TrainConfig(epochs=1, batch_size=256, progress=False, device="cpu")
    model, history = G.train_vae(digits.train[:256], 2, beta=4.0, trials=16, width=4, config=cfg)
    assert model.beta == pytest.approx(0.25) and len(history.train_loss) == 1
    with pytest.raises(ValueError, match="beta"):
        G.train_vae(digits.train[:8], 2, beta=0.0)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(3000, 3)) * 2.0 + 1.0
    assert G.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert G.frechet_distance(a, b) == pytest.approx(G.frechet_distance(b, a), rel=1e-8)
    # diagonal covariances: |dmu|^2 + sum (sqrt(s_a) - sqrt(s_b))^2, with the sample moments
    ma, mb, va, vb = a.mean(0), b.mean(0), a.var(0, ddof=1), b.var(0, ddof=1)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    a_d = (a - ma) @ np.linalg.inv(np.linalg.cholesky(ca)).T * np.sqrt(va) + ma  # exactly diagonal sample covariance
    b_d = (b - mb) @ np.linalg.inv(np.linalg.cholesky(cb)).T * np.sqrt(vb) + mb
    expected = ((ma - mb) ** 2).sum() + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()
    assert G.frechet_distance(a_d, b_d) == pytest.approx(expected, rel=1e-6)
    # agrees with the scipy.linalg.sqrtm form of the FID
    from scipy.linalg import sqrtm

    c = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4))
    d = rng.normal(size=(400, 4)) @ rng.normal(size=(4, 4)) + 0.5
    cc, cd = np.cov(c, rowvar=False), np.cov(d, rowvar=False)
    ref = ((c.mean(0) - d.mean(0)) ** 2).sum() + np.trace(cc + cd - 2 * sqrtm(cc @ cd).real)
    assert G.frechet_distance(c, d) == pytest.approx(ref, rel=1e-6)


def test_frechet_distance_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same d"):
        G.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="same d"):
        G.frechet_distance(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="at least 2"):
        G.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_latent_gaussian_matches_moments_and_is_seeded(tiny_ae, digits):
    rng = torch.Generator().manual_seed(0)
    codes = torch.randn(5000, 2, generator=rng) @ torch.tensor([[2.0, 0.0], [1.0, 0.5]]) + torch.tensor([1.0, -1.0])
    g = G.LatentGaussian().fit(codes)
    s = g.sample(20000, seed=1)
    assert torch.allclose(s.mean(0), codes.mean(0), atol=0.05)
    assert torch.allclose(torch.cov(s.T), torch.cov(codes.T), rtol=0.05, atol=0.05)
    assert torch.equal(g.sample(3, seed=2), g.sample(3, seed=2))
    with pytest.raises(ValueError, match="not fitted"):
        G.LatentGaussian().sample(2)
    with pytest.raises(ValueError, match="shape"):
        G.LatentGaussian().fit(torch.zeros(5))
    images = tiny_ae.decode(G.LatentGaussian().fit(G.encode(tiny_ae, digits.train[:64])).sample(4))
    assert images.shape == (4, 1, 8, 8)


def test_classifier_features_and_labels(digits):
    ytr, yte = G.dataset_labels("digits")
    assert len(ytr) == len(digits.train) and len(yte) == len(digits.test)
    # the labels follow the loader's split: class means differ, e.g. 0s and 1s look different
    assert (digits.train[ytr == 0].mean(0) - digits.train[ytr == 1].mean(0)).abs().max() > 0.3
    clf = G.train_classifier(digits.train[:400], ytr[:400], epochs=10, width=8, feature_dim=16)
    f = G.features(clf, digits.test[:50])
    assert f.shape == (50, 16) and f.dtype == np.float64
    assert 0.0 <= G.accuracy(clf, digits.test, yte) <= 1.0
    assert G.accuracy(clf, digits.train[:400], ytr[:400]) > 0.5  # it learned something in 10 short epochs
    with pytest.raises(ValueError, match="labels"):
        G.train_classifier(digits.train[:10], ytr[:9])
    with pytest.raises(ValueError, match="no class labels"):
        G.dataset_labels("photos")


def test_dataset_labels_offline(fake_mnist, tmp_path):
    ytr, yte = G.dataset_labels("mnist", fake_mnist)
    assert len(ytr) == 20 and len(yte) == 8
    with pytest.raises(FileNotFoundError):
        G.dataset_labels("fashion_mnist", tmp_path)


def test_dataset_labels_of_the_embedded_mnist_sample():
    data = aebook.load_dataset("mnist_sample")
    ytr, yte = G.dataset_labels("mnist_sample")
    assert len(ytr) == len(data.train) and len(yte) == len(data.test)
    assert ytr.dtype == torch.int64 and set(ytr.unique().tolist()) == set(range(10))


def test_nearest_neighbours_finds_copies():
    torch.manual_seed(0)
    train = torch.rand(30, 1, 4, 4)
    queries = torch.cat([train[[7, 3]], torch.rand(2, 1, 4, 4)])
    d, idx = G.nearest_neighbours(queries, train, batch_size=3)
    assert idx[:2].tolist() == [7, 3] and torch.allclose(d[:2], torch.zeros(2), atol=1e-5)
    brute = ((queries[2:].flatten(1)[:, None] - train.flatten(1)[None]) ** 2).sum(-1).sqrt()
    assert torch.allclose(d[2:], brute.min(1).values, atol=1e-5) and torch.equal(idx[2:], brute.argmin(1))
    with pytest.raises(ValueError, match="same image shape"):
        G.nearest_neighbours(queries, torch.rand(3, 1, 5, 5))


def test_explorer_static_and_live(tiny_vae, monkeypatch):
    import matplotlib.pyplot as plt

    z = torch.zeros(3)
    fig = G.explorer_figure(tiny_vae, z, [0, 2], [-1.0, 0.0, 1.0])
    assert len(fig.axes) == 6
    plt.close(fig)
    w = G.latent_explorer(tiny_vae, z, [0, 1], span=2.0)
    assert [c.description for c in w.children[:2]] == ["z[0]", "z[1]"]
    with pytest.raises(ValueError, match="in range"):
        G.latent_explorer(tiny_vae, z, [5])
    with pytest.raises(ValueError, match="at least one"):
        G.explorer_figure(tiny_vae, z, [], [0.0])
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert G.live_frontend() is False
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/reader/04_1_generation.ipynb")
    assert G.live_frontend() is True
    plt.close("all")
