"""Run folders: ``model.safetensors`` + ``config.json`` + ``history.json``.

Weights are stored with safetensors, never pickled (chapter 5.3 shows why
unpickling a stranger's checkpoint is dangerous). ``config.json`` records
the model's own configuration, the training settings, and the SHA-256 of the
weight file, which :func:`load_run` checks before loading. Files are written
to a temporary folder first and moved into place, so a failed save leaves
nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from safetensors.torch import load_file, save_file

from aebook.models import Autoencoder, build_model

WEIGHTS, CONFIG, HISTORY = "model.safetensors", "config.json", "history.json"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_run(run_dir: str | Path, model: Autoencoder, history: dict | None = None,
             train_config: dict[str, Any] | None = None) -> Path:
    """Save a trained model (and its history) to ``run_dir`` atomically; return the folder."""
    from aebook import __version__

    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"aebook_model": model.name})
        config = {"aebook_version": __version__, "model": model.config, "train": train_config or {},
                  "weights_sha256": sha256_file(tmp / WEIGHTS)}
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / HISTORY).write_text(json.dumps(history or {}, indent=2) + "\n")
        if not run_dir.exists():
            os.rename(tmp, run_dir)
        else:
            for name in (WEIGHTS, HISTORY, CONFIG):  # config last: it vouches for the weights
                os.replace(tmp / name, run_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return run_dir


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """Read and validate ``config.json`` of a run folder (it must describe a ``model``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    path = run_dir / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: not an aebook run folder")
    try:
        config = json.loads(path.read_text())
        _ = config["model"]["model"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a valid aebook config ({type(err).__name__}: {err})") from None
    return config


def load_module(run_dir: str | Path, build: Callable[[dict[str, Any]], nn.Module],
                device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load any module saved by :func:`save_run`: check the SHA-256, ``build(config["model"])``, load weights.

    ``build`` turns the saved model configuration into an untrained module; it
    raises ``ValueError`` (or ``KeyError``/``TypeError``, reported as a bad
    config) when the folder holds another kind of model.

    Raises
    ------
    FileNotFoundError
        Missing folder or files.
    ValueError
        Corrupted, tampered or mismatched checkpoint (one clear message).
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    weights = run_dir / WEIGHTS
    if not weights.exists():
        raise FileNotFoundError(f"{weights} is missing")
    expected = config.get("weights_sha256")
    if expected and sha256_file(weights) != expected:
        raise ValueError(f"{weights} fails its SHA-256 check: corrupted or tampered checkpoint")
    try:
        module = build(config["model"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"{run_dir / CONFIG} is not a valid aebook config ({type(err).__name__}: {err})") from None
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{weights} is not a readable safetensors file: {err}") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"{weights} does not match its config.json: {first}") from None
    return module.to(device).eval(), config


def _build_autoencoder(model: dict[str, Any]) -> Autoencoder:
    options = {k: v for k, v in model.items() if k not in ("model", "shape", "latent_dim")}
    if "hidden" in options:
        options["hidden"] = tuple(options["hidden"])
    return build_model(model["model"], tuple(model["shape"]), model["latent_dim"], **options)


def load_run(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[Autoencoder, dict[str, Any]]:
    """Load an autoencoder saved by :func:`save_run`, after checking its SHA-256.

    Raises
    ------
    FileNotFoundError
        Missing folder or files.
    ValueError
        Corrupted, tampered or mismatched checkpoint (one clear message).
    """
    return load_module(run_dir, _build_autoencoder, device)  # type: ignore[return-value]
