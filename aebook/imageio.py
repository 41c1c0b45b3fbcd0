"""Reading and writing image files for the command line (PNG, JPEG and what Pillow reads).

Images are float32 arrays in [0, 1]: ``(H, W)`` for grayscale, ``(H, W, 3)`` for
colour. Writing is atomic: a temporary file in the target folder is renamed
into place, so a failure never leaves a half-written output.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as float32 in [0, 1]; grayscale stays 2-D, everything else becomes RGB.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is not an image Pillow can read.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input image {path} does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            gray = im.mode in ("1", "L", "I", "I;16", "F") or (im.mode == "P" and _palette_is_gray(im))
            arr = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    return arr


def _palette_is_gray(im) -> bool:
    rgb = np.asarray(im.convert("RGB"))
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def write_image(path: str | os.PathLike[str], img: np.ndarray) -> Path:
    """Write a float image in [0, 1] to ``path`` atomically; the suffix picks the format (.png, .jpg ...)."""
    from PIL import Image

    path = Path(path)
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {arr.shape}")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unknown image format for {path.name}: use .png or .jpg")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {path.parent} does not exist")
    pil = Image.fromarray(np.clip(np.round(arr * 255), 0, 255).astype(np.uint8))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            pil.save(f, format=fmt)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
