"""Run folders: ``model.safetensors`` + ``config.json`` + ``history.json``.

Weights are stored with safetensors, never pickled (chapter 5.4 shows why
unpickling a stranger's checkpoint is dangerous). ``config.json`` records
the model's own configuration, the training settings, and the SHA-256 of the
weight file, which :func:`load_run` checks before loading. Files are written
to a temporary folder first and moved into place, so a failed save leaves
nothing half-written.

Loading trusts nothing before it is checked (:func:`load_module`): the config's
sizes are bounded, a weight file without a recorded SHA-256 is refused like one
with a wrong SHA-256, and the tensor shapes the config implies (the model built
on PyTorch's ``meta`` device, which allocates nothing) must equal those in the
safetensors header before a single weight is read.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from aebook import __version__
from aebook.imageio import file_mode
from aebook.models import Autoencoder, build_model

WEIGHTS, CONFIG, HISTORY = "model.safetensors", "config.json", "history.json"
MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few hundred bytes; a larger one is refused unread


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_id(codec: nn.Module) -> str:
    """A model's id, e.g. a codec's ``model_id``: its ``name``, ``-`` and 12 hex digits of the SHA-256
    of its ``state_dict`` (weights and buffers, as float32, in key order): names exactly these weights."""
    h = hashlib.sha256()
    for key, value in sorted(codec.state_dict().items()):
        h.update(key.encode() + value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return f"{codec.name}-{h.hexdigest()[:12]}"


#: Storage types a checkpoint's floating-point weights may be saved in (loading casts them back
#: to the module's float32).
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def save_run(run_dir: str | Path, model: Autoencoder, history: dict | None = None,
             train_config: dict[str, Any] | None = None, storage: str = "float32") -> Path:
    """Save a trained model (and its history) to ``run_dir`` atomically; return the folder.

    ``storage="float16"`` stores the floating-point weights at half precision (half the file;
    the rounding, a relative 5e-4 at most, changes a restored image by far less than its
    quantisation to 8 bits); :func:`load_module` casts them back to float32.
    """
    if storage not in STORAGE_DTYPES:
        raise ValueError(f"storage must be one of {', '.join(STORAGE_DTYPES)}, got {storage!r}")
    dtype = STORAGE_DTYPES[storage]
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
    try:
        os.chmod(tmp, file_mode(directory=True))  # mkdtemp's 0700 would ignore the umask
        names = _alias_groups(model)  # a tied weight is stored once, under its first name
        state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
                 for k, v in model.state_dict().items() if names.get(k, k) == k}
        save_file(state, str(tmp / WEIGHTS), metadata={"aebook_model": model.name})
        config = {"aebook_version": __version__, "model": model.config, "train": train_config or {},
                  "weights_sha256": sha256_file(tmp / WEIGHTS)}
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / HISTORY).write_text(json.dumps(history or {}, indent=2) + "\n")
        for name in (WEIGHTS, CONFIG, HISTORY):  # safetensors writes 0600 whatever the umask
            os.chmod(tmp / name, file_mode())
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
        if run_dir.exists():
            raise NotADirectoryError(f"{run_dir} is a file, not a run folder")
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    path = run_dir / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: not an aebook run folder")
    if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"{path} is not a valid aebook config (not a file of at most {MAX_CONFIG_BYTES} bytes)")
    try:
        config = json.loads(path.read_text())
        if not isinstance(config["model"]["model"], str):
            raise TypeError("the model's name must be a string")
        if not isinstance(config.get("train", {}), dict):
            raise TypeError(f"'train' must be an object, got {type(config['train']).__name__}")
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as err:
        raise ValueError(f"{path} is not a valid aebook config ({type(err).__name__}: {err})") from None
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from None
    return config


def check_sizes(model: dict[str, Any], where: str | Path, **bounds: tuple[float, float]) -> None:
    """Check a model configuration's sizes before anything is built: each ``name=(low, high)``
    must be present, and a number (or a list of numbers) in ``[low, high]``: integers when the
    bounds are integers, finite numbers otherwise. ``ValueError`` naming ``where`` otherwise.

    A config is a stranger's input: a width of 200000 would make PyTorch try to allocate a
    terabyte, a depth of 30000 build for minutes, before any weight could disagree.
    """
    for name, (low, high) in bounds.items():
        if name not in model:
            raise ValueError(f"{where} is not a valid aebook config (the model's {name!r} is missing)")
        value = model[name]
        integral = isinstance(low, int) and isinstance(high, int)
        for v in value if isinstance(value, list) and value else [value]:
            if not _in_range(v, low, high, integral):
                kind = "an integer" if integral else "a number"
                raise ValueError(f"{where}: the model's {name} must be {kind} in [{low}, {high}], got {value!r}")


def _in_range(value: object, low: float, high: float, integral: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
        return False
    try:
        return math.isfinite(value) and low <= value <= high  # type: ignore[arg-type]
    except OverflowError:  # an integer too large for a float
        return False


def _alias_groups(module: nn.Module) -> dict[str, str]:
    """State-dict key -> the first key of the same tensor (a weight tied under two names)."""
    first: dict[int, str] = {}
    names: dict[str, str] = {}
    tensors = [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]
    for name, tensor in tensors:
        names[name] = first.setdefault(id(tensor), name)
    return names


def _weight_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a safetensors file, from its header alone (nothing loaded)."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{weights} is not a readable safetensors file: {err}") from None


def _describe_mismatch(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> str:
    """The keys missing from the file, unexpected in it, and of another shape, on one line."""
    def listed(items: list[str]) -> str:
        return ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")

    parts = []
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} (file {list(found[k])}, config {list(v)})" for k, v in expected.items()
              if k in found and tuple(found[k]) != tuple(v)]
    if missing:
        parts.append(f"missing {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected {listed(unexpected)}")
    if shapes:
        parts.append(f"shapes differ: {listed(shapes)}")
    return "; ".join(parts)


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
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing")
    expected = config.get("weights_sha256")
    if expected and sha256_file(weights) != expected:
        raise ValueError(f"{weights} fails its SHA-256 check: corrupted or tampered checkpoint")
    found = _weight_shapes(weights)  # the header only

    def built(on: str) -> nn.Module:
        try:
            with torch.device(on):  # "meta": the shapes, without allocating a single weight
                return build(config["model"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"{run_dir / CONFIG} is not a valid aebook config "
                             f"({type(err).__name__}: {err})") from None

    probe = built("meta")
    aliases = _alias_groups(probe)
    shapes = {k: tuple(v.shape) for k, v in probe.state_dict().items() if aliases.get(k, k) == k or k in found}
    if not (isinstance(expected, str) and expected):
        raise ValueError(f"{run_dir / CONFIG} records no weights_sha256: refusing weights that cannot be checked")
    mismatch = _describe_mismatch(shapes, found)
    if mismatch:
        raise ValueError(f"{weights} does not match its config.json: {mismatch}")
    module = built("cpu")
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{weights} is not a readable safetensors file: {err}") from None
    for name, alias in aliases.items():  # the other names of a tied weight, stored once
        if name not in state and alias in state:
            state[name] = state[alias]
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"{weights} does not match its config.json: {first}") from None
    return module.to(device).eval(), config


def _build_autoencoder(model: dict[str, Any], where: str | Path = CONFIG) -> Autoencoder:
    check_sizes(model, where, shape=(1, 4096), latent_dim=(1, 1 << 16))
    for name, bounds in (("width", (1, 1024)), ("hidden", (1, 1 << 16)), ("beta", (0.0, 1e6))):
        if name in model:
            check_sizes(model, where, **{name: bounds})
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
    return load_module(run_dir, lambda model: _build_autoencoder(model, Path(run_dir) / CONFIG),
                       device)  # type: ignore[return-value]
