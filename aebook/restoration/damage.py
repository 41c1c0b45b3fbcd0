"""Damage models for chapter 4: noise, missing pixels, low resolution, bad exposure.

Every function takes a clean image and returns a damaged one (or a mask that
says which pixels are missing), so that autoencoders and the classical
methods of :mod:`aebook.restoration.classical` can be compared on exactly the same input.

Conventions
-----------
- Images are float arrays in [0, 1] of shape ``(H, W)`` (grayscale) or
  ``(H, W, 3)`` (colour); results are float32.
- Masks are bool arrays of shape ``(H, W)`` with ``True`` = missing pixel.
- Noise levels ``sigma`` are on the 0-255 scale used in the denoising
  literature (sigma = 15, 25, 50); internally the noise std is ``sigma / 255``.
- Every random function takes ``rng``: a ``numpy.random.Generator``, an int
  seed or ``None``. The same seed gives the same damage.
- The ``*_batch`` functions work on torch batches ``(N, C, H, W)`` on any device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from aebook.imageio import image_to_tensor, tensor_to_image, upsample_bicubic

Rng = np.random.Generator | int | None

#: Allowed super-resolution factors.
SR_SCALES: tuple[int, ...] = (2, 4)

#: Ranges drawn by :func:`random_degradation` (uniform unless noted).
DEGRADATION_RANGES: dict[str, tuple[float, float]] = {
    "brightness": (-0.2, 0.2),  # added after contrast
    "contrast": (0.6, 1.4),  # factor around mid-grey 0.5
    "gamma": (0.5, 2.0),  # log-uniform: darker and brighter equally likely
    "gain": (0.8, 1.2),  # per colour channel, colour images only
}


def as_image(img: np.ndarray, name: str = "img") -> np.ndarray:
    """Check that ``img`` is a float (H, W) or (H, W, 3) image; return it as float32.

    Raises
    ------
    ValueError
        For another number of dimensions or channels, or a non-float dtype
        (convert uint8 photos with ``skimage.util.img_as_float32`` first).
    """
    img = np.asarray(img)
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(
            f"{name} must be a float array in [0, 1], got dtype {img.dtype} "
            "(use skimage.util.img_as_float32)"
        )
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"{name} must have shape (H, W) or (H, W, 3), got {img.shape}")
    return img.astype(np.float32, copy=False)


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")


def _hw(shape: Sequence[int]) -> tuple[int, int]:
    """(H, W) from an image shape (H, W) or (H, W, C)."""
    if len(shape) not in (2, 3) or min(shape[:2]) < 1:
        raise ValueError(f"shape must be (H, W) or (H, W, C) with H, W >= 1, got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


# --------------------------------------------------------------------------- noise


def add_gaussian_noise(img: np.ndarray, sigma: float, rng: Rng = None, *, clip: bool = False) -> np.ndarray:
    """Add white Gaussian noise of standard deviation ``sigma / 255``.

    Parameters
    ----------
    sigma
        Noise level on the 0-255 scale (15, 25 and 50 are the usual benchmarks).
    clip
        Clip the result to [0, 1]. Off by default: the denoising literature
        (and the known-sigma classical denoisers) assume unclipped additive noise.

    Returns
    -------
    numpy.ndarray
        Noisy float32 image of the same shape.
    """
    img = as_image(img)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 (0-255 scale), got {sigma}")
    noise = np.random.default_rng(rng).standard_normal(img.shape, dtype=np.float32)
    noisy = img + noise * np.float32(sigma / 255.0)
    return np.clip(noisy, 0.0, 1.0) if clip else noisy


def as_eight_bit(img: np.ndarray) -> np.ndarray:
    """``img`` as an 8-bit PNG or JPEG file stores it: clipped to [0, 1], rounded to 256 levels.

    A noisy photo saved to a file loses the noise below 0 and above 1, so near black and white
    its noise is no longer zero-mean; ``aebook denoise`` always reads images this way.
    """
    img = as_image(img)
    return (np.round(np.clip(img, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


# --------------------------------------------------------------------------- masks


def block_mask(shape: Sequence[int], block: int = 8, fraction: float = 0.25, rng: Rng = None) -> np.ndarray:
    """Mask out whole square blocks of a regular grid.

    The image is tiled by ``block x block`` cells (cells on the right and
    bottom edges are cut short when H or W is not a multiple of ``block``);
    exactly ``round(fraction * n_blocks)`` cells, chosen at random, are missing.

    Parameters
    ----------
    shape
        Image shape ``(H, W)`` or ``(H, W, C)``.
    block
        Side of a block in pixels.
    fraction
        Fraction of blocks to remove, in [0, 1].

    Returns
    -------
    numpy.ndarray
        Bool mask ``(H, W)``, True = missing.
    """
    h, w = _hw(shape)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    _check_fraction(fraction)
    gh, gw = -(-h // block), -(-w // block)  # ceil division: number of grid cells
    n_blocks = gh * gw
    cells = np.zeros(n_blocks, dtype=bool)
    cells[np.random.default_rng(rng).permutation(n_blocks)[: round(fraction * n_blocks)]] = True
    return np.kron(cells.reshape(gh, gw), np.ones((block, block), dtype=bool))[:h, :w]


def scratch_mask(shape: Sequence[int], n_lines: int = 5, width: float = 3.0, rng: Rng = None) -> np.ndarray:
    """Mask out thick straight scratches with random end points.

    Each scratch joins two points drawn uniformly inside the image; a pixel is
    missing when its centre lies within ``width / 2`` of a scratch.

    ``shape`` is ``(H, W)`` or ``(H, W, C)``; ``n_lines >= 0``; ``width > 0``
    is the thickness in pixels. Returns a bool ``(H, W)`` mask, True = missing.
    """
    h, w = _hw(shape)
    if n_lines < 0:
        raise ValueError(f"n_lines must be >= 0, got {n_lines}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    rng = np.random.default_rng(rng)
    ends = torch.from_numpy(rng.uniform(0.0, 1.0, size=(n_lines, 2, 2)) * np.array([h - 1, w - 1]))
    pixels = _pixel_grid(h, w, torch.float64, "cpu")  # (H, W, 2)
    mask = torch.zeros(h, w, dtype=torch.bool)
    for a, b in ends:  # one line at a time, so memory stays at one (H, W) plane
        mask |= segment_distance(pixels, a, b - a) <= width / 2
    return mask.numpy()


def _pixel_grid(h: int, w: int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """The ``(row, col)`` centre of every pixel, ``(H, W, 2)``."""
    rows, cols = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                                torch.arange(w, device=device, dtype=dtype), indexing="ij")
    return torch.stack([rows, cols], dim=-1)


def segment_distance(points: torch.Tensor, a: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Euclidean distance from ``points`` (``(..., 2)``) to the segment from ``a`` to ``a + ab``.

    ``a`` and ``ab`` broadcast against ``points``; the result has the broadcast shape
    without the last axis. The closest point of the segment sits at the fraction
    ``t = clip((p - a) . ab / |ab|^2, 0, 1)`` along it (a zero-length segment is a point).
    Shared by :func:`scratch_mask` and :func:`scratch_mask_batch`.
    """
    t = (((points - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0, 1)
    return (points - a - t.unsqueeze(-1) * ab).norm(dim=-1)


def pixel_mask(shape: Sequence[int], fraction: float = 0.5, rng: Rng = None) -> np.ndarray:
    """Mask out exactly ``round(fraction * H * W)`` random pixels (bool ``(H, W)``, True = missing)."""
    h, w = _hw(shape)
    _check_fraction(fraction)
    mask = np.zeros(h * w, dtype=bool)
    mask[np.random.default_rng(rng).permutation(h * w)[: round(fraction * h * w)]] = True
    return mask.reshape(h, w)


def apply_mask(img: np.ndarray, mask: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Return a copy of ``img`` with the masked pixels (all channels) set to ``fill``.

    ``mask`` must have shape ``img.shape[:2]``; non-zero / True = missing.
    """
    img = as_image(img)
    mask = np.asarray(mask)
    if mask.shape != img.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {img.shape[:2]}")
    out = img.copy()
    out[mask.astype(bool)] = fill
    return out


# --------------------------------------------------------------------------- resolution


def _check_scale(scale: int) -> None:
    if scale not in SR_SCALES:
        raise ValueError(f"scale must be one of {SR_SCALES}, got {scale}")


def crop_to_multiple(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right edges so that H and W are multiples of ``scale``.

    Use it on the clean reference too, so that it lines up with the output of
    :func:`downsample` followed by an x``scale`` upscaler.
    """
    img = as_image(img)
    _check_scale(scale)
    h, w = img.shape[0] // scale * scale, img.shape[1] // scale * scale
    if h == 0 or w == 0:
        raise ValueError(f"image {img.shape[:2]} is smaller than the scale {scale}")
    return img[:h, :w]


#: How :func:`downsample` can shrink an image: ``"area"`` (block means) or ``"bicubic"``
#: (antialiased bicubic, as PIL's ``Image.resize`` and MATLAB's ``imresize`` shrink).
DOWNSCALE_KERNELS: tuple[str, ...] = ("area", "bicubic")


def check_kernel(kernel: str) -> None:
    """Raise ``ValueError`` naming ``kernel`` unless it is one of :data:`DOWNSCALE_KERNELS`."""
    if kernel not in DOWNSCALE_KERNELS:
        raise ValueError(f"unknown downscaling kernel {kernel!r}: choose one of {', '.join(DOWNSCALE_KERNELS)}")


def downsample(img: np.ndarray, scale: int, kernel: str = "area") -> np.ndarray:
    """Shrink by ``scale`` with area averaging (the mean of each ``scale x scale`` block).

    H and W are first cropped to multiples of ``scale`` (see
    :func:`crop_to_multiple`), so the output has shape
    ``(H // scale, W // scale[, 3])``. Block means are the exact
    anti-aliased area filter: no ringing, no aliasing of fine texture.

    ``kernel="bicubic"`` shrinks instead with antialiased bicubic interpolation
    (:func:`downsample_batch`), the kernel of the super-resolution benchmarks and of most
    image editors: sharper than block means, with slight ringing at edges; clipped to [0, 1].
    Both put each small pixel at the centre of its ``scale x scale`` block.
    """
    check_kernel(kernel)
    img = crop_to_multiple(img, scale)
    if kernel == "bicubic":
        return tensor_to_image(downsample_batch(image_to_tensor(img, clip=False), scale, "bicubic"))
    h, w = img.shape[0] // scale, img.shape[1] // scale
    blocks = img.reshape(h, scale, w, scale, *img.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float32)


# --------------------------------------------------------------------------- exposure and colour


def adjust_exposure(img: np.ndarray, brightness: float = 0.0, contrast: float = 1.0, gamma: float = 1.0) -> np.ndarray:
    """Change gamma, then contrast, then brightness; clip to [0, 1].

    ``out = clip((img ** gamma - 0.5) * contrast + 0.5 + brightness, 0, 1)``.
    ``gamma > 1`` darkens mid-tones, ``contrast < 1`` flattens towards mid-grey,
    ``brightness`` is an offset on the [0, 1] scale.
    """
    img = as_image(img)
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    if contrast < 0:
        raise ValueError(f"contrast must be >= 0, got {contrast}")
    out = np.clip(img, 0.0, 1.0) ** np.float32(gamma)
    out = (out - 0.5) * np.float32(contrast) + np.float32(0.5 + brightness)
    return np.clip(out, 0.0, 1.0)


def colour_cast(img: np.ndarray, gains: Sequence[float]) -> np.ndarray:
    """Multiply the R, G, B channels by ``gains`` (three numbers >= 0); clip to [0, 1]."""
    img = as_image(img)
    if img.ndim != 3:
        raise ValueError(f"colour_cast needs a colour image (H, W, 3), got shape {img.shape}")
    gains = np.asarray(gains, dtype=np.float32)
    if gains.shape != (3,) or (gains < 0).any():
        raise ValueError(f"gains must be three numbers >= 0, got {gains.tolist()}")
    return np.clip(img * gains, 0.0, 1.0)


def random_degradation(
    img: np.ndarray, rng: Rng = None, *, return_params: bool = False
) -> np.ndarray | tuple[np.ndarray, dict]:
    """Apply a random exposure change and (for colour images) a random colour cast.

    Parameters are drawn from :data:`DEGRADATION_RANGES`: brightness and
    contrast uniformly, gamma log-uniformly in [0.5, 2], and for colour
    images one gain per channel uniformly in [0.8, 1.2]. The colour cast is
    applied first, then :func:`adjust_exposure`.

    Returns the degraded float32 image, or ``(image, params)`` with
    ``return_params=True`` (``params["gains"]`` is None for grayscale).
    """
    img = as_image(img)
    rng = np.random.default_rng(rng)
    r = DEGRADATION_RANGES
    params = {
        "brightness": float(rng.uniform(*r["brightness"])),
        "contrast": float(rng.uniform(*r["contrast"])),
        "gamma": float(np.exp(rng.uniform(*np.log(r["gamma"])))),
        "gains": rng.uniform(*r["gain"], size=3).tolist(),
    }
    out = img
    if img.ndim == 3:
        out = colour_cast(out, params["gains"])
    else:
        params["gains"] = None
    out = adjust_exposure(out, params["brightness"], params["contrast"], params["gamma"])
    return (out, params) if return_params else out


# --------------------------------------------------------------------------- torch batches


def degrade_batch(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, gamma: torch.Tensor,
                  gains: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`colour_cast` then :func:`adjust_exposure` on a batch ``(N, C, H, W)``, one set of
    parameters per image (tensors of shape ``(N, 1, 1, 1)``; ``gains`` ``(N, 3, 1, 1)``, colour only)."""
    out = x.clamp(0, 1)
    if gains is not None:
        out = (out * gains).clamp(0, 1)
    return ((out ** gamma - 0.5) * contrast + 0.5 + brightness).clamp(0, 1)


def degradation_batch(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`random_degradation` for a batch ``(N, C, H, W)`` in [0, 1]: one draw per image.

    The same ranges (:data:`DEGRADATION_RANGES`) and the same order (:func:`degrade_batch`) as
    the function the book measures with. ``generator`` must live on ``x.device``.
    """
    n, dev, r = x.shape[0], x.device, DEGRADATION_RANGES

    def uniform(lo: float, hi: float, channels: int = 1) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, channels, 1, 1, generator=generator, device=dev, dtype=x.dtype)

    brightness, contrast = uniform(*r["brightness"]), uniform(*r["contrast"])
    gamma = torch.exp(uniform(*np.log(r["gamma"]).tolist()))
    gains = uniform(*r["gain"], channels=3) if x.shape[1] == 3 else None
    return degrade_batch(x, brightness, contrast, gamma, gains)


def gaussian_noise_batch(
    x: torch.Tensor, sigma: float | torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add Gaussian noise of std ``sigma / 255`` to a batch ``(N, C, H, W)`` (no clipping).

    ``sigma`` is a number or a tensor of shape ``(N,)`` (one level per image);
    ``generator`` must live on ``x.device``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if (sigma < 0).any():
        raise ValueError(f"sigma must be >= 0 (0-255 scale), got {sigma.tolist()}")
    if sigma.ndim == 1:
        sigma = sigma.view(-1, 1, 1, 1)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + noise * (sigma / 255.0)


def as_eight_bit_batch(x: torch.Tensor) -> torch.Tensor:
    """:func:`as_eight_bit` for a batch ``(N, C, H, W)``: clipped to [0, 1], rounded to 256 levels."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def downsample_batch(x: torch.Tensor, scale: int, kernel: str = "area") -> torch.Tensor:
    """:func:`downsample` for a batch ``(N, C, H, W)`` whose H and W are multiples of ``scale``."""
    check_kernel(kernel)
    if x.ndim != 4 or x.shape[-2] % scale or x.shape[-1] % scale:
        raise ValueError(f"x must have shape (N, C, H, W) with H and W multiples of {scale}, got {tuple(x.shape)}")
    if kernel == "area":
        return torch.nn.functional.avg_pool2d(x, scale)
    return upsample_bicubic(x, (x.shape[-2] // scale, x.shape[-1] // scale), antialias=True)


def block_mask_batch(
    shape: Sequence[int],
    block: int = 8,
    fraction: float = 0.25,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random block masks for a batch, like :func:`block_mask` but in torch.

    ``shape`` is the batch shape ``(N, C, H, W)`` (or ``(N, H, W)``); exactly
    ``round(fraction * n_blocks)`` blocks per image are missing. The mask is
    built on ``device`` (default: the generator's device, else the CPU) and is
    a float tensor ``(N, 1, H, W)`` with 1 = missing, 0 = kept.
    """
    if len(shape) not in (3, 4):
        raise ValueError(f"shape must be (N, C, H, W) or (N, H, W), got {tuple(shape)}")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    _check_fraction(fraction)
    n, h, w = int(shape[0]), int(shape[-2]), int(shape[-1])
    if device is None:
        device = generator.device if generator is not None else "cpu"
    gh, gw = -(-h // block), -(-w // block)
    k = round(fraction * gh * gw)
    # Rank random scores per image: the k lowest-ranked blocks go missing.
    ranks = torch.rand(n, gh * gw, generator=generator, device=device).argsort(dim=1).argsort(dim=1)
    cells = (ranks < k).float().view(n, 1, gh, gw)
    return cells.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)[:, :, :h, :w]


def scratch_mask_batch(
    shape: Sequence[int],
    n_lines: int = 3,
    width: tuple[float, float] = (1.0, 5.0),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random straight scratches for a batch, like :func:`scratch_mask` but in torch.

    Each image gets ``n_lines`` segments between uniform random end points, each of a
    thickness drawn uniformly from ``width = (low, high)`` pixels. Returns a float tensor
    ``(N, 1, H, W)`` with 1 = missing.
    """
    if len(shape) not in (3, 4):
        raise ValueError(f"shape must be (N, C, H, W) or (N, H, W), got {tuple(shape)}")
    if n_lines < 0 or not 0 < width[0] <= width[1]:
        raise ValueError(f"need n_lines >= 0 and 0 < width low <= high, got n_lines={n_lines}, width={width}")
    n, h, w = int(shape[0]), int(shape[-2]), int(shape[-1])
    if device is None:
        device = generator.device if generator is not None else "cpu"
    if n_lines == 0:
        return torch.zeros(n, 1, h, w, device=device)
    size = torch.tensor([h - 1, w - 1], dtype=torch.float32, device=device)
    a = torch.rand(n, n_lines, 2, generator=generator, device=device) * size
    b = torch.rand(n, n_lines, 2, generator=generator, device=device) * size
    thick = width[0] + (width[1] - width[0]) * torch.rand(n, n_lines, generator=generator, device=device)
    pix = _pixel_grid(h, w, torch.float32, device).view(1, 1, h, w, 2)
    dist = segment_distance(pix, a.view(n, n_lines, 1, 1, 2), (b - a).view(n, n_lines, 1, 1, 2))  # (N, L, H, W)
    return (dist <= thick.view(n, n_lines, 1, 1) / 2).any(dim=1, keepdim=True).float()
