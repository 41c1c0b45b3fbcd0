"""Tests for aebook.perf: FLOP counts, peak FLOP/s, the two training loops, the sweeps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from aebook.models import build_model
from aebook.perf import (LOOP_LR, DecoderSweepAutoencoder, compare_layouts, compare_loops, decoder_sweep,
                         forward_flops, inference_images_per_second, latent_sweep, objective_name, peak_flops,
                         aebook_loop, textbook_loop, training_flops_per_image, write_mnist_layout)
from aebook.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]


def test_forward_flops_of_a_linear_layer_is_2_n_in_out() -> None:
    layer = nn.Linear(10, 7, bias=False)
    assert forward_flops(layer, torch.zeros(3, 10)) == 2 * 3 * 10 * 7
    assert training_flops_per_image(layer, (10,)) == 3 * 2 * 10 * 7


def test_forward_flops_of_a_convolution() -> None:
    conv = nn.Conv2d(2, 4, 3, padding=1, bias=False)
    assert forward_flops(conv, torch.zeros(1, 2, 5, 5)) == 2 * 25 * 4 * 2 * 9
    assert conv.training  # the training flag is restored


def test_flops_grow_with_model_width() -> None:
    small = forward_flops(build_model("conv", (1, 28, 28), 16, width=8), torch.zeros(1, 1, 28, 28))
    big = forward_flops(build_model("conv", (1, 28, 28), 16, width=16), torch.zeros(1, 1, 28, 28))
    assert 3 * small < big < 5 * small  # conv FLOPs are quadratic in the width


def test_peak_flops_is_positive_and_checks_arguments() -> None:
    assert peak_flops("cpu", size=64, repeats=2) > 1e6
    with pytest.raises(ValueError, match="size"):
        peak_flops("cpu", size=0)


def test_inference_images_per_second() -> None:
    model = build_model("mlp", (1, 8, 8), 4, hidden=(16,))
    model.train()
    assert inference_images_per_second(model, torch.rand(32, 1, 8, 8), repeats=2) > 0
    assert model.training
    with pytest.raises(ValueError):
        inference_images_per_second(model, torch.rand(2, 1, 8, 8), repeats=0)


def test_write_mnist_layout_is_read_by_torchvision(tmp_path: Path) -> None:
    from torchvision import datasets

    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    write_mnist_layout(images, tmp_path)
    ds = datasets.MNIST(str(tmp_path), train=True, download=False)
    assert len(ds) == 20 and np.array_equal(np.asarray(ds[3][0]), images[3])
    with pytest.raises(ValueError, match="uint8"):
        write_mnist_layout(images.astype(np.float32), tmp_path)


def test_compare_loops_reports_both_loops() -> None:
    torch.set_num_threads(1)
    r = compare_loops(n=64, epochs=1, width=4)
    for key in ("baseline_img_s", "aebook_img_s", "baseline_eval_loss", "aebook_eval_loss", "peak_gflop_s"):
        assert r[key] > 0
    assert r["speedup"] == pytest.approx(r["aebook_img_s"] / r["baseline_img_s"])
    assert 0 < r["aebook_fraction_of_peak"] < 10
    assert (r["aebook_batch_size"], r["aebook_lr"], r["compile"], r["cuda_graph"]) == (64, LOOP_LR, False, False)
    assert r["baseline_lr"] == LOOP_LR and r["loss"] == "bce"  # the conv autoencoder's own loss, in both loops
    assert r["peak_dtype"] == "float32"  # on a CPU; bfloat16 on CUDA, as aebook's loop computes there
    with pytest.raises(ValueError, match="epochs"):
        compare_loops(n=8, epochs=0)


def test_textbook_loop_trains_the_models_own_loss_from_fits_start(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    write_mnist_layout(images, tmp_path)
    torch.manual_seed(0)
    model = build_model("conv", (1, 28, 28), 4, width=4)
    torch.manual_seed(0)
    started_by_fit = build_model("conv", (1, 28, 28), 4, width=4)
    fit(started_by_fit, torch.from_numpy(images).float().div(255).unsqueeze(1),
        TrainConfig(epochs=0, progress=False, device="cpu"))
    textbook_loop(model, tmp_path, epochs=0, batch_size=16, device=torch.device("cpu"))
    theirs = started_by_fit.state_dict()
    assert bool(model.data_initialised)  # the same start as fit: output bias at the data's mean
    assert all(torch.equal(v, theirs[k]) for k, v in model.state_dict().items())

    seen = []
    own_loss = model.loss
    model.loss = lambda x, t=None: (seen.append(len(x)), own_loss(x, t))[1]  # type: ignore[method-assign]
    result = textbook_loop(model, tmp_path, epochs=1, batch_size=16, device=torch.device("cpu"))
    assert sum(seen) == result.images == 40  # every batch trained on model.loss
    assert objective_name(model) == "bce" and objective_name(nn.Linear(2, 2)) == "mse"


def test_aebook_loops_seed_is_fits_batch_order() -> None:
    """compare_loops(seed=s) gives fit that seed: a new seed is a new batch order, not always seed 0's."""
    data = torch.rand(48, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    weights = {}
    for seed in (0, 1):
        torch.manual_seed(0)
        model = build_model("conv", (1, 28, 28), 4, width=4)
        aebook_loop(model, data, epochs=1, batch_size=16, device=torch.device("cpu"), channels_last=False, seed=seed)
        weights[seed] = model.state_dict()
    torch.manual_seed(0)
    by_fit = build_model("conv", (1, 28, 28), 4, width=4)
    fit(by_fit, data, TrainConfig(epochs=1, batch_size=16, lr=LOOP_LR, schedule="constant", progress=False,
                                  device="cpu", seed=1))
    assert all(torch.equal(v, weights[1][k]) for k, v in by_fit.state_dict().items())
    assert not all(torch.equal(v, weights[0][k]) for k, v in by_fit.state_dict().items())


def test_compare_loops_gives_aebooks_loop_its_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    import aebook.perf as perf

    seen = []
    real = perf.aebook_loop
    monkeypatch.setattr(perf, "aebook_loop", lambda *a, **k: (seen.append(k.get("seed")), real(*a, **k))[1])
    compare_loops(n=16, epochs=1, width=4, batch_size=8, aebook_batch_size=8, seed=3)
    assert seen == [3]


def test_throughput_script_prints_json_last() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--n", "64", "--epochs", "1",
                          "--width", "4", "--threads", "1", "--json"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["aebook_img_s"] > 0 and result["baseline_img_s"] > 0
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--device", "nonsense"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "error" in bad.stderr
    both = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--n", "64", "--compile",
                           "--cuda-graph"], capture_output=True, text=True)
    assert both.returncode == 2 and "choose compile or cuda_graph, not both" in both.stderr


def test_decoder_sweep_model_changes_only_the_decoder() -> None:
    a = DecoderSweepAutoencoder((1, 8, 8), 4, depth=1, width=16)
    b = DecoderSweepAutoencoder((1, 8, 8), 4, depth=3, width=16)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(a.encoder) == count(b.encoder) and count(a.decoder) < count(b.decoder)
    assert a(torch.rand(2, 1, 8, 8)).shape == (2, 1, 8, 8)
    assert DecoderSweepAutoencoder((1, 8, 8), 4, depth=0)(torch.rand(1, 1, 8, 8)).shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="depth"):
        DecoderSweepAutoencoder((1, 8, 8), 4, depth=-1)


def test_sweeps_return_one_row_per_setting() -> None:
    torch.manual_seed(0)
    train, test = torch.rand(64, 1, 8, 8), torch.rand(16, 1, 8, 8)
    rows = latent_sweep((2, 4), train, test, epochs=1, hidden=(16,))
    assert [r["latent_dim"] for r in rows] == [2, 4]
    assert rows[0]["params"] < rows[1]["params"] and all(r["psnr"] > 0 for r in rows)
    rows = decoder_sweep((1, 2), (8, 16), train, test, latent_dim=4, epochs=1)
    assert [(r["depth"], r["width"]) for r in rows] == [(1, 8), (1, 16), (2, 8), (2, 16)]
    assert rows[0]["decoder_params"] < rows[1]["decoder_params"] < rows[3]["decoder_params"]


def test_compare_layouts_times_both_and_checks_they_agree() -> None:
    from aebook.restoration.nets import ResidualCNN

    torch.manual_seed(0)
    model = ResidualCNN(1, 1, depth=3, width=8)
    nn.init.normal_(model.body[-1].weight, std=0.1)
    r = compare_layouts(model, torch.rand(1, 1, 80, 90), torch.full((1, 1, 80, 90), 0.1), tile=64, repeats=1)
    assert r["seconds_default"] > 0 and r["seconds_channels_last"] > 0
    assert r["speedup"] == pytest.approx(r["seconds_default"] / r["seconds_channels_last"])
    assert 0 <= r["max_abs_diff"] < 1e-5
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        compare_layouts(model, torch.rand(1, 1, 8, 8), repeats=0)


def test_inference_script_prints_json_last() -> None:
    script = str(ROOT / "benchmarks" / "inference.py")
    out = subprocess.run([sys.executable, script, "denoise", "--size", "64", "--repeats", "1",
                          "--threads", "1", "--json"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert list(result["models"]) == ["denoise"] and result["models"]["denoise"]["speedup"] > 0
    assert result["models"]["denoise"]["max_abs_diff"] < 1e-5
    bad = subprocess.run([sys.executable, script, "sharpen"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a shipped restorer: sharpen" in bad.stderr
