"""Tests for aebook.codecs.klt: the block-KLT codec, its .aeb (version 2) files and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aebook.codecs.bitstream import AebFile
from aebook.codecs.coding import bits_per_pixel, codec_roundtrip, compress, decompress, load_codec, save_codec
from aebook.data import TRAIN_PHOTOS, load_photo
from aebook.metrics import psnr
from aebook.codecs.klt import KLT_QUALITY_STEPS, KLTCodec, klt_damage_task
from aebook.codecs.training import train_klt_codec


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [load_photo(name, gray=True)[:96, :128] for name in TRAIN_PHOTOS[:3]]


@pytest.fixture(scope="module")
def linear(photos) -> KLTCodec:
    return KLTCodec(depth=0).fit_transform(photos).eval()


def test_fitted_transform_is_orthonormal_and_ordered(linear: KLTCodec, photos) -> None:
    a = linear.analysis.double()
    torch.testing.assert_close(a @ a.T, torch.eye(64, dtype=torch.float64), atol=1e-5, rtol=0)
    z = linear.encode(torch.from_numpy(photos[0])[None, None])
    energy = z.pow(2).mean(dim=(0, 2, 3))
    assert energy[0] > energy[10] > energy[63]  # largest variance first
    again = KLTCodec(depth=0).fit_transform(photos)
    torch.testing.assert_close(again.analysis, linear.analysis)  # the sign convention makes the fit repeatable


@pytest.mark.parametrize("size", [(96, 128), (37, 53), (8, 8), (1, 9)])
def test_unquantised_transform_is_lossless_at_any_size(linear: KLTCodec, size) -> None:
    x = torch.rand(2, 1, *size)
    z = linear.encode(x)
    assert z.shape == (2, *linear.latent_shape(*size))
    torch.testing.assert_close(linear.inverse(z, size), x, atol=1e-5, rtol=0)


def test_dead_zone_sends_small_coefficients_to_zero(linear: KLTCodec) -> None:
    z = torch.tensor([0.0, 0.6, 0.75, -0.75, 1.69, 1.71, -2.8])
    np.testing.assert_array_equal(linear.to_symbols(z, 1.0).numpy(), [0, 0, 1, -1, 1, 2, -3])
    with pytest.raises(ValueError, match="rounding"):
        KLTCodec(depth=0, rounding=0.7)
    with pytest.raises(ValueError, match="quality"):
        linear.quality_step(9)


def test_files_are_version_2_and_round_trip(linear: KLTCodec, photos) -> None:
    img = photos[1]
    aeb = compress(img, linear, quality=5)
    assert aeb.coder == "ans" and aeb.to_bytes()[4] == 2 and aeb.model_id == linear.model_id
    back = AebFile.from_bytes(aeb.to_bytes())
    decoded = decompress(back, linear, expected_model_id=linear.model_id)
    assert decoded.shape == img.shape
    direct = linear.reconstruct(torch.from_numpy(img)[None, None], quality=5)[0, 0].numpy()
    np.testing.assert_allclose(decoded, direct, atol=1e-5)
    with pytest.raises(ValueError, match="made by model"):
        decompress(back, linear, expected_model_id="kltcodec-000000000000")


def test_higher_quality_costs_more_bits_and_gives_a_better_image(linear: KLTCodec, photos) -> None:
    rows = [codec_roundtrip(photos[2], linear, q) for q in (1, 4, 8)]
    bpps = [bpp for _, bpp in rows]
    quality = [psnr(photos[2], img) for img, _ in rows]
    assert bpps[0] < bpps[1] < bpps[2] and quality[0] < quality[1] < quality[2]
    assert bpps[0] < 0.5  # no one-bit-per-symbol floor: 64 symbols per 64 pixels, far below 1 bpp


def test_mostly_zero_latents_cost_far_less_than_huffman(linear: KLTCodec, photos) -> None:
    aeb = compress(photos[0], linear, quality=2)
    huffman = AebFile(**dict(aeb.__dict__, coder="huffman"))
    assert bits_per_pixel(aeb) < 0.5 * bits_per_pixel(huffman)


def test_save_load_and_tampering(tmp_path, photos) -> None:
    codec = KLTCodec(depth=3, width=4).fit_transform(photos).eval()
    run = save_codec(tmp_path / "klt", codec, {"train_loss": []}, {"note": "test"})
    loaded, config = load_codec(run)
    assert isinstance(loaded, KLTCodec) and loaded.model_id == codec.model_id
    assert config["model"]["model"] == "kltcodec"
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + bytes([weights.read_bytes()[-1] ^ 1]))
    with pytest.raises(ValueError, match="SHA-256"):
        load_codec(run)


def test_damage_task_codes_patches_at_random_steps(linear: KLTCodec) -> None:
    task = klt_damage_task(linear)
    clean = torch.rand(6, 1, 16, 24)
    gen = torch.Generator().manual_seed(0)
    coded, cond = task.make(clean, gen)
    assert coded.shape == clean.shape and cond.shape == (6, 1, 16, 24)
    steps = cond[:, 0, 0, 0]
    assert (steps >= min(KLT_QUALITY_STEPS.values()) - 1e-6).all() and (steps <= max(KLT_QUALITY_STEPS.values()) + 1e-6).all()
    assert len(set(steps.tolist())) == 6 and not torch.equal(coded, clean)
    with pytest.raises(ValueError, match="whole 8x8 blocks"):
        task.make(torch.rand(1, 1, 12, 16), gen)


def test_training_runs_and_only_the_network_learns() -> None:
    codec, losses = train_klt_codec(n_patches=32, patch_size=16, epochs=2, depth=3, width=4, batch_size=16,
                                    device="cpu", init=None)
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert codec.refine is not None and not codec.training
    fitted = KLTCodec(depth=3, width=4).fit_transform([load_photo(n, gray=True) for n in TRAIN_PHOTOS])
    torch.testing.assert_close(codec.analysis, fitted.analysis)  # the transform is the closed-form KLT
    with pytest.raises(ValueError, match="multiple of 8"):
        train_klt_codec(n_patches=8, patch_size=12, depth=3, width=4, init=None)
