"""The CLI contract: train, evaluate, JSON on the last line, exit code 2 on bad input."""

import json
import subprocess
import sys

import pytest

from aebook.cli import main


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "aebook", *args], capture_output=True, text=True, cwd=cwd)


def test_train_then_evaluate(tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", "--dataset", "digits", "--model", "mlp", "--latent-dim", "8", "--epochs", "2",
                "--limit", "300", "--quiet", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.json", "model.safetensors"]
    assert len(json.loads((out / "history.json").read_text())["train_loss"]) == 2
    r = run_cli("evaluate", str(out), "--baseline", "pca", "--limit", "300")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["n"] == 300 and {"psnr", "ssim", "pca_psnr", "pca_ssim"} <= set(result)
    assert 5 < result["psnr"] < 60 and 0 < result["ssim"] <= 1


def test_help_states_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal's width
    assert "(default: conv)" in text and "(default: 16)" in text


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["train", "--model", "gan"], "unknown model 'gan'"),
    (["train", "--dataset", "mnist", "--data-dir", "{tmp}/none"], "does not exist"),
    (["train", "--dataset", "cifar10", "--data-dir", "{tmp}"], "cifar10 not found"),
    (["train", "--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = main([*args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_evaluate_bad_run_dir(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("[]")
    assert main(["evaluate", str(tmp_path / "run")]) == 2
    assert "not a valid aebook config" in capsys.readouterr().err


def test_console_script_exit_code(tmp_path):
    r = subprocess.run(["aebook", "evaluate", str(tmp_path / "nope")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("aebook: error:")


def test_evaluate_on_images_of_another_shape(tmp_path, capsys):
    from aebook.checkpoint import save_run
    from aebook.models import build_model

    run = save_run(tmp_path / "run", build_model("mlp", (1, 8, 8), 4), train_config={"dataset": "digits"})
    assert main(["evaluate", str(run), "--dataset", "photos", "--limit", "4"]) == 2
    err = capsys.readouterr().err
    assert "expects images of shape (N, 1, 8, 8), got (1, 1, 32, 32)" in err


@pytest.fixture(scope="module")
def tiny_codec_run(tmp_path_factory):
    import torch

    from aebook.codecs.coding import save_codec
    from aebook.codecs.conv import ConvCodec

    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("codec") / "run"
    save_codec(run, ConvCodec(channels=1, latent_channels=4, widths=(8, 8, 8)))
    return run


def test_compress_decompress_round_trip(tmp_path, capsys, tiny_codec_run):
    import numpy as np

    from aebook.codecs.bitstream import read_aeb
    from aebook.data import load_photo
    from aebook.imageio import read_image, write_image

    src = write_image(tmp_path / "in.png", load_photo("camera", gray=True)[:45, :61])
    assert main(["compress", str(src), str(tmp_path / "x.aeb"), "--quality", "8", "--model", str(tiny_codec_run)]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["bpp"] > 0 and read_aeb(tmp_path / "x.aeb").quality == 8
    assert main(["decompress", str(tmp_path / "x.aeb"), str(tmp_path / "out.png"), "--model", str(tiny_codec_run)]) == 0
    out = read_image(tmp_path / "out.png")
    assert out.shape == (45, 61) and np.isfinite(out).all()


def test_codec_bad_input_writes_nothing(tmp_path, capsys, tiny_codec_run):
    from aebook.data import load_photo
    from aebook.imageio import write_image

    model = ["--model", str(tiny_codec_run)]
    out = tmp_path / "out.aeb"
    assert main(["compress", str(tmp_path / "missing.png"), str(out), *model]) == 2
    assert "does not exist" in capsys.readouterr().err
    colour = write_image(tmp_path / "c.png", load_photo("astronaut")[:16, :16])
    assert main(["compress", str(colour), str(out), *model]) == 2
    assert "is colour but the codec" in capsys.readouterr().err
    gray = write_image(tmp_path / "g.png", load_photo("camera", gray=True)[:16, :16])
    assert main(["compress", str(gray), str(out), "--quality", "9", *model]) == 2
    assert "quality" in capsys.readouterr().err
    assert not out.exists()
    assert main(["compress", str(gray), str(out), *model]) == 0
    data = bytearray(out.read_bytes())
    png = tmp_path / "d.png"
    for name, bad in [("truncated", data[:-5]), ("CRC", data[:-1] + bytes([data[-1] ^ 1])),
                      ("not an .aeb", b"JUNK" + data[4:]), ("version", data[:4] + b"\x09" + data[5:])]:
        (tmp_path / "bad.aeb").write_bytes(bytes(bad))
        assert main(["decompress", str(tmp_path / "bad.aeb"), str(png), *model]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("aebook: error:") and err.count("\n") == 1, name
        assert not png.exists()
    (tmp_path / "notimage.png").write_bytes(b"hello")
    assert main(["compress", str(tmp_path / "notimage.png"), str(tmp_path / "other.aeb"), *model]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert not (tmp_path / "other.aeb").exists()


def test_restore_commands_end_to_end(tmp_path, capsys):
    import numpy as np

    from aebook.data import load_photo
    from aebook.imageio import read_image, write_image

    run = tmp_path / "sr"
    assert main(["train-restorer", "upscale2", "--epochs", "1", "--n-patches", "32", "--patch-size", "24",
                 "--depth", "3", "--width", "8", "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    rgb = write_image(tmp_path / "rgb.png", load_photo("astronaut")[:30, :41])
    assert main(["upscale", str(rgb), str(tmp_path / "up.png"), "--scale", "2", "--model", str(run)]) == 0
    assert read_image(tmp_path / "up.png").shape == (60, 82, 3)
    assert json.loads(capsys.readouterr().out)["kernel"] is None  # this network takes no kernel map
    # a kernel-conditioned network is told the kernel, and the command says which it was told
    import torch

    from aebook.restoration.nets import add_condition_channels, load_restorer, save_restorer

    conditioned = add_condition_channels(load_restorer(run)[0], 1)
    with torch.no_grad():
        conditioned.body[0].weight[:, 1:] = 0.5
    save_restorer(tmp_path / "sr_k", conditioned, "upscale2")
    outs = {}
    for kernel in ("area", "bicubic"):
        assert main(["upscale", str(rgb), str(tmp_path / f"{kernel}.png"), "--scale", "2", "--kernel", kernel,
                     "--model", str(tmp_path / "sr_k")]) == 0
        assert json.loads(capsys.readouterr().out)["kernel"] == kernel
        outs[kernel] = read_image(tmp_path / f"{kernel}.png")
    assert not np.array_equal(outs["area"], outs["bicubic"])
    # a model for another task, another scale, or a missing pretrained name: one line, exit 2, no output
    for args, message in [(["upscale", str(rgb), str(tmp_path / "o.png"), "--scale", "4", "--model", str(run)],
                           "is a restorer for 'upscale2', not"),
                          (["denoise", str(rgb), str(tmp_path / "o.png"), "--model", "nope"], "unknown model 'nope'"),
                          (["denoise", str(tmp_path / "missing.png"), str(tmp_path / "o.png")], "does not exist")]:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        assert not (tmp_path / "o.png").exists()
    mask = write_image(tmp_path / "mask.png", np.zeros((10, 10), np.float32))
    assert main(["inpaint", str(rgb), str(mask), str(tmp_path / "o.png"), "--model", str(run)]) == 2
    assert "mask" in capsys.readouterr().err and not (tmp_path / "o.png").exists()


def test_image_tensor_round_trip():
    import numpy as np
    import pytest

    from aebook.imageio import image_to_tensor, tensor_to_image

    gray = np.random.default_rng(0).random((5, 7), dtype=np.float32)
    colour = np.random.default_rng(1).random((5, 7, 3), dtype=np.float32)
    assert image_to_tensor(gray).shape == (1, 1, 5, 7) and image_to_tensor(colour).shape == (1, 3, 5, 7)
    assert np.array_equal(tensor_to_image(image_to_tensor(gray)), gray)
    assert np.array_equal(tensor_to_image(image_to_tensor(colour)), colour)
    assert image_to_tensor((gray * 255).astype(np.uint8)).max() <= 1.0
    assert image_to_tensor(gray + 1).max() == 1.0 and image_to_tensor(gray + 1, clip=False).min() >= 1.0
    with pytest.raises(ValueError, match=r"expected an \(H, W\) image, got shape \(5, 7, 3\)"):
        image_to_tensor(colour, channels=1)
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) image"):
        image_to_tensor(gray, channels=3)
    with pytest.raises(ValueError, match="got shape \\(0, 7\\)"):
        image_to_tensor(np.zeros((0, 7)))
    with pytest.raises(ValueError, match="must be numeric"):
        image_to_tensor(np.array([["a"]]))
    with pytest.raises(ValueError, match="NaN"):
        image_to_tensor(np.full((2, 2), np.nan))


def test_one_image_check_for_files_tensors_and_jpeg(tmp_path):
    import numpy as np
    import pytest

    from aebook.baselines import jpeg_roundtrip
    from aebook.imageio import to_uint8, write_image

    ramp = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    assert to_uint8(ramp).dtype == np.uint8 and to_uint8(ramp)[-1, -1] == 255 and to_uint8(ramp)[0, 0] == 0
    assert np.array_equal(to_uint8(ramp[:, :, None]), to_uint8(ramp))  # (H, W, 1) is grayscale
    assert np.array_equal(to_uint8(to_uint8(ramp)), to_uint8(ramp))  # uint8 passes through unchanged
    assert to_uint8(ramp * 3 - 1).min() == 0 and to_uint8(ramp * 3 - 1).max() == 255  # clipped
    # The same bad inputs get the same message everywhere, and no file is written.
    for bad, message in [(np.zeros((4, 4, 4)), "got shape"), (np.full((4, 4), np.nan), "NaN"),
                         (np.zeros((0, 4)), "got shape")]:
        with pytest.raises(ValueError, match=message):
            write_image(tmp_path / "bad.png", bad)
        with pytest.raises(ValueError, match=message):
            jpeg_roundtrip(bad)
    assert not list(tmp_path.iterdir())


def test_files_are_read_as_a_viewer_shows_them(tmp_path):
    """16-bit grayscale keeps its scale (Pillow's own 8-bit conversion would clip it to white),
    alpha is dropped without turning grayscale into colour, and EXIF orientation is applied."""
    import numpy as np
    import pytest
    from PIL import Image

    from aebook.imageio import read_image, read_image_bits, write_image

    ramp = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    img, bits = read_image_bits(tmp_path / "g16.png")
    assert bits == 16 and img.dtype == np.float32
    assert np.abs(img - ramp / 65535).max() < 1e-6 and (img == 1).mean() < 0.01
    # written back at 16 bits, it round-trips exactly; at 8 bits it is the same image rounded
    write_image(tmp_path / "back16.png", img, bits=16)
    assert Image.open(tmp_path / "back16.png").mode.startswith("I") and np.array_equal(
        np.asarray(Image.open(tmp_path / "back16.png")), ramp)
    write_image(tmp_path / "back8.png", img)
    assert read_image_bits(tmp_path / "back8.png")[1] == 8
    assert np.abs(read_image(tmp_path / "back8.png") - img).max() <= 0.5 / 255 + 1e-6
    for bad, message in [(tmp_path / "x.jpg", "16-bit output needs"), (tmp_path / "x.png", "16-bit output needs")]:
        with pytest.raises(ValueError, match=message):
            write_image(bad, np.zeros((4, 4, 3)) if bad.suffix == ".png" else img, bits=16)
    with pytest.raises(ValueError, match="bits must be 8 or 16"):
        write_image(tmp_path / "x.png", img, bits=12)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.jpg").exists()

    gray = (ramp >> 8).astype(np.uint8)
    Image.fromarray(np.stack([gray, np.full_like(gray, 128)], axis=2), mode="LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").shape == (48, 64)
    rgba = np.dstack([gray, gray // 2, gray // 3, np.full_like(gray, 255)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png").shape == (48, 64, 3)
    Image.fromarray(gray).convert("P").save(tmp_path / "p_gray.png")  # a palette of grays is grayscale
    assert read_image(tmp_path / "p_gray.png").shape == (48, 64)
    Image.fromarray(rgba[:, :, :3]).convert("P").save(tmp_path / "p_colour.png")
    assert read_image(tmp_path / "p_colour.png").shape == (48, 64, 3)

    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned 90 degrees clockwise
    Image.fromarray(gray).save(tmp_path / "turned.jpg", exif=exif)
    assert read_image(tmp_path / "turned.jpg").shape == (64, 48)
    Image.fromarray(gray).save(tmp_path / "plain.jpg")
    assert read_image(tmp_path / "plain.jpg").shape == (48, 64)


def test_denoise_keeps_a_16_bit_input_at_16_bits(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from aebook.data import load_photo
    from aebook.imageio import read_image_bits

    clean = load_photo("camera", gray=True)[200:264, 200:280].astype(np.float64)
    noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape)
    Image.fromarray(np.clip(np.round(noisy * 65535), 0, 65535).astype(np.uint16)).save(tmp_path / "n16.png")
    assert main(["denoise", str(tmp_path / "n16.png"), str(tmp_path / "d16.png"), "--sigma", "25"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["bits"] == 16
    out, bits = read_image_bits(tmp_path / "d16.png")
    assert bits == 16 and out.shape == clean.shape
    mse = lambda a: float(np.mean((a - clean) ** 2))
    assert mse(out) < mse(np.clip(noisy, 0, 1)) / 3  # denoised on the right scale, not clipped to white
    assert main(["denoise", str(tmp_path / "n16.png"), str(tmp_path / "d8.jpg"), "--sigma", "25"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["bits"] == 8  # JPEG holds 8 bits


def test_the_program_keeps_freed_memory_and_the_library_does_not():
    import platform

    # In a separate process: mallopt changes the whole process.
    applied = subprocess.run([sys.executable, "-c", "from aebook.runtime import keep_freed_memory as k; "
                              "print(k(), k())"], capture_output=True, text=True, check=True).stdout.split()
    assert applied == (["True", "True"] if platform.libc_ver()[0] == "glibc" else ["False", "False"])
    script = ("import sys, aebook.runtime as rt\n"
              "calls = []\n"
              "rt.keep_freed_memory = lambda: calls.append(1) or True\n"
              "from aebook.cli import main\n"
              "sys.argv = ['aebook', 'evaluate', '/nonexistent/run']\n"
              "main(sys.argv[1:]); print(len(calls))\n"
              "main(); print(len(calls))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.stdout.split()[-2:] == ["0", "1"], out.stderr  # only as a program (argv None)


@pytest.mark.parametrize("true_sigma", [10, 25, 45])
def test_blind_denoising_estimates_the_noise_level(tmp_path, capsys, true_sigma):
    import numpy as np
    from PIL import Image

    from aebook.data import load_photo
    from aebook.imageio import read_image

    clean = load_photo("astronaut", gray=True)[100:228, 150:278].astype(np.float64)
    noisy = np.clip(clean + np.random.default_rng(1).normal(0, true_sigma / 255, clean.shape), 0, 1)
    Image.fromarray(np.round(noisy * 255).astype(np.uint8)).save(tmp_path / "n.png")
    assert main(["denoise", str(tmp_path / "n.png"), str(tmp_path / "auto.png"), "--sigma", "auto"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["sigma_estimated"] and abs(report["sigma"] - true_sigma) < 0.15 * true_sigma
    assert main(["denoise", str(tmp_path / "n.png"), str(tmp_path / "known.png"), "--sigma", str(true_sigma)]) == 0
    assert not json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sigma_estimated"]
    mse = lambda path: float(np.mean((read_image(path) - clean) ** 2))
    assert mse(tmp_path / "auto.png") < 1.1 * mse(tmp_path / "known.png")  # about as good as knowing sigma


def test_sigma_must_be_a_number_or_auto(tmp_path, capsys):
    from aebook.data import load_photo
    from aebook.imageio import write_image

    write_image(tmp_path / "n.png", load_photo("camera", gray=True)[:64, :64])
    with pytest.raises(SystemExit) as exc:
        main(["denoise", str(tmp_path / "n.png"), str(tmp_path / "o.png"), "--sigma", "loud"])
    assert exc.value.code == 2 and "expected a number or 'auto'" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
