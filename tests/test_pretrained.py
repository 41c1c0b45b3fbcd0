"""The shipped weights: every manifest entry loads, hashes match, the CLI uses them by default."""

import json
import shutil

import numpy as np
import pytest

import aebook
from aebook import pretrained as pt
from aebook.checkpoint import WEIGHTS, sha256_file
from aebook.cli import main
from aebook.imageio import read_image, write_image

SHIPPED = ("codec", "denoise", "enhance", "inpaint", "upscale2", "upscale4")


def test_manifest_lists_every_shipped_model_with_its_hash_and_command():
    entries = pt.manifest()
    assert sorted(entries) == sorted(SHIPPED)
    total = 0
    for name, entry in entries.items():
        weights = pt.PRETRAINED_DIR / entry["path"] / WEIGHTS
        assert sha256_file(weights) == entry["sha256"], name
        assert entry["command"].startswith("python -m aebook.train_pretrained"), name
        config = json.loads((weights.parent / "config.json").read_text())
        assert config["weights_sha256"] == entry["sha256"], name
        total += weights.stat().st_size
    assert total <= 20 * 2**20  # the budget for all shipped weights


@pytest.mark.parametrize("name", SHIPPED)
def test_each_model_loads_by_name(name):
    loaded = aebook.pretrained(name)  # the module is callable
    model = loaded[0]
    assert not model.training
    if name != "codec":
        assert loaded[1] == name


def test_tampered_copy_is_refused(tmp_path):
    root = tmp_path / "pretrained"
    shutil.copytree(pt.PRETRAINED_DIR, root)
    weights = root / "denoise" / WEIGHTS
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="fails the manifest's SHA-256 check"):
        pt.pretrained("denoise", root=root)


def test_cli_defaults_use_the_shipped_models(tmp_path, capsys):
    gray = (aebook.load_photo("camera")[:64, :80] if aebook.load_photo("camera").ndim == 2
            else aebook.load_photo("camera")[:64, :80].mean(axis=2))
    src = write_image(tmp_path / "in.png", gray.astype(np.float32))
    assert main(["denoise", str(src), str(tmp_path / "dn.png"), "--sigma", "15"]) == 0
    assert read_image(tmp_path / "dn.png").shape == (64, 80)
    assert main(["denoise", str(src), str(tmp_path / "dn8.png"), "--sigma", "15", "--ensemble"]) == 0
    dn, dn8 = read_image(tmp_path / "dn.png"), read_image(tmp_path / "dn8.png")
    assert dn8.shape == (64, 80) and 0 < np.abs(dn8 - dn).mean() < 0.02  # a different, close estimate
    assert main(["upscale", str(src), str(tmp_path / "up.png"), "--scale", "4"]) == 0
    assert read_image(tmp_path / "up.png").shape == (256, 320)
    assert main(["compress", str(src), str(tmp_path / "x.aeb"), "--quality", "6"]) == 0
    assert main(["decompress", str(tmp_path / "x.aeb"), str(tmp_path / "back.png")]) == 0
    assert read_image(tmp_path / "back.png").shape == (64, 80)
    capsys.readouterr()
