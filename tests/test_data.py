import numpy as np
import pytest
import torch

import aebook
import aebook.data
import aebook.synthetic
from aebook.data import DATASET_NAMES, load_dataset, load_photo, photo_patches, photo_tiles
from aebook.synthetic import PATTERN_PERIODS, dead_leaves, repeat_tile


def test_digits_split_is_fixed_and_disjoint(digits):
    assert digits.shape == (1, 8, 8)
    assert len(digits.train) + len(digits.test) == 1797
    assert 0 <= digits.train.min() and digits.train.max() <= 1
    again = load_dataset("digits")
    assert torch.equal(again.test, digits.test)
    # no test image appears in train
    train = {tuple(x.flatten().tolist()) for x in digits.train}
    dup = sum(tuple(x.flatten().tolist()) in train for x in digits.test)
    assert dup <= 3  # sklearn digits holds a few exact duplicates, nothing more


def test_held_out_photos_never_in_training():
    assert "camera" in aebook.HELD_OUT_PHOTOS
    assert not set(aebook.HELD_OUT_PHOTOS) & set(aebook.TRAIN_PHOTOS)


@pytest.mark.parametrize("name", aebook.TRAIN_PHOTOS + aebook.HELD_OUT_PHOTOS)
def test_every_photo_loads_offline(name):
    img = load_photo(name)
    assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
    assert min(img.shape[:2]) >= 128 and 0 <= img.min() and img.max() <= 1
    assert load_photo(name, gray=True).ndim == 2


def test_unknown_photo():
    with pytest.raises(ValueError, match="unknown photo 'lena'"):
        load_photo("lena")


def test_patches_reproducible_and_shaped():
    a = photo_patches(10, size=16, seed=3)
    b = photo_patches(10, size=16, seed=3)
    assert a.shape == (10, 1, 16, 16) and torch.equal(a, b)
    assert photo_patches(4, size=16, gray=False).shape == (4, 3, 16, 16)
    assert not torch.equal(a, photo_patches(10, size=16, seed=4))


def test_patches_shrunk_cover_a_wider_view(monkeypatch):
    ramp = np.tile(np.arange(512, dtype=np.float32) / 512, (512, 1))  # brightness = x / 512
    monkeypatch.setattr(aebook.data, "load_photo", lambda name, gray=False: ramp if gray else np.dstack([ramp] * 3))
    plain = photo_patches(5, size=32, augment=False, seed=0)
    halved = photo_patches(5, size=32, augment=False, seed=0, scale_range=(0.5, 0.5))
    step = lambda p: (p[..., 1:] - p[..., :-1]).mean().item() * 512  # pixels of the photo per patch pixel
    assert step(plain) == pytest.approx(1.0, abs=1e-3) and step(halved) == pytest.approx(2.0, abs=1e-3)
    spread = photo_patches(50, size=32, augment=False, seed=0, scale_range=(0.5, 1.0))
    steps = [step(p) for p in spread]
    assert min(steps) < 1.2 and max(steps) > 1.8 and 0.999 < min(steps) and max(steps) < 2.001
    with pytest.raises(ValueError, match="scale_range"):
        photo_patches(2, size=32, scale_range=(0.0, 1.0))


def test_patches_channel_mix_makes_new_grays(monkeypatch):
    colour = np.zeros((64, 64, 3), np.float32)
    colour[..., 0], colour[..., 2] = 1.0, 0.5
    monkeypatch.setattr(aebook.data, "load_photo", lambda name, gray=False: colour.mean(-1) if gray else colour)
    fixed = photo_patches(20, size=16, seed=0)
    mixed = photo_patches(20, size=16, seed=0, channel_mix=True)
    levels = mixed.mean(dim=(1, 2, 3))
    assert torch.all(fixed == fixed[0, 0, 0, 0])  # one gray without the mix
    assert levels.std() > 0.05 and levels.min() >= 0 and levels.max() <= 1  # weights summing to 1
    assert mixed.shape == (20, 1, 16, 16)
    assert photo_patches(3, size=16, gray=False, channel_mix=True).shape == (3, 3, 16, 16)  # colour: no mix


def _spectrum_slope(img: np.ndarray) -> float:
    """The slope of the radially averaged power spectrum against frequency, log-log."""
    n = img.shape[0]
    power = np.abs(np.fft.fftshift(np.fft.fft2(img - img.mean()))) ** 2
    y, x = np.indices(power.shape)
    radius = np.hypot(y - n // 2, x - n // 2).astype(int)
    profile = np.bincount(radius.ravel(), power.ravel()) / np.bincount(radius.ravel())
    f = np.arange(4, n // 4)
    return float(np.polyfit(np.log(f), np.log(profile[f]), 1)[0])


def test_dead_leaves_have_objects_at_every_scale():
    rng = np.random.default_rng(0)
    img = dead_leaves(128, rng)
    assert img.shape == (128, 128) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    assert np.array_equal(img, dead_leaves(128, np.random.default_rng(0)))  # reproducible from the seed
    slopes = [_spectrum_slope(dead_leaves(128, rng)) for _ in range(3)]
    assert all(-3.0 < s < -1.5 for s in slopes), slopes  # close to 1/f**2, as photos are
    noise = rng.random((128, 128))
    assert _spectrum_slope(noise) > -0.5  # the measure tells white noise apart
    photo = load_photo("chelsea")
    coloured = dead_leaves(64, rng, [photo], texture_share=1.0, blur=(0.0, 0.0))
    assert coloured.shape == (64, 64, 3)
    # every textured disc is a piece of the photo: each pixel is one of the photo's colours
    colours = {tuple(c) for c in photo.reshape(-1, 3)}
    assert all(tuple(c) in colours for c in coloured.reshape(-1, 3)[::97])
    for bad in (dict(r_min=0.0), dict(texture_share=1.5)):
        with pytest.raises(ValueError):
            dead_leaves(64, rng, **bad)


def test_repeat_tile_is_periodic_along_turned_axes():
    rng = np.random.default_rng(0)
    tile = rng.random((7, 5, 3)).astype(np.float32)
    dy, dx = (a - 20.0 for a in np.mgrid[0:40, 0:40].astype(np.float64))
    angle = 0.6
    c, s = np.cos(angle), np.sin(angle)
    base = repeat_tile(tile, dy, dx, angle)
    assert base.shape == (40, 40, 3)
    # a shift of one period along either turned axis changes nothing
    np.testing.assert_allclose(repeat_tile(tile, dy + 7 * c, dx + 7 * s, angle), base, atol=1e-4)
    np.testing.assert_allclose(repeat_tile(tile, dy - 5 * s, dx + 5 * c, angle), base, atol=1e-4)
    # but half a period does (the tile is not constant)
    assert np.abs(repeat_tile(tile, dy + 3.5 * c, dx + 3.5 * s, angle) - base).mean() > 0.05
    # unturned, the plane at whole offsets is the tile itself, repeated
    np.testing.assert_allclose(repeat_tile(tile[..., 0], *np.mgrid[0:14, 0:10].astype(float), 0.0),
                               np.tile(tile[..., 0], (2, 2)), atol=1e-6)


def test_dead_leaves_patterns_are_repeated_pieces(monkeypatch):
    photo = load_photo("brick", gray=True)
    plain = dead_leaves(96, np.random.default_rng(3), [photo])
    assert np.array_equal(plain, dead_leaves(96, np.random.default_rng(3), [photo], pattern_share=0.0))  # replay
    tiles = []
    monkeypatch.setattr(aebook.synthetic, "repeat_tile", lambda tile, *a: tiles.append(tile.shape) or repeat_tile(tile, *a))
    patterned = dead_leaves(96, np.random.default_rng(3), [photo], pattern_share=1.0)
    assert not np.array_equal(plain, patterned) and len(tiles) >= 3   # the wide discs are patterned
    lo, hi = PATTERN_PERIODS
    assert all(lo <= h <= hi and lo <= w <= hi for h, w in tiles)
    tiles.clear()
    dead_leaves(96, np.random.default_rng(3), [photo], pattern_share=0.3)
    few = len(tiles)
    tiles.clear()
    dead_leaves(96, np.random.default_rng(3), [photo], pattern_share=0.9)
    assert 0 < few < len(tiles)   # the share sets how many
    with pytest.raises(ValueError, match="pattern_share"):
        dead_leaves(64, np.random.default_rng(0), [photo], pattern_share=1.5)
    with pytest.raises(ValueError, match="synthetic_patterns"):
        photo_patches(4, size=16, synthetic_patterns=0.5)   # patterns fill dead leaves: none asked for


def test_patches_synthetic_share_comes_from_dead_leaves(monkeypatch):
    flat = np.full((96, 96, 3), 0.5, np.float32)  # a photo with no edges at all
    monkeypatch.setattr(aebook.data, "load_photo", lambda name, gray=False: flat.mean(-1) if gray else flat)
    plain = photo_patches(40, size=16, seed=0)
    assert torch.equal(plain, photo_patches(40, size=16, seed=0, synthetic=0.0))  # old runs replay
    assert torch.all(plain == 0.5)
    mixed = photo_patches(40, size=16, seed=0, synthetic=0.5, synthetic_images=2)
    edgy = (mixed.flatten(1).std(1) > 0.01).float().mean().item()
    assert 0.25 < edgy < 0.75  # about half the patches are dead leaves, the rest the flat photo
    with pytest.raises(ValueError, match="synthetic"):
        photo_patches(4, size=16, synthetic=1.5)


def test_photos_test_split_is_held_out_tiles():
    data = load_dataset("photos", n_patches=50, patch_size=32)
    assert data.train.shape == (50, 1, 32, 32)
    assert torch.equal(data.test, photo_tiles(size=32))
    assert len(data.test) == sum((load_photo(p, True).shape[0] // 32) * (load_photo(p, True).shape[1] // 32)
                                 for p in aebook.HELD_OUT_PHOTOS)


def test_limits_and_device():
    data = load_dataset("digits", limit_train=10, limit_test=5, device="cpu")
    assert len(data.train) == 10 and len(data.test) == 5


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*digits"):
        load_dataset("imagenet")
    assert {"digits", "mnist", "fashion_mnist", "cifar10"} <= set(DATASET_NAMES)


def test_mnist_loads_offline_from_torchvision_layout(fake_mnist):
    data = load_dataset("mnist", data_dir=fake_mnist)
    assert data.train.shape == (20, 1, 28, 28) and data.test.shape == (8, 1, 28, 28)
    assert data.train.dtype == torch.float32 and float(data.train.max()) <= 1.0


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_torchvision_folder_is_clear(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=f"{name} not found.*download"):
        load_dataset(name, data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(name, data_dir=tmp_path / "nowhere")


def test_folder_dataset(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    data = load_dataset("folder", data_dir=tmp_path, image_size=16)
    assert data.shape == (3, 16, 16) and len(data.train) + len(data.test) == 6
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        load_dataset("folder", data_dir=tmp_path)
    with pytest.raises(ValueError, match="needs data_dir"):
        load_dataset("folder")


def test_folder_dataset_reads_16_bit_grayscale_at_its_scale(tmp_path):
    """A folder of 16-bit grayscale PNGs (common in microscopy and medicine) is not clipped to white."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 30000, (40, 50), dtype=np.uint16)).save(tmp_path / f"{i}.png")
    data = load_dataset("folder", data_dir=tmp_path, image_size=16)
    values = torch.cat([data.train, data.test])
    assert data.shape == (1, 16, 16)
    assert 0.1 < values.mean().item() < 0.35 and values.max().item() < 0.5  # about 15000/65535, not 1


def test_mnist_sample_is_embedded_real_digits_with_labels():
    from aebook.data import load_mnist_sample

    data = load_dataset("mnist_sample")
    assert data.shape == (1, 28, 28)
    assert (len(data.train), len(data.test)) == (4000, 1000)
    assert 0 <= data.train.min() and data.train.max() == 1
    # sparse like real MNIST: most pixels are background
    assert 0.6 < (data.train == 0).float().mean() < 0.9
    tr_x, tr_y, te_x, te_y = load_mnist_sample()
    assert tr_y.shape == (4000,) and te_y.shape == (1000,) and set(tr_y.tolist()) == set(range(10))
    assert torch.equal(data.test, torch.as_tensor(te_x, dtype=torch.float32).unsqueeze(1) / 255)
    # the two splits share no image
    train = {x.tobytes() for x in tr_x}
    assert not any(x.tobytes() in train for x in te_x)
