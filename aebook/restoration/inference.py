"""Running a restoration network on whole images: seam-free tiles, the self-ensemble, and
:func:`restore_image`, what the ``aebook denoise | inpaint | upscale | enhance`` commands call;
:func:`estimate_noise_sigma` gives blind denoising its noise level (``denoise --sigma auto``).

Large images are processed in overlapping tiles (:func:`apply_tiled`) so that memory stays
bounded, with the same result as in one piece; :func:`tile_boxes` is that tiling, which the
codecs of :mod:`aebook.codecs` use as well.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import pywt
import torch
from scipy.ndimage import maximum_filter
from torch import nn

from aebook.imageio import image_to_tensor, pad_to_multiple, tensor_to_image, upsample_bicubic
from aebook.restoration.damage import check_kernel
from aebook.restoration.tasks import KERNEL_CODES, TASKS, keep_known, smooth_fill


@torch.no_grad()
def apply_tiled(model: nn.Module, image: torch.Tensor, cond: torch.Tensor | None = None,
                tile: int | None = None, overlap: int | None = None,
                channels_last: bool | None = None) -> torch.Tensor:
    """Run ``model`` on a ``(1, C, H, W)`` image tile by tile.

    Tiles overlap by ``2 * overlap`` pixels and only each tile's interior
    (``overlap`` pixels away from any inner edge) is kept, so the result equals
    running the model on the whole image whenever ``overlap`` is at least the
    network's receptive-field radius (``depth`` pixels for a
    :class:`~aebook.restoration.nets.ResidualCNN` of 3x3 convolutions; its default overlap is the
    larger of 24 and its depth, its default tile 256):
    no seams, and memory bounded by the tile size whatever the image size. An
    :class:`~aebook.restoration.nets.EncoderDecoder` sees farther than any affordable overlap; its defaults
    (``EncoderDecoder.tile``, ``EncoderDecoder.overlap``: tiles of 512 overlapping by 32) make a
    512 x 512 image one tile and keep the seams of larger ones far below the noise (a test
    measures them).

    ``channels_last`` runs the network in the channels-last memory layout; the default
    (None) does so on a CPU, where oneDNN's convolutions run faster in it (1.6-2x in a new
    process; less where the allocator keeps freed memory: ``benchmarks/inference.py`` and
    chapter 5.1 measure it side by side). The model is handed back in the layout it came in;
    the result is the same either way.
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image (1, C, H, W), got {tuple(image.shape)}")
    if tile is None:
        tile = int(getattr(model, "tile", 256))
    if overlap is None:
        overlap = int(getattr(model, "overlap", 0)) or max(24, int(getattr(model, "config", {}).get("depth", 24)))
    if tile <= 2 * overlap:
        raise ValueError(f"tile ({tile}) must exceed twice the overlap ({overlap})")
    h, w = image.shape[-2:]
    multiple = int(getattr(model, "multiple", 1))
    if multiple > 1 and max(h, w) > tile:
        # a network that downsamples: pad the image once, as the network pads a whole image,
        # and keep every tile on its grid, so that tiles compute what the whole image would
        tile, overlap = tile // multiple * multiple, -(-overlap // multiple) * multiple
        if tile <= 2 * overlap:
            raise ValueError(f"tile ({tile}) must exceed twice the overlap ({overlap}) on a grid of {multiple}")
        image, cond = pad_to_multiple(image, multiple), None if cond is None else pad_to_multiple(cond, multiple)
    if channels_last is None:
        channels_last = next(model.parameters()).device.type == "cpu"
    if not channels_last or all(p.is_contiguous(memory_format=torch.channels_last)
                                for p in model.parameters() if p.ndim == 4):
        return _apply_tiled(model, image, cond, tile, overlap, torch.preserve_format)[..., :h, :w]
    model.to(memory_format=torch.channels_last)
    try:
        return _apply_tiled(model, image, cond, tile, overlap, torch.channels_last)[..., :h, :w]
    finally:
        model.to(memory_format=torch.contiguous_format)


def _spans(n: int, tile: int, overlap: int, balanced: bool) -> list[tuple[int, int, int, int]]:
    """The tiles of one axis of length ``n``: ``(start, stop, keep_from, keep_to)``, see :func:`tile_boxes`."""
    if balanced and n > tile:  # as many tiles as needed, each as short as they can be
        count = -(-(n - 2 * overlap) // (tile - 2 * overlap))
        tile = -(-(n - 2 * overlap) // count) + 2 * overlap
    spans = []
    for s in range(0, max(1, n - 2 * overlap), tile - 2 * overlap):
        a = max(0, min(s, n - tile))
        b = min(n, a + tile)
        spans.append((a, b, overlap if a > 0 else 0, b - a - (overlap if b < n else 0)))
    return spans


def tile_boxes(height: int, width: int, tile: int, overlap: int,
               balanced: bool = False) -> Iterator[tuple[int, int, int, int, int, int, int, int]]:
    """The tiles that cover a ``height x width`` grid, as :func:`apply_tiled` and the codecs use them.

    Yields ``(y0, y1, x0, x1, ty, by, tx, bx)``: the tile is rows ``y0:y1`` and columns ``x0:x1``
    (at most ``tile`` each); of its result, the part ``[ty:by, tx:bx]`` (relative to the tile) is
    kept, ``overlap`` cells away from every inner edge. The kept parts cover the whole grid (the
    last tile of a row or column is moved back inside it, so some cells are computed twice).
    ``balanced`` shortens the tiles of each axis to the least length that needs no more of them:
    for an axis a little longer than a tile, two tiles of about half its length instead of two
    whole tiles, which would compute most cells twice.
    """
    if tile <= 2 * overlap:
        raise ValueError(f"tile ({tile}) must exceed twice the overlap ({overlap})")
    columns = _spans(width, tile, overlap, balanced)
    for y0, y1, ty, by in _spans(height, tile, overlap, balanced):
        for x0, x1, tx, bx in columns:
            yield y0, y1, x0, x1, ty, by, tx, bx


def _apply_tiled(model: nn.Module, image: torch.Tensor, cond: torch.Tensor | None, tile: int, overlap: int,
                 layout: torch.memory_format) -> torch.Tensor:
    _, c, h, w = image.shape
    param = next(model.parameters())
    boxes = list(tile_boxes(h, w, tile, overlap))

    def tile_of(y0: int, y1: int, x0: int, x1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        patch = image[:, :, y0:y1, x0:x1].to(param.device, param.dtype, memory_format=layout)
        pc = None if cond is None else cond[:, :, y0:y1, x0:x1].to(param.device, param.dtype,
                                                                   memory_format=layout)
        return patch, pc

    extra = {}
    if getattr(model, "context", None) is not None and len(boxes) > 1:
        # a global branch must see the whole image, not one tile: average the bottleneck's
        # features over the part of each tile that is kept (on the grid the tiles share), then
        # give that mean to every tile
        # (each cell once: the kept parts of the last tiles of a row or column can overlap)
        m = int(getattr(model, "multiple", 1))
        seen = torch.zeros(h // m, w // m, dtype=torch.bool)
        total = torch.zeros(1, 1, dtype=torch.float32)
        for y0, y1, x0, x1, ty, by, tx, bx in boxes:
            feats = model.bottleneck_features(*tile_of(y0, y1, x0, x1))[0, :, ty // m : by // m, tx // m : bx // m]
            new = ~seen[(y0 + ty) // m : (y0 + by) // m, (x0 + tx) // m : (x0 + bx) // m]
            total = total + feats.float().cpu()[:, new].sum(dim=1)[None]
            seen[(y0 + ty) // m : (y0 + by) // m, (x0 + tx) // m : (x0 + bx) // m] = True
        extra = {"pooled": (total / seen.sum()).to(param.device)}
    out = torch.empty(1, c, h, w, device=image.device)
    for y0, y1, x0, x1, ty, by, tx, bx in boxes:
        res = model(*tile_of(y0, y1, x0, x1), **extra).float().to(image.device)
        out[:, :, y0 + ty : y0 + by, x0 + tx : x0 + bx] = res[:, :, ty:by, tx:bx]
    return out


def dihedral(x: torch.Tensor, k: int, flip: bool, inverse: bool = False) -> torch.Tensor:
    """One of the 8 symmetries of the square applied to the last two axes of ``x``:
    a left-right flip (if ``flip``) after ``k`` quarter turns, or its inverse."""
    if inverse:
        return torch.rot90(x.flip(-1) if flip else x, -k, dims=(-2, -1))
    x = torch.rot90(x, k, dims=(-2, -1))
    return x.flip(-1) if flip else x


#: The views of the self-ensemble, in the order :func:`restore_image` takes them (``views=n``: the
#: first ``n``), as ``(quarter turns, flip)``: the photo, its half turn, the two quarter turns, then
#: the mirrored four. The first two already give more than half of the gain of all eight.
DIHEDRAL_VIEWS: tuple[tuple[int, bool], ...] = ((0, False), (2, False), (1, False), (3, False),
                                                (0, True), (2, True), (1, True), (3, True))
#: The numbers of views :func:`restore_image` accepts.
VIEW_COUNTS: tuple[int, ...] = (1, 2, 4, 8)
#: The views the ``aebook denoise | inpaint | upscale | enhance`` commands use unless told otherwise
#: (``--views``): the photo and its half turn, averaged. Twice the work of one pass, and about
#: 0.08 dB better for the shipped denoiser (chapter 4.4 measures it).
DEFAULT_VIEWS = 2
#: The downscaling kernel a kernel-conditioned super-resolution network assumes unless told
#: (``aebook upscale --kernel``): block means, the kernel of the training pairs unless told otherwise. Of the
#: two wrong answers it is the cheap one: a network told "bicubic" sharpens a block-mean photo far
#: too much, while one told "area" still gains on a bicubic-shrunk photo (``benchmarks/results``).
DEFAULT_KERNEL = "area"


def restore_image(model: nn.Module, task: str, img: np.ndarray, *, sigma: float | None = None,
                  mask: np.ndarray | None = None, tile: int | None = None, ensemble: bool = False,
                  views: int = 1, kernel: str | None = None) -> np.ndarray:
    """Restore one image (float array in [0, 1]) with a trained network.

    ``denoise`` needs ``sigma`` (0-255 scale); ``inpaint`` needs ``mask``
    (True = missing); ``inpaint_blind`` gets no mask (the model finds the
    damage itself); ``upscale2``/``upscale4`` take the low-resolution image
    and return it ``scale`` times larger; ``enhance`` takes a colour image.
    The output keeps the input's mode: a grayscale model restores a colour
    image channel by channel; a colour model sees a grayscale image as three
    equal channels and returns their mean. ``tile`` (default: the model's own, see
    :func:`apply_tiled`) bounds the memory.

    ``views`` (1, 2, 4 or 8) is the geometric self-ensemble (Lim et al., 2017, "EDSR+"):
    the network restores that many rotated and flipped copies of the input
    (:data:`DIHEDRAL_VIEWS`), each result is turned back and they are averaged.
    ``views`` times the work for a cleaner estimate; chapters 4.3 and 4.4 measure the gain.
    ``ensemble=True`` is ``views=8``.

    ``kernel`` (super-resolution only: one of
    :data:`~aebook.restoration.damage.DOWNSCALE_KERNELS`, default :data:`DEFAULT_KERNEL`) says how
    the small image was shrunk: ``"area"`` (block means) or ``"bicubic"``. A kernel-conditioned
    network (one condition channel) is given it as a constant map; a network trained without
    that map ignores it.
    """
    if ensemble:
        if views not in (1, 8):
            raise ValueError(f"ensemble=True means views=8, but views={views} was given")
        views = 8
    if isinstance(views, bool) or views not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {VIEW_COUNTS}, got {views!r}")
    views = int(views)
    if kernel is not None:
        if task not in ("upscale2", "upscale4"):
            raise ValueError(f"kernel is a setting of super-resolution (upscale2, upscale4), not of {task!r}")
        check_kernel(kernel)
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[2] == 3 and model.channels == 1:
        return np.stack([restore_image(model, task, arr[:, :, i], sigma=sigma, mask=mask, tile=tile,
                                       views=views, kernel=kernel) for i in range(3)], axis=2)
    if arr.ndim == 2 and model.channels == 3:
        return restore_image(model, task, np.repeat(arr[:, :, None], 3, axis=2), sigma=sigma, mask=mask,
                             tile=tile, views=views, kernel=kernel).mean(axis=2)
    x = image_to_tensor(arr, clip=False)
    cond = None
    if task == "denoise":
        if sigma is None or not (math.isfinite(sigma) and 0 <= sigma <= 255):
            raise ValueError(f"denoising needs the noise level sigma, a number in [0, 255] (0-255 scale), "
                             f"got {sigma}")
        cond = torch.full((1, 1, *x.shape[-2:]), sigma / 255.0)
    elif task == "inpaint":
        if mask is None or np.asarray(mask).shape[:2] != tuple(x.shape[-2:]):
            got = None if mask is None else np.asarray(mask).shape
            raise ValueError(f"inpainting needs a mask of the image's size {tuple(x.shape[-2:])}, got {got}")
        cond = torch.from_numpy(np.asarray(mask, dtype=np.float32).reshape(*x.shape[-2:]).copy())[None, None]
        x = smooth_fill(x * (1 - cond), cond)
    elif task in ("upscale2", "upscale4"):
        scale = int(task[-1])
        x = upsample_bicubic(x, (x.shape[-2] * scale, x.shape[-1] * scale))
        if model.cond_channels:  # a kernel-conditioned network: say how the small image was made
            code = KERNEL_CODES[kernel or DEFAULT_KERNEL]
            cond = torch.full((1, model.cond_channels, *x.shape[-2:]), code)
    elif task not in ("enhance", "inpaint_blind"):
        raise ValueError(f"unknown restoration task {task!r}: choose one of {', '.join(TASKS)}")
    model.eval()
    if views == 1:
        out = apply_tiled(model, x, cond, tile=tile)
    else:
        out = torch.zeros_like(x)
        for k, flip in DIHEDRAL_VIEWS[:views]:
            c = None if cond is None else dihedral(cond, k, flip)
            out += dihedral(apply_tiled(model, dihedral(x, k, flip), c, tile=tile), k, flip, inverse=True)
        out /= views
    if task == "inpaint":
        out = keep_known(x, cond, out)
    return tensor_to_image(out)


def estimate_noise_sigma(img: np.ndarray) -> float:
    """The standard deviation of the white Gaussian noise in ``img`` (float in [0, 1]), on the 0-255 scale.

    Blind denoising's first step: the median absolute deviation of the finest diagonal (HH)
    Daubechies-2 wavelet coefficients, divided by 0.6745 (Donoho and Johnstone, 1994), which
    natural images leave almost untouched while noise fills them. Coefficients that touch a
    clipped pixel (0 or 255 in 8 bits) are left out: clipping shrinks the noise there, and an
    estimate from them would be too low on dark or bright images (scikit-image's
    ``estimate_sigma`` reads 36 to 40 at sigma 45 on the held-out photos for that reason). A
    colour image's channels are averaged.
    """
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3) or min(arr.shape[:2]) < 4:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image of at least 4 x 4 pixels, got shape {arr.shape}")
    if arr.ndim == 3:
        return float(np.mean([estimate_noise_sigma(arr[:, :, c]) for c in range(3)]))
    hh = pywt.dwt2(arr, "db2", mode="periodization")[1][2]
    clipped = (arr <= 0.5 / 255) | (arr >= 254.5 / 255)
    touched = maximum_filter(clipped, size=4, mode="wrap")[::2, ::2][: hh.shape[0], : hh.shape[1]]
    coeffs = hh[~touched] if (~touched).sum() >= 64 else hh.ravel()
    return float(np.clip(255.0 * np.median(np.abs(coeffs)) / 0.6745, 0.0, 255.0))
