import numpy as np
import pytest

from aebook.book.tables import goals_table, verdict
from aebook.restoration.evaluate import (DAMAGE_KINDS, DAMAGED, Damaged, center_crop, evaluate_methods, load_held_out,
                                         make_damage)
from aebook.runtime import time_call


def _images():
    rng = np.random.default_rng(0)
    return {"a": rng.random((16, 16), dtype=np.float32), "b": rng.random((16, 20), dtype=np.float32)}


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_damage_is_reproducible_and_shaped(kind):
    img = _images()["b"]
    f = make_damage(kind, fraction=0.25, block=4, sigma=25, scale=2)
    d1, d2, d3 = f(img, 0), f(img, 0), f(img, 1)
    assert np.array_equal(d1.damaged, d2.damaged)
    assert not np.array_equal(d1.damaged, d3.damaged) or kind == "downsample"
    if kind == "downsample":
        assert d1.damaged.shape == (8, 10) and d1.scale == 2 and d1.clean.shape == (16, 20)
    else:
        assert d1.damaged.shape == img.shape and not np.array_equal(d1.damaged, img)
    if kind in ("blocks", "scratches", "pixels", "blind"):
        assert d1.mask.shape == img.shape and d1.mask.any()
        assert np.array_equal(d1.damaged[~d1.mask], img[~d1.mask])  # only the holes are touched
    if kind == "blocks":
        assert np.all(d1.damaged[d1.mask] == 0)
    if kind == "blind":
        assert np.all(d1.damaged[d1.mask] != 0)  # holes hold random values, not a tell-tale constant
    if kind == "noise":
        assert d1.sigma == 25 and abs(np.std(d1.damaged - img) * 255 - 25) < 5


def test_evaluate_methods_scores_times_and_means():
    images = _images()
    methods = {"identity": lambda d: d.damaged, "oracle": lambda d: d.clean}
    ev = evaluate_methods(images, make_damage("noise", sigma=25), methods)
    assert len(ev.rows) == 2 * 3 and ev.methods == [DAMAGED, "identity", "oracle"]
    means = ev.means()
    assert means["identity"]["psnr"] == pytest.approx(means[DAMAGED]["psnr"])
    assert means["oracle"]["psnr"] == 100.0 and means["oracle"]["ssim"] == pytest.approx(1.0)
    assert means["identity"]["psnr"] < 25 and all(r["seconds"] >= 0 for r in ev.rows)
    assert set(ev.per_image()["oracle"]) == {"a", "b"}
    table = ev.table(reference="identity")
    assert "gain over identity" in table and "| oracle |" in table and "2 held-out images (a, b)" in table
    fig = ev.figure("a", ["identity", "oracle"])
    assert len(fig.axes) == 4
    # the same seed gives the same damage on a second run
    ev2 = evaluate_methods(images, make_damage("noise", sigma=25), methods)
    assert np.array_equal(ev.damages["b"].damaged, ev2.damages["b"].damaged)


def test_super_resolution_shapes_and_figure():
    images = {"a": _images()["a"]}
    ev = evaluate_methods(images, make_damage("downsample", scale=2),
                          {"nearest": lambda d: np.repeat(np.repeat(d.damaged, 2, 0), 2, 1)})
    assert ev.methods == ["nearest"]  # the low-res input has another shape: not scored
    assert len(ev.figure("a", ["nearest"]).axes) == 3


def test_helpers():
    img = np.arange(36, dtype=np.float32).reshape(6, 6)
    assert center_crop(img, 2).tolist() == [[14, 15], [20, 21]]
    assert center_crop(img, None) is img
    crops = load_held_out(gray=True, crop=32, names=("camera",))
    assert list(crops) == ["camera"] and crops["camera"].shape == (32, 32)
    assert time_call(lambda: None, repeats=2) >= 0
    assert verdict("AE", 30.0, "BM3D", 29.0) == "AE beats BM3D by 1.00 dB"
    assert verdict("AE", 28.5, "BM3D", 29.0) == "AE trails BM3D by 0.50 dB"
    assert verdict("AE", 29.0, "BM3D", 29.05, tie=0.1).startswith("AE matches BM3D")
    table, met = goals_table([("gain over bicubic", 0.4, 1.0), ("gain over TV", 0.5, 0.0)])
    assert met == [False, True] and "| no |" in table and "| yes |" in table
    table, met = goals_table([("SSIM gain", 0.0123, 0.0, ""), ("PSNR gain", 0.5, 0.2)])
    assert met == [True, True] and "| +0.012 | +0.000 |" in table and "| +0.50 dB | +0.20 dB |" in table


def test_bad_input():
    with pytest.raises(ValueError, match="unknown damage kind 'fog'"):
        make_damage("fog")
    with pytest.raises(ValueError, match="at least one image"):
        evaluate_methods({}, make_damage("noise"), {"x": lambda d: d.damaged})
    with pytest.raises(ValueError, match="at least one method"):
        evaluate_methods(_images(), make_damage("noise"), {})
    with pytest.raises(ValueError, match="returned shape"):
        evaluate_methods(_images(), make_damage("noise"), {"bad": lambda d: d.damaged[:4]})
    with pytest.raises(ValueError, match="crop size"):
        center_crop(np.zeros((4, 4)), 5)
    with pytest.raises(ValueError, match="repeats"):
        time_call(lambda: None, repeats=0)
    ev = evaluate_methods(_images(), make_damage("noise"), {"x": lambda d: d.damaged})
    with pytest.raises(ValueError, match="unknown reference method"):
        ev.table(reference="nope")
    assert isinstance(ev.damages["a"], Damaged)


def test_denoise_eval_script_compares_models_with_bm3d(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = str(Path(__file__).resolve().parents[1] / "benchmarks" / "denoise_eval.py")
    out = subprocess.run([sys.executable, script, "denoise", "--crop", "48", "--sigmas", "25", "50", "--bm3d",
                          "--threads", "1", "--json"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["psnr"]) == {"denoise", "BM3D"} and set(result["psnr"]["denoise"]) == {"25", "50"}
    assert result["psnr"]["denoise"]["25"] > result["psnr"]["denoise"]["50"]  # more noise, lower PSNR
    gain = result["gain_over_bm3d"]["denoise"]["25"]
    assert gain == pytest.approx(result["psnr"]["denoise"]["25"] - result["psnr"]["BM3D"]["25"], abs=1e-3)
    for bad, message in ((["upscale2"], "is a restorer for 'upscale2', not for 'denoise'"), ([str(tmp_path)], "config.json is missing")):
        run = subprocess.run([sys.executable, script, *bad], capture_output=True, text=True)
        assert run.returncode == 2 and message in run.stderr and run.stdout == ""


def test_local_contrast_is_zero_on_flat_and_high_on_texture():
    from aebook.restoration.evaluate import local_contrast

    flat = np.full((20, 20), 0.4)
    checks = (np.indices((20, 20)).sum(axis=0) % 2).astype(float)
    assert np.allclose(local_contrast(flat), 0, atol=1e-7)
    assert local_contrast(checks)[5:15, 5:15].min() > 0.45  # a +-0.5 checkerboard: std about 0.5
    assert local_contrast(np.dstack([checks] * 3)).shape == (20, 20)
    with pytest.raises(ValueError, match="window"):
        local_contrast(flat, window=1)


def test_gain_by_contrast_finds_where_a_method_wins():
    from aebook.restoration.evaluate import gain_by_contrast

    rng = np.random.default_rng(0)
    clean = np.full((32, 32), 0.5)
    clean[:, 16:] = rng.random((32, 16))  # left half flat, right half busy
    noise = rng.normal(0, 1, clean.shape)
    # "flat-first" is exact on the flat half and poor on the busy half; "even" errs alike everywhere
    flat_first = clean + np.where(np.arange(32) < 12, 0.0, 0.1) * noise
    methods = {"flat-first": lambda d: flat_first, "even": lambda d: clean + 0.05 * noise}
    ev = evaluate_methods({"x": clean}, lambda img, seed: Damaged(img, img + 0.1), methods)
    gains = gain_by_contrast(ev, "flat-first", "even", bins=2)["x"]
    assert gains[0] > 0 > gains[1]  # wins on the flattest half, loses on the busiest
    assert np.allclose(gain_by_contrast(ev, "even", "flat-first", bins=2)["x"], [-g for g in gains])
    assert len(gain_by_contrast(ev, "flat-first", "even", bins=4)["x"]) == 4
    with pytest.raises(ValueError, match="unknown method 'bm3d'"):
        gain_by_contrast(ev, "flat-first", "bm3d")
    with pytest.raises(ValueError, match="bins"):
        gain_by_contrast(ev, "flat-first", "even", bins=0)


def test_figure_box_shows_and_scores_a_square():
    ev = evaluate_methods(_images(), make_damage("noise", sigma=25), {"identity": lambda d: d.damaged})
    fig = ev.figure("b", ["identity"], box=(2, 4, 8))
    assert len(fig.axes) == 3 and fig.axes[0].images[0].get_array().shape[:2] == (8, 8)
    with pytest.raises(ValueError, match="does not fit"):
        ev.figure("b", ["identity"], box=(10, 0, 8))


def test_cpu_times_side_by_side_and_threads_restored():
    import torch

    from aebook.runtime import cpu_times

    threads = torch.get_num_threads()
    busy = lambda n: sum(i * i for i in range(n))  # noqa: E731
    t = cpu_times({"small": lambda: busy(20_000), "large": lambda: busy(400_000)}, repeats=3)
    assert set(t) == {"small", "large"} and 0 <= t["small"] < t["large"]
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="repeats"):
        cpu_times({"x": lambda: None}, repeats=0)


def test_receptive_field_and_description_of_both_architectures():
    from aebook.restoration.nets import EncoderDecoder, ResidualCNN, describe_restorer, receptive_field

    cnn = ResidualCNN(1, 1, depth=5, width=4)
    assert receptive_field(cnn, size=64) == 11  # five 3x3 convolutions: 2 * 5 + 1
    ed = EncoderDecoder(1, 1, widths=(2, 4, 8), blocks=(1, 1, 1))
    assert receptive_field(ed, size=64) > 2 * receptive_field(cnn, size=64)  # the coarse scale sees far
    assert "17 convolutions of 64 channels" in describe_restorer(ResidualCNN(1, 1).config)
    assert "no downsampling" in describe_restorer(cnn.config)
    assert "with skips (U-Net)" in describe_restorer(ed.config) and "widths 2-4-8" in describe_restorer(ed.config)
    no_skips = EncoderDecoder(1, 1, widths=(2, 4), blocks=(1, 1), skips=False).config
    assert "without skips" in describe_restorer(no_skips) and "1/2" in describe_restorer(no_skips)
    with pytest.raises(ValueError, match="not a restorer"):
        describe_restorer({"model": "vae"})


def test_eight_bit_damage_is_what_a_png_file_holds():
    img = _images()["a"]
    plain = make_damage("noise", sigma=50)(img, 0)
    saved = make_damage("noise", sigma=50, eight_bit=True)(img, 0)
    assert plain.damaged.min() < 0 and plain.damaged.max() > 1  # the literature's unclipped noise
    assert saved.damaged.min() >= 0 and saved.damaged.max() <= 1
    assert np.array_equal(saved.damaged, np.round(saved.damaged * 255) / 255)
    inside = (plain.damaged > 0) & (plain.damaged < 1)
    assert np.abs(saved.damaged - plain.damaged)[inside].max() <= 0.5 / 255 + 1e-6
    assert np.array_equal(saved.clean, plain.clean) and saved.sigma == 50
    small = make_damage("downsample", scale=2, eight_bit=True)(img, 0)
    assert small.damaged.shape == (8, 8) and np.array_equal(small.damaged, np.round(small.damaged * 255) / 255)


def test_downsample_damage_can_shrink_with_bicubic():
    img = _images()["a"]
    area = make_damage("downsample", scale=2)(img, 0)
    bicubic = make_damage("downsample", scale=2, kernel="bicubic")(img, 0)
    assert bicubic.damaged.shape == area.damaged.shape and np.array_equal(bicubic.clean, area.clean)
    assert not np.allclose(bicubic.damaged, area.damaged)
    assert (area.kernel, bicubic.kernel) == ("area", "bicubic")  # a restorer may be told the kernel
    with pytest.raises(ValueError, match="unknown downscaling kernel 'box'"):
        make_damage("downsample", kernel="box")


def test_restorers_benchmark_scores_each_task_against_its_baseline(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = str(Path(__file__).resolve().parents[1] / "benchmarks" / "restorers.py")
    out = subprocess.run([sys.executable, script, "inpaint=inpaint", "enhance=enhance", "--crop", "64",
                          "--threads", "1", "--json"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["eight_bit"] is False and result["downscale"] == "area" and result["views"] == 2
    assert set(result["psnr"]) == {"inpaint", "enhance"}
    assert set(result["psnr"]["enhance"]) == set(result["ssim"]["enhance"]) == {"enhance", "histogram eq."}
    for task, base in (("inpaint", "biharmonic"), ("enhance", "histogram eq.")):
        assert result["gain"][task][task] == pytest.approx(
            result["psnr"][task][task] - result["psnr"][task][base], abs=1e-3)
    run = subprocess.run([sys.executable, script, "enhance=denoise"], capture_output=True, text=True)
    assert run.returncode == 2 and "is a restorer for 'denoise', not for 'enhance'" in run.stderr


def test_restorers_benchmark_measures_on_unseen_photos_on_request():
    import json
    import subprocess
    import sys
    from pathlib import Path

    from aebook.data import HELD_OUT_PHOTOS, TRAIN_PHOTOS

    script = str(Path(__file__).resolve().parents[1] / "benchmarks" / "restorers.py")
    out = subprocess.run([sys.executable, script, "inpaint=inpaint", "--unseen", "--crop", "64", "--threads", "1",
                          "--json"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["images"] == ["ascent", "aero"]
    assert not set(result["images"]) & set(HELD_OUT_PHOTOS + TRAIN_PHOTOS)  # photos no network trained on
    run = subprocess.run([sys.executable, script, "enhance=enhance", "--unseen"], capture_output=True, text=True)
    assert run.returncode == 2 and "enhance needs colour photos" in run.stderr
    run = subprocess.run([sys.executable, script, "inpaint=inpaint", "--unseen", "--patterns"], capture_output=True,
                         text=True)
    assert run.returncode == 2 and "not allowed with argument" in run.stderr


def test_restorers_benchmark_pattern_images_repeat_pieces_of_the_held_out_photos():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "restorers.py"
    spec = importlib.util.spec_from_file_location("restorers_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from aebook.data import HELD_OUT_PHOTOS

    images = bench.pattern_photos(per_photo=1)
    assert [n.split(" pattern")[0] for n in images] == list(HELD_OUT_PHOTOS)
    for image in images.values():
        assert image.shape == (256, 256) and image.std() > 0.02
        # periodic: some shift of at most 28 pixels brings the image (nearly) back onto itself
        a = image[64:192, 64:192] - image.mean()
        best = max(np.corrcoef(a.ravel(), (image[64 + u : 192 + u, 64 + v : 192 + v] - image.mean()).ravel())[0, 1]
                   for u in range(0, 29) for v in range(-28, 29) if u * u + v * v >= 16)
        assert best > 0.9
    again = bench.pattern_photos(per_photo=1)
    assert all(np.array_equal(again[n], images[n]) for n in images)   # a fixed seed: the same images each run


def test_restorers_benchmark_tells_a_kernel_conditioned_network_the_kernel(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    import torch

    from aebook.restoration.nets import add_condition_channels, build_restorer, save_restorer

    net = add_condition_channels(build_restorer("encoder_decoder", 1, 0, widths=(4, 8), blocks=(1, 1)), 1)
    with torch.no_grad():
        net.head.weight[:, 1:] = 0.5  # the kernel map changes the output
        net.tail.weight.normal_(0, 0.1)
    save_restorer(tmp_path / "sr", net, "upscale2")
    script = str(Path(__file__).resolve().parents[1] / "benchmarks" / "restorers.py")
    results = {}
    for extra in ([], ["--tell", "area"]):
        out = subprocess.run([sys.executable, script, f"upscale2={tmp_path / 'sr'}", "--downscale", "bicubic",
                              "--crop", "64", "--views", "1", "--threads", "1", "--json", *extra],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results[result["told"]] = result["psnr"]["upscale2"][str(tmp_path / "sr")]
    assert set(results) == {"bicubic", "area"} and results["bicubic"] != results["area"]


def test_sr_kernels_benchmark_scores_each_way_of_shrinking(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = str(Path(__file__).resolve().parents[1] / "benchmarks" / "sr_kernels.py")
    out = subprocess.run([sys.executable, script, "upscale2", "--crop", "48", "--threads", "1", "--json"],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result) == 7 and all(set(row) == {"upscale2"} for row in result.values())
    # PIL's antialiased bicubic is the library's own bicubic shrink
    assert result["PIL bicubic"] == result["antialiased bicubic"]
    run = subprocess.run([sys.executable, script, "upscale2:box"], capture_output=True, text=True)
    assert run.returncode == 2 and "the kernel must be one of area, bicubic" in run.stderr
