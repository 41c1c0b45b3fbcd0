"""aebook.distributed: a real two-process gloo run under torchrun, compared with one process."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from aebook.checkpoint import load_run
from aebook.distributed import build_parser, launch, main, parse_reports, pick_backend, process_info, train

# A model without batch statistics: BatchNorm normalises each rank's half-batch on its own, so
# the conv model's two-process run differs from one process by design (chapter 5.3 measures it).
ARGS = ["--dataset", "digits", "--model", "linear", "--epochs", "2", "--batch-size", "64", "--limit-train", "128",
        "--latent-dim", "8"]


def test_two_gloo_processes_match_one_process_and_only_rank0_writes(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    reports = launch(2, [*ARGS, "--out", str(two)], timeout=300)
    assert [r["rank"] for r in reports] == [0, 1]
    assert [r["rank"] for r in reports if r["wrote_checkpoint"]] == [0]
    assert all(r["backend"] == "gloo" and r["world_size"] == 2 for r in reports)
    assert reports[0]["train_loss"] == reports[1]["train_loss"]  # all-reduced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two"]  # no stray temp folders

    single = main([*ARGS, "--out", str(one)])  # no torchrun: one process, same global batches
    assert single["world_size"] == 1
    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert a.keys() == b.keys()
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-4
    assert single["train_loss"] == pytest.approx(reports[0]["train_loss"], rel=1e-5)
    model, config = load_run(two)
    assert config["train"]["world_size"] == 2 and config["train"]["batch_size"] == 64


def test_backend_and_process_info(monkeypatch):
    assert pick_backend() in ("gloo", "nccl")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert process_info() == (0, 1, 0)
    monkeypatch.setenv("WORLD_SIZE", "x")
    with pytest.raises(ValueError, match="torchrun"):
        process_info()


def test_help_states_defaults_and_bad_settings_are_refused(tmp_path, capsys):
    parser = build_parser()
    for action in parser._actions:
        if action.dest != "help":
            assert "default" in (action.help or ""), action.dest
    with pytest.raises(ValueError, match="multiple"):
        train(parser.parse_args([*ARGS[:6], "--batch-size", "0", "--out", str(tmp_path / "r")]))
    with pytest.raises(SystemExit):
        main(["--dataset", "folder", "--out", str(tmp_path / "r")])
    with pytest.raises(ValueError, match="nproc"):
        launch(0, [])
    assert "--data-dir" in capsys.readouterr().err


def test_folder_dataset_trains_in_one_process(tmp_path):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((40, 48)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    report = main(["--dataset", "folder", "--data-dir", str(folder), "--model", "mlp", "--patch-size", "16",
                   "--samples-per-epoch", "64", "--batch-size", "16", "--epochs", "1", "--out", str(tmp_path / "r")])
    assert report["steps_per_epoch"] == 4 and len(report["train_loss"]) == 1
    model, _ = load_run(tmp_path / "r")
    assert model.shape == (1, 16, 16)


def test_parse_reports_tolerates_mixed_lines():
    text = 'log line\n{"rank": 1, "x": [1, 2]}{"rank": 0, "x": "{"}\n\nmore\n'
    assert [r["rank"] for r in parse_reports(text)] == [0, 1]
    assert parse_reports("nothing here") == []
    with pytest.raises(ValueError, match="garbled"):
        parse_reports('{"rank": 0, "x": [1, ')
