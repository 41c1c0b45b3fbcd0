"""Pretrained weights shipped inside the package, looked up by name and hash-checked on load.

``aebook/pretrained/MANIFEST.json`` lists each shipped model: its run folder
(relative to ``aebook/pretrained``), the SHA-256 of its weight file and the
exact command that trained it. :func:`pretrained` refuses a weight file whose
hash differs from the manifest's, so a tampered or corrupted file is never
loaded.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def manifest(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """The manifest as ``{name: {"path", "sha256", "command", ...}}`` (empty when nothing is shipped)."""
    path = (root or PRETRAINED_DIR) / "MANIFEST.json"
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
    stages that made its starting weights (each entry's ``init``). Run the ``command`` of each
    stage in order to retrain it; add up ``wall_minutes`` for its total training time.
    """
    entries = manifest(root)
    if name not in entries:
        raise ValueError(f"unknown pretrained model {name!r}: choose from {', '.join(entries) or 'none'}")
    stages = [entries[name]]
    while isinstance(stages[0].get("init"), dict):
        stages.insert(0, stages[0]["init"])
    return stages


def available(root: Path | None = None) -> list[str]:
    """Names of the shipped pretrained models."""
    return sorted(manifest(root))


def resolve(name_or_dir: str, root: Path | None = None) -> Path:
    """A run folder for a pretrained name (hash-checked against the manifest) or a path given by the user."""
    from aebook.checkpoint import WEIGHTS, sha256_file

    root = root or PRETRAINED_DIR
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


def pretrained(name: str, device: str = "cpu", root: Path | None = None):
    """Load a shipped model by name, hash-checked against the manifest.

    Restorers (``"denoise"``, ``"inpaint"``, ``"upscale2"``, ``"upscale4"``, ``"enhance"``)
    return ``(model, task, config)``; the codecs (``"codec"``, ``"kltcodec"``) return ``(codec, config)``
    like :func:`aebook.codec.load_codec`. Also callable as ``aebook.pretrained(name)``.
    """
    run_dir = resolve(name, root)
    from aebook.checkpoint import read_config

    if read_config(run_dir)["model"]["model"] in ("convcodec", "kltcodec"):
        from aebook.codec import load_codec

        return load_codec(run_dir, device)
    from aebook.restore import load_restorer

    return load_restorer(run_dir, device)


class _CallableModule(types.ModuleType):
    """Lets ``aebook.pretrained("denoise")`` call :func:`pretrained` while the module keeps its other names."""

    def __call__(self, name: str, device: str = "cpu", root: Path | None = None):
        return pretrained(name, device, root)


sys.modules[__name__].__class__ = _CallableModule
