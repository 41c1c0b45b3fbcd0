"""Tests for aebook.restoration.damage: damage models are exact, seeded and validated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aebook.restoration import damage as C


@pytest.fixture
def gray() -> np.ndarray:
    return np.random.default_rng(123).uniform(0.2, 0.8, size=(48, 48)).astype(np.float32)


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(321).uniform(0.2, 0.8, size=(48, 48, 3)).astype(np.float32)


# --------------------------------------------------------------------------- input checks


def test_as_image_rejects_integer_dtype() -> None:
    with pytest.raises(ValueError, match="must be a float array"):
        C.as_image(np.zeros((8, 8), dtype=np.uint8))


@pytest.mark.parametrize("shape", [(8,), (8, 8, 4), (2, 8, 8, 3)])
def test_as_image_rejects_bad_shape(shape) -> None:
    with pytest.raises(ValueError, match=r"must have shape \(H, W\) or \(H, W, 3\)"):
        C.as_image(np.zeros(shape, dtype=np.float32))


# --------------------------------------------------------------------------- noise


def test_noise_is_seeded(gray) -> None:
    a = C.add_gaussian_noise(gray, 25, rng=0)
    b = C.add_gaussian_noise(gray, 25, rng=np.random.default_rng(0))
    c = C.add_gaussian_noise(gray, 25, rng=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_noise_std_matches_sigma(sigma) -> None:
    clean = np.full((128, 128), 0.5, dtype=np.float32)
    noise = C.add_gaussian_noise(clean, sigma, rng=0) - clean
    # 16384 samples: the sample std is within ~1.1 % (2 standard errors) of the truth.
    assert noise.std() == pytest.approx(sigma / 255, rel=0.03)
    assert abs(noise.mean()) < 3 * sigma / 255 / 128


def test_noise_clipping_is_optional(rgb) -> None:
    noisy = C.add_gaussian_noise(rgb, 50, rng=0)
    assert noisy.dtype == np.float32 and noisy.shape == rgb.shape
    assert noisy.min() < 0 and noisy.max() > 1
    clipped = C.add_gaussian_noise(rgb, 50, rng=0, clip=True)
    np.testing.assert_array_equal(clipped, np.clip(noisy, 0, 1))


def test_noise_sigma_zero_and_negative(gray) -> None:
    np.testing.assert_array_equal(C.add_gaussian_noise(gray, 0, rng=0), gray)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        C.add_gaussian_noise(gray, -1)


# --------------------------------------------------------------------------- masks


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_block_mask_exact_fraction(fraction) -> None:
    mask = C.block_mask((48, 48), block=8, fraction=fraction, rng=0)
    assert mask.dtype == bool and mask.shape == (48, 48)
    n_missing = round(fraction * 36)
    assert mask.sum() == n_missing * 64
    # Every 8x8 cell is either entirely missing or entirely kept.
    cells = mask.reshape(6, 8, 6, 8)
    assert (cells.all(axis=(1, 3)) == cells.any(axis=(1, 3))).all()


def test_block_mask_seeded_and_odd_shape() -> None:
    np.testing.assert_array_equal(C.block_mask((48, 48, 3), rng=7), C.block_mask((48, 48), rng=7))
    assert not np.array_equal(C.block_mask((48, 48), rng=7), C.block_mask((48, 48), rng=8))
    assert C.block_mask((50, 45), block=8, rng=0).shape == (50, 45)


def test_block_mask_bad_input() -> None:
    with pytest.raises(ValueError, match="fraction must be in"):
        C.block_mask((48, 48), fraction=1.5)
    with pytest.raises(ValueError, match="block must be >= 1"):
        C.block_mask((48, 48), block=0)
    with pytest.raises(ValueError, match="shape must be"):
        C.block_mask((48,))


def test_scratch_mask() -> None:
    mask = C.scratch_mask((48, 40), n_lines=4, width=3, rng=0)
    assert mask.dtype == bool and mask.shape == (48, 40)
    assert 0 < mask.mean() < 0.9
    np.testing.assert_array_equal(mask, C.scratch_mask((48, 40), n_lines=4, width=3, rng=0))
    assert not C.scratch_mask((48, 40), n_lines=0, rng=0).any()
    # Same seed: the first lines are the same, so more or wider lines only add pixels.
    more = C.scratch_mask((48, 40), n_lines=8, width=3, rng=0)
    wider = C.scratch_mask((48, 40), n_lines=4, width=6, rng=0)
    assert (more >= mask).all() and more.sum() > mask.sum()
    assert (wider >= mask).all() and wider.sum() > mask.sum()


def test_scratch_mask_bad_input() -> None:
    with pytest.raises(ValueError, match="width must be > 0"):
        C.scratch_mask((48, 48), width=0)
    with pytest.raises(ValueError, match="n_lines must be >= 0"):
        C.scratch_mask((48, 48), n_lines=-1)


def test_pixel_mask() -> None:
    mask = C.pixel_mask((48, 40), fraction=0.3, rng=0)
    assert mask.dtype == bool and mask.shape == (48, 40)
    assert mask.sum() == round(0.3 * 48 * 40)
    np.testing.assert_array_equal(mask, C.pixel_mask((48, 40), fraction=0.3, rng=0))
    with pytest.raises(ValueError, match="fraction must be in"):
        C.pixel_mask((48, 48), fraction=-0.1)


def test_apply_mask(rgb) -> None:
    mask = C.block_mask(rgb.shape, rng=0)
    before = rgb.copy()
    out = C.apply_mask(rgb, mask, fill=0.5)
    assert out.shape == rgb.shape and out.dtype == np.float32
    assert (out[mask] == 0.5).all()
    np.testing.assert_array_equal(out[~mask], rgb[~mask])
    np.testing.assert_array_equal(rgb, before)  # input untouched
    with pytest.raises(ValueError, match="mask shape"):
        C.apply_mask(rgb, mask[:-1])


# --------------------------------------------------------------------------- resolution


def test_downsample_is_block_mean_after_crop(rgb) -> None:
    img = np.random.default_rng(0).random((50, 46, 3)).astype(np.float32)
    small = C.downsample(img, 2)
    assert small.shape == (25, 23, 3) and small.dtype == np.float32
    np.testing.assert_allclose(small[3, 4], img[6:8, 8:10].mean(axis=(0, 1)), rtol=1e-6)
    assert C.downsample(img[..., 0], 4).shape == (12, 11)
    assert C.crop_to_multiple(img, 4).shape == (48, 44, 3)


def test_bicubic_downsample_shrinks_as_pil_does(gray) -> None:
    from PIL import Image

    img = np.round(C.crop_to_multiple(gray, 2) * 255) / 255
    small = C.downsample(img, 2, "bicubic")
    pil = Image.fromarray(np.round(img * 255).astype(np.uint8)).resize((img.shape[1] // 2, img.shape[0] // 2),
                                                                        Image.BICUBIC)
    assert small.shape == (img.shape[0] // 2, img.shape[1] // 2) and small.dtype == np.float32
    assert 0 <= small.min() and small.max() <= 1
    assert np.abs(small - np.asarray(pil, dtype=np.float32) / 255).max() < 2.5 / 255   # PIL rounds to 8 bits
    assert np.abs(small - C.downsample(img, 2)).mean() > 1 / 255   # not the block means
    colour = np.random.default_rng(0).random((50, 46, 3)).astype(np.float32)
    assert C.downsample(colour, 4, "bicubic").shape == (12, 11, 3)
    with pytest.raises(ValueError, match="unknown downscaling kernel 'lanczos'"):
        C.downsample(gray, 2, "lanczos")
    with pytest.raises(ValueError, match="multiples of 2"):
        C.downsample_batch(torch.rand(1, 1, 5, 6), 2)


def test_downsample_bad_scale(gray) -> None:
    with pytest.raises(ValueError, match=r"scale must be one of \(2, 4\)"):
        C.downsample(gray, 3)


# --------------------------------------------------------------------------- exposure and colour


def test_adjust_exposure(gray) -> None:
    np.testing.assert_allclose(C.adjust_exposure(gray), gray, atol=1e-6)
    darker = C.adjust_exposure(gray, gamma=2.0)
    assert darker.mean() < gray.mean() - 0.1
    flat = C.adjust_exposure(gray, contrast=0.0, brightness=0.1)
    np.testing.assert_allclose(flat, 0.6, atol=1e-6)
    assert C.adjust_exposure(gray, brightness=0.5).max() <= 1.0
    with pytest.raises(ValueError, match="gamma must be > 0"):
        C.adjust_exposure(gray, gamma=0)
    with pytest.raises(ValueError, match="contrast must be >= 0"):
        C.adjust_exposure(gray, contrast=-1)


def test_colour_cast(rgb, gray) -> None:
    np.testing.assert_array_equal(C.colour_cast(rgb, (1, 1, 1)), rgb)
    cast = C.colour_cast(rgb, (1.2, 1.0, 0.5))
    np.testing.assert_allclose(cast[..., 2], rgb[..., 2] * 0.5, rtol=1e-6)
    with pytest.raises(ValueError, match="needs a colour image"):
        C.colour_cast(gray, (1, 1, 1))
    with pytest.raises(ValueError, match="gains must be three numbers"):
        C.colour_cast(rgb, (1, 1))


def test_random_degradation(rgb, gray) -> None:
    out, params = C.random_degradation(rgb, rng=0, return_params=True)
    assert out.shape == rgb.shape and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1
    np.testing.assert_array_equal(out, C.random_degradation(rgb, rng=0))
    assert not np.array_equal(out, C.random_degradation(rgb, rng=1))
    for key in ("brightness", "contrast", "gamma"):
        lo, hi = C.DEGRADATION_RANGES[key]
        assert lo <= params[key] <= hi
    assert all(0.8 <= g <= 1.2 for g in params["gains"])
    expected = C.adjust_exposure(C.colour_cast(rgb, params["gains"]), params["brightness"], params["contrast"], params["gamma"])
    np.testing.assert_array_equal(out, expected)
    g_out, g_params = C.random_degradation(gray, rng=0, return_params=True)
    assert g_out.shape == gray.shape and g_params["gains"] is None


# --------------------------------------------------------------------------- torch batches


def test_as_eight_bit_batch_matches_the_numpy_version() -> None:
    x = C.gaussian_noise_batch(torch.rand(2, 3, 16, 16), 40, generator=torch.Generator().manual_seed(1))
    assert x.min() < 0 and x.max() > 1   # the noise leaves [0, 1]
    saved = C.as_eight_bit_batch(x)
    assert saved.min() == 0 and saved.max() == 1
    assert torch.equal(torch.round(saved * 255), saved * 255)   # 256 levels
    np.testing.assert_allclose(saved[0].permute(1, 2, 0).numpy(),
                               C.as_eight_bit(x[0].permute(1, 2, 0).numpy()), atol=1e-7)


def test_gaussian_noise_batch() -> None:
    x = torch.full((4, 1, 64, 64), 0.5)
    noisy = C.gaussian_noise_batch(x, 25, generator=torch.Generator().manual_seed(0))
    assert noisy.shape == x.shape and noisy.dtype == x.dtype
    assert (noisy - x).std().item() == pytest.approx(25 / 255, rel=0.03)
    again = C.gaussian_noise_batch(x, 25, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)
    per_image = C.gaussian_noise_batch(x, torch.tensor([0.0, 10.0, 25.0, 50.0]))
    stds = (per_image - x).flatten(1).std(dim=1)
    assert stds[0].item() == 0
    np.testing.assert_allclose(stds[1:].numpy(), np.array([10, 25, 50]) / 255, rtol=0.05)
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\)"):
        C.gaussian_noise_batch(x[0], 25)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        C.gaussian_noise_batch(x, -5)


def test_block_mask_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    mask = C.block_mask_batch((5, 3, 48, 48), block=8, fraction=0.25, generator=gen)
    assert mask.shape == (5, 1, 48, 48) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (mask.sum(dim=(1, 2, 3)) == 9 * 64).all()  # exactly 9 of 36 blocks per image
    assert not torch.equal(mask[0], mask[1])
    again = C.block_mask_batch((5, 3, 48, 48), generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)
    assert C.block_mask_batch((2, 50, 45)).shape == (2, 1, 50, 45)
    with pytest.raises(ValueError, match="shape must be"):
        C.block_mask_batch((48, 48))
    with pytest.raises(ValueError, match="fraction must be in"):
        C.block_mask_batch((2, 1, 48, 48), fraction=2)


def test_scratch_mask_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    mask = C.scratch_mask_batch((6, 1, 40, 50), n_lines=2, width=(2.0, 4.0), generator=gen)
    assert mask.shape == (6, 1, 40, 50) and set(mask.unique().tolist()) <= {0.0, 1.0}
    share = mask.mean(dim=(1, 2, 3))
    assert (share > 0).all() and (share < 0.5).all()  # thin lines, not blobs
    assert not torch.equal(mask[0], mask[1])
    assert torch.equal(mask, C.scratch_mask_batch((6, 1, 40, 50), 2, (2.0, 4.0), torch.Generator().manual_seed(0)))
    assert C.scratch_mask_batch((2, 8, 8), n_lines=0).sum() == 0
    with pytest.raises(ValueError, match="0 < width low <= high"):
        C.scratch_mask_batch((2, 8, 8), width=(3.0, 1.0))
    with pytest.raises(ValueError, match="shape must be"):
        C.scratch_mask_batch((8, 8))


def test_segment_distance_known_points() -> None:
    a, ab = torch.tensor([0.0, 0.0]), torch.tensor([0.0, 4.0])  # the segment (0, 0)-(0, 4)
    points = torch.tensor([[3.0, 2.0],    # beside the middle: perpendicular distance 3
                           [0.0, 7.0],    # beyond the end (0, 4): distance 3
                           [-4.0, -3.0],  # before the start: distance 5 to (0, 0)
                           [0.0, 1.5]])   # on the segment
    torch.testing.assert_close(C.segment_distance(points, a, ab), torch.tensor([3.0, 3.0, 5.0, 0.0]))
    # A zero-length segment is a point; broadcasting gives one plane per segment.
    torch.testing.assert_close(C.segment_distance(points[:1], a, torch.zeros(2)), torch.tensor([13.0 ** 0.5]))
    assert C.segment_distance(torch.zeros(5, 7, 2), torch.zeros(3, 1, 1, 2), torch.ones(3, 1, 1, 2)).shape == (3, 5, 7)

