import numpy as np
import pytest
import torch

from aebook.data import load_photo
from aebook.restoration.inference import apply_tiled, restore_image
from aebook.restoration.nets import ResidualCNN
from aebook.restoration.tasks import TASKS, make_task
from aebook.restoration.training import train_restorer


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_untrained_network_is_the_identity_and_tiles_cover_everything():
    model = ResidualCNN(1, 1, depth=4, width=8)
    x = torch.rand(1, 1, 300, 411)
    out = apply_tiled(model, x, torch.zeros(1, 1, 300, 411), tile=128, overlap=16)
    assert out.shape == x.shape and torch.allclose(out, x)


def test_tiled_equals_whole_image():
    torch.manual_seed(0)
    model = ResidualCNN(1, 0, depth=3, width=4)
    torch.nn.init.normal_(model.body[-1].weight, std=0.1)
    x = torch.rand(1, 1, 90, 90)
    whole = model(x)
    for tile, overlap in ((64, 16), (40, 4), (256, 24)):
        tiled = apply_tiled(model, x, tile=tile, overlap=overlap)
        assert torch.allclose(whole, tiled, atol=1e-6), (tile, overlap)


@pytest.mark.parametrize("task", TASKS)
def test_tasks_make_damaged_pairs(task):
    spec = make_task(task)
    clean = torch.rand(4, spec.channels, 32, 32)
    damaged, cond = spec.make(clean, torch.Generator().manual_seed(0))
    assert damaged.shape == clean.shape and not torch.equal(damaged, clean)
    assert (cond is None) == (spec.cond_channels == 0)


def test_short_training_runs_and_restores_shapes():
    img = load_photo("camera", gray=True)[:40, :52]
    model, losses = train_restorer("upscale2", epochs=2, n_patches=64, patch_size=24, depth=3, width=8, progress=False)
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert restore_image(model, "upscale2", img).shape == (80, 104)
    model, _ = train_restorer("inpaint", epochs=1, n_patches=32, patch_size=24, depth=3, width=8, progress=False)
    mask = np.zeros(img.shape, bool)
    mask[8:16, 8:16] = True
    out = restore_image(model, "inpaint", img, mask=mask)
    assert np.allclose(out[~mask], img[~mask], atol=1e-6)  # known pixels are kept


def test_bad_input():
    with pytest.raises(ValueError, match="unknown restoration task 'sharpen'"):
        make_task("sharpen")
    gray = ResidualCNN(1, 1, depth=3, width=4)
    with pytest.raises(ValueError, match=r"expected an \(H, W\) or \(H, W, 3\) image"):
        restore_image(gray, "denoise", np.zeros((8, 8, 4), np.float32), sigma=25)
    with pytest.raises(ValueError, match="needs the noise level"):
        restore_image(gray, "denoise", np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="mask of the image's size"):
        restore_image(gray, "inpaint", np.zeros((8, 8), np.float32), mask=np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="bad ResidualCNN"):
        ResidualCNN(2)


def test_modes_are_kept():
    gray = ResidualCNN(1, 1, depth=3, width=4)
    colour = ResidualCNN(3, 0, depth=3, width=4)
    rgb = load_photo("astronaut")[:20, :24]
    assert restore_image(gray, "denoise", rgb, sigma=10).shape == (20, 24, 3)
    assert restore_image(colour, "enhance", rgb[:, :, 0]).shape == (20, 24)


def test_save_load_and_pretrained_manifest(tmp_path):
    import json

    from aebook.checkpoint import sha256_file
    from aebook.zoo import available, pretrained, resolve
    from aebook.restoration.nets import load_restorer, save_restorer

    model = ResidualCNN(1, 1, depth=3, width=4)
    run = save_restorer(tmp_path / "denoise", model, "denoise", [0.1], {"epochs": 1})
    loaded, task, config = load_restorer(run)
    assert task == "denoise" and config["train"]["epochs"] == 1
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"models": {"denoise": {
        "path": "denoise", "sha256": sha256_file(run / "model.safetensors"), "command": "test"}}}))
    assert available(tmp_path) == ["denoise"]
    assert pretrained("denoise", root=tmp_path)[1]["train"]["task"] == "denoise"
    assert resolve(str(run), root=tmp_path) == run
    with pytest.raises(ValueError, match="unknown model 'sharpen'.*denoise"):
        resolve("sharpen", root=tmp_path)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"x")
    with pytest.raises(ValueError, match="fails the manifest's SHA-256 check"):
        pretrained("denoise", root=tmp_path)


def test_blind_inpainting_task_hides_the_mask():
    spec = make_task("inpaint_blind")
    clean = torch.rand(8, 1, 32, 32)
    damaged, cond = spec.make(clean, torch.Generator().manual_seed(0))
    assert cond is None and spec.cond_channels == 0
    changed = damaged != clean
    assert changed.any() and (changed.float().mean() < 0.6)
    img = load_photo("camera", gray=True)[:24, :24]
    model = ResidualCNN(1, 0, depth=3, width=4)
    assert np.allclose(restore_image(model, "inpaint_blind", img), img, atol=1e-6)  # untrained = identity


def test_inpainting_training_leaves_the_identity():
    # Regression: a clamp in the loss has zero gradient outside [0, 1] (it froze training when holes
    # started at 0); training must move the network's last layer away from the identity.
    model, _ = train_restorer("inpaint", epochs=1, n_patches=32, patch_size=24, depth=3, width=4, progress=False)
    assert model.body[-1].weight.abs().max() > 0
    img = load_photo("camera", gray=True)[:32, :32]
    mask = np.zeros(img.shape, bool)
    mask[8:16, 8:16] = True
    assert restore_image(model, "inpaint", img, mask=mask)[mask].max() > 0


def test_deep_network_keeps_its_signal():
    """Regression: with PyTorch's default init a 12-layer ReLU stack shrank its signal ~1e4-fold and never trained."""
    import torch

    from aebook.restoration.nets import ResidualCNN

    torch.manual_seed(0)
    net = ResidualCNN(1, 1, depth=12, width=32)
    x = torch.rand(2, 2, 32, 32)
    features = net.body[:-1](x)  # everything but the zero-initialised last convolution
    assert features.std() > 0.1 * x.std()


def test_smooth_fill_keeps_known_pixels_and_fills_holes_smoothly():
    from aebook.restoration.tasks import smooth_fill

    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    ramp = (0.3 * yy + 0.5 * xx).view(1, 1, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:36, 24:40] = 1  # a 16x16 hole
    filled = smooth_fill(ramp * (1 - mask), mask)
    assert torch.equal(filled[mask == 0], ramp[mask == 0])
    assert (filled - ramp).abs()[mask == 1].max() < 0.08  # a smooth image is filled close to itself
    assert (filled - ramp).abs()[mask == 1].mean() < 0.03
    # the zero fill it replaces is far worse; an empty mask changes nothing; every pixel missing -> finite
    assert ramp[mask == 1].abs().mean() > 0.3
    assert torch.equal(smooth_fill(ramp, torch.zeros_like(mask)), ramp)
    assert torch.isfinite(smooth_fill(ramp, torch.ones_like(mask))).all()
    with pytest.raises(ValueError, match="differ in size"):
        smooth_fill(ramp, mask[..., :32])


def test_inpainting_input_is_pre_filled():
    spec = make_task("inpaint")
    clean = load_photo("camera", gray=True)[:64, :64]
    clean = torch.from_numpy(np.ascontiguousarray(clean)).view(1, 1, 64, 64).repeat(8, 1, 1, 1)
    damaged, mask = spec.make(clean, torch.Generator().manual_seed(0))
    assert torch.equal(damaged * (1 - mask), clean * (1 - mask))
    holes = mask == 1
    assert holes.any()
    assert ((damaged - clean).abs()[holes].mean() < 0.5 * clean[holes].mean())  # not zeros: a fill near the truth


def test_dihedral_transforms_are_eight_distinct_invertible_symmetries():
    from aebook.restoration.inference import dihedral

    x = torch.arange(12.0).view(1, 1, 3, 4)
    seen = set()
    for k in range(4):
        for flip in (False, True):
            y = dihedral(x, k, flip)
            assert torch.equal(dihedral(y, k, flip, inverse=True), x)
            seen.add((tuple(y.shape), tuple(y.flatten().tolist())))
    assert len(seen) == 8


@pytest.mark.parametrize("task", ["denoise", "inpaint"])
def test_self_ensemble_is_equivariant_where_the_network_is_not(task):
    # A random (untrained) network does not commute with rotating the image; the
    # 8-fold self-ensemble does, exactly, because it averages over all 8 symmetries.
    torch.manual_seed(0)
    model = ResidualCNN(1, 1, depth=3, width=8)
    torch.nn.init.normal_(model.body[-1].weight, std=0.1)
    rng = np.random.default_rng(0)
    img = rng.random((20, 28), dtype=np.float32)
    mask = rng.random((20, 28)) < 0.3
    kw = dict(sigma=25.0) if task == "denoise" else dict(mask=mask)
    kw_rot = dict(sigma=25.0) if task == "denoise" else dict(mask=np.rot90(mask).copy())

    def run(image, ensemble, **k):
        return restore_image(model, task, image, ensemble=ensemble, **k)

    rot = np.rot90(img).copy()
    plain_gap = np.abs(run(rot, False, **kw_rot) - np.rot90(run(img, False, **kw))).max()
    ens_gap = np.abs(run(rot, True, **kw_rot) - np.rot90(run(img, True, **kw))).max()
    assert plain_gap > 1e-3 and ens_gap < 1e-5
    # The untrained identity network stays the identity under the ensemble.
    ident = ResidualCNN(1, 1, depth=3, width=8)
    np.testing.assert_allclose(restore_image(ident, "denoise", img, sigma=25.0, ensemble=True), img, atol=1e-6)


def test_views_average_the_first_rotations_and_flips():
    from aebook.restoration.inference import DIHEDRAL_VIEWS

    torch.manual_seed(0)
    model = ResidualCNN(1, 1, depth=3, width=8)
    torch.nn.init.normal_(model.body[-1].weight, std=0.1)
    img = np.random.default_rng(0).uniform(0.3, 0.7, (20, 28)).astype(np.float32)   # no clipping of the outputs
    one = restore_image(model, "denoise", img, sigma=25.0)
    half_turn = np.rot90(restore_image(model, "denoise", np.rot90(img, 2).copy(), sigma=25.0), -2)
    two = restore_image(model, "denoise", img, sigma=25.0, views=2)
    np.testing.assert_allclose(two, (one + half_turn) / 2, atol=1e-6)   # the photo and its half turn
    assert np.abs(two - one).max() > 1e-3
    np.testing.assert_array_equal(restore_image(model, "denoise", img, sigma=25.0, views=8),
                                  restore_image(model, "denoise", img, sigma=25.0, ensemble=True))
    assert len(set(DIHEDRAL_VIEWS)) == 8
    for bad in (0, 3, 16, True):
        with pytest.raises(ValueError, match=r"views must be one of \(1, 2, 4, 8\)"):
            restore_image(model, "denoise", img, sigma=25.0, views=bad)
    with pytest.raises(ValueError, match="ensemble=True means views=8"):
        restore_image(model, "denoise", img, sigma=25.0, views=2, ensemble=True)


@pytest.mark.parametrize("depth", [5, 6, 9, 30])
def test_deepen_keeps_the_function_and_adds_trainable_layers(depth):
    from aebook.restoration.nets import deepen

    torch.manual_seed(0)
    model = ResidualCNN(1, 1, depth=5, width=6)
    torch.nn.init.normal_(model.body[-1].weight, std=0.1)  # not the identity, so the check means something
    x, cond = torch.rand(2, 1, 20, 20), torch.full((2, 1, 20, 20), 0.1)
    deeper = deepen(model, depth)
    assert deeper.config == {**model.config, "depth": depth}
    assert sum(isinstance(m, torch.nn.Conv2d) for m in deeper.body) == depth
    with torch.no_grad():
        assert torch.allclose(deeper(x, cond), model(x, cond), atol=1e-6)
    loss = (deeper(x, cond) - x).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in deeper.parameters() if p.ndim == 4)
    with pytest.raises(ValueError, match="cannot deepen a 5-layer network to 4 layers"):
        deepen(model, 4)


def test_warm_start_from_a_shallower_restorer_grows_it(tmp_path):
    from aebook.restoration.nets import load_restorer, save_restorer

    torch.manual_seed(0)
    start = ResidualCNN(1, 1, depth=3, width=4)
    torch.nn.init.normal_(start.body[-1].weight, std=0.1)
    run = save_restorer(tmp_path / "start", start, "denoise", [])
    tiny = dict(epochs=1, n_patches=8, patch_size=12, width=4, batch_size=8, device="cpu", progress=False)
    grown, _ = train_restorer("denoise", depth=5, lr=0.0, init=str(run), **tiny)  # lr 0: the start, grown
    x, cond = torch.rand(1, 1, 16, 16), torch.full((1, 1, 16, 16), 0.1)
    with torch.no_grad():
        assert grown.config["depth"] == 5 and torch.allclose(grown(x, cond), start(x, cond), atol=1e-6)
    with pytest.raises(ValueError, match="cannot warm-start"):  # a deeper start cannot shrink, nor change width
        train_restorer("denoise", depth=2, lr=0.0, init=str(run), **tiny)
    with pytest.raises(ValueError, match="cannot warm-start"):
        train_restorer("denoise", depth=5, lr=0.0, init=str(run), **{**tiny, "width": 8})
    assert load_restorer(run)[0].config["depth"] == 3


def test_channels_last_layout_gives_the_same_result_and_hands_the_model_back():
    torch.manual_seed(0)
    for channels, cond_channels in ((1, 1), (1, 0), (3, 0)):
        model = ResidualCNN(channels, cond_channels, depth=4, width=8)
        torch.nn.init.normal_(model.body[-1].weight, std=0.1)
        x = torch.rand(1, channels, 70, 90)
        cond = torch.rand(1, 1, 70, 90) if cond_channels else None
        plain = apply_tiled(model, x, cond, tile=64, overlap=8, channels_last=False)
        fast = apply_tiled(model, x, cond, tile=64, overlap=8, channels_last=True)
        assert torch.allclose(plain, fast, atol=1e-5)
        assert torch.allclose(apply_tiled(model, x, cond, tile=64, overlap=8), fast)  # the CPU default
        assert all(p.is_contiguous() for p in model.parameters())  # handed back as it came


def test_default_overlap_covers_a_deep_networks_receptive_field():
    torch.manual_seed(0)
    deep = ResidualCNN(1, 0, depth=40, width=4)  # a 40-pixel receptive-field radius, beyond 24
    torch.nn.init.normal_(deep.body[-1].weight, std=0.1)
    convs = [m for m in deep.body if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for conv in convs[1:-1]:  # each hidden layer shifts its (non-negative) input by one pixel: the
            conv.weight.zero_()   # output then reads pixels 38 away, which a 24-pixel overlap misses
            conv.weight[range(4), range(4), 1, 2] = 1.0
        x = torch.rand(1, 1, 200, 200)
        whole = deep(x)
    assert torch.allclose(apply_tiled(deep, x, tile=96), whole, atol=1e-5)
    assert not torch.allclose(apply_tiled(deep, x, tile=96, overlap=24), whole, atol=1e-3)


def test_warmup_ramps_the_learning_rate_up_from_near_zero(tmp_path, monkeypatch):
    import aebook.restoration.training as restoration_training
    from aebook.restoration.nets import save_restorer
    from aebook.train import TrainStep

    rates = []

    class Recording(TrainStep):  # the library's one step, recording the rate of each step it takes
        def update(self, loss):
            rates.append(self.lr)
            return super().update(loss)

    monkeypatch.setattr(restoration_training, "TrainStep", Recording)
    torch.manual_seed(0)
    start = ResidualCNN(1, 1, depth=3, width=4)
    run = save_restorer(tmp_path / "start", start, "denoise", [])
    steps = dict(epochs=1, n_patches=64, patch_size=12, depth=3, width=4, batch_size=8, lr=0.1,
                 init=str(run), device="cpu", progress=False)  # 8 steps
    train_restorer("denoise", warmup=0.5, **steps)  # 4 warm-up steps: 1/4, 2/4, 3/4 and all of lr, then the cosine
    assert rates[:5] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1]) and 0 < rates[7] < rates[6] < rates[5] < 0.1
    assert len(rates) == 8
    rates.clear()
    train_restorer("denoise", **steps)  # no warm-up: the cosine from the first step
    assert rates[0] == pytest.approx(0.1) and rates == sorted(rates, reverse=True)
    with pytest.raises(ValueError, match="warmup must be a fraction"):
        train_restorer("denoise", warmup=2.0, **steps)


def test_sigma_range_bounds_the_training_noise_levels():
    clean = torch.full((64, 1, 16, 16), 0.5)
    gen = torch.Generator().manual_seed(0)
    noisy, cond = make_task("denoise", sigma_range=(20, 30)).make(clean, gen)
    levels = cond[:, 0, 0, 0] * 255
    assert levels.min() >= 20 and levels.max() <= 30 and levels.max() - levels.min() > 5
    measured = (noisy - clean).flatten(1).std(1) * 255  # each patch's noise has its drawn level
    assert torch.allclose(measured, levels, rtol=0.3)
    _, wide = make_task("denoise").make(clean, torch.Generator().manual_seed(0))
    assert wide.max() * 255 > 40 and wide.min() * 255 < 15  # the default: 0 to 55
    with pytest.raises(ValueError, match="0 <= low <= high"):
        make_task("denoise", sigma_range=(30, 20))
    with pytest.raises(ValueError, match="0 <= low <= high"):
        make_task("denoise", sigma_range=(-5, 20))
    with pytest.raises(ValueError, match="setting of the denoise task"):
        make_task("inpaint", sigma_range=(20, 30))


def test_psnr_loss_weighs_each_patch_by_its_relative_error():
    from aebook.restoration.training import PSNR_LOSS_FLOOR, training_objective

    target = torch.zeros(2, 1, 4, 4)
    errors = torch.tensor([0.01, 0.1]).view(2, 1, 1, 1).expand(2, 1, 4, 4)  # MSEs 1e-4 and 1e-2
    grads = {}
    for loss in ("mse", "psnr"):
        out = errors.clone().requires_grad_(True)
        objective, mse = training_objective(out, target, loss)
        assert mse.item() == pytest.approx((1e-4 + 1e-2) / 2)  # the reported loss is the MSE either way
        objective.backward()
        grads[loss] = out.grad[:, 0, 0, 0] / errors[:, 0, 0, 0]  # gradient per unit of error
    assert grads["mse"][0] == pytest.approx(grads["mse"][1])  # MSE: the same weight per unit of error
    ratio = grads["psnr"][0] / grads["psnr"][1]  # PSNR: the small error weighs as much in relative terms
    assert ratio.item() == pytest.approx((1e-2 + PSNR_LOSS_FLOOR) / (1e-4 + PSNR_LOSS_FLOOR), rel=1e-4)
    with pytest.raises(ValueError, match="unknown loss"):
        training_objective(errors, target, "l1")
    with pytest.raises(ValueError, match="unknown loss"):
        train_restorer("denoise", loss="l1", epochs=1, n_patches=4, patch_size=8, depth=2, width=4,
                       device="cpu", progress=False)
    with pytest.raises(ValueError, match="sigma_range, eight_bit, bicubic_downscale and kernel_condition apply"):
        train_restorer(make_task("denoise"), sigma_range=(20, 30), epochs=1, n_patches=4, patch_size=8,
                       depth=2, width=4, device="cpu", progress=False)
    model, losses = train_restorer("denoise", loss="psnr", sigma_range=(20, 30), epochs=2, n_patches=16,
                                   patch_size=12, depth=3, width=4, batch_size=8, device="cpu", progress=False)
    assert len(losses) == 2 and all(np.isfinite(losses))


def _untrained_encoder_decoder(skips=True, cond=1):
    from aebook.restoration.nets import EncoderDecoder

    torch.manual_seed(0)
    model = EncoderDecoder(1, cond, widths=(4, 8, 16), blocks=(1, 1, 1), skips=skips)
    torch.nn.init.normal_(model.tail.weight, std=0.1)  # not the identity any more
    return model.eval()


@pytest.mark.parametrize("shape", [(1, 1, 16, 16), (2, 1, 37, 50), (1, 1, 3, 5)])
def test_encoder_decoder_keeps_any_image_size_and_starts_as_the_identity(shape):
    from aebook.restoration.nets import EncoderDecoder

    model = EncoderDecoder(1, 1, widths=(4, 8, 16), blocks=(1, 0, 2))
    x, cond = torch.rand(shape), torch.rand(shape)
    assert torch.equal(model(x, cond), x)
    assert _untrained_encoder_decoder()(x, cond).shape == x.shape


def test_encoder_decoder_downsamples_inside_and_skips_carry_fine_detail():
    """Without skips every output passes through the 1/4-resolution bottleneck: a one-pixel
    change of the input moves the output only through it, so the response is spread out."""
    x = torch.zeros(1, 1, 32, 32)
    poke = x.clone()
    poke[0, 0, 16, 16] = 1.0
    for skips in (True, False):
        model = _untrained_encoder_decoder(skips, cond=0)
        delta = (model(poke) - model(x))[0, 0] - (poke - x)[0, 0]  # the network's own part
        assert delta.abs().sum() > 0
    ed = _untrained_encoder_decoder(True, cond=0)
    convs = [m for m in ed.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert len(convs) == 2  # two halvings: 32 -> 16 -> 8


@pytest.mark.parametrize("shape", [(1, 1, 300, 520), (1, 1, 301, 522)])
def test_encoder_decoder_tiled_equals_whole_image(shape):
    """Tiles stay on the network's grid of 4 pixels and the image is padded once, as a whole
    image is: with an overlap beyond its receptive field, tiling changes nothing."""
    model = _untrained_encoder_decoder()
    x = torch.rand(shape)
    cond = torch.full_like(x, 0.1)
    with torch.no_grad():
        whole = model(x, cond)
    assert (whole - x).abs().mean() > 0.05  # the network does change the image
    for tile, overlap in ((256, 32), (130, 30)):  # the second is put on the grid: 128 and 32
        assert torch.allclose(apply_tiled(model, x, cond, tile=tile, overlap=overlap), whole, atol=1e-5)
    assert torch.allclose(apply_tiled(model, x, cond), whole, atol=1e-5)  # default: one tile


def test_encoder_decoder_trains_saves_and_loads(tmp_path):
    from aebook.restoration.nets import load_restorer, save_restorer
    from aebook.restoration.nets import EncoderDecoder

    img = load_photo("camera", gray=True)[:40, :52]
    model, losses = train_restorer("denoise", epochs=2, n_patches=64, patch_size=32, arch="encoder_decoder",
                                   widths=(4, 8), blocks=(1, 1), progress=False)
    assert isinstance(model, EncoderDecoder) and len(losses) == 2 and all(np.isfinite(losses))
    assert restore_image(model, "denoise", img, sigma=25).shape == img.shape
    run = save_restorer(tmp_path / "ed", model, "denoise", losses)
    loaded, task, _ = load_restorer(run)
    assert task == "denoise" and isinstance(loaded, EncoderDecoder) and loaded.config == model.config
    x = torch.rand(1, 1, 20, 20)
    assert torch.equal(loaded(x, torch.zeros_like(x)), model(x, torch.zeros_like(x)))
    again, _ = train_restorer("denoise", epochs=1, n_patches=32, patch_size=32, arch="encoder_decoder",
                              widths=(4, 8), blocks=(1, 1), init=str(run), progress=False)
    assert isinstance(again, EncoderDecoder)
    with pytest.raises(ValueError, match="cannot warm-start"):
        train_restorer("denoise", epochs=1, n_patches=32, patch_size=32, arch="encoder_decoder",
                       widths=(4, 8), blocks=(2, 1), init=str(run), progress=False)


def test_super_resolution_warm_starts_across_scales_and_nothing_else_does(tmp_path):
    from aebook.restoration.nets import save_restorer

    tiny = dict(epochs=1, n_patches=32, patch_size=32, arch="encoder_decoder", widths=(4, 8), blocks=(1, 1),
                progress=False)
    x2, _ = train_restorer("upscale2", **tiny)
    run = save_restorer(tmp_path / "x2", x2, "upscale2")
    x4, _ = train_restorer("upscale4", **{**tiny, "lr": 0.0}, init=str(run))  # lr 0: exactly the start
    for key, value in x2.state_dict().items():
        assert torch.equal(x4.state_dict()[key], value), key
    for other in ("denoise", "inpaint", "enhance"):  # other jobs, other inputs: refused
        with pytest.raises(ValueError, match="cannot warm-start"):
            train_restorer(other, **tiny, init=str(run))


@pytest.mark.parametrize("change, message", [
    ({"widths": [4] * 7, "blocks": [1] * 7}, "lists of 2 to 6 integers"),
    ({"widths": [4, 200000]}, "widths must be an integer in"),
    ({"blocks": [1, 30000]}, "blocks must be an integer in"),
    ({"blocks": [1]}, "of the same length"),
    ({"skips": "yes"}, "skips and global_context must be true or false"),
    ({"global_context": 1}, "skips and global_context must be true or false"),
])
def test_hostile_encoder_decoder_configs_are_refused_before_building(tmp_path, change, message):
    import json

    from aebook.restoration.nets import load_restorer, save_restorer
    from aebook.restoration.nets import EncoderDecoder

    run = save_restorer(tmp_path / "ed", EncoderDecoder(1, 1, widths=(4, 8), blocks=(1, 1)), "denoise")
    config = json.loads((run / "config.json").read_text())
    config["model"].update(change)
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        load_restorer(run)


@pytest.mark.parametrize("name", ["camera", "coffee"])
def test_noise_level_is_estimated_within_two_levels_or_ten_percent_even_where_pixels_clip(name):
    from aebook.restoration.inference import estimate_noise_sigma

    img = load_photo(name, gray=name == "camera")
    rng = np.random.default_rng(0)
    for sigma in (10, 25, 45):
        noisy = np.round(np.clip(img + rng.normal(0, sigma / 255, img.shape), 0, 1) * 255) / 255
        assert abs(estimate_noise_sigma(noisy) - sigma) < max(2.0, 0.1 * sigma), sigma
    assert estimate_noise_sigma(img) < 3  # a clean photo reads almost no noise
    with pytest.raises(ValueError, match="at least 4 x 4"):
        estimate_noise_sigma(np.zeros((2, 9)))


def test_the_enhance_training_damage_is_the_one_the_book_measures_with():
    """Training pairs for ``enhance`` are made as ``random_degradation`` makes the test damage:
    colour cast first, then gamma, contrast and brightness, with the same ranges."""
    from aebook.restoration.damage import adjust_exposure, colour_cast, degrade_batch, degradation_batch

    rgb = load_photo("astronaut")[:48, :40]
    params = dict(brightness=0.15, contrast=1.3, gamma=0.6, gains=[1.15, 0.85, 1.0])
    want = adjust_exposure(colour_cast(rgb, params["gains"]), params["brightness"], params["contrast"], params["gamma"])
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    one = lambda v: torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)
    got = degrade_batch(x, one(params["brightness"]), one(params["contrast"]), one(params["gamma"]), one(params["gains"]))
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy(), want, atol=1e-5)
    # random draws: one set per image, within the ranges (a gain-only change keeps ratios of channels)
    batch = degradation_batch(x.repeat(64, 1, 1, 1), torch.Generator().manual_seed(0))
    means = batch.mean(dim=(1, 2, 3))
    assert batch.shape == (64, 3, 48, 40) and means.std() > 0.05 and 0 <= batch.min() and batch.max() <= 1
    made, _ = make_task("enhance", channels=3).make(x.repeat(64, 1, 1, 1), torch.Generator().manual_seed(0))
    assert torch.equal(made, batch)  # the task's training damage is exactly this


def test_the_global_branch_lets_the_whole_image_change_every_pixel():
    """With ``global_context`` a change far outside every convolution's window still moves a
    pixel's output (whole-image statistics); without it, it cannot. Both start as the identity."""
    from aebook.restoration.nets import EncoderDecoder

    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 400)
    far = x.clone()
    far[..., 300:] = 1.0  # only the right end changes
    for glob in (False, True):
        net = EncoderDecoder(3, 0, (4, 8), (1, 1), skips=True, global_context=glob).eval()
        with torch.no_grad():
            assert torch.equal(net(x), x)  # a new network is the identity
            for p in net.parameters():
                p.normal_(0, 0.2)
            moved = (net(far) - net(x))[..., :100].abs().max().item()  # pixels 200+ away from the change
        assert (moved > 1e-4) if glob else (moved == 0), (glob, moved)


def test_eight_bit_share_of_denoise_training_patches_is_clipped_and_rounded():
    clean = torch.rand(64, 1, 16, 16)
    as_file = lambda x: bool(torch.all(x >= 0) and torch.all(x <= 1)  # noqa: E731
                             and torch.allclose(x * 255, torch.round(x * 255), atol=1e-4))
    for share, expected in ((0.0, 0), (1.0, 64)):
        damaged, _ = make_task("denoise", sigma_range=(20, 30), eight_bit=share).make(clean, torch.Generator().manual_seed(0))
        assert sum(as_file(x) for x in damaged) == expected
    damaged, _ = make_task("denoise", sigma_range=(20, 30), eight_bit=0.5).make(clean, torch.Generator().manual_seed(0))
    assert 16 <= sum(as_file(x) for x in damaged) <= 48
    # without it, the patches are those of runs recorded before the setting existed
    plain, _ = make_task("denoise").make(clean, torch.Generator().manual_seed(1))
    before, _ = make_task("denoise", eight_bit=0).make(clean, torch.Generator().manual_seed(1))
    assert torch.equal(plain, before)
    with pytest.raises(ValueError, match="eight_bit must be a probability"):
        make_task("denoise", eight_bit=1.5)
    with pytest.raises(ValueError, match="eight_bit is a setting of the denoise task"):
        make_task("inpaint", eight_bit=0.5)


def test_bicubic_downscale_share_of_super_resolution_pairs_is_shrunk_with_bicubic():
    from aebook.restoration.damage import downsample_batch
    from aebook.imageio import upsample_bicubic

    clean = torch.rand(64, 1, 16, 16)
    by = {k: upsample_bicubic(downsample_batch(clean, 2, k), (16, 16)) for k in ("area", "bicubic")}
    def kernels(share, seed=0):
        damaged, _ = make_task("upscale2", bicubic_downscale=share).make(clean, torch.Generator().manual_seed(seed))
        return [next(k for k, v in by.items() if torch.allclose(x, v[i], atol=1e-6)) for i, x in enumerate(damaged)]
    assert kernels(0.0) == ["area"] * 64 and kernels(1.0) == ["bicubic"] * 64
    assert 16 <= kernels(0.5).count("bicubic") <= 48
    # without it, the pairs are those of runs recorded before the setting existed
    assert torch.equal(make_task("upscale4").make(clean, torch.Generator().manual_seed(1))[0],
                       make_task("upscale4", bicubic_downscale=0).make(clean, torch.Generator().manual_seed(1))[0])
    with pytest.raises(ValueError, match="bicubic_downscale must be a probability"):
        make_task("upscale2", bicubic_downscale=-0.1)
    with pytest.raises(ValueError, match="bicubic_downscale is a setting of the upscale tasks"):
        make_task("denoise", bicubic_downscale=0.5)


def test_kernel_condition_labels_each_pair_with_the_kernel_that_shrank_it():
    from aebook.restoration.damage import downsample_batch
    from aebook.imageio import upsample_bicubic
    from aebook.restoration.tasks import KERNEL_CODES

    clean = torch.rand(64, 1, 16, 16)
    by = {k: upsample_bicubic(downsample_batch(clean, 2, k), (16, 16)) for k in ("area", "bicubic")}
    task = make_task("upscale2", bicubic_downscale=0.5, kernel_condition=True)
    assert task.cond_channels == 1
    damaged, cond = task.make(clean, torch.Generator().manual_seed(3))
    assert cond.shape == (64, 1, 16, 16)
    for i, x in enumerate(damaged):
        kernel = next(k for k, v in by.items() if torch.allclose(x, v[i], atol=1e-6))
        assert torch.all(cond[i] == KERNEL_CODES[kernel])
    assert 0 < int((cond[:, 0, 0, 0] == KERNEL_CODES["bicubic"]).sum()) < 64
    # the same pairs as without the label: the label draws nothing
    plain, _ = make_task("upscale2", bicubic_downscale=0.5).make(clean, torch.Generator().manual_seed(3))
    assert torch.equal(plain, damaged)
    with pytest.raises(ValueError, match="kernel_condition is a setting of the upscale tasks"):
        make_task("inpaint", kernel_condition=True)


@pytest.mark.parametrize("arch", ["residual_cnn", "encoder_decoder"])
def test_add_condition_channels_keeps_the_function_and_training_warm_starts_through_it(arch, tmp_path):
    from aebook.restoration.nets import add_condition_channels, build_restorer, save_restorer

    options = dict(depth=3, width=4) if arch == "residual_cnn" else dict(widths=(4, 8), blocks=(1, 1))
    model = build_restorer(arch, 1, 0, **options).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # not the identity it starts as
    wider = add_condition_channels(model, 1).eval()
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(model(x), x, atol=1e-4)
        for value in (0.0, 1.0):
            assert torch.allclose(wider(x, torch.full((2, 1, 16, 16), value)), model(x), atol=1e-6)
    with pytest.raises(ValueError, match="cannot drop condition channels"):
        add_condition_channels(wider, 0)
    save_restorer(tmp_path / "start", model, "upscale2")
    trained, losses = train_restorer("upscale2", arch=arch, **options, kernel_condition=True, bicubic_downscale=0.5,
                                     init=tmp_path / "start", epochs=1, n_patches=8, patch_size=16, batch_size=4,
                                     lr=1e-3, device="cpu", progress=False)
    assert trained.cond_channels == 1 and np.isfinite(losses).all()


def test_restore_image_tells_a_kernel_conditioned_network_the_kernel():
    from aebook.restoration.nets import add_condition_channels, build_restorer

    plain = build_restorer("encoder_decoder", 1, 0, widths=(4, 8), blocks=(1, 1)).eval()
    conditioned = add_condition_channels(plain, 1).eval()
    with torch.no_grad():
        conditioned.head.weight[:, 1:] = 0.5  # the kernel map now changes the output
        conditioned.tail.weight.normal_(0, 0.1)
        plain.tail.weight.copy_(conditioned.tail.weight)
    small = np.random.default_rng(0).random((12, 10)).astype(np.float32)
    area, bicubic, default = (restore_image(conditioned, "upscale2", small, kernel=k) for k in ("area", "bicubic", None))
    assert area.shape == (24, 20) and not np.allclose(area, bicubic)
    assert np.array_equal(default, area)  # the default is block means, the recipes' default kernel
    # a network without the kernel map ignores it
    assert np.array_equal(restore_image(plain, "upscale2", small, kernel="area"), restore_image(plain, "upscale2", small))
    with pytest.raises(ValueError, match="unknown downscaling kernel 'box'"):
        restore_image(conditioned, "upscale2", small, kernel="box")
    with pytest.raises(ValueError, match="kernel is a setting of super-resolution"):
        restore_image(plain, "denoise", small, sigma=25, kernel="area")


def test_tiles_of_a_network_with_a_global_branch_share_the_whole_image_statistics():
    """A global branch (``enhance``) averages the bottleneck over the whole image, not over one tile:
    with a receptive field inside the overlap, tiles compute exactly what the whole image does."""
    import torch

    from aebook.restoration.nets import EncoderDecoder

    torch.manual_seed(0)
    model = EncoderDecoder(3, 0, widths=(8, 16, 32), blocks=(0, 0, 0), global_context=True).eval()
    with torch.no_grad():
        for p in [*model.context.parameters(), *model.tail.parameters()]:  # a modulation that matters
            p.normal_(0, 0.2)
    x = torch.rand(1, 3, 100, 140)

    class OwnTileOnly(torch.nn.Module):  # each tile's own statistics, as a tile run alone sees them
        multiple = model.multiple

        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x, cond=None):
            return self.inner(x, cond)

    with torch.no_grad():
        whole = model(x)
        assert torch.allclose(apply_tiled(model, x, tile=48, overlap=12), whole, atol=1e-5)
        assert not torch.allclose(apply_tiled(OwnTileOnly(), x, tile=48, overlap=12), whole, atol=1e-2)
