"""The command line's guards: every flag, output and run folder checked before any work starts,
and every refusal turned into one line.

:func:`check_flags` bounds each numeric flag (:data:`FLAG_RANGES`); :func:`check_output_file`,
:func:`check_overwrite` and :func:`check_run_out` refuse an output that is a folder, the input
itself, a foreign folder, or an existing file or run (without ``--overwrite``);
:func:`check_finite` refuses to save a diverged training. :func:`bad_input_errors`, :func:`one_line` and :func:`json_safe` make what
:func:`aebook.cli.main` prints: one ``aebook: error: ...`` line, or one line of valid JSON.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from aebook import checkpoint, imageio

#: The range of every numeric flag (by argparse name), checked before any work (integers
#: within the bounds; floats finite and within them, ``lr`` above 0).
FLAG_RANGES: dict[str, tuple[float, float]] = {
    "latent_dim": (1, 1 << 16), "epochs": (1, 1_000_000), "batch_size": (1, 1 << 20), "lr": (0.0, 1.0),
    "seed": (0, 2**32 - 1), "limit": (1, 2**31 - 1), "quality": (1, 8), "n_patches": (1, 10_000_000),
    "patch_size": (8, 1024), "depth": (2, 256), "width": (1, 1024), "sigma": (0.0, 255.0),
    "tile": (64, 1 << 16), "max_pixels": (1, 1 << 40),
}


def check_flags(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` naming the flag when a number is out of :data:`FLAG_RANGES` (or not finite)."""
    for name, (low, high) in FLAG_RANGES.items():
        value = getattr(args, name, None)
        if value is None or isinstance(value, (bool, str)):  # a word: 'auto'
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, float) or isinstance(low, float):
            if not (math.isfinite(value) and low <= value <= high and (name != "lr" or value > 0)):
                interval = f"({low:g}, {high:g}]" if name == "lr" else f"[{low:g}, {high:g}]"
                raise ValueError(f"{flag} must be a finite number in {interval}, got {value}")
        elif not low <= value <= high:
            raise ValueError(f"{flag} must be an integer in [{low}, {high}], got {value}")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (after resolving links, or the same inode)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except (OSError, RuntimeError):  # RuntimeError: a symbolic-link loop
        return False


def _writable_folder(folder: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write to folder {folder}: permission denied")


def check_output_file(output: str, inputs: Iterable[str], image: bool, overwrite: bool = False,
                      suffix: str | None = None) -> None:
    """Before any work: ``output`` names a file (not a folder) in an existing, writable folder,
    is none of ``inputs`` (writing it would destroy the input), for an ``image`` has a suffix
    Pillow can write (else the given ``suffix``, e.g. ``.aeb``), and does not exist unless
    ``overwrite`` (:func:`check_overwrite`). ``ValueError`` (``FileNotFoundError`` for a missing
    folder) otherwise."""
    out = Path(output)
    if out.is_dir():
        raise ValueError(f"output {output} is a folder: give the output a file name")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output folder {out.parent} does not exist")
    _writable_folder(out.parent)
    for source in inputs:
        if _same_file(out, Path(source)):
            raise ValueError(f"output {output} is the input {source}: writing it would destroy the input, "
                             "choose another output name")
    if image:
        imageio.image_format(out)
    elif suffix is not None and out.suffix.lower() != suffix:
        raise ValueError(f"output {output} does not end in {suffix}: this command writes {suffix} files "
                         f"(name it e.g. {out.with_suffix(suffix).name})")
    check_overwrite(output, overwrite)


def check_overwrite(output: str | Path, overwrite: bool) -> None:
    """Refuse (``ValueError``) an ``output`` file that already exists, unless ``overwrite``."""
    path = Path(output)
    if not overwrite and (path.exists() or path.is_symlink()):
        raise ValueError(f"{output} exists: pass --overwrite to replace it")


def check_run_out(out: str, overwrite: bool) -> None:
    """Before training: ``--out`` may be new, an empty folder, or (with ``--overwrite``) a run
    folder; never a file, nor a folder with other contents (its files would be replaced)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out} is a file, not a run folder")
    if path.is_dir() and any(path.iterdir()):
        try:
            checkpoint.read_config(path)
            is_run = (path / checkpoint.WEIGHTS).is_file()
        except (ValueError, OSError):
            is_run = False
        if not is_run:
            raise ValueError(f"--out {out} is a folder that is neither empty nor an aebook run: "
                             "refusing to write into it")
        if not overwrite:
            raise ValueError(f"--out {out} already holds a run: pass --overwrite to replace it")
    existing = path if path.is_dir() else next(p for p in path.absolute().parents if p.exists())
    if not existing.is_dir():
        raise ValueError(f"cannot create --out {out}: {existing} is a file")
    _writable_folder(existing)


def check_finite(values: Iterable[float], what: str) -> None:
    """Refuse to save a diverged training (``ValueError`` if a loss is NaN or infinite)."""
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"training diverged: the {what} became {bad[0]}; nothing was written "
                         "(try a smaller --lr)")


def bad_input_errors() -> tuple[type[BaseException], ...]:
    """What ends a command with one line and exit code 2: ``ValueError``, any ``OSError`` (a
    folder for a file, a read-only folder, a full disk ...) and Pillow's decompression-bomb error."""
    errors: tuple[type[BaseException], ...] = (ValueError, OSError)
    pil = sys.modules.get("PIL.Image")
    return errors + ((pil.DecompressionBombError,) if pil is not None else ())


def one_line(err: BaseException) -> str:
    """An error as one line: an operating-system error as ``path: reason``."""
    if isinstance(err, OSError) and err.strerror:
        names = [n for n in (err.filename, err.filename2) if n is not None]
        text = f"{' -> '.join(map(str, names))}: {err.strerror}" if names else err.strerror
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``null``: the last line stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
