"""Tests for aebook.codecs.conv and aebook.codecs.coding: the learned codec, its files, checkpoints and
rate-distortion curves."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aebook.codecs.bitstream import AebFile
from aebook.baselines import jpeg_rate_distortion
from aebook.codecs.coding import (bits_per_pixel, codec_roundtrip, compress, decompress, load_codec, rate_distortion,
                                  save_codec)
from aebook.codecs.conv import QUALITY_STEPS, ConvCodec, FactorizedPrior, quality_step
from aebook.codecs.training import train_codec
from aebook.metrics import value_at_bpp
from aebook.data import load_photo

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TINY = dict(latent_channels=4, widths=(8, 8, 8))


def tiny(channels: int = 1, seed: int = 0) -> ConvCodec:
    torch.manual_seed(seed)
    return ConvCodec(channels, **TINY).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and a busy machine makes two threads crawl)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(one_thread):
    """A tiny codec trained for a second or two on photo patches, and its history."""
    return train_codec(n_patches=384, patch_size=32, epochs=2, seed=0, device="cpu", batch_size=16, **TINY)


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    return np.ascontiguousarray(load_photo("camera", gray=True)[200:264, 200:280])  # 64 x 80


def test_quality_steps_decrease_and_are_float32():
    steps = [quality_step(q) for q in sorted(QUALITY_STEPS)]
    assert all(a > b for a, b in zip(steps, steps[1:]))
    assert all(float(np.float32(s)) == s for s in steps)
    for bad in (0, 9, "4"):
        with pytest.raises(ValueError, match="quality must be one of"):
            quality_step(bad)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(37, 53), (8, 8), (1, 1), (3, 17)])
def test_any_size_keeps_shape(channels, size):
    codec = tiny(channels)
    x = torch.rand(2, channels, *size)
    z = codec.encode(x)
    assert tuple(z.shape) == (2, *codec.latent_shape(*size)) == (2, 4, math.ceil(size[0] / 8), math.ceil(size[1] / 8))
    y = codec.reconstruct(x, 3)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1


@pytest.mark.parametrize("channels", [1, 3])
def test_file_round_trip_is_exact(channels):
    rng = np.random.default_rng(0)
    img = rng.random((37, 53) if channels == 1 else (37, 53, 3), dtype=np.float32)
    codec = tiny(channels)
    aeb = compress(img, codec, quality=6, model_id="test-codec")
    with torch.no_grad():
        z = codec.encode(torch.from_numpy(img if channels == 1 else img.transpose(2, 0, 1)).reshape(1, channels, 37, 53))
    assert np.array_equal(aeb.symbols, torch.round(z[0] / QUALITY_STEPS[6]).numpy().astype(np.int64))
    data = aeb.to_bytes()
    back = AebFile.from_bytes(data)
    assert back == aeb and np.array_equal(back.symbols, aeb.symbols)  # exactly the quantised latents
    assert (back.height, back.width, back.mode, back.model_id) == (37, 53, "L" if channels == 1 else "RGB", "test-codec")
    out = decompress(back, codec, expected_model_id="test-codec")
    assert out.shape == img.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    expected = codec.reconstruct(torch.from_numpy(img).reshape(1, 37, 53, channels).permute(0, 3, 1, 2), 6)
    np.testing.assert_allclose(out, expected[0].permute(1, 2, 0).numpy().reshape(img.shape), atol=1e-6)
    assert bits_per_pixel(aeb) == len(data) * 8 / (37 * 53)
    decoded, bpp = codec_roundtrip(img, codec, 6)
    assert np.array_equal(decoded, out) and bpp == bits_per_pixel(compress(img, codec, 6))


def test_model_id_names_the_weights():
    a, b = tiny(seed=0), tiny(seed=0)
    assert a.model_id == b.model_id and a.model_id.startswith("convcodec-")
    assert compress(np.zeros((8, 8), np.float32), a).model_id == a.model_id
    with torch.no_grad():
        b.decoder[0].bias.add_(1e-3)
    assert a.model_id != b.model_id


def test_uint8_images_are_scaled():
    codec = tiny()
    img = np.random.default_rng(1).integers(0, 256, (19, 23), dtype=np.uint8)
    assert compress(img, codec, 5) == compress(img / 255.0, codec, 5)


def test_bad_inputs_raise_value_error():
    gray, rgb = tiny(1), tiny(3)
    with pytest.raises(ValueError, match=r"expected an \(H, W\) image, got shape \(8, 8, 3\)"):
        compress(np.zeros((8, 8, 3)), gray)
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) image, got shape \(8, 8\)"):
        compress(np.zeros((8, 8)), rgb)
    with pytest.raises(ValueError, match="NaN"):
        compress(np.full((8, 8), np.nan), gray)
    with pytest.raises(ValueError, match="quality"):
        compress(np.zeros((8, 8)), gray, quality=0)
    with pytest.raises(ValueError, match="expects images"):
        gray.check_input(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        ConvCodec(channels=2)
    aeb = compress(np.zeros((20, 20)), gray, 4)
    with pytest.raises(ValueError, match="RGB"):
        decompress(aeb, rgb)
    with pytest.raises(ValueError, match="expected 'other'"):
        decompress(aeb, gray, expected_model_id="other")
    with pytest.raises(ValueError, match="max_pixels"):
        decompress(aeb, gray, max_pixels=100)
    with pytest.raises(ValueError, match="latent shape"):
        decompress(AebFile(20, 20, "L", "x", 4, (4, 2, 2), 1.0, np.zeros((4, 2, 2), int)), gray)
    huge = AebFile(8, 8, "L", "x", 4, (4, 1, 1), 3e38, np.full((4, 1, 1), 2**30))
    with pytest.raises(ValueError, match="out of range"):
        decompress(huge, gray)


def test_training_lowers_loss_and_more_quality_costs_more_bytes(trained, crop):
    codec, history = trained
    assert history.train_loss[-1] < history.train_loss[0]
    assert {"mse", "bpp_proxy"} <= set(history.stats[-1])
    sizes = [len(compress(crop, codec, q).to_bytes()) for q in sorted(QUALITY_STEPS)]
    assert all(a <= b for a, b in zip(sizes, sizes[1:])) and sizes[0] < sizes[-1], sizes
    curve = rate_distortion(codec, [crop, crop[:40, :50]], (1, 8))
    assert [p["quality"] for p in curve] == [1, 8] and curve[0]["bpp"] < curve[1]["bpp"]
    assert curve[0]["psnr"] < curve[1]["psnr"] and set(curve[0]) == {"quality", "step", "bpp", "psnr", "ssim"}


def test_factorized_prior_is_a_distribution_over_bins_for_any_step_and_parameters():
    torch.manual_seed(0)
    prior = FactorizedPrior(3)
    with torch.no_grad():  # any parameters must still give a valid distribution
        for p in prior.parameters():
            p.add_(torch.randn_like(p))
    for step in (0.25, 1.0, 4.0):
        centres = (torch.arange(-4000, 4001) * step).view(1, 1, -1, 1).expand(1, 3, -1, 1)
        mass = prior.likelihood(centres, step).sum(dim=(0, 2, 3))
        assert torch.allclose(mass, torch.ones(3), atol=1e-4), (step, mass)
        cdf = torch.sigmoid(prior.logits(centres))
        assert (cdf[0, :, 1:] >= cdf[0, :, :-1]).all()  # monotone
    # wider bins are likelier, and the code length is -log2 of the probability
    x = torch.randn(2, 3, 4, 5)
    assert (prior.likelihood(x, 2.0) >= prior.likelihood(x, 0.5)).all()
    assert torch.allclose(prior.bits(x, 1.0), -torch.log2(prior.likelihood(x, 1.0)))


def test_factorized_codec_trains_its_prior_and_saves_it(tmp_path, crop):
    torch.manual_seed(0)
    codec, history = train_codec(n_patches=256, patch_size=32, epochs=2, seed=0, device="cpu", batch_size=16,
                                 entropy_model="factorized", **TINY)
    start = FactorizedPrior(TINY["latent_channels"])
    assert not torch.equal(codec.prior.biases[0], start.biases[0])  # the prior learned
    assert history.train_loss[-1] < history.train_loss[0]
    # The learned rate is the code length under a proper distribution, so (Gibbs' inequality) it can
    # never beat the empirical entropy of each channel's symbols.
    from aebook.codecs.entropy import empirical_entropy

    aeb = compress(crop, codec, 4)
    step = torch.tensor(aeb.step)
    z = torch.from_numpy(aeb.symbols.astype(np.float32))[None] * step
    ideal = codec.prior.bits(z, step).sum().item()
    floor = sum(empirical_entropy(ch) * ch.size for ch in aeb.symbols)
    assert 0 < floor <= ideal + 1e-3
    run = save_codec(tmp_path / "f", codec)
    loaded, config = load_codec(run)
    assert config["model"]["entropy_model"] == "factorized" and loaded.model_id == codec.model_id
    assert np.array_equal(decompress(aeb, loaded), decompress(aeb, codec))
    assert "entropy_model" not in tiny().config  # proxy codecs keep their old config and model id
    with pytest.raises(ValueError, match="entropy_model must be one of"):
        ConvCodec(entropy_model="hyperprior")


def test_unquantised_psnr_is_the_ceiling_of_every_quality(trained, crop):
    from aebook.codecs.coding import unquantised_psnr

    codec, _ = trained
    images = [crop, crop[:40, :50]]
    ceiling = unquantised_psnr(codec, images)
    curve = rate_distortion(codec, images, (1, 8))
    assert curve[0]["psnr"] < curve[1]["psnr"] < ceiling + 0.05
    assert unquantised_psnr(codec, [crop]) != unquantised_psnr(codec, [crop[:40, :50]])


def test_jpeg_curve_and_interpolation(crop):
    curve = jpeg_rate_distortion([crop], (10, 50, 90))
    bpps = [p["bpp"] for p in curve]
    assert bpps == sorted(bpps) and curve[0]["psnr"] < curve[-1]["psnr"]
    middle = 0.5 * (bpps[0] + bpps[1])
    assert value_at_bpp(curve, middle) == pytest.approx(0.5 * (curve[0]["psnr"] + curve[1]["psnr"]))
    assert value_at_bpp(curve, bpps[0], "ssim") == pytest.approx(curve[0]["ssim"])
    assert math.isnan(value_at_bpp(curve, bpps[-1] + 1)) and math.isnan(value_at_bpp([], 1.0))


def test_save_load_round_trip_and_tampering(tmp_path, trained, crop):
    codec, history = trained
    run = save_codec(tmp_path / "codec", codec, history.to_dict(), {"epochs": 2})
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "history.json", "model.safetensors"]
    loaded, config = load_codec(run)
    assert config["model"] == codec.config and config["train"] == {"epochs": 2}
    assert loaded.model_id == codec.model_id
    aeb = compress(crop, codec, 5)
    assert np.array_equal(decompress(aeb, loaded, expected_model_id=codec.model_id), decompress(aeb, codec))
    save_codec(run, codec)  # overwriting works and leaves no temporary folder
    assert [p.name for p in tmp_path.iterdir()] == ["codec"]

    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors fails its SHA-256 check"):
        load_codec(run)
    config_path = run / "config.json"
    config_path.write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not a valid aebook config"):
        load_codec(run)
    config_path.write_text(json.dumps({"model": {"model": "conv"}, "weights_sha256": ""}))
    with pytest.raises(ValueError, match="not a codec"):
        load_codec(run)
    with pytest.raises(FileNotFoundError):
        load_codec(tmp_path / "missing")


def test_weights_that_do_not_match_config(tmp_path):
    run = save_codec(tmp_path / "run", tiny())
    config = json.loads((run / "config.json").read_text())
    config["model"]["latent_channels"] = 5
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not match its config.json"):
        load_codec(run)


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_value_error(data):
    codec = tiny()
    try:
        decompress(AebFile.from_bytes(data), codec)
    except ValueError:
        pass


@FAST
@given(height=st.integers(1, 40), width=st.integers(1, 40), mode=st.sampled_from(["L", "RGB"]),
       shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
       step=st.floats(1e-30, 3e38), seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1, 100, 2**31 - 1]))
def test_any_valid_file_decodes_or_raises_value_error(height, width, mode, shape, step, seed, scale):
    codec = tiny()
    if seed % 2:  # half the time, a latent shape that fits the image
        shape = codec.latent_shape(height, width)
    rng = np.random.default_rng(seed)
    symbols = rng.integers(-scale, scale, size=shape, endpoint=True)
    aeb = AebFile(height, width, mode, "fuzz", 3, shape, step, symbols)
    try:
        out = decompress(AebFile.from_bytes(aeb.to_bytes()), codec)
    except ValueError:
        return
    assert out.shape == (height, width) and np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
