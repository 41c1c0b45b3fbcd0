"""Traditional methods the autoencoders are measured against (chapter 2.3).

- :class:`PCABaseline`: the best *linear* code of the same size (what a
  linear autoencoder learns, chapter 2.1).
- :class:`BlockKLT`: the best linear transform of image *blocks* keeping ``k`` coefficients
  (the Karhunen-Loève transform, which JPEG's DCT approximates; chapter 5.2).
- :func:`jpeg_roundtrip`: JPEG (DCT + quantisation + Huffman coding) with Pillow.
- :func:`interpolation_baseline`: keep a downsampled image, rebuild by bicubic interpolation.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA


class PCABaseline:
    """Principal component analysis with ``latent_dim`` components, fitted on image tensors.

    Examples
    --------
    >>> pca = PCABaseline(16).fit(data.train)          # doctest: +SKIP
    >>> recon = pca.reconstruct(data.test)             # doctest: +SKIP
    """

    def __init__(self, latent_dim: int, seed: int = 0) -> None:
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        self.latent_dim = latent_dim
        self.pca = PCA(n_components=latent_dim, random_state=seed)
        self.shape: tuple[int, ...] | None = None

    def fit(self, train: torch.Tensor) -> "PCABaseline":
        """Fit on ``(N, C, H, W)`` images; returns ``self``."""
        x = train.detach().float().cpu().flatten(1).numpy()
        if self.latent_dim > min(x.shape):
            raise ValueError(f"PCA latent_dim {self.latent_dim} exceeds min(n_samples, n_pixels) = {min(x.shape)}")
        self.pca.fit(x)
        self.shape = tuple(train.shape[1:])
        return self

    def _check(self, x: torch.Tensor) -> None:
        if self.shape is None:
            raise ValueError("PCABaseline is not fitted: call fit(train) first")
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"PCA was fitted on images of shape {self.shape}, got {tuple(x.shape[1:])}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Project onto the principal components: ``(N, latent_dim)``."""
        self._check(x)
        return torch.from_numpy(self.pca.transform(x.detach().float().cpu().flatten(1).numpy())).float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map codes back to images (not clipped)."""
        assert self.shape is not None
        return torch.from_numpy(self.pca.inverse_transform(z.cpu().numpy())).float().view(-1, *self.shape)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Encode, decode and clip to [0, 1]; returned on ``x``'s device."""
        return self.decode(self.encode(x)).clamp(0, 1).to(x.device)

    @property
    def components(self) -> np.ndarray:
        """Principal directions as rows, ``(latent_dim, C*H*W)``."""
        return self.pca.components_


class BlockKLT:
    """PCA of non-overlapping ``block x block`` tiles: keep ``k`` coefficients per tile.

    The optimal *linear* block transform for mean squared error on its training tiles (the
    Karhunen-Loève transform). A codec whose latent holds ``k`` numbers per 8x8 block can be
    measured against it: without quantisation, this is how well a linear block code of the same
    size does. Grayscale images only; edges that do not fill a tile are left out.
    """

    def __init__(self, k: int, block: int = 8) -> None:
        if not 1 <= k <= block * block:
            raise ValueError(f"k must be in [1, {block * block}] for {block}x{block} blocks, got {k}")
        self.k, self.block = int(k), int(block)
        self.pca: PCABaseline | None = None

    def _tiles(self, img: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """The image's whole tiles as a ``(n, 1, block, block)`` batch, and the cropped size they cover."""
        img = np.asarray(img, dtype=np.float32)
        if img.ndim != 2 or min(img.shape) < self.block:
            raise ValueError(f"BlockKLT expects (H, W) grayscale images of at least {self.block}x{self.block}, "
                             f"got shape {img.shape}")
        b = self.block
        h, w = img.shape[0] // b * b, img.shape[1] // b * b
        tiles = img[:h, :w].reshape(h // b, b, w // b, b).transpose(0, 2, 1, 3).reshape(-1, 1, b, b)
        return torch.from_numpy(np.ascontiguousarray(tiles)), (h, w)

    def fit(self, images: list[np.ndarray]) -> "BlockKLT":
        """Fit a :class:`PCABaseline` on the tiles of ``images``; returns ``self``."""
        self.pca = PCABaseline(self.k).fit(torch.cat([self._tiles(img)[0] for img in images]))
        return self

    def reconstruct(self, img: np.ndarray) -> np.ndarray:
        """Project each tile onto the ``k`` components; returns the cropped ``(H', W')`` image in [0, 1]."""
        if self.pca is None:
            raise ValueError("BlockKLT is not fitted: call fit(images) first")
        tiles, (h, w) = self._tiles(img)
        b = self.block
        rec = self.pca.reconstruct(tiles).numpy()
        return rec.reshape(h // b, w // b, b, b).transpose(0, 2, 1, 3).reshape(h, w)

    def psnr(self, img: np.ndarray) -> float:
        """PSNR (dB) of :meth:`reconstruct` against ``img`` cropped the same way."""
        from aebook.metrics import psnr

        rec = self.reconstruct(img)
        return psnr(np.asarray(img, dtype=np.float64)[: rec.shape[0], : rec.shape[1]], rec)


def jpeg_roundtrip(img: np.ndarray, quality: int = 75) -> tuple[np.ndarray, float]:
    """Compress ``img`` (``(H, W)`` or ``(H, W, 3)`` floats in [0, 1]) as JPEG and decode it.

    Returns the decoded image and the file size in bits per pixel.
    ``optimize=True`` makes Pillow build image-specific Huffman tables.
    """
    from PIL import Image

    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    from aebook.imageio import to_uint8

    arr = to_uint8(img)
    pil = Image.fromarray(arr)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=quality, optimize=True)
    bpp = 8 * buf.tell() / (arr.shape[0] * arr.shape[1])
    buf.seek(0)
    with Image.open(buf) as out:
        decoded = np.asarray(out, dtype=np.float32) / 255.0
    return decoded, bpp


def jpeg_batch(x: torch.Tensor, quality: int) -> tuple[torch.Tensor, float]:
    """JPEG round trip of every image of an ``(N, C, H, W)`` batch; returns images and mean bits per pixel."""
    outs, bpps = [], []
    for img in x.detach().float().cpu():
        arr = img.permute(1, 2, 0).numpy()
        dec, bpp = jpeg_roundtrip(arr, quality)
        outs.append(torch.from_numpy(dec.reshape(arr.shape)).permute(2, 0, 1))
        bpps.append(bpp)
    return torch.stack(outs).to(x.device), float(np.mean(bpps))


def interpolation_baseline(x: torch.Tensor, factor: int, mode: str = "bicubic") -> torch.Tensor:
    """Keep an antialiased ``1/factor`` downsampled image and interpolate it back up.

    The downsampled image holds ``H*W / factor**2`` numbers per channel: the
    rule-based way to store an image in fewer numbers.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    h, w = x.shape[-2:]
    small = F.interpolate(x.float(), size=(max(1, h // factor), max(1, w // factor)), mode="area")
    up = F.interpolate(small, size=(h, w), mode=mode, align_corners=False) if mode != "nearest" else \
        F.interpolate(small, size=(h, w), mode="nearest")
    return up.clamp(0, 1)
