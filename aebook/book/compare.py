"""Comparing methods on equal terms (chapter 2.3): tiled whole images, quantised latents.

- :func:`image_to_tiles`, :func:`tiles_to_image`, :func:`reconstruct_by_tiles`:
  a model trained on 32x32 patches reconstructs a whole photo tile by tile.
- :class:`UniformQuantizer`, :func:`quantized_reconstruct`: store a latent code
  in a fixed number of bits, so its cost can be compared with JPEG's file size.
- :func:`encode_batched`, :func:`tile_metrics`: codes and scores over whole images' tiles.

The rule-based codecs at a given budget (JPEG, interpolation) are in :mod:`aebook.baselines`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from aebook.metrics import mean_metrics


# --------------------------------------------------------------------------- tiles

def image_to_tiles(img: np.ndarray, size: int = 32) -> torch.Tensor:
    """Cut a grayscale ``(H, W)`` image into non-overlapping ``size`` x ``size`` tiles, row by row.

    The image is first cropped to multiples of ``size`` from the top-left (as
    :func:`aebook.data.photo_tiles` does). Returns a ``(N, 1, size, size)`` tensor.
    """
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"expected a grayscale (H, W) image, got shape {arr.shape}")
    h, w = (arr.shape[0] // size) * size, (arr.shape[1] // size) * size
    if h == 0 or w == 0:
        raise ValueError(f"image {arr.shape} is smaller than one {size}x{size} tile")
    t = arr[:h, :w].reshape(h // size, size, w // size, size).swapaxes(1, 2).reshape(-1, 1, size, size)
    return torch.from_numpy(np.ascontiguousarray(t))


def tiles_to_image(tiles: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`image_to_tiles`: put ``(N, 1, s, s)`` tiles back into an ``(H, W)`` image.

    ``shape`` is the cropped image's shape (multiples of the tile size).
    """
    s = tiles.shape[-1]
    h, w = shape
    if h % s or w % s or tiles.shape[0] != (h // s) * (w // s):
        raise ValueError(f"{tiles.shape[0]} tiles of {s}x{s} do not fill an image of shape {shape}")
    t = tiles.detach().float().cpu().numpy().reshape(h // s, w // s, s, s).swapaxes(1, 2)
    return t.reshape(h, w)


def crop_to_tiles(img: np.ndarray, size: int = 32) -> np.ndarray:
    """Crop ``img`` from the top-left to multiples of ``size`` (the area the tiles cover)."""
    return np.asarray(img)[: (img.shape[0] // size) * size, : (img.shape[1] // size) * size]


def reconstruct_by_tiles(img: np.ndarray, fn: Callable[[torch.Tensor], torch.Tensor], size: int = 32) -> np.ndarray:
    """Reconstruct a whole grayscale image tile by tile.

    Parameters
    ----------
    img
        ``(H, W)`` image in [0, 1]; it is cropped to multiples of ``size``.
    fn
        Maps a batch of tiles ``(N, 1, size, size)`` to reconstructions of the
        same shape, e.g. ``model.reconstruct`` or a quantised round trip.

    Returns
    -------
    numpy.ndarray
        The reconstructed, cropped image, clipped to [0, 1].
    """
    crop = crop_to_tiles(img, size)
    out = fn(image_to_tiles(crop, size))
    return np.clip(tiles_to_image(out, crop.shape), 0.0, 1.0)


# --------------------------------------------------------------------------- quantised latents

@dataclass
class UniformQuantizer:
    """Uniform scalar quantiser with one range per latent dimension.

    Each value ``z_j`` is clipped to ``[low_j, high_j]`` and mapped to one of
    ``2**bits`` equally spaced levels, so a code of ``k`` numbers costs exactly
    ``k * bits`` bits (before any entropy coding, chapter 5.2). The ranges are
    part of the codec: fit them on *training* codes, never on the test images.
    """

    low: torch.Tensor
    high: torch.Tensor
    bits: int = 8

    @classmethod
    def fit(cls, codes: torch.Tensor, bits: int = 8) -> "UniformQuantizer":
        """Ranges from the minimum and maximum of each dimension of ``codes`` ``(N, k)``."""
        if not 1 <= bits <= 16:
            raise ValueError(f"bits must be in 1..16, got {bits}")
        codes = codes.detach().float().cpu()
        if codes.ndim != 2 or len(codes) < 1:
            raise ValueError(f"codes must be (N, k) with N >= 1, got shape {tuple(codes.shape)}")
        low, high = codes.min(0).values, codes.max(0).values
        high = torch.where(high > low, high, low + 1e-6)
        return cls(low, high, bits)

    @property
    def levels(self) -> int:
        return 2**self.bits

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Integer symbols in ``0 .. 2**bits - 1`` (int64), same shape as ``z``."""
        z = z.detach().float().cpu()
        step = (self.high - self.low) / (self.levels - 1)
        return torch.round((z.clamp(self.low, self.high) - self.low) / step).long()

    def dequantize(self, q: torch.Tensor) -> torch.Tensor:
        """Values of the symbols ``q``."""
        step = (self.high - self.low) / (self.levels - 1)
        return self.low + q.float() * step

    def roundtrip(self, z: torch.Tensor) -> torch.Tensor:
        """``dequantize(quantize(z))`` on ``z``'s device."""
        return self.dequantize(self.quantize(z)).to(z.device)


def quantized_reconstruct(model, x: torch.Tensor, quantizer: UniformQuantizer) -> torch.Tensor:
    """Encode ``x``, quantise the code, decode; clipped to [0, 1] and returned on ``x``'s device.

    ``model`` is anything with ``encode`` and ``decode`` (an autoencoder or a
    :class:`~aebook.baselines.PCABaseline`).
    """
    with torch.no_grad():
        was_training = getattr(model, "training", False)
        if hasattr(model, "eval"):
            model.eval()
        try:
            param = next(model.parameters())
            inputs = x.to(param.device, param.dtype)
        except (AttributeError, StopIteration):
            inputs = x
        out = model.decode(quantizer.roundtrip(model.encode(inputs))).clamp(0, 1)
        if was_training:
            model.train()
    return out.to(x.device)


# --------------------------------------------------------------------------- evaluation helpers

@torch.no_grad()
def encode_batched(model, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Codes ``model.encode(x)`` computed batch by batch in eval mode, returned on the CPU."""
    if hasattr(model, "eval"):
        was_training = model.training
        model.eval()
    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
    except (AttributeError, StopIteration):
        device, dtype = None, None
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        out.append(model.encode(xb.to(device, dtype) if device is not None else xb).float().cpu())
    if hasattr(model, "eval") and was_training:
        model.train()
    return torch.cat(out)


def tile_metrics(originals: Sequence[np.ndarray], reconstructions: Sequence[np.ndarray], size: int = 32) -> dict[str, float]:
    """Mean PSNR and SSIM over all ``size`` x ``size`` tiles of whole-image reconstructions.

    ``originals`` and ``reconstructions`` are lists of ``(H, W)`` images (cropped
    to multiples of ``size``); both are cut into the same tiles, so methods that
    work on whole images (JPEG, interpolation) and tile by tile (PCA, the
    autoencoders) are scored on exactly the same held-out tiles.
    """
    if len(originals) != len(reconstructions):
        raise ValueError(f"{len(originals)} originals but {len(reconstructions)} reconstructions")
    ref = torch.cat([image_to_tiles(crop_to_tiles(o, size), size) for o in originals])
    out = torch.cat([image_to_tiles(crop_to_tiles(r, size), size) for r in reconstructions])
    if ref.shape != out.shape:
        raise ValueError(f"tiles differ in shape: {tuple(ref.shape)} vs {tuple(out.shape)}")
    return mean_metrics(ref, out)
