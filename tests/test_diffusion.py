"""Unit tests of aebook.diffusion and aebook.generators (chapter 4.2), and the CLI contract of
``aebook train --model vqvae|latent-diffusion`` and ``aebook sample``: tiny models, seconds in all."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import aebook
from aebook.checkpoint import save_run
from aebook.cli import main
from aebook.diffusion import (FlowPrior, LatentDiffusion, build_latent_diffusion, latent_statistics, time_embedding,
                              train_latent_diffusion)
from aebook.generators import check_output, grid_image, load_generator, sample_images, write_samples
from aebook.train import TrainConfig, fit


def test_time_embedding_shape_and_range():
    t = torch.tensor([0.0, 0.5, 1.0])
    e = time_embedding(t, 16)
    assert e.shape == (3, 16) and e.abs().max() <= 1
    assert not torch.allclose(e[0], e[1]) and not torch.allclose(e[1], e[2])
    with pytest.raises(ValueError, match="even"):
        time_embedding(t, 7)


def test_one_step_reduces_the_flow_matching_loss_on_a_toy_problem():
    torch.manual_seed(0)
    prior = FlowPrior(2, hidden=32, depth=1)
    data = torch.randn(256, 2) * 0.3 + torch.tensor([2.0, -1.0])
    opt = torch.optim.SGD(prior.parameters(), lr=0.05)

    def loss_at_fixed_noise() -> torch.Tensor:
        torch.manual_seed(1)  # the same t and noise before and after the step
        return prior.loss(data)[0]

    before = loss_at_fixed_noise()
    before.backward()
    opt.step()
    assert loss_at_fixed_noise().item() < before.item()


def test_flow_prior_learns_a_shifted_gaussian_without_scaling():
    torch.manual_seed(0)
    target = torch.tensor([2.0, -1.0])
    data = torch.randn(512, 2) * 0.3 + target
    prior = FlowPrior(2, hidden=64, depth=2)
    prior.set_scaling(data, scale=False)
    assert torch.equal(prior.mean, torch.zeros(2)) and torch.equal(prior.std, torch.ones(2))
    h = fit(prior, data, TrainConfig(epochs=60, batch_size=128, lr=3e-3, progress=False))
    assert h.train_loss[-1] < h.train_loss[0]
    s = prior.sample(2000, steps=16, seed=0)
    assert torch.allclose(s.mean(0), target, atol=0.15)
    assert torch.allclose(s.std(0), torch.full((2,), 0.3), atol=0.1)


def test_scaling_standardises_and_sampling_undoes_it():
    codes = torch.randn(4000, 3) * torch.tensor([5.0, 0.5, 1.0]) + torch.tensor([1.0, -3.0, 0.0])
    prior = FlowPrior(3, hidden=8, depth=1)
    prior.set_scaling(codes)
    assert torch.allclose(prior.std, codes.std(0)) and torch.allclose(prior.mean, codes.mean(0))
    # the untrained network's velocity is 0 (zero-initialised output): samples are rescaled noise
    s = prior.sample(4000, steps=4, seed=0)
    assert torch.allclose(s.mean(0), codes.mean(0), atol=0.3) and torch.allclose(s.std(0), codes.std(0), rtol=0.1)
    stats = latent_statistics(codes)
    assert stats["std_max"] == pytest.approx(5.0, rel=0.05) and stats["std_min"] == pytest.approx(0.5, rel=0.05)
    with pytest.raises(ValueError, match="codes of shape"):
        prior.check_input(torch.zeros(4, 2))


def test_sampler_is_deterministic_given_a_seed_and_returns_the_path():
    torch.manual_seed(0)
    prior = FlowPrior(4, hidden=16, depth=1)
    torch.nn.init.normal_(prior.net.out[-1].weight, std=0.5)  # a non-trivial velocity field
    for solver in ("euler", "heun"):
        a, b = prior.sample(5, steps=6, seed=7, solver=solver), prior.sample(5, steps=6, seed=7, solver=solver)
        assert torch.equal(a, b)
        assert not torch.equal(a, prior.sample(5, steps=6, seed=8, solver=solver))
    path = prior.sample(5, steps=6, seed=7, return_path=True)
    assert path.shape == (7, 5, 4) and torch.allclose(path[-1], prior.sample(5, steps=6, seed=7))
    assert torch.allclose(path[0], torch.randn(5, 4, generator=torch.Generator().manual_seed(7)))  # starts at noise
    assert not torch.allclose(prior.sample(5, steps=6, seed=7, solver="euler"), path[-1])
    with pytest.raises(ValueError, match="solver"):
        prior.sample(2, solver="rk4")
    with pytest.raises(ValueError, match="n >= 1"):
        prior.sample(0)


def test_latent_diffusion_trains_saves_loads_and_samples(tmp_path, digits):
    torch.manual_seed(0)
    ld, hist = train_latent_diffusion(digits.train[:128], latent_dim=3, epochs=1, prior_epochs=2, ae_options={"width": 4}, hidden=16,
                                      depth=1, config=TrainConfig(progress=False))
    assert set(hist) == {"autoencoder", "prior"} and len(hist["prior"].train_loss) == 2
    assert isinstance(ld, LatentDiffusion) and ld.config["autoencoder"]["model"] == "conv"
    save_run(tmp_path / "run", ld)
    loaded, config = load_generator(tmp_path / "run")
    assert config["model"]["model"] == "latent-diffusion"
    a, b = sample_images(ld, 6, seed=2), sample_images(loaded, 6, seed=2)
    assert a.shape == (6, 1, 8, 8) and a.dtype == torch.float32 and torch.allclose(a, b, atol=1e-6)
    assert 0 <= a.min() and a.max() <= 1
    assert isinstance(build_latent_diffusion(ld.config), LatentDiffusion)
    with pytest.raises(ValueError, match="latent_dim"):
        LatentDiffusion(ld.autoencoder, FlowPrior(5))


def test_grid_and_sample_files(tmp_path):
    imgs = torch.rand(5, 1, 4, 6)
    g = grid_image(imgs, nrow=3, pad=1)
    assert g.shape == (2 * 5 + 1, 3 * 7 + 1)
    assert np.allclose(g[1:5, 1:7], imgs[0, 0].numpy()) and np.allclose(g[6:10, 8:14], imgs[4, 0].numpy())
    assert grid_image(torch.rand(4, 3, 2, 2)).shape == (10, 10, 3)   # 2x2 grid, 2-pixel gaps
    out = write_samples(tmp_path / "s.npy", imgs)
    arr = np.load(out)
    assert arr.dtype == np.float32 and arr.shape == (5, 1, 4, 6) and np.allclose(arr, imgs.numpy())
    assert write_samples(tmp_path / "s.png", imgs).stat().st_size > 0
    for bad, msg in ((tmp_path / "s.txt", "use a .npy"), (tmp_path / "missing" / "s.npy", "does not exist"),
                     (tmp_path, "use a .npy"), (tmp_path / "s.npy" / "x.npy", "does not exist")):
        with pytest.raises(ValueError, match=msg):
            check_output(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npy", "s.png"]   # no temporary files left


# ---------------------------------------------------------------- the CLI contract
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs on the 8x8 digits: a conv autoencoder, a VAE, and both two-stage generators."""
    root = tmp_path_factory.mktemp("runs")
    common = ["--dataset", "digits", "--limit", "96", "--latent-dim", "3", "--epochs", "1", "--quiet"]
    for model in ("conv", "vae", "latent-diffusion", "vqvae"):
        extra = ["--prior-epochs", "2"] if model in ("latent-diffusion", "vqvae") else []
        assert main(["train", "--model", model, *common, *extra, "--out", str(root / model)]) == 0
    return root


def _sample(capsys, run, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["sample", str(run), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("model", ["vae", "latent-diffusion", "vqvae"])
def test_cli_sample_writes_npy_and_png(runs, tmp_path, capsys, model):
    code, out, err = _sample(capsys, runs / model, "--n", "7", "--seed", "3", "--out", str(tmp_path / "a.npy"))
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["shape"] == [7, 1, 8, 8]
    a = np.load(tmp_path / "a.npy")
    assert a.dtype == np.float32 and a.shape == (7, 1, 8, 8) and a.min() >= 0 and a.max() <= 1
    assert _sample(capsys, runs / model, "--n", "7", "--seed", "3", "--out", str(tmp_path / "b.npy"))[0] == 0
    assert np.array_equal(a, np.load(tmp_path / "b.npy"))                 # same seed, same images
    assert _sample(capsys, runs / model, "--n", "7", "--seed", "4", "--out", str(tmp_path / "c.npy"))[0] == 0
    assert not np.array_equal(a, np.load(tmp_path / "c.npy"))
    assert _sample(capsys, runs / model, "--n", "7", "--out", str(tmp_path / "g.png"))[0] == 0
    from PIL import Image

    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (3 * 10 + 2, 3 * 10 + 2)                       # a 3x3 grid of 8x8 images, 2-pixel gaps


def test_cli_two_stage_run_is_one_hash_checked_folder(runs):
    cfg = json.loads((runs / "latent-diffusion" / "config.json").read_text())
    assert cfg["model"]["model"] == "latent-diffusion" and len(cfg["weights_sha256"]) == 64
    assert cfg["train"]["prior_epochs"] == 2
    hist = json.loads((runs / "vqvae" / "history.json").read_text())
    assert set(hist) == {"autoencoder", "prior"} and len(hist["prior"]["train_loss"]) == 2


def _assert_refused(code: int, out: str, err: str, tmp_path, match: str) -> None:
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("aebook: error: ") and match in err
    assert not any(p.suffix in (".npy", ".png") for p in tmp_path.rglob("*"))


def test_cli_sample_refuses_bad_input_and_writes_nothing(runs, tmp_path, capsys):
    out = str(tmp_path / "x.npy")
    _assert_refused(*_sample(capsys, runs / "conv", "--n", "4", "--out", out), tmp_path, "no prior to sample from")
    for n in ("0", "-3"):
        _assert_refused(*_sample(capsys, runs / "vae", "--n", n, "--out", out), tmp_path, "--n must be")
    _assert_refused(*_sample(capsys, runs / "vae", "--n", "4", "--out", str(tmp_path / "no" / "x.npy")), tmp_path,
                    "does not exist")
    _assert_refused(*_sample(capsys, runs / "vae", "--n", "4", "--out", str(tmp_path / "x.txt")), tmp_path, ".npy")
    _assert_refused(*_sample(capsys, runs / "vae", "--n", "4", "--out", str(tmp_path)), tmp_path, "")
    _assert_refused(*_sample(capsys, tmp_path / "nowhere", "--n", "4", "--out", out), tmp_path, "does not exist")
    weights = runs / "vqvae" / "model.safetensors"
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        _assert_refused(*_sample(capsys, runs / "vqvae", "--n", "4", "--out", out), tmp_path, "SHA-256")
    finally:
        weights.write_bytes(original)


def test_cli_train_two_stage_checks_prior_epochs(tmp_path, capsys):
    code = main(["train", "--model", "vqvae", "--dataset", "digits", "--limit", "32", "--prior-epochs", "0",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--prior-epochs" in err and not (tmp_path / "r").exists()


def test_decode_path_static_figure_and_slider():
    import matplotlib.pyplot as plt

    from aebook.diffusion import decode_path, path_explorer, path_figure

    torch.manual_seed(0)
    ld = LatentDiffusion(aebook.build_model("conv", (1, 8, 8), 3, width=4).eval(), FlowPrior(3, hidden=8, depth=1))
    torch.nn.init.normal_(ld.prior.net.out[-1].weight, std=0.5)
    frames = decode_path(ld, 2, steps=4, seed=0)
    assert frames.shape == (5, 2, 1, 8, 8)
    assert torch.allclose(frames[-1], ld.sample(2, seed=0, steps=4), atol=1e-6)   # the path ends at the samples
    fig = path_figure(frames, columns=3)
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == "t = 1.00" and fig.axes[2].get_title() == "t = 0.00"
    slider = path_explorer(frames).children[0]
    assert (slider.min, slider.max, slider.value) == (0, 4, 4)
    with pytest.raises(ValueError, match="frames"):
        path_figure(frames[0])
    plt.close("all")


def test_codes_and_steps_figures():
    import matplotlib.pyplot as plt

    from aebook.diffusion import codes_figure, steps_figure

    fig = codes_figure(3 * torch.randn(50, 4) + 2)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 8   # a std and a mean bar per coordinate
    with pytest.raises(ValueError, match="codes"):
        codes_figure(torch.randn(50, 1))
    fig = steps_figure({("euler", 1): 9.0, ("euler", 4): 3.0, ("heun", 1): 9.0, ("heun", 4): 2.0})
    lines = {line.get_label(): line.get_xdata().tolist() for line in fig.axes[0].get_lines()}
    assert lines == {"euler": [1, 4], "heun": [1, 7]}   # Heun: two evaluations per step, one for the last
    with pytest.raises(ValueError, match="solver"):
        steps_figure({("rk4", 1): 1.0})
    plt.close("all")


def test_seconds_per_1000_and_copy_check():
    import matplotlib.pyplot as plt

    from aebook.generators import copy_check, copy_check_figure, seconds_per_1000

    calls = []
    assert seconds_per_1000(lambda n: calls.append(n), n=50) >= 0 and calls == [50]
    with pytest.raises(ValueError, match="positive"):
        seconds_per_1000(lambda n: None, n=0)

    class Identity(torch.nn.Module):          # a perfect decoder: reconstructions are the images themselves
        def reconstruct(self, x):
            return x

    torch.manual_seed(0)
    train, test = torch.rand(40, 1, 4, 4), torch.rand(10, 1, 4, 4)
    copied = copy_check(train[:10] + 0.001, Identity(), train, test)     # near-copies of training images
    assert copied["threshold"] == 0 and copied["index"].tolist() == list(range(10))
    assert copied["share"] == {"samples": 0.0, "new": 0.0}              # nothing is closer than distance 0
    fresh = copy_check(torch.rand(10, 1, 4, 4), Identity(), train, test)
    assert fresh["samples"].min() > 0 and set(fresh) >= {"copies", "new", "samples", "index", "threshold", "share"}
    assert len(copy_check_figure({"a": copied, "b": fresh}).axes) == 2
    with pytest.raises(ValueError, match="one shape"):
        copy_check(torch.rand(3, 1, 5, 5), Identity(), train, test)
    plt.close("all")


def test_cli_latent_dim_defaults_per_model(tmp_path):
    from aebook.diffusion import LATENT_DIM

    common = ["--dataset", "digits", "--limit", "32", "--epochs", "1", "--prior-epochs", "1", "--quiet"]
    assert main(["train", "--model", "latent-diffusion", *common, "--out", str(tmp_path / "ld")]) == 0
    assert main(["train", "--model", "vae", "--dataset", "digits", "--limit", "32", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "vae")]) == 0
    ld = json.loads((tmp_path / "ld" / "config.json").read_text())["model"]
    vae = json.loads((tmp_path / "vae" / "config.json").read_text())["model"]
    assert ld["autoencoder"]["latent_dim"] == ld["prior"]["dim"] == LATENT_DIM == 32   # sized for reconstruction
    assert vae["latent_dim"] == 16                                                        # every other model: 16
