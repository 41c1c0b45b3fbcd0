"""Device choice: ``pick_device`` and the ``AEBOOK_DEVICE`` override (CLI and book)."""

from __future__ import annotations

import pytest
import torch

from aebook.runtime import DEVICE_ENV, DEVICES, pick_device


def _expected_auto() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@pytest.fixture()
def fake_cuda(monkeypatch):
    """Pretend a CUDA GPU is present (torch.device objects need no GPU to exist)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.fixture()
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("unset", [None, "", "auto", "  AUTO "])
def test_auto_without_override_picks_the_fastest_device(monkeypatch, unset):
    if unset is None:
        monkeypatch.delenv(DEVICE_ENV, raising=False)
    else:
        monkeypatch.setenv(DEVICE_ENV, unset)
    assert pick_device().type == _expected_auto()
    assert pick_device("auto").type == _expected_auto()


def test_override_beats_the_automatic_choice(monkeypatch, fake_cuda):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert pick_device("auto") == torch.device("cuda")
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert pick_device("auto") == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, " CPU ")  # case and spaces do not matter
    assert pick_device() == torch.device("cpu")


def test_explicit_device_beats_the_override(monkeypatch, fake_cuda):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert pick_device("cuda") == torch.device("cuda")
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    assert pick_device("cpu") == torch.device("cpu")


def test_override_to_cuda_uses_it_when_present(monkeypatch, fake_cuda):
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    assert pick_device() == torch.device("cuda")


def test_override_to_an_absent_device_is_a_clear_error(monkeypatch, no_cuda):
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(ValueError, match=rf"'cuda' requested by {DEVICE_ENV} but no CUDA GPU"):
        pick_device()
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setenv(DEVICE_ENV, "mps")
    with pytest.raises(ValueError, match=rf"'mps' requested by {DEVICE_ENV} but Apple MPS"):
        pick_device()


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cuda:0", "cpu,cuda"])
def test_invalid_override_names_the_variable_and_the_choices(monkeypatch, bad):
    monkeypatch.setenv(DEVICE_ENV, bad)
    with pytest.raises(ValueError) as err:
        pick_device()
    message = str(err.value)
    assert DEVICE_ENV in message and repr(bad) in message
    assert all(name in message for name in DEVICES)
    assert pick_device("cpu") == torch.device("cpu")  # an explicit device never reads the variable


def test_unknown_explicit_device_is_refused(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        pick_device("tpu")


def test_training_follows_the_override(monkeypatch, fake_cuda):
    """The book's and the CLI's default (TrainConfig(device='auto')) resolves through the variable."""
    from aebook.train import TrainConfig

    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert pick_device(TrainConfig().device) == torch.device("cpu")


def test_cli_reports_a_bad_override_in_one_line(monkeypatch, tmp_path, capsys):
    from aebook.cli import main

    monkeypatch.setenv(DEVICE_ENV, "tpu")
    out = tmp_path / "run"
    train = ["train", "--dataset", "digits", "--model", "linear", "--latent-dim", "4", "--epochs", "1",
             "--limit", "32", "--quiet", "--out", str(out)]
    assert main(train) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aebook: error:") and DEVICE_ENV in err[0], err
    assert not out.exists()
    # --device other than auto still wins over the variable: the error is now about the missing run
    assert main(["evaluate", str(tmp_path / "missing"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and DEVICE_ENV not in err, err
