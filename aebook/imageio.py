"""Images as files and as tensors: reading and writing PNG, JPEG (and what Pillow reads),
the one conversion between image arrays and the models' ``(1, C, H, W)`` tensors, the one
bicubic resize (:func:`upsample_bicubic`) and the one padding to a multiple (:func:`pad_to_multiple`).

Images are float32 arrays in [0, 1]: ``(H, W)`` for grayscale, ``(H, W, 3)`` for
colour. Writing is atomic: a temporary file in the target folder is renamed
into place, so a failure never leaves a half-written output, and the file gets the
permissions the umask allows (as ``open`` would give it). Reading can refuse an
image of more than ``max_pixels`` pixels from its header alone, before decoding it.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

#: The command line's default cap on the pixels of an image it reads, decodes or writes
#: (``--max-pixels``): 2**24 = 4096 x 4096. A tiny file can declare a huge image (a PNG of
#: 74 bytes, an .aeb file of 322); an image this large decodes with the slowest shipped
#: codec in under a minute on two CPU cores, in about 0.7 GB beyond PyTorch's own. Pillow's
#: limit is 89,478,485 pixels (a warning) and twice that (an error); raise ours for a
#: larger file you trust.
MAX_PIXELS = 1 << 24


def file_mode(directory: bool = False) -> int:
    """The permissions a new file (or folder) gets under the process's umask: ``0o666 & ~umask``
    (``0o777`` for a folder). For files made by ``tempfile``, which uses 0600 (0700) whatever the umask."""
    umask = None
    try:
        with open("/proc/self/status") as status:  # Linux: read it without changing it
            for line in status:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    if umask is None:
        umask = os.umask(0o022)
        os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def read_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as float32 in [0, 1]; grayscale stays 2-D, everything else becomes RGB.

    The pixels are as a viewer shows them: a JPEG's EXIF orientation is applied. 16-bit
    grayscale PNGs are scaled by 65535 (not cut to 8 bits); an alpha channel is dropped
    (``LA`` stays grayscale). :func:`read_image_bits` also gives the file's sample depth.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is not an image Pillow can read, a folder, unreadable, or larger than
        ``max_pixels`` pixels (checked on the header, before decoding; default: Pillow's
        own limit).
    """
    return read_image_bits(path, max_pixels)[0]


#: Pillow modes read as grayscale, and the full-scale value of each one's samples.
_GRAY_SCALE = {"1": 255.0, "L": 255.0, "LA": 255.0, "La": 255.0, "I": 65535.0, "I;16": 65535.0,
               "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "F": 1.0}


def read_image_bits(path: str | os.PathLike[str], max_pixels: int | None = None) -> tuple[np.ndarray, int]:
    """:func:`read_image` and the bits per sample of the file: 16 for a 16-bit grayscale PNG, else 8.

    Pillow opens 16-bit grayscale as mode ``I;16`` (or ``I``); those samples are divided by
    65535. Converting them to 8-bit ``L`` instead would clip every value above 255 to white.
    Mode ``F`` (floating-point TIFF) is taken as already in [0, 1] and clipped.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"input image {path} is a folder, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"input image {path} does not exist")
    try:
        with warnings.catch_warnings():
            if max_pixels is not None:  # the caller's limit replaces Pillow's warning (a second stderr line)
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            check_pixels(im.width, im.height, max_pixels, f"image {path}")
            im.load()
            return pil_to_array(ImageOps.exif_transpose(im))
    except Image.DecompressionBombError as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None


def check_pixels(width: int, height: int, max_pixels: int | None, what: str = "image") -> None:
    """Refuse (``ValueError``) an image of more than ``max_pixels`` pixels (None: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise ValueError(f"{what} is {width} x {height} = {width * height} pixels, more than max_pixels="
                         f"{max_pixels} (raise the limit, e.g. --max-pixels, only for a file you trust)")


def image_format(path: str | os.PathLike[str]) -> str:
    """Pillow's format name for an output file's suffix (``"PNG"`` for ``.png`` ...), or ``ValueError``."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"unknown image format for {Path(path).name}: use .png or .jpg")
    return fmt


def is_high_depth(im) -> bool:
    """Whether a Pillow image holds more than 8 bits per sample (16-bit or floating-point grayscale)."""
    return _GRAY_SCALE.get(im.mode, 255.0) != 255.0


def pil_to_array(im, gray: bool | None = None) -> tuple[np.ndarray, int]:
    """A Pillow image as float32 in [0, 1] and its bits per sample (16 or 8): the one conversion
    behind :func:`read_image` and the folder datasets.

    ``gray=None`` keeps the image's own kind (grayscale 2-D, anything else RGB), ``True`` makes
    it grayscale (Pillow's ITU-R 601 luma), ``False`` RGB. 16-bit grayscale is divided by 65535.
    """
    scale = _GRAY_SCALE.get(im.mode)
    if scale is None and im.mode in ("P", "PA") and _palette_is_gray(im):
        scale = 255.0
    if scale is None:
        arr, bits = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.float32) / 255.0, 8
    elif scale == 255.0:
        arr, bits = np.asarray(im.convert("L"), dtype=np.float32) / 255.0, 8
    else:
        raw = np.asarray(im if im.mode in ("I", "F") else im.convert("I"), dtype=np.float64)
        arr, bits = np.clip(raw / scale, 0.0, 1.0).astype(np.float32), 16 if scale > 1 else 8
    if gray is False and arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return arr, bits


def _palette_is_gray(im) -> bool:
    rgb = np.asarray(im.convert("RGB"))
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def write_image(path: str | os.PathLike[str], img: np.ndarray, bits: int = 8) -> Path:
    """Write a float image in [0, 1] to ``path`` atomically; the suffix picks the format (.png, .jpg ...).

    ``bits=16`` writes a 16-bit PNG (grayscale only, as Pillow writes them), e.g. to keep
    the depth of a 16-bit input; every other format stores 8 bits per sample.
    """
    path = Path(path)
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}")
    fmt = image_format(path)
    if bits == 16:
        arr16 = check_image(img)
        if fmt != "PNG" or arr16.ndim != 2:
            raise ValueError(f"16-bit output needs a grayscale image and a .png file, not {path.name} "
                             f"({'colour' if arr16.ndim == 3 else 'grayscale'})")
        arr = np.clip(np.round(arr16.astype(np.float64) * 65535), 0, 65535).astype(np.uint16)
    else:
        arr = to_uint8(img)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"output {path} is a folder: give the image a file name")
    pil = Image.fromarray(arr)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            pil.save(f, format=fmt)
        os.chmod(tmp, file_mode())  # mkstemp's 0600, opened up as far as the umask allows
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise naming_output(err, path) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def naming_output(err: OSError, output: str | os.PathLike[str]) -> OSError:
    """``err`` as the user should read it: an atomic write fails on its hidden temporary file
    (``.NAME.XXXX.tmp``), so an error that names another file is given ``output``'s name instead."""
    if err.strerror and err.filename is not None and str(err.filename) != str(output):
        return OSError(err.errno, err.strerror, str(output))
    return err


def image_to_tensor(img: np.ndarray, channels: int | None = None, clip: bool = True) -> torch.Tensor:
    """An ``(H, W)`` or ``(H, W, 3)`` image (float in [0, 1], or uint8) as a ``(1, C, H, W)``
    float32 tensor, clipped to [0, 1] unless ``clip=False`` (a synthetic noisy image keeps
    its values outside [0, 1], as the denoiser saw in training).

    ``channels`` (1 or 3) demands that mode; ``None`` takes either. Raises ``ValueError``
    naming the problem for a non-numeric array, a wrong shape, an empty image or NaN/inf.
    """
    arr = check_image(img, channels)
    t = torch.from_numpy(np.clip(arr, 0.0, 1.0) if clip else arr.copy())
    return (t[None] if arr.ndim == 2 else t.permute(2, 0, 1))[None].contiguous()


def check_image(img: np.ndarray, channels: int | None = None) -> np.ndarray:
    """Validate an image array and return it as float32 ``(H, W)`` or ``(H, W, 3)``
    (uint8 is scaled to [0, 1]; an ``(H, W, 1)`` array becomes ``(H, W)``; values are not clipped).

    The one check behind :func:`image_to_tensor`, :func:`to_uint8`, :func:`write_image` and
    :func:`aebook.baselines.jpeg_roundtrip`. ``channels`` (1 or 3) demands that mode; ``None``
    takes either. Raises ``ValueError`` naming the problem for a non-numeric array, a wrong
    shape, an empty image or NaN/inf.
    """
    arr = np.asarray(img)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"image must be numeric, got dtype {arr.dtype}")
    arr = arr / 255.0 if arr.dtype == np.uint8 else arr
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    gray, colour = arr.ndim == 2, arr.ndim == 3 and arr.shape[2] == 3
    ok = {None: gray or colour, 1: gray, 3: colour}.get(channels)
    if ok is None:
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    if not ok or arr.size == 0:
        want = {None: "an (H, W) or (H, W, 3)", 1: "an (H, W)", 3: "an (H, W, 3)"}[channels]
        raise ValueError(f"expected {want} image, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("image contains NaN or infinite values")
    return arr


def to_uint8(img: np.ndarray) -> np.ndarray:
    """A checked image (see :func:`check_image`) as uint8 ``(H, W)`` or ``(H, W, 3)``: values in
    [0, 1] are scaled by 255, rounded and clipped, as an 8-bit file stores them."""
    return np.clip(np.round(check_image(img) * 255), 0, 255).astype(np.uint8)


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """The first image of a ``(N, C, H, W)`` tensor as a float32 ``(H, W)`` (C = 1) or
    ``(H, W, C)`` array, clipped to [0, 1]: the inverse of :func:`image_to_tensor`."""
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"expected a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    x = x[0].detach().float().cpu().clamp(0, 1)
    return (x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)).contiguous().numpy()


def upsample_bicubic(x: torch.Tensor, size: tuple[int, int], antialias: bool = False) -> torch.Tensor:
    """Bicubic resize of a batch ``(N, C, H, W)`` to ``size = (H', W')``, clipped to [0, 1].

    The one bicubic interpolation of the library (PyTorch's, Keys' cubic convolution with
    ``a = -0.75``): the super-resolution baseline and the super-resolution networks' input,
    the interpolation baselines of chapter 2.3 and :func:`aebook.restoration.classical.upscale_bicubic`.
    ``antialias=True`` widens the kernel when shrinking, as PIL's ``Image.resize`` and MATLAB's
    ``imresize`` do (:func:`aebook.restoration.damage.downsample` with ``kernel="bicubic"``).
    """
    if x.ndim != 4:
        raise ValueError(f"expected a batch (N, C, H, W), got shape {tuple(x.shape)}")
    return F.interpolate(x.float(), size=tuple(size), mode="bicubic", align_corners=False,
                         antialias=antialias).clamp(0, 1)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the last two axes of ``x`` at the bottom and right to multiples of ``multiple``,
    by reflection (by repeating the edge where the image is too small to reflect): what a network
    that downsamples by ``multiple`` needs (the encoder-decoder restorer, the convolutional codec)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
