"""Unit tests for aebook.book.compare (fast: small images, no training)."""

import numpy as np
import pytest
import torch

from aebook.baselines import PCABaseline, interpolation_baseline
from aebook.baselines import interpolation_codec, jpeg_images, jpeg_quality_for_bpp, jpeg_uses_huffman
from aebook.book.compare import (UniformQuantizer, crop_to_tiles, encode_batched, image_to_tiles, quantized_reconstruct,
                                 reconstruct_by_tiles, tile_metrics, tiles_to_image)
from aebook.data import load_photo, photo_tiles
from aebook.models import build_model


def _smooth_image(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / 16.0
    img = 0.5 + 0.2 * np.sin(x) * np.cos(y) + 0.05 * rng.normal(size=(h, w))
    return np.clip(img, 0, 1).astype(np.float32)


def test_tiles_roundtrip_and_crop():
    img = _smooth_image(70, 100)
    tiles = image_to_tiles(img, 32)
    assert tiles.shape == (2 * 3, 1, 32, 32)
    crop = crop_to_tiles(img, 32)
    assert crop.shape == (64, 96)
    np.testing.assert_array_equal(tiles_to_image(tiles, crop.shape), crop)
    np.testing.assert_array_equal(tiles[1, 0].numpy(), img[:32, 32:64])  # row by row
    with pytest.raises(ValueError):
        tiles_to_image(tiles, (64, 64))
    with pytest.raises(ValueError):
        image_to_tiles(np.zeros((8, 8, 3)), 4)
    with pytest.raises(ValueError):
        image_to_tiles(np.zeros((8, 8)), 16)


def test_tiles_match_library_test_split():
    cam = crop_to_tiles(load_photo("camera", gray=True), 32)
    assert torch.equal(image_to_tiles(cam, 32), photo_tiles(("camera",), 32))


def test_reconstruct_by_tiles_identity_and_clipping():
    img = _smooth_image()
    np.testing.assert_allclose(reconstruct_by_tiles(img, lambda t: t, 32), crop_to_tiles(img, 32))
    out = reconstruct_by_tiles(img, lambda t: t * 10, 32)
    assert out.max() <= 1.0 and out.min() >= 0.0


def test_uniform_quantizer():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(500, 3, generator=g) * torch.tensor([1.0, 5.0, 0.1])
    codes[:, 2] = 0.25  # a constant dimension must not divide by zero
    q = UniformQuantizer.fit(codes, bits=8)
    sym = q.quantize(codes)
    assert sym.dtype == torch.int64 and sym.min() >= 0 and sym.max() <= 255
    step = (q.high - q.low) / 255
    err = (q.roundtrip(codes) - codes).abs()
    assert torch.all(err <= step / 2 + 1e-5)
    outside = q.quantize(torch.tensor([[1e6, -1e6, 0.25]]))
    assert outside[0, 0] == 255 and outside[0, 1] == 0
    with pytest.raises(ValueError):
        UniformQuantizer.fit(codes, bits=0)
    with pytest.raises(ValueError):
        UniformQuantizer.fit(torch.zeros(5), bits=8)


def test_quantized_reconstruct_pca_and_model():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 1, 8, 8, generator=g)
    pca = PCABaseline(4).fit(x)
    q16 = UniformQuantizer.fit(pca.encode(x), bits=16)
    torch.testing.assert_close(quantized_reconstruct(pca, x, q16), pca.reconstruct(x), atol=1e-3, rtol=0)
    model = build_model("linear", (1, 8, 8), 4)
    codes = encode_batched(model, x, batch_size=10)
    torch.testing.assert_close(codes, model.encode(x).detach())
    q2 = UniformQuantizer.fit(codes, bits=2)
    out = quantized_reconstruct(model, x, q2)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_interpolation_codec():
    flat = np.full((32, 64), 0.4, dtype=np.float32)
    np.testing.assert_allclose(interpolation_codec(flat, 4, 8), np.round(0.4 * 255) / 255, atol=1e-6)
    img = _smooth_image()
    ours = interpolation_codec(img, 4, bits=16)
    ref = interpolation_baseline(torch.from_numpy(img)[None, None], 4)[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    with pytest.raises(ValueError):
        interpolation_codec(np.zeros((30, 32)), 4)


def test_jpeg_helpers():
    imgs = [_smooth_image(64, 64, s) for s in range(2)]
    dec, bpp = jpeg_images(imgs, 50)
    assert len(dec) == 2 and dec[0].shape == (64, 64) and bpp > 0
    quality, qbpp = jpeg_quality_for_bpp(imgs, 2.0)
    assert qbpp <= 2.0
    if quality < 95:
        assert jpeg_images(imgs, quality + 1)[1] > 2.0
    with pytest.raises(ValueError):
        jpeg_quality_for_bpp(imgs, 0.001)
    assert jpeg_uses_huffman(imgs[0], 50)


def test_tile_metrics():
    imgs = [_smooth_image(64, 64, 0), _smooth_image(32, 96, 1)]
    same = tile_metrics(imgs, imgs, 32)
    assert same["n"] == 4 + 3 and same["psnr"] == 100.0 and same["ssim"] == pytest.approx(1.0)
    noisy = [np.clip(i + 0.05, 0, 1) for i in imgs]
    assert tile_metrics(imgs, noisy, 32)["psnr"] < 40
    with pytest.raises(ValueError):
        tile_metrics(imgs, imgs[:1], 32)
