"""Train the weights shipped in ``aebook/zoo/weights`` and write its ``MANIFEST.json``.

This is *the* documented command behind every shipped model::

    python -m aebook.train_pretrained                  # every model in RECIPES
    python -m aebook.train_pretrained denoise inpaint  # some of them
    python -m aebook.train_pretrained denoise --set epochs=40 --device cuda   # longer, on a GPU
    python -m aebook.train_pretrained denoise --init denoise --set seed=1 --set lr=5e-4   # continue
    python -m aebook.train_pretrained denoise --init denoise --minutes 5 --set epochs=1000 --device cuda
    python -m aebook.train_pretrained denoise --init denoise --set arch=residual_cnn --set depth=17   # grow a DnCNN-style stack
    python -m aebook.train_pretrained kltcodec --init kltcodec --minutes 5    # continue the codec's network
    python -m aebook.train_pretrained upscale2 --init upscale2 --average runs/upscale2   # a weight average

``--minutes`` gives a restorer a wall-clock budget instead of a fixed number of epochs (the
learning-rate cosine runs over elapsed time; ``epochs`` becomes an upper bound): for a lent
GPU whose speed is not known in advance. The budget is recorded in the settings.

``--average RUN`` (with ``--init START``, repeatable) trains nothing: it saves the mean of the
weights of START and of each RUN, a *model soup* (Wortsman et al., 2022). Every RUN must be a
restorer with START's task and architecture, trained from START's exact weights (its recorded
``init_sha256``), so that all lie near one optimum and their mean is a network too; averaging a
network trained on one kind of damage with one trained on a mix keeps much of both. The
manifest entry lists the runs under ``average``.

``--init`` warm-starts a restorer, or the kltcodec's decoder network, from a run folder or a
shipped model (continued training, for machines where one run cannot be long enough); a
start shallower than ``depth`` is grown first by :func:`aebook.restoration.nets.deepen`. The new manifest entry
then records the starting weights' SHA-256 and, under ``init``, the entry that made
them: the chain of commands that reproduces the shipped weights.

Each recipe is a fixed set of keyword arguments for
:func:`aebook.restoration.training.train_restorer`, :func:`aebook.codecs.training.train_codec` or
:func:`aebook.codecs.training.train_klt_codec` (whose decoder network starts from the
shipped full-resolution denoiser, ``denoise_cnn``, unless ``--init`` names other weights);
``--set`` overrides are recorded next to the weights (``config.json``) and in the
manifest, together with the exact command line, the device, the wall-clock minutes (``wall_minutes``: elapsed
time, not CPU time, so a busy machine reads slower) and
the SHA-256 of the weights, so a shipped model can always be retrained and checked.
Training uses only ``TRAIN_PHOTOS``; the book measures on the held-out photos.
The command's module path, ``aebook.train_pretrained``, is the one the manifest records; it
runs :func:`main` here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from aebook.checkpoint import WEIGHTS, read_config, sha256_file
from aebook.codecs.coding import save_codec
from aebook.codecs.training import train_codec, train_klt_codec
from aebook.restoration.nets import load_restorer, save_restorer
from aebook.restoration.training import train_restorer
from aebook.runtime import pick_device
from aebook.zoo.registry import WEIGHTS_DIR, lineage, manifest, resolve

#: name -> (kind, keyword arguments). The restorers are encoder-decoders
#: (:class:`aebook.restoration.nets.EncoderDecoder`: 16 to 128 channels over four scales, more residual
#: blocks at the coarse scales, skips), cheaper per pixel than a 17 x 32 full-resolution stack,
#: so that a 512 x 512 image is restored in under a second on a laptop CPU. ``depth`` and
#: ``width`` are the settings of the older ``residual_cnn`` architecture (ignored here; kept
#: so that stages recorded with them can be rerun).
RESTORER = dict(arch="encoder_decoder", widths=[16, 32, 64, 128], blocks=[1, 2, 2, 4], skips=True, global_context=False,
                depth=17, width=32, patch_size=64, batch_size=16, lr=1e-3, seed=0, warmup=0.0, loss="mse",
                storage="float16", scale_range=[1.0, 1.0], channel_mix=False, eight_bit=0.0,
                bicubic_downscale=0.0, kernel_condition=False, synthetic=0.0, synthetic_patterns=0.0)
#: Restorer settings added to the recipes after some recorded stages were trained, with the value
#: those stages trained with (:func:`aebook.zoo.training.rerun_commands` restates it where today's recipe differs).
ADDED_SETTINGS: dict[str, Any] = {"scale_range": [1.0, 1.0], "channel_mix": False, "eight_bit": 0.0,
                                  "bicubic_downscale": 0.0, "kernel_condition": False, "synthetic": 0.0,
                                  "synthetic_patterns": 0.0}
#: More images made from the few training photos (shrunk patches, random channel weights), without
#: which a long run learns the photos by heart: the denoise, inpaint and upscale2 recipes use them.
AUGMENTED: dict[str, Any] = dict(scale_range=[0.5, 1.0], channel_mix=True)
RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    # Half its noisy patches as an 8-bit file holds them (clipped, rounded): how `aebook denoise` reads photos.
    "denoise": ("restorer", dict(RESTORER, **AUGMENTED, task="denoise", n_patches=16000, epochs=14,
                                 sigma_range=[0.0, 55.0], eight_bit=0.5)),
    # The full-resolution 17 x 32 stack (DnCNN's shape) that denoised before the encoder-decoders:
    # chapter 4.4's comparison, and the kltcodec's starting point.
    "denoise_cnn": ("restorer", dict(RESTORER, arch="residual_cnn", task="denoise", patch_size=40, batch_size=32,
                                     n_patches=16000, epochs=14, sigma_range=[0.0, 55.0], storage="float32")),
    "inpaint": ("restorer", dict(RESTORER, **AUGMENTED, task="inpaint", n_patches=16000, epochs=14)),
    # x2 super-resolution: more channels and blocks at the fine scales, where its detail is.
    "upscale2": ("restorer", dict(RESTORER, **AUGMENTED, task="upscale2", widths=[32, 64, 128, 128],
                                  blocks=[2, 2, 1, 2], patch_size=128, batch_size=32, n_patches=40000, epochs=8)),
    "upscale4": ("restorer", dict(RESTORER, task="upscale4", n_patches=3000, epochs=4)),
    # Exposure and colour casts are global: a branch sees the statistics of the whole image.
    "enhance": ("restorer", dict(RESTORER, task="enhance", global_context=True, n_patches=8000, epochs=8)),
    "codec": ("codec", dict(n_patches=6000, patch_size=32, epochs=6, latent_channels=8, lmbda=0.004,
                            batch_size=8, lr=2e-3, seed=0)),
    "kltcodec": ("kltcodec", dict(n_patches=16000, patch_size=40, epochs=4, depth=12, width=32, batch_size=32,
                                  lr=3e-4, seed=0, warmup=0.0)),
}


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def check_request(name: str, overrides: dict[str, Any] | None = None, init: str | None = None,
                  minutes: float | None = None, average: Sequence[str] = ()) -> None:
    """Refuse, before anything is trained or written, a request :func:`train_one` cannot carry out:
    an unknown model, a setting its recipe lacks, ``--init`` or ``--minutes`` for a model that
    takes neither, ``--average`` without ``--init`` or with settings. ``main`` checks every named
    model this way first, so a command refused for its third model has not saved the first two.

    Raises
    ------
    ValueError
        Naming the model and what is wrong with the request.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown pretrained model {name!r}: choose from {', '.join(RECIPES)}")
    if average:
        if overrides or minutes is not None:
            raise ValueError("--average trains nothing: it takes no --set or --minutes")
        if init is None:
            raise ValueError("--average needs --init: the weights the averaged runs were trained from")
        return
    kind, recipe = RECIPES[name]
    for key in overrides or {}:
        if key not in recipe:
            raise ValueError(f"recipe {name!r} has no setting {key!r} (settings: {', '.join(recipe)})")
    if init is not None and kind == "codec":
        raise ValueError(f"--init warm-starts restorers and the kltcodec's network only; {name!r} is a {kind}")
    if minutes is not None and kind == "codec":
        raise ValueError(f"--minutes budgets restorers and the kltcodec only; {name!r} is a {kind}")


def train_one(name: str, overrides: dict[str, Any] | None = None, device: str = "auto",
              root: Path = WEIGHTS_DIR, progress: bool = True, command: str | None = None,
              init: str | None = None, minutes: float | None = None,
              average: Sequence[str] = ()) -> dict[str, Any]:
    """Train the model ``name`` from ``RECIPES``, save it under ``root/name`` and update the manifest.

    ``init`` (a run folder, or a model shipped under ``root``) warm-starts a restorer; the entry
    records the starting weights' hash and how they were made. With ``average`` (run folders),
    nothing is trained: the weights saved are the mean of ``init``'s and theirs (:func:`average_runs`).
    """
    check_request(name, overrides, init, minutes, average)
    if average:
        return average_runs(name, str(init), list(average), root, command)
    kind, kwargs = RECIPES[name]
    kwargs = {**kwargs, **(overrides or {})}
    dev = pick_device(device)
    if minutes is not None:  # restorers and the kltcodec
        kwargs["minutes"] = minutes
    if kind == "kltcodec" and init is None:
        init = "denoise_cnn"  # its decoder network starts from the shipped full-resolution denoiser
    init_entry = _start_entry(init, root) if init is not None else None
    init_dir = str(init_entry["run_dir"]) if init_entry else None
    if init_dir:  # the architecture of the network it starts from, unless --set says otherwise
        start_model = read_config(init_dir).get("model", {})
        given = set(overrides or {})
        if "arch" in kwargs and "arch" not in given and start_model.get("model") in ("residual_cnn", "encoder_decoder"):
            kwargs["arch"] = start_model["model"]
        if kwargs.get("arch") == "encoder_decoder" and start_model.get("model") == "encoder_decoder":
            for key in ("widths", "blocks", "skips", "global_context"):
                if key not in given and key in start_model:
                    kwargs[key] = start_model[key]
        elif "depth" in kwargs and "depth" not in given:
            kwargs["depth"] = max(kwargs["depth"], start_model.get("depth", 0))  # as deep as the start
            if "width" in kwargs and "width" not in given and "width" in start_model:
                kwargs["width"] = start_model["width"]
    start = time.perf_counter()
    recorded = dict(kwargs)  # the settings as recorded, with the storage type of the weights
    storage = kwargs.pop("storage", "float32")  # how the weights are saved, not a training setting
    if kind == "restorer":
        task = kwargs.pop("task")
        model, losses = train_restorer(task, device=str(dev), progress=progress, init=init_dir, **kwargs)
        history = {"train_loss": losses}
    elif kind == "kltcodec":  # KLT fitted in closed form; its decoder network starts from a restorer
        model, losses = train_klt_codec(device=str(dev), progress=progress, init=init_dir, **kwargs)
        history = {"train_loss": losses}
    else:
        model, fitted = train_codec(device=str(dev), progress=progress, **kwargs)
        history = fitted.to_dict()
    elapsed = time.perf_counter() - start
    train_config = {**recorded, "device": str(dev), "wall_minutes": round(elapsed / 60, 2), "command": command}
    if init_entry:
        train_config["init_sha256"] = init_entry["sha256"]
    if kind == "restorer":
        save_restorer(root / name, model.cpu(), task, history["train_loss"], train_config, storage=storage)
    else:
        save_codec(root / name, model.cpu(), history, train_config)
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    entry = {"path": name, "kind": kind, "sha256": sha256_file(root / name / WEIGHTS), "command": command,
             "settings": recorded, "device": f"{dev.type}: {device_name}", "wall_minutes": round(elapsed / 60, 2),
             "threads": torch.get_num_threads()}
    if init_entry:
        entry["init"] = {k: v for k, v in init_entry.items() if k != "run_dir"}
    _update_manifest(root, name, entry)
    return entry


def average_runs(name: str, init: str, runs: list[str], root: Path = WEIGHTS_DIR,
                 command: str | None = None) -> dict[str, Any]:
    """Save the mean of the weights of ``init`` and of each of ``runs`` as ``root/name``: a model soup.

    ``init`` is a shipped model or a run folder; each run must be a restorer for the same task
    with the same architecture, trained from ``init``'s exact weights (its ``config.json``
    records their ``init_sha256``): networks fine-tuned from one start stay near one optimum,
    where the mean of their weights is a network that keeps much of what each learned. The
    manifest entry records ``init`` as for a warm start and, under ``average``, each run's
    entry (without the start they share). ``ValueError`` names a run that does not qualify.
    """
    kind, _ = RECIPES[name]
    if kind != "restorer":
        raise ValueError(f"--average averages restorers; {name!r} is a {kind}")
    out = (root / name).resolve()
    for i, run in enumerate(runs):
        if not Path(run).is_dir():
            raise ValueError(f"--average {run!r} is not a run folder (--average takes the folders of runs "
                             "trained from --init)")
        if Path(run).resolve() == out:
            raise ValueError(f"--average {run!r} is the folder this command writes ({root / name}): "
                             "choose another --root")
        if Path(run).resolve() in (Path(r).resolve() for r in runs[:i]):
            raise ValueError(f"--average {run!r} is given twice")
    start = time.perf_counter()
    init_entry = _start_entry(init, root)
    model, task, config = load_restorer(init_entry["run_dir"])
    if task != RECIPES[name][1]["task"]:
        raise ValueError(f"--init {init!r} is a restorer for {task!r}, not for {name!r}")
    states = [model.state_dict()]
    parts = []
    for run in runs:
        entry = _init_entry(run, root)
        other, other_task, other_config = load_restorer(entry["run_dir"])
        if other_task != task or other.config != model.config:
            raise ValueError(f"--average {run!r} is a {other_task!r} restorer with {other.config}: it cannot be "
                             f"averaged with --init {init!r}, a {task!r} restorer with {model.config}")
        if entry.get("average") or other_config.get("train", {}).get("average_sha256"):
            raise ValueError(f"--average {run!r} is itself an average: list its runs instead")
        started = other_config.get("train", {}).get("init_sha256")
        if started != init_entry["sha256"]:
            raise ValueError(f"--average {run!r} was not trained from --init {init!r} (it started from "
                             f"{str(started)[:12] if started else 'scratch'}, not {init_entry['sha256'][:12]}): "
                             "only networks trained from one start can be averaged")
        states.append(other.state_dict())
        part = {k: v for k, v in entry.items() if k not in ("run_dir", "init")}
        parts.append({**part, "init_sha256": started})
    mean = {k: sum(sd[k].float() for sd in states) / len(states) if v.is_floating_point() else v
            for k, v in states[0].items()}
    model.load_state_dict(mean)
    settings = dict(init_entry.get("settings") or {})
    storage = settings.get("storage", "float32")
    elapsed = time.perf_counter() - start
    train_config = {**config.get("train", {}), "command": command, "init_sha256": init_entry["sha256"],
                    "average_sha256": [p["sha256"] for p in parts], "wall_minutes": round(elapsed / 60, 2)}
    save_restorer(root / name, model.cpu(), task, [], train_config, storage=storage)
    entry = {"path": name, "kind": kind, "sha256": sha256_file(root / name / WEIGHTS), "command": command,
             "settings": settings, "device": f"cpu: {platform.processor() or 'cpu'}", "wall_minutes": round(elapsed / 60, 2),
             "threads": torch.get_num_threads(),
             "init": {k: v for k, v in init_entry.items() if k != "run_dir"}, "average": parts}
    _update_manifest(root, name, entry)
    return entry


def _start_entry(init: str, root: Path) -> dict[str, Any]:
    """:func:`_init_entry` of ``--init``: a run folder, a model under ``root``, or else a shipped
    model's name (when training into another folder)."""
    return _init_entry(init, root if Path(init).is_dir() or (root / init).is_dir() else WEIGHTS_DIR)


def _init_entry(init: str, root: Path) -> dict[str, Any]:
    """Where warm-starting weights come from: their run folder, SHA-256 and (for a shipped
    model) its manifest entry, read *before* training overwrites it."""
    run_dir = resolve(init, root)
    entries = manifest(root)
    if init in entries:
        return {**entries[init], "run_dir": run_dir}
    sha = sha256_file(run_dir / WEIGHTS)
    try:  # a run folder written by this command: its own manifest entry keeps the whole chain
        entry = manifest(Path(run_dir).parent).get(Path(run_dir).name)
    except ValueError:  # an unreadable manifest beside it: fall back to the folder's config.json
        entry = None
    if entry is not None and entry.get("sha256") == sha:
        return {**entry, "path": str(run_dir), "run_dir": run_dir}
    train = read_config(run_dir).get("train", {})
    return {"path": str(run_dir), "sha256": sha, "command": train.get("command"),
            "settings": {k: v for k, v in train.items() if k not in ("command", "device", "wall_minutes")},
            "device": train.get("device"), "wall_minutes": train.get("wall_minutes"), "run_dir": run_dir}


def _update_manifest(root: Path, name: str, entry: dict[str, Any]) -> None:
    path = root / "MANIFEST.json"
    data = json.loads(path.read_text()) if path.exists() else {"models": {}}
    data["models"][name] = entry
    data["models"] = dict(sorted(data["models"].items()))
    fd, tmp = tempfile.mkstemp(dir=root, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m aebook.train_pretrained`` (also reads recorded commands)."""
    parser = argparse.ArgumentParser(prog="python -m aebook.train_pretrained", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"models to train (default: all of {', '.join(RECIPES)})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe setting, e.g. --set epochs=40 (applies to every named model)")
    parser.add_argument("--init", default=None, metavar="NAME|RUN_DIR",
                        help="warm-start restorers from these weights (a shipped model or a run folder)")
    parser.add_argument("--average", action="append", default=[], metavar="RUN_DIR",
                        help="train nothing: save the mean of the --init weights and these runs' (each trained "
                             "from them; repeatable): a model soup")
    parser.add_argument("--minutes", type=float, default=None, metavar="M",
                        help="restorers: train for M wall-clock minutes (the lr cosine runs over time; "
                             "epochs becomes an upper bound)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--root", default=str(WEIGHTS_DIR), help="folder to write (default: the package's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


#: What every recorded command starts with.
COMMAND_PREFIX = ("python", "-m", "aebook.train_pretrained")


def rerun_commands(name: str, folder: str = "runs", root: Path | None = None) -> list[str]:
    """The commands that retrain the shipped model ``name`` stage by stage, ready to run as printed.

    The manifest records each stage's command as it was typed, with that machine's folders
    (``--root /tmp/...``, ``--init /tmp/.../denoise``), which exist nowhere else. Here stage
    ``i`` (counting from 1, oldest first, as :func:`aebook.zoo.registry.lineage` lists them) writes
    to ``folder/i`` and stage ``i + 1`` starts from what it wrote (``--init folder/i/NAME``).
    Every recorded setting that differs from today's recipe is passed with ``--set``, so a
    recipe changed since does not change the rerun. Device, thread count and time budget stay
    as recorded (replace ``--device cuda`` on a machine without a GPU). The runs a weight average
    (``--average``) averages start from the same folder as it, each written to its own. Training is not
    bit-for-bit reproducible across machines: the chain repeats the procedure, not the bits.

    Raises
    ------
    ValueError
        For an unknown name, or a recorded command this function cannot read.
    """
    parser = build_parser()
    commands: list[str] = []
    previous: str | None = None
    ingredients: list[str] = []  # the outputs of the runs a following weight average averages
    for i, stage in enumerate(lineage(name, root), start=1):
        argv = shlex.split(str(stage.get("command") or ""))
        if tuple(argv[:3]) != COMMAND_PREFIX:
            raise ValueError(f"stage {i} of {name!r} was not made by train_pretrained: {stage.get('command')!r}")
        try:
            args = parser.parse_args(argv[3:])
        except SystemExit:
            raise ValueError(f"stage {i} of {name!r}: cannot read its command {stage['command']!r}") from None
        settings = stage.get("settings") or {}
        if settings.get("task") and "arch" not in settings:  # a restorer from before the encoder-decoders
            settings = {**settings, "arch": "residual_cnn"}
        if settings.get("task"):  # settings a restorer stage predates trained as they did then
            settings = {**ADDED_SETTINGS, **settings}
        task = settings.get("task")
        stage_name = task if task in RECIPES else (args.names[0] if len(args.names) == 1 else name)
        if stage_name not in RECIPES:
            raise ValueError(f"stage {i} of {name!r} trained {stage_name!r}, which has no recipe")
        if previous is None and args.init is not None:
            raise ValueError(f"stage {i} of {name!r} starts from weights {args.init!r} the manifest does not describe")
        out = [*COMMAND_PREFIX, stage_name]
        if previous is not None:
            out += ["--init", previous]
        if args.average:  # a weight average of the runs listed just before it, which trained nothing
            if len(args.average) != len(ingredients) or previous is None:
                raise ValueError(f"stage {i} of {name!r} averages {len(args.average)} run(s), but the manifest "
                                 f"lists {len(ingredients)} before it")
            out += [arg for run in ingredients for arg in ("--average", run)] + ["--root", f"{folder}/{i}"]
            commands.append(shlex.join(out))
            previous, ingredients = f"{folder}/{i}/{stage_name}", []
            continue
        out += ["--root", f"{folder}/{i}"]
        if args.minutes is not None:
            out += ["--minutes", f"{args.minutes:g}"]
        if args.device != "auto":
            out += ["--device", args.device]
        if args.threads:
            out += ["--threads", str(args.threads)]
        if args.quiet:
            out.append("--quiet")
        recipe = RECIPES[stage_name][1]
        for key, value in settings.items():
            if key in recipe and key != "task" and value != recipe[key]:
                out += ["--set", f"{key}={json.dumps(value, separators=(',', ':'))}"]
        commands.append(shlex.join(out))
        if stage.get("ingredient"):  # trained from the same start as the average after it
            ingredients.append(f"{folder}/{i}/{stage_name}")
        else:
            previous = f"{folder}/{i}/{stage_name}"
    return commands


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m aebook.train_pretrained``: train the named models (default: all);
    prints one JSON line per model; returns the exit code (2 with one error line for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        overrides = {}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set needs KEY=VALUE, got {item!r}")
            overrides[key] = _parse_value(value)
        names = args.names or list(RECIPES)
        if args.average and len(names) != 1:
            raise ValueError("--average makes one model: name exactly one (e.g. upscale2)")
        for name in names:  # every model's request, before the first is trained
            check_request(name, overrides, args.init, args.minutes, args.average)
        if args.threads:
            torch.set_num_threads(args.threads)
        root = Path(args.root)  # created by the first save: a refused command leaves no folder behind
        command = "python -m aebook.train_pretrained " + " ".join(argv if argv is not None else sys.argv[1:])
        for name in names:
            entry = train_one(name, overrides, args.device, root, not args.quiet, command.strip(), args.init,
                              args.minutes, args.average)
            print(json.dumps({"name": name, **entry}), flush=True)
    except (ValueError, FileNotFoundError) as err:
        print(f"train_pretrained: error: {err}", file=sys.stderr)
        return 2
    return 0
