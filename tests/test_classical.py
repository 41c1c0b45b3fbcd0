"""Tests for aebook.restoration.classical: every baseline actually restores, on small photo crops."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from skimage import color, data
from skimage.metrics import peak_signal_noise_ratio

from aebook.restoration import classical as K
from aebook.restoration import damage as C


def psnr(ref: np.ndarray, img: np.ndarray) -> float:
    return peak_signal_noise_ratio(ref, img, data_range=1)


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    """48x48 crop of the cameraman (his coat and the camera: edges and flat areas)."""
    return data.camera()[180:228, 200:248].astype(np.float32) / 255


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()[100:148, 180:228].astype(np.float32) / 255


# --------------------------------------------------------------------------- denoising


def test_denoisers_registry() -> None:
    assert set(K.DENOISERS) == {"tv", "wavelet", "nlm", "bm3d"}


@pytest.mark.parametrize("name", sorted(K.DENOISERS))
def test_denoiser_improves_psnr_gray(name, camera) -> None:
    noisy = C.add_gaussian_noise(camera, 25, rng=0)
    out = K.DENOISERS[name](noisy, 25)
    assert out.shape == camera.shape and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1
    # Noisy input is ~20 dB; every method gains well over 3 dB on this crop.
    assert psnr(camera, out) > psnr(camera, noisy) + 3


@pytest.mark.parametrize("name", sorted(K.DENOISERS))
def test_denoiser_improves_psnr_colour(name, astronaut) -> None:
    noisy = C.add_gaussian_noise(astronaut, 25, rng=0)
    out = K.DENOISERS[name](noisy, 25)
    assert out.shape == astronaut.shape and out.dtype == np.float32
    assert psnr(astronaut, out) > psnr(astronaut, noisy) + 3


@pytest.mark.parametrize("name", sorted(K.DENOISERS))
def test_denoiser_sigma_checks(name, camera) -> None:
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        K.DENOISERS[name](camera, -1)
    np.testing.assert_array_equal(K.DENOISERS[name](camera, 0), camera)
    with pytest.raises(ValueError, match="must be a float array"):
        K.DENOISERS[name](data.camera()[:16, :16], 25)


def test_bm3d_missing_package_message(camera, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "bm3d", None)  # makes `import bm3d` fail
    with pytest.raises(ImportError, match="install bm3d: pip install bm3d"):
        K.denoise_bm3d(camera, 25)


# --------------------------------------------------------------------------- inpainting


def test_inpaint_beats_zero_fill(camera) -> None:
    mask = C.block_mask(camera.shape, block=8, fraction=0.25, rng=0)
    damaged = C.apply_mask(camera, mask)
    out = K.inpaint_biharmonic(damaged, mask)
    assert out.shape == camera.shape and out.dtype == np.float32
    assert psnr(camera, out) > psnr(camera, damaged) + 5
    np.testing.assert_allclose(out[~mask], camera[~mask], atol=1e-6)  # known pixels kept


def test_inpaint_colour_and_bad_mask(astronaut) -> None:
    mask = C.scratch_mask(astronaut.shape, n_lines=4, width=3, rng=0)
    damaged = C.apply_mask(astronaut, mask)
    out = K.inpaint_biharmonic(damaged, mask)
    assert out.shape == astronaut.shape
    assert psnr(astronaut, out) > psnr(astronaut, damaged) + 5
    with pytest.raises(ValueError, match="mask shape"):
        K.inpaint_biharmonic(damaged, mask.T[:-1])


# --------------------------------------------------------------------------- super-resolution


@pytest.mark.parametrize("scale", [2, 4])
def test_bicubic_beats_nearest(scale, camera) -> None:
    small = C.downsample(camera, scale)
    up = K.upscale_bicubic(small, scale)
    nearest = np.repeat(np.repeat(small, scale, axis=0), scale, axis=1)
    assert up.shape == camera.shape and up.dtype == np.float32
    assert 0 <= up.min() and up.max() <= 1
    assert psnr(camera, up) > psnr(camera, nearest) + 0.5


def test_bicubic_colour_and_bad_scale(astronaut) -> None:
    assert K.upscale_bicubic(astronaut[:12, :10], 4).shape == (48, 40, 3)
    with pytest.raises(ValueError, match=r"scale must be one of \(2, 4\)"):
        K.upscale_bicubic(astronaut, 3)


# --------------------------------------------------------------------------- exposure and colour


@pytest.mark.parametrize("method", ["clahe", "global"])
def test_equalize_spreads_a_dull_image(method, camera) -> None:
    dull = 0.4 + 0.2 * camera  # contrast squeezed into [0.4, 0.6]
    out = K.equalize_histogram(dull, method=method)
    assert out.shape == dull.shape and out.dtype == np.float32
    assert out.std() > 2 * dull.std()


def test_equalize_keeps_hue(astronaut) -> None:
    dull = 0.3 + 0.4 * astronaut
    out = K.equalize_histogram(dull)
    hsv_in, hsv_out = color.rgb2hsv(dull), color.rgb2hsv(out)
    # Hue is meaningless for greys and for pixels equalised to black.
    coloured = (hsv_in[..., 1] > 0.1) & (hsv_out[..., 2] > 0.05)
    assert coloured.mean() > 0.5
    diff = np.abs(hsv_in[..., 0] - hsv_out[..., 0])[coloured]
    assert np.minimum(diff, 1 - diff).max() < 1e-3  # hue is circular
    with pytest.raises(ValueError, match="method must be 'clahe' or 'global'"):
        K.equalize_histogram(dull, method="magic")


def test_gray_world_equalises_channel_means(astronaut) -> None:
    cast = C.colour_cast(0.8 * astronaut, (1.1, 0.9, 0.6))
    out = K.gray_world(cast)
    assert out.max() < 1  # no saturation here, so the clipped result is exact
    means = out.reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(means, means.mean(), rtol=1e-4)
    before = cast.reshape(-1, 3).mean(axis=0)
    assert np.ptp(before) > 0.05
    np.testing.assert_allclose(means.mean(), before.mean(), rtol=1e-4)  # overall level kept
    unclipped = K.gray_world(C.colour_cast(astronaut, (1.5, 1.0, 0.5)), clip=False)
    means = unclipped.reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(means, means.mean(), rtol=1e-4)
    with pytest.raises(ValueError, match="needs a colour image"):
        K.gray_world(astronaut[..., 0])


def test_auto_contrast(camera) -> None:
    dull = 0.3 + 0.3 * camera
    out = K.auto_contrast(dull, low=1, high=99)
    assert out.shape == dull.shape and out.dtype == np.float32
    lo, hi = np.percentile(out, [1, 99])
    assert lo == pytest.approx(0, abs=1e-6) and hi == pytest.approx(1, abs=1e-6)
    flat = np.full((8, 8), 0.3, dtype=np.float32)
    np.testing.assert_array_equal(K.auto_contrast(flat), flat)
    with pytest.raises(ValueError, match="need 0 <= low < high <= 100"):
        K.auto_contrast(dull, low=99, high=1)
