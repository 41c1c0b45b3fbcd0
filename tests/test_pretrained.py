"""The shipped weights: every manifest entry loads, hashes match, the CLI uses them by default."""

import json
import shlex
import shutil

import numpy as np
import pytest
import torch

import aebook
from aebook import zoo as pt
from aebook.checkpoint import WEIGHTS, sha256_file
from aebook.cli import main
from aebook.imageio import read_image, write_image
from aebook.zoo.training import RECIPES

SHIPPED = ("codec", "denoise", "denoise_cnn", "enhance", "inpaint", "kltcodec", "upscale2", "upscale4")


def test_manifest_lists_every_shipped_model_with_its_hash_and_command():
    entries = pt.manifest()
    assert sorted(entries) == sorted(SHIPPED)
    total = 0
    for name, entry in entries.items():
        weights = pt.WEIGHTS_DIR / entry["path"] / WEIGHTS
        assert sha256_file(weights) == entry["sha256"], name
        assert entry["command"].startswith("python -m aebook.train_pretrained"), name
        config = json.loads((weights.parent / "config.json").read_text())
        assert config["weights_sha256"] == entry["sha256"], name
        total += weights.stat().st_size
        if "init" in entry:  # warm-started: the entry says which weights it started from and how they were made
            assert len(entry["init"]["sha256"]) == 64 and entry["init"]["sha256"] != entry["sha256"], name
            assert entry["init"]["command"].startswith("python -m aebook.train_pretrained"), name
    assert total <= 20 * 2**20  # the budget for all shipped weights


@pytest.mark.parametrize("name", SHIPPED)
def test_each_model_loads_by_name(name):
    loaded = aebook.pretrained(name)  # aebook.zoo.pretrained: (model, config) for every kind
    model, config = loaded
    assert not model.training
    if name not in ("codec", "kltcodec"):
        assert config["train"]["task"] == RECIPES[name][1]["task"]


def test_tampered_copy_is_refused(tmp_path):
    root = tmp_path / "pretrained"
    shutil.copytree(pt.WEIGHTS_DIR, root)
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
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["views"] == 2   # the photo and its half turn
    assert main(["denoise", str(src), str(tmp_path / "dn1.png"), "--sigma", "15", "--views", "1"]) == 0
    assert main(["denoise", str(src), str(tmp_path / "dn8.png"), "--sigma", "15", "--ensemble"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["views"] == 8
    dn, dn1, dn8 = (read_image(tmp_path / f) for f in ("dn.png", "dn1.png", "dn8.png"))
    assert dn8.shape == (64, 80) and 0 < np.abs(dn8 - dn).mean() < 0.02  # a different, close estimate
    assert 0 < np.abs(dn1 - dn).mean() < 0.02
    with pytest.raises(SystemExit) as exc:
        main(["denoise", str(src), str(tmp_path / "dn3.png"), "--views", "3"])
    assert exc.value.code == 2 and "invalid choice: 3" in capsys.readouterr().err
    assert not (tmp_path / "dn3.png").exists()
    assert main(["upscale", str(src), str(tmp_path / "up.png"), "--scale", "4"]) == 0
    assert read_image(tmp_path / "up.png").shape == (256, 320)
    assert main(["compress", str(src), str(tmp_path / "x.aeb"), "--quality", "6"]) == 0
    assert main(["decompress", str(tmp_path / "x.aeb"), str(tmp_path / "back.png")]) == 0
    assert read_image(tmp_path / "back.png").shape == (64, 80)
    capsys.readouterr()


def test_compress_defaults_to_kltcodec_and_decompress_finds_the_codec_a_file_names(tmp_path, capsys):
    from aebook.codecs.bitstream import read_aeb

    src = write_image(tmp_path / "in.png", aebook.load_photo("camera", gray=True)[100:164, 100:180])
    for model in ("kltcodec", "codec"):
        args = [] if model == "kltcodec" else ["--model", model]
        assert main(["compress", str(src), str(tmp_path / f"{model}.aeb"), "--quality", "5", *args]) == 0
        aeb = read_aeb(tmp_path / f"{model}.aeb")
        assert aeb.model_id.startswith("kltcodec-" if model == "kltcodec" else "convcodec-")
        assert aeb.coder == ("ans" if model == "kltcodec" else "huffman")
        assert main(["decompress", str(tmp_path / f"{model}.aeb"), str(tmp_path / f"{model}.png")]) == 0
        assert read_image(tmp_path / f"{model}.png").shape == (64, 80)
    # A file naming a codec that is not shipped: one clear line, exit 2, nothing written.
    aeb.model_id = "convcodec-000000000000"
    (tmp_path / "stranger.aeb").write_bytes(aeb.to_bytes())
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "stranger.aeb"), str(tmp_path / "stranger.png")]) == 2
    err = capsys.readouterr().err
    assert "none of the shipped codecs" in err and err.count("\n") == 1
    assert not (tmp_path / "stranger.png").exists()


def _copy_denoise(tmp_path):
    """A pretrained root holding only the shipped denoisers (and their manifest entries)."""
    root = tmp_path / "pretrained"
    root.mkdir()
    names = ("denoise", "denoise_cnn")
    for name in names:
        shutil.copytree(pt.WEIGHTS_DIR / name, root / name)
    (root / "MANIFEST.json").write_text(json.dumps({"models": {n: pt.manifest()[n] for n in names}}))
    return root


def test_warm_start_continues_from_the_given_weights_and_records_them(tmp_path, capsys):
    from aebook.zoo.training import main as train_main

    root = _copy_denoise(tmp_path)
    before = pt.manifest(root)["denoise"]
    tiny = ["--set", "n_patches=8", "--set", "epochs=1", "--set", "patch_size=16", "--set", "seed=1",
            "--root", str(root), "--quiet", "--threads", "1"]
    # lr = 0: Adam changes nothing, so the saved weights must be exactly the starting ones.
    assert train_main(["denoise", "--init", "denoise", "--set", "lr=0", *tiny]) == 0
    entry = pt.manifest(root)["denoise"]
    assert entry["init"]["sha256"] == before["sha256"] and entry["init"]["command"] == before["command"]
    assert [s["sha256"] for s in pt.lineage("denoise", root)] == [*(s["sha256"] for s in pt.lineage("denoise")),
                                                                  entry["sha256"]]
    start, _ = aebook.pretrained("denoise")
    again, config = aebook.pretrained("denoise", root=root)
    assert config["train"]["init_sha256"] == before["sha256"]
    storage = RECIPES["denoise"][1]["storage"]  # the recipe saves its weights at this precision
    for key, value in start.state_dict().items():
        kept = value.to(getattr(torch, storage)).float() if value.is_floating_point() else value
        assert torch.equal(again.state_dict()[key], kept), key
    # A run folder works too; its config.json supplies the command, device and minutes.
    run = tmp_path / "run"
    shutil.copytree(root / "denoise", run)
    assert train_main(["denoise", "--init", str(run), *tiny]) == 0
    stage = pt.manifest(root)["denoise"]["init"]
    assert stage["path"] == str(run) and stage["sha256"] == entry["sha256"] and stage["wall_minutes"] is not None
    assert stage["command"] == entry["command"]
    # Without --init the same run starts from random weights of today's recipe (an encoder-decoder).
    assert train_main(["denoise", "--set", "lr=0", *tiny]) == 0
    fresh, _ = aebook.pretrained("denoise", root=root)
    assert "init" not in pt.manifest(root)["denoise"] and len(pt.lineage("denoise", root)) == 1
    with pytest.raises(ValueError, match="unknown pretrained model 'nope'"):
        pt.lineage("nope", root)
    assert fresh.config["model"] == "encoder_decoder" == RECIPES["denoise"][1]["arch"]
    x = torch.rand(1, 1, 16, 16)
    assert torch.equal(fresh(x, torch.zeros_like(x)), x)  # lr 0: still its initial identity
    capsys.readouterr()


def test_warm_start_refuses_weights_of_another_task_or_kind(tmp_path, capsys):
    from aebook.zoo.training import main as train_main

    root = _copy_denoise(tmp_path)
    manifest_before = (root / "MANIFEST.json").read_text()
    args = ["--init", "denoise", "--root", str(root), "--quiet", "--set", "n_patches=8", "--set", "epochs=1"]
    assert train_main(["upscale2", *args]) == 2
    assert "cannot warm-start a 'upscale2' restorer" in capsys.readouterr().err
    assert train_main(["codec", *args]) == 2
    assert "warm-starts restorers and the kltcodec's network only" in capsys.readouterr().err
    assert train_main(["denoise", "--init", str(tmp_path / "nowhere"), "--root", str(root), "--quiet"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert (root / "MANIFEST.json").read_text() == manifest_before
    assert sorted(p.name for p in root.iterdir()) == ["MANIFEST.json", "denoise", "denoise_cnn"]


def test_a_command_refused_for_a_later_model_saves_none_of_the_earlier_ones(tmp_path, capsys):
    from aebook.zoo.training import main as train_main

    root = _copy_denoise(tmp_path)
    manifest_before = (root / "MANIFEST.json").read_text()
    weights_before = (root / "denoise" / WEIGHTS).read_bytes()
    tiny = ["--root", str(root), "--quiet", "--threads", "1", "--set", "n_patches=8", "--set", "patch_size=16",
            "--set", "epochs=1"]
    # denoise could train, but the codec's recipe has no dead-leaves share, and the codec takes no --init
    assert train_main(["denoise", "codec", *tiny, "--set", "synthetic=0.1"]) == 2
    assert "recipe 'codec' has no setting 'synthetic'" in capsys.readouterr().err
    assert train_main(["denoise", "codec", "--init", "denoise", *tiny[:5]]) == 2
    assert "warm-starts restorers and the kltcodec's network only; 'codec'" in capsys.readouterr().err
    assert train_main(["denoise", "upscale2", "--minutes", "0.01", "--average", str(root / "denoise")]) == 2
    assert "--average makes one model" in capsys.readouterr().err
    assert (root / "MANIFEST.json").read_text() == manifest_before
    assert (root / "denoise" / WEIGHTS).read_bytes() == weights_before
    assert sorted(p.name for p in root.iterdir()) == ["MANIFEST.json", "denoise", "denoise_cnn"]


def test_minutes_budget_stops_training_and_is_recorded(tmp_path, capsys):
    import time

    from aebook.restoration.training import train_restorer
    from aebook.zoo.training import main as train_main

    tiny = dict(n_patches=16, patch_size=16, depth=3, width=8, batch_size=8, device="cpu", progress=False)
    start = time.perf_counter()
    model, losses = train_restorer("denoise", epochs=10**6, minutes=0.02, **tiny)  # a 1.2 s budget
    assert time.perf_counter() - start < 30  # stopped by the budget, not by 10^6 epochs
    assert 1 <= len(losses) < 10**6 and all(np.isfinite(losses))
    with pytest.raises(ValueError, match="minutes must be positive"):
        train_restorer("denoise", minutes=0, **tiny)

    root = _copy_denoise(tmp_path)
    args = ["--root", str(root), "--quiet", "--threads", "1", "--set", "n_patches=8", "--set", "patch_size=16"]
    assert train_main(["denoise", "--init", "denoise", "--minutes", "0.01", "--set", "epochs=100000", *args]) == 0
    entry = pt.manifest(root)["denoise"]
    assert entry["settings"]["minutes"] == 0.01 and entry["settings"]["epochs"] == 100000
    assert entry["wall_minutes"] < 1
    assert aebook.pretrained("denoise", root=root)[1]["train"]["minutes"] == 0.01
    manifest_before = (root / "MANIFEST.json").read_text()
    assert train_main(["codec", "--minutes", "1", *args]) == 2
    assert "budgets restorers and the kltcodec only" in capsys.readouterr().err
    assert train_main(["denoise", "--minutes", "-1", *args]) == 2
    assert "must be positive" in capsys.readouterr().err
    assert (root / "MANIFEST.json").read_text() == manifest_before


def test_kltcodec_recipe_starts_from_the_denoiser_and_records_it(tmp_path, capsys):
    from aebook.zoo.training import main as train_main

    root = _copy_denoise(tmp_path)
    denoiser = pt.manifest(root)["denoise_cnn"]
    assert train_main(["kltcodec", "--root", str(root), "--quiet", "--set", "n_patches=16", "--set", "epochs=1"]) == 0
    capsys.readouterr()
    entry = pt.manifest(root)["kltcodec"]
    assert entry["kind"] == "kltcodec" and entry["init"]["sha256"] == denoiser["sha256"]
    assert entry["init"]["command"] == denoiser["command"]  # the chain that made its starting weights
    codec, config = pt.pretrained("kltcodec", root=root)
    assert codec.name == "kltcodec" and config["train"]["init_sha256"] == denoiser["sha256"]
    assert codec.refine is not None and codec.model_id.startswith("kltcodec-")


def test_kltcodec_continues_from_a_kltcodec_and_grows_with_depth(tmp_path, capsys):
    import torch

    from aebook.zoo.training import main as train_main

    root = _copy_denoise(tmp_path)
    tiny = ["--root", str(root), "--quiet", "--set", "n_patches=16", "--set", "epochs=1"]
    assert train_main(["kltcodec", *tiny]) == 0
    first = pt.manifest(root)["kltcodec"]
    before, _ = pt.pretrained("kltcodec", root=root)
    # lr = 0: continuing the kltcodec from itself keeps its decoder network exactly
    assert train_main(["kltcodec", "--init", "kltcodec", "--set", "lr=0", *tiny]) == 0
    entry = pt.manifest(root)["kltcodec"]
    assert entry["init"]["sha256"] == first["sha256"] and entry["init"]["init"]["sha256"] == first["init"]["sha256"]
    again, _ = pt.pretrained("kltcodec", root=root)
    for key, value in before.refine.state_dict().items():
        assert torch.equal(again.refine.state_dict()[key], value), key
    start_depth = aebook.pretrained("denoise_cnn", root=root)[0].config["depth"]
    assert first["settings"]["depth"] == max(12, start_depth)  # as deep as its start, the recipe's 12 at least
    # deeper than its start: the network is grown (same function), here from the shipped full-resolution denoiser
    deeper_depth = start_depth + 2
    assert train_main(["kltcodec", "--set", f"depth={deeper_depth}", "--set", "lr=0", *tiny]) == 0
    deeper, config = pt.pretrained("kltcodec", root=root)
    assert config["model"]["depth"] == deeper_depth
    x, cond = torch.rand(1, 1, 24, 24), torch.full((1, 1, 24, 24), 0.1)
    denoiser, _ = aebook.pretrained("denoise_cnn", root=root)
    with torch.no_grad():
        assert torch.allclose(deeper.refine(x, cond), denoiser(x, cond), atol=1e-5)
    capsys.readouterr()


def test_average_saves_the_mean_of_runs_trained_from_one_start(tmp_path, capsys):
    """``--init START --average RUN ...``: the mean weights, the runs in the manifest and the lineage, rerunnable."""
    from aebook.restoration.nets import load_restorer
    from aebook.zoo.training import main as train_main, rerun_commands

    tiny = ["--quiet", "--threads", "1", "--set", "n_patches=8", "--set", "epochs=1", "--set", "patch_size=16"]
    start, runs, soup = tmp_path / "start", [tmp_path / "a", tmp_path / "b"], tmp_path / "soup"
    assert train_main(["denoise", "--init", "denoise", "--root", str(start), *tiny]) == 0
    for i, run in enumerate(runs):
        assert train_main(["denoise", "--init", str(start / "denoise"), "--root", str(run), "--set", f"seed={i + 5}",
                           *tiny]) == 0
    assert train_main(["denoise", "--init", str(start / "denoise"), "--root", str(soup), "--quiet",
                       *(a for run in runs for a in ("--average", str(run / "denoise")))]) == 0
    capsys.readouterr()
    states = [load_restorer(d / "denoise")[0].state_dict() for d in (start, *runs, soup)]
    for key, value in states[-1].items():
        expected = sum(sd[key].float() for sd in states[:-1]) / 3
        assert torch.allclose(value, expected, rtol=1e-3, atol=1e-4), key  # stored at float16
    assert all(any(not torch.equal(sd[k], states[-1][k]) for k in sd) for sd in states[:-1])
    entry = pt.manifest(soup)["denoise"]
    assert [p["sha256"] for p in entry["average"]] == [pt.manifest(r)["denoise"]["sha256"] for r in runs]
    assert entry["init"]["sha256"] == pt.manifest(start)["denoise"]["sha256"]
    chain = pt.lineage("denoise", soup)
    assert [s.get("ingredient", False) for s in chain[-4:]] == [False, True, True, False]
    commands = rerun_commands("denoise", folder="runs", root=soup)
    n = len(chain)
    assert commands[n - 3].split("--init ")[1].split()[0] == commands[n - 2].split("--init ")[1].split()[0] \
        == f"runs/{n - 3}/denoise"   # both runs start where the average starts
    assert f"--init runs/{n - 3}/denoise --average runs/{n - 2}/denoise --average runs/{n - 1}/denoise" in commands[-1]

    # a run trained from other weights, or flags that would train, are refused with one message
    assert train_main(["denoise", "--init", "denoise", "--root", str(tmp_path / "x"), "--quiet",
                       "--average", str(runs[0] / "denoise")]) == 2
    assert "was not trained from --init" in capsys.readouterr().err
    assert train_main(["denoise", "--init", str(start / "denoise"), "--root", str(tmp_path / "x"), "--quiet",
                       "--average", str(runs[0] / "denoise"), "--set", "epochs=2"]) == 2
    assert "takes no --set" in capsys.readouterr().err
    refusals = {"is given twice": ["--average", str(runs[0] / "denoise")] * 2,
                "is itself an average": ["--average", str(soup / "denoise")],
                "is not a run folder": ["--average", "upscale4"]}
    for message, extra in refusals.items():
        assert train_main(["denoise", "--init", str(start / "denoise"), "--root", str(tmp_path / "x"), "--quiet",
                           *extra]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()   # a refused command creates nothing
    before = sha256_file(runs[0] / "denoise" / WEIGHTS)   # the output may not be one of the runs it averages
    assert train_main(["denoise", "--init", str(start / "denoise"), "--root", str(runs[0]), "--quiet",
                       "--average", str(runs[0] / "denoise")]) == 2
    assert "is the folder this command writes" in capsys.readouterr().err
    assert sha256_file(runs[0] / "denoise" / WEIGHTS) == before
    assert train_main(["--init", str(start / "denoise"), "--root", str(tmp_path / "x"), "--quiet",
                       "--average", str(runs[0] / "denoise")]) == 2
    assert "name exactly one" in capsys.readouterr().err


def test_lineage_runs_through_run_folders_of_this_command(tmp_path, capsys):
    """Stages trained into run folders (``--root DIR``, then ``--init DIR/denoise``) keep the whole chain."""
    from aebook.zoo.training import main as train_main

    tiny = ["--quiet", "--threads", "1", "--set", "n_patches=8", "--set", "epochs=1", "--set", "patch_size=16"]
    roots = [tmp_path / f"stage{i}" for i in range(3)]
    assert train_main(["denoise", "--init", "denoise", "--root", str(roots[0]), "--set", "seed=1", *tiny]) == 0
    for i in (1, 2):
        assert train_main(["denoise", "--init", str(roots[i - 1] / "denoise"), "--root", str(roots[i]),
                           "--set", f"seed={i + 1}", "--set", "sigma_range=[15,35]", "--set", "loss=psnr",
                           *tiny]) == 0
    capsys.readouterr()
    chain = pt.lineage("denoise", roots[2])
    shipped = pt.lineage("denoise")
    assert [s["sha256"] for s in chain] == [*(s["sha256"] for s in shipped),
                                            *(pt.manifest(r)["denoise"]["sha256"] for r in roots)]
    assert chain[-1]["settings"]["sigma_range"] == [15, 35] and chain[-1]["settings"]["loss"] == "psnr"
    assert "--init " + str(roots[1] / "denoise") in chain[-1]["command"]
    assert chain[-2]["path"] == str(roots[1] / "denoise")
    # a folder whose manifest entry does not match its weights falls back to its config.json
    manifest = json.loads((roots[1] / "MANIFEST.json").read_text())
    manifest["models"]["denoise"]["sha256"] = "0" * 64
    (roots[1] / "MANIFEST.json").write_text(json.dumps(manifest))
    assert train_main(["denoise", "--init", str(roots[1] / "denoise"), "--root", str(roots[2]), *tiny]) == 0
    capsys.readouterr()
    start = pt.manifest(roots[2])["denoise"]["init"]
    assert "init" not in start and start["sha256"] == sha256_file(roots[1] / "denoise" / WEIGHTS)
    # ... and so does a folder whose manifest cannot be read
    (roots[0] / "MANIFEST.json").write_text("{not json")
    assert train_main(["denoise", "--init", str(roots[0] / "denoise"), "--root", str(roots[2]), *tiny]) == 0
    capsys.readouterr()
    start = pt.manifest(roots[2])["denoise"]["init"]
    assert "init" not in start and start["sha256"] == sha256_file(roots[0] / "denoise" / WEIGHTS)
    assert start["path"] == str(roots[0] / "denoise")


@pytest.mark.parametrize("name", SHIPPED)
def test_rerun_commands_of_the_shipped_models_name_no_machine_folders(name):
    from aebook.zoo.training import ADDED_SETTINGS, build_parser, rerun_commands

    commands = rerun_commands(name, folder="runs")
    stages = pt.lineage(name)
    assert len(commands) == len(stages)
    for i, command in enumerate(commands, start=1):
        assert "/tmp" not in command and "/root" not in command, command
        args = build_parser().parse_args(shlex.split(command)[3:])
        assert args.root == f"runs/{i}"
        assert (args.init is None) == (i == 1)
        if i > 1:   # from the stage before, or, for a weight average and its runs, from their common start
            base = max(j for j in range(1, i) if not stages[j - 1].get("ingredient"))
            assert args.init.startswith(f"runs/{base}/")
            averaged = [f"runs/{j}/{args.names[0]}" for j in range(base + 1, i)]
            assert args.average == ([] if stages[i - 1].get("ingredient") else averaged)
        if args.average:
            continue   # an average trains nothing: no settings to restate
        settings = stages[i - 1]["settings"]   # every recorded setting is restated or is today's recipe
        recipe = RECIPES[args.names[0]][1]
        overrides = dict(item.split("=", 1) for item in args.set)
        for key, value in settings.items():
            if key in recipe and key != "task":
                assert json.loads(overrides[key]) == value if key in overrides else recipe[key] == value, key
        for key, then in ADDED_SETTINGS.items():  # a stage older than a setting reruns as it trained
            if settings.get("task") and key in recipe and key not in settings:
                assert json.loads(overrides[key]) == then if key in overrides else recipe[key] == then, key


def test_rerun_commands_retrain_a_recorded_chain(tmp_path, capsys, monkeypatch):
    from aebook.zoo.training import main as train_main, rerun_commands

    tiny = ["--quiet", "--threads", "1", "--set", "n_patches=8", "--set", "epochs=1", "--set", "patch_size=16",
            "--set", "depth=2", "--set", "width=4"]
    first, second = tmp_path / "machine" / "a", tmp_path / "machine" / "b"
    assert train_main(["upscale2", "--root", str(first), *tiny]) == 0
    assert train_main(["upscale2", "--init", str(first / "upscale2"), "--root", str(second),
                       "--set", "seed=7", *tiny]) == 0
    commands = rerun_commands("upscale2", folder="rerun", root=second)
    assert len(commands) == 2 and not any(str(tmp_path) in c for c in commands)
    monkeypatch.chdir(tmp_path)   # the reader's working folder
    for command in commands:
        assert train_main(shlex.split(command)[3:]) == 0
    capsys.readouterr()
    redone = pt.manifest(tmp_path / "rerun" / "2")["upscale2"]
    assert redone["settings"] == pt.manifest(second)["upscale2"]["settings"]
    assert redone["init"]["sha256"] == sha256_file(tmp_path / "rerun" / "1" / "upscale2" / WEIGHTS)


def test_rerun_commands_refuse_unknown_models_and_foreign_commands(tmp_path):
    from aebook.zoo.training import rerun_commands

    with pytest.raises(ValueError, match="unknown pretrained model"):
        rerun_commands("nope")
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"models": {"denoise": {"path": "denoise", "command": "make"}}}))
    with pytest.raises(ValueError, match="not made by train_pretrained"):
        rerun_commands("denoise", root=tmp_path)


def test_restorers_are_saved_at_the_precision_asked_and_load_as_float32(tmp_path):
    from aebook.restoration.nets import EncoderDecoder, load_restorer, save_restorer

    torch.manual_seed(0)
    net = EncoderDecoder(1, 1, (8, 16), (1, 1)).eval()
    with torch.no_grad():  # a fresh network outputs its input; give every weight a value
        for p in net.parameters():
            p.normal_(0, 0.1)
    for storage in ("float32", "float16"):
        save_restorer(tmp_path / storage, net, "denoise", storage=storage)
    sizes = {s: (tmp_path / s / WEIGHTS).stat().st_size for s in ("float32", "float16")}
    assert sizes["float16"] < 0.55 * sizes["float32"]  # half the file
    x, cond = torch.rand(1, 1, 32, 32), torch.full((1, 1, 32, 32), 0.1)
    with torch.no_grad():
        want = net(x, cond)
        for storage in ("float32", "float16"):
            model, task, _ = load_restorer(tmp_path / storage)
            assert task == "denoise" and all(p.dtype == torch.float32 for p in model.parameters())
            err = (model(x, cond) - want).abs().max().item()
            assert (err == 0) if storage == "float32" else (0 < err < 1e-2), (storage, err)
    with pytest.raises(ValueError, match="storage must be one of"):
        save_restorer(tmp_path / "x", net, "denoise", storage="int8")
    assert not (tmp_path / "x").exists()


def test_training_minutes_add_up_every_stage_per_device():
    for name in pt.available():
        stages = pt.lineage(name)
        minutes = pt.training_minutes(name)
        assert sum(minutes.values()) == pytest.approx(sum(s.get("wall_minutes") or 0 for s in stages))
        assert all(":" not in device for device in minutes)  # "cpu", "NVIDIA H100 80GB HBM3", ...
    assert "NVIDIA H100 80GB HBM3" in pt.training_minutes("denoise_cnn")  # its GPU stages are counted


def test_training_settings_are_those_the_shipped_weights_record():
    for name in pt.available():
        settings = pt.training_settings(name)
        recorded = pt.pretrained(name)[1]["train"]  # what the run folder's config.json says
        assert {k: recorded[k] for k in settings if k in recorded} == settings
    assert pt.training_settings("denoise")["task"] == "denoise"
    with pytest.raises(ValueError, match="unknown pretrained model 'nope'"):
        pt.training_settings("nope")
