"""The zoo's registry: the manifest of the weights shipped inside the package, and names resolved
to hash-checked run folders.

``aebook/zoo/weights/MANIFEST.json`` lists each shipped model: its run folder
(relative to ``aebook/zoo/weights``), its kind, the SHA-256 of its weight file and the
exact command that trained it (with, for a warm-started model, the stages before it).
:func:`resolve` refuses a weight file whose hash differs from the manifest's, so a
tampered or corrupted file is never loaded. Loading the model itself is
:func:`aebook.zoo.loading.pretrained`'s job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aebook.checkpoint import WEIGHTS, sha256_file

#: The folder of the shipped weights (one run folder per model, and ``MANIFEST.json``).
WEIGHTS_DIR = Path(__file__).parent / "weights"


def manifest(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """The manifest as ``{name: {"path", "sha256", "command", ...}}`` (empty when nothing is shipped)."""
    path = (root or WEIGHTS_DIR) / "MANIFEST.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        return {str(k): dict(v) for k, v in data["models"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as err:
        raise ValueError(f"{path} is not a valid manifest ({type(err).__name__}: {err})") from None


def lineage(name: str, root: Path | None = None) -> list[dict[str, Any]]:
    """The training stages behind a shipped model, oldest first.

    A model trained from scratch has one stage, its manifest entry. One warm-started with
    ``python -m aebook.train_pretrained NAME --init ...`` has its entry last, preceded by the
    stages that made its starting weights (each entry's ``init``). A model made by averaging
    weights (``train_pretrained NAME --init START --average RUN``, a model soup) lists each
    averaged run (its ``average`` entries, marked ``"ingredient": True``; each was trained from
    START) just before the averaging stage. Run the ``command`` of each stage in order to retrain
    it; add up ``wall_minutes`` for its total training time.
    """
    entries = manifest(root)
    if name not in entries:
        raise ValueError(f"unknown pretrained model {name!r}: choose from {', '.join(entries) or 'none'}")
    chain = [entries[name]]
    while isinstance(chain[0].get("init"), dict):
        chain.insert(0, chain[0]["init"])
    stages: list[dict[str, Any]] = []
    for stage in chain:  # a weight average's ingredients come just before it, after their common start
        stages += [{**part, "ingredient": True} for part in stage.get("average") or [] if isinstance(part, dict)]
        stages.append(stage)
    return stages


def training_minutes(name: str, root: Path | None = None) -> dict[str, float]:
    """Wall-clock minutes of training behind a shipped model, over all its stages, per device
    (``{"cpu": 346.0, "NVIDIA H100 80GB HBM3": 14.0}``, in the order the devices first appear)."""
    minutes: dict[str, float] = {}
    for stage in lineage(name, root):
        device = str(stage.get("device") or "unknown").split(": ")[-1]
        minutes[device] = minutes.get(device, 0.0) + float(stage.get("wall_minutes") or 0.0)
    return minutes


def training_settings(name: str, root: Path | None = None) -> dict[str, Any]:
    """The settings the last training stage of a shipped model ran with (the recipe and its
    ``--set`` overrides, as the manifest records them), without loading its weights.

    A setting added to the recipes after that stage is absent: the caller's default applies.
    For a weight average (``train_pretrained --average``), which trains nothing, these are the
    settings of the network it started from; each averaged run's are in its manifest entry's
    ``average`` list.
    """
    entries = manifest(root)
    if name not in entries:
        raise ValueError(f"unknown pretrained model {name!r}: choose from {', '.join(entries) or 'none'}")
    return dict(entries[name].get("settings") or {})


def available(root: Path | None = None) -> list[str]:
    """Names of the shipped pretrained models."""
    return sorted(manifest(root))


def resolve(name_or_dir: str, root: Path | None = None) -> Path:
    """A run folder for a pretrained name (hash-checked against the manifest) or a path given by the user."""
    root = root or WEIGHTS_DIR
    entries = manifest(root)
    if name_or_dir in entries:
        entry = entries[name_or_dir]
        run_dir = root / entry["path"]
        weights = run_dir / WEIGHTS
        if not weights.exists():
            raise FileNotFoundError(f"pretrained model {name_or_dir!r}: {weights} is missing")
        if sha256_file(weights) != entry["sha256"]:
            raise ValueError(f"pretrained model {name_or_dir!r}: {weights} fails the manifest's SHA-256 check "
                             "(tampered or corrupted)")
        return run_dir
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    shipped = ", ".join(entries) or "none are shipped in this version"
    raise ValueError(f"unknown model {name_or_dir!r}: not a run folder, and not a pretrained name ({shipped})")
