import numpy as np
import pytest
import torch

from aebook.baselines import PCABaseline, interpolation_baseline, jpeg_batch, jpeg_roundtrip
from aebook.data import load_photo
from aebook.metrics import PSNR_CAP, batch_metrics, mean_metrics, psnr, ssim


def test_psnr_matches_definition():
    rng = np.random.default_rng(0)
    a = rng.random((16, 16))
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    mse = np.mean((a - b) ** 2)
    assert psnr(a, b) == pytest.approx(10 * np.log10(1 / mse))
    assert psnr(a, a) == PSNR_CAP
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, b) < 1.0


def test_tensor_and_array_layouts_agree():
    x = torch.rand(3, 12, 12)
    y = (x + 0.1).clamp(0, 1)
    assert psnr(x, y) == pytest.approx(psnr(x.permute(1, 2, 0).numpy(), y.permute(1, 2, 0).numpy()))
    m = batch_metrics(x.unsqueeze(0), y.unsqueeze(0))
    assert m["psnr"].shape == (1,) and mean_metrics(x.unsqueeze(0), y.unsqueeze(0))["n"] == 1


def test_metric_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="too small"):
        ssim(np.zeros((2, 2)), np.zeros((2, 2)))


def test_pca_is_the_best_linear_code(digits):
    pca = PCABaseline(16).fit(digits.train)
    assert pca.components.shape == (16, 64)
    err16 = torch.mean((pca.reconstruct(digits.test) - digits.test) ** 2)
    err4 = torch.mean((PCABaseline(4).fit(digits.train).reconstruct(digits.test) - digits.test) ** 2)
    assert err16 < err4
    with pytest.raises(ValueError, match="fitted on images of shape"):
        pca.reconstruct(torch.rand(2, 1, 9, 9))
    with pytest.raises(ValueError, match="not fitted"):
        PCABaseline(2).encode(digits.test)


def test_jpeg_rate_grows_with_quality():
    img = load_photo("camera", gray=True)[:128, :128]
    low, bpp_low = jpeg_roundtrip(img, 10)
    high, bpp_high = jpeg_roundtrip(img, 90)
    assert bpp_low < bpp_high and psnr(img, low) < psnr(img, high)
    rgb = load_photo("astronaut")[:64, :64]
    assert jpeg_roundtrip(rgb, 50)[0].shape == rgb.shape
    out, bpp = jpeg_batch(torch.from_numpy(img[None, None, :32, :32].copy()), 50)
    assert out.shape == (1, 1, 32, 32) and bpp > 0
    with pytest.raises(ValueError, match="quality"):
        jpeg_roundtrip(img, 0)


def test_interpolation_baseline_improves_with_smaller_factor():
    img = torch.from_numpy(load_photo("camera", gray=True)[None, None, :64, :64].copy())
    assert psnr(img[0], interpolation_baseline(img, 2)[0]) > psnr(img[0], interpolation_baseline(img, 4)[0])


def test_block_klt_keeps_more_with_more_coefficients_and_everything_with_all():
    from aebook.baselines import BlockKLT
    from aebook.data import load_photo

    train = [load_photo(n, gray=True)[:160, :160] for n in ("camera", "astronaut")]
    test = np.ascontiguousarray(load_photo("coffee", gray=True)[:100, :90])  # 90 is not a multiple of 8
    scores = [BlockKLT(k).fit(train).psnr(test) for k in (1, 4, 16)]
    assert scores[0] < scores[1] < scores[2]
    full = BlockKLT(64).fit(train)
    rec = full.reconstruct(test)
    assert rec.shape == (96, 88) and np.allclose(rec, test[:96, :88], atol=1e-6)  # a complete basis loses nothing
    with pytest.raises(ValueError, match="k must be in"):
        BlockKLT(65)
    with pytest.raises(ValueError, match="not fitted"):
        BlockKLT(4).reconstruct(test)
    with pytest.raises(ValueError, match="grayscale"):
        full.reconstruct(np.zeros((16, 16, 3)))
