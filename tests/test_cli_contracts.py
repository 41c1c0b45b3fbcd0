"""The command line's contracts for outputs, parse errors and flags a model would ignore.

- Every command that writes a file refuses an existing output (one line, exit 2, before any
  work, the file untouched) and replaces it only with ``--overwrite``.
- A malformed command line (a bad choice, a missing argument, a word for a number) is one
  ``aebook: error: ...`` line and exit code 2, not argparse's usage block; ``--help`` stays full.
- A flag the chosen model does not use is refused, not silently ignored; ``--latent-dim``
  reaches the VQ-VAE.
- Errors name what the user typed: the flag and file, the input, the output (never the hidden
  temporary file of an atomic write).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from aebook.cli import main
from aebook.imageio import write_image


def never(*args, **kwargs):
    raise AssertionError("this work must not start: the input should have been refused first")


def refused(capsys, args, *fragments: str) -> str:
    """Run the CLI in-process; assert exit 2 and exactly one ``aebook: error:`` line naming ``fragments``."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert out == "" and err.startswith("aebook: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def images(tmp_path) -> dict[str, Path]:
    """16 x 16 inputs: grayscale, colour, an inpainting mask, a 1 x 1 image."""
    rng = np.random.default_rng(0)
    mask = np.zeros((16, 16), np.float32)
    mask[4:8, 4:8] = 1
    return {"gray": write_image(tmp_path / "g.png", rng.random((16, 16), dtype=np.float32)),
            "rgb": write_image(tmp_path / "c.png", rng.random((16, 16, 3), dtype=np.float32)),
            "mask": write_image(tmp_path / "m.png", mask),
            "one": write_image(tmp_path / "one.png", np.zeros((1, 1), np.float32))}


@pytest.fixture(scope="module")
def aeb_file(tmp_path_factory) -> Path:
    """A 16 x 16 grayscale image compressed with the shipped default codec (kltcodec)."""
    root = tmp_path_factory.mktemp("aeb")
    src = write_image(root / "src.png", np.random.default_rng(1).random((16, 16), dtype=np.float32))
    assert main(["compress", str(src), str(root / "x.aeb")]) == 0
    return root / "x.aeb"


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> Path:
    """An (untrained) VAE run folder on 8 x 8 images: enough to sample from."""
    import torch

    from aebook.checkpoint import save_run
    from aebook.models import build_model

    torch.manual_seed(0)
    return save_run(tmp_path_factory.mktemp("vae") / "run", build_model("vae", (1, 8, 8), 2))


# ------------------------------------------------------------------ 1. existing outputs

def _command(name: str, images: dict[str, Path], aeb: Path, run: Path, out: Path) -> list[str]:
    return {"denoise": ["denoise", images["gray"], out, "--sigma", "25"],
            "inpaint": ["inpaint", images["gray"], images["mask"], out],
            "upscale": ["upscale", images["gray"], out, "--scale", "2"],
            "enhance": ["enhance", images["rgb"], out],
            "compress": ["compress", images["gray"], out],
            "decompress": ["decompress", aeb, out],
            "sample": ["sample", run, "--n", "2", "--out", out]}[name]


@pytest.mark.parametrize("name, suffix", [("denoise", ".png"), ("compress", ".aeb"), ("decompress", ".png"),
                                          ("inpaint", ".png"), ("upscale", ".png"), ("enhance", ".png"),
                                          ("sample", ".npy")])
def test_an_existing_output_is_refused_and_replaced_only_with_overwrite(tmp_path, capsys, monkeypatch, images,
                                                                        aeb_file, vae_run, name, suffix):
    out = tmp_path / f"out{suffix}"
    out.write_bytes(b"the user's own file")
    before = digest(out)
    args = [str(a) for a in _command(name, images, aeb_file, vae_run, out)]
    with monkeypatch.context() as patch:  # refused before any model is loaded
        for work in ("aebook.restoration.nets.load_restorer", "aebook.codecs.coding.load_codec",
                     "aebook.generators.load_generator"):
            patch.setattr(work, never)
        refused(capsys, args, f"{out} exists: pass --overwrite to replace it")
    assert digest(out) == before
    assert main([*args, "--overwrite"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["output"] == str(out)
    assert digest(out) != before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file left


def test_the_input_itself_is_refused_even_with_overwrite(tmp_path, capsys, images):
    before = digest(images["gray"])
    refused(capsys, ["denoise", images["gray"], images["gray"], "--overwrite"], "is the input")
    assert digest(images["gray"]) == before


# ------------------------------------------------------------------ 2. parse errors are one line

@pytest.mark.parametrize("args, fragment", [
    (["denoise", "{g}", "{tmp}/o.png", "--views", "3"], "argument --views: invalid choice: 3"),
    (["upscale", "{g}", "{tmp}/o.png", "--scale", "3"], "argument --scale: invalid choice: 3"),
    (["denoise", "{g}"], "the following arguments are required: output"),
    (["train", "--epochs", "abc", "--out", "{tmp}/run"], "argument --epochs: invalid int value: 'abc'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: command"),
])
def test_a_parse_error_is_one_line_and_exit_2(tmp_path, capsys, images, args, fragment):
    args = [a.replace("{g}", str(images["gray"])).replace("{tmp}", str(tmp_path)) for a in args]
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == ""
    assert err.startswith("aebook: error: ") and err.count("\n") == 1 and "usage:" not in err, err
    assert fragment in err, err
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "run").exists()


def test_help_is_still_the_full_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["denoise", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exc.value.code == 0 and out.startswith("usage: aebook denoise")
    assert "--overwrite" in out and "--views {1,2,4,8}" in out
    with pytest.raises(SystemExit):
        main(["upscale", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: upscale2 or upscale4, chosen by --scale)" in out and "(default: None)" not in out


# ------------------------------------------------------------------ 3. flags a model would ignore

@pytest.mark.parametrize("model", ["conv", "linear", "mlp", "vae"])
def test_prior_epochs_is_refused_for_a_model_without_a_second_stage(tmp_path, capsys, monkeypatch, model):
    monkeypatch.setattr("aebook.data.load_dataset", never)
    out = tmp_path / "run"
    refused(capsys, ["train", "--model", model, "--prior-epochs", "3", "--out", out],
            "--prior-epochs", f"--model {model}")
    refused(capsys, ["train", "--model", model, "--prior-epochs", "0", "--out", out], "--prior-epochs")
    assert not out.exists()


def test_latent_dim_reaches_the_vq_vae_and_is_not_ignored(tmp_path, capsys, monkeypatch):
    import aebook.generators as generators

    seen = []

    def record(*args, **kwargs):
        seen.append(kwargs.get("dim"))
        raise ValueError("stop before training")

    monkeypatch.setattr(generators, "train_vq_generator", record)
    common = ["train", "--model", "vqvae", "--dataset", "digits", "--limit", "16", "--epochs", "1", "--quiet",
              "--out", str(tmp_path / "run")]
    refused(capsys, [*common, "--latent-dim", "8"], "stop before training")
    refused(capsys, common, "stop before training")
    assert seen == [8, None]  # given: the codebook vectors' length; not given: the VQ-VAE's own default
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ 4. messages that name what the user typed

def test_compress_refuses_an_output_not_named_aeb(tmp_path, capsys, monkeypatch, images):
    monkeypatch.setattr("aebook.codecs.coding.load_codec", never)
    for name in ("out.png", "out"):
        refused(capsys, ["compress", images["gray"], tmp_path / name], f"{tmp_path / name} does not end in .aeb",
                "out.aeb")
        assert not (tmp_path / name).exists()


def test_sigma_auto_on_a_tiny_image_names_the_flag_and_the_file(tmp_path, capsys, monkeypatch, images):
    monkeypatch.setattr("aebook.restoration.nets.load_restorer", never)
    refused(capsys, ["denoise", images["one"], tmp_path / "z.png", "--sigma", "auto"],
            "--sigma auto", str(images["one"]), "give --sigma a number")
    assert not (tmp_path / "z.png").exists()


def test_evaluate_a_file_says_it_is_a_file(capsys, images):
    refused(capsys, ["evaluate", images["gray"]], f"{images['gray']} is a file, not a run folder")


def test_decompress_with_another_codec_names_the_input(tmp_path, capsys, aeb_file):
    refused(capsys, ["decompress", aeb_file, tmp_path / "d.png", "--model", "codec"],
            f"{aeb_file} was made by codec 'kltcodec-", "--model codec")
    assert not (tmp_path / "d.png").exists()


@pytest.mark.parametrize("command", ["enhance", "compress"])
def test_a_failed_write_names_the_output_not_the_temporary_file(tmp_path, capsys, monkeypatch, images, command):
    out = tmp_path / ("o.aeb" if command == "compress" else "o.png")

    def refuse_rename(src, dst):  # what the operating system reports: both names
        raise PermissionError(13, "Permission denied", str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", refuse_rename)
    err = refused(capsys, [command, images["gray" if command == "compress" else "rgb"], out],
                  f"{out}: Permission denied")
    assert ".tmp" not in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
