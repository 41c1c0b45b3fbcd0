"""Traditional methods the autoencoders are measured against (chapters 2.3 and 5.2).

- :class:`PCABaseline`: the best *linear* code of the same size (what a
  linear autoencoder learns, chapter 2.1).
- :func:`block_klt`, :class:`BlockKLT`: the best linear transform of 8x8 image *blocks* (the
  Karhunen-Loeve transform, which JPEG's DCT approximates): the library's one block transform,
  which :class:`aebook.codecs.klt.KLTCodec` uses as its encoder (chapter 5.2).
- JPEG (DCT + quantisation + Huffman coding) with Pillow, the library's one JPEG: :func:`jpeg_bytes`
  encodes, :func:`jpeg_roundtrip` and :func:`jpeg_batch` decode again, :func:`jpeg_images`,
  :func:`jpeg_quality_for_bpp` and :func:`jpeg_rate_distortion` measure files at a budget,
  :func:`jpeg_uses_huffman` looks inside a file.
- :func:`interpolation_baseline`, :func:`interpolation_codec`: keep a downsampled image, rebuild
  it by bicubic interpolation (:func:`aebook.imageio.upsample_bicubic`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from aebook.imageio import to_uint8, upsample_bicubic
from aebook.metrics import psnr, rate_distortion_curve


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
        from sklearn.decomposition import PCA  # heavy (seconds to import): only where PCA is used

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


def _blocks(img: np.ndarray, block: int) -> torch.Tensor:
    """The whole ``block x block`` blocks of a grayscale image as rows ``(n_blocks, block**2)``
    (float64; pixels of a block in row-major order; edges that do not fill a block left out)."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < block:
        raise ValueError(f"the block KLT expects (H, W) grayscale images of at least {block}x{block}, "
                         f"got shape {img.shape}")
    h, w = img.shape[0] // block * block, img.shape[1] // block * block
    t = torch.from_numpy(np.ascontiguousarray(img[:h, :w]))[None, None]
    return F.pixel_unshuffle(t, block).flatten(2)[0].T


def block_klt(images: Sequence[np.ndarray], block: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The Karhunen-Loeve transform of the ``block x block`` blocks of ``images`` (grayscale, in [0, 1]).

    Returns ``(mean, basis)`` in float64: the blocks' mean ``(block**2,)`` and the eigenvectors of
    their covariance as the rows of ``basis`` ``(block**2, block**2)``, largest eigenvalue first,
    each with its largest entry made positive so that the fit is the same wherever it runs. The
    coefficients of a block ``x`` are ``basis @ (x - mean)``; the first ``k`` of them are the best
    linear code of ``k`` numbers per block (a linear autoencoder of blocks at its optimum).
    """
    x = torch.cat([_blocks(img, block) for img in images])
    mean = x.mean(0)
    values, vectors = torch.linalg.eigh(torch.cov((x - mean).T))
    vectors = vectors.flip(1).T  # rows, largest variance first
    signs = torch.sign(vectors.gather(1, vectors.abs().argmax(1, keepdim=True)))
    return mean, vectors * signs


class BlockKLT:
    """:func:`block_klt` of non-overlapping ``block x block`` tiles, keeping ``k`` coefficients per tile.

    The optimal *linear* block transform for mean squared error on its training tiles (the
    Karhunen-Loève transform). A codec whose latent holds ``k`` numbers per 8x8 block can be
    measured against it: without quantisation, this is how well a linear block code of the same
    size does. Grayscale images only; edges that do not fill a tile are left out.
    """

    def __init__(self, k: int, block: int = 8) -> None:
        if not 1 <= k <= block * block:
            raise ValueError(f"k must be in [1, {block * block}] for {block}x{block} blocks, got {k}")
        self.k, self.block = int(k), int(block)
        self.mean: torch.Tensor | None = None
        self.basis: torch.Tensor | None = None

    def fit(self, images: list[np.ndarray]) -> "BlockKLT":
        """Fit the transform on the tiles of ``images``; returns ``self``."""
        self.mean, basis = block_klt(images, self.block)
        self.basis = basis[: self.k]
        return self

    def reconstruct(self, img: np.ndarray) -> np.ndarray:
        """Project each tile onto the ``k`` components; returns the cropped ``(H', W')`` image in [0, 1]."""
        if self.mean is None or self.basis is None:
            raise ValueError("BlockKLT is not fitted: call fit(images) first")
        b = self.block
        rows = _blocks(img, b)
        h, w = np.asarray(img).shape[0] // b * b, np.asarray(img).shape[1] // b * b
        rec = ((rows - self.mean) @ self.basis.T @ self.basis + self.mean).clamp(0, 1)
        out = F.pixel_shuffle(rec.T.reshape(1, b * b, h // b, w // b), b)[0, 0]
        return out.float().numpy()

    def psnr(self, img: np.ndarray) -> float:
        """PSNR (dB) of :meth:`reconstruct` against ``img`` cropped the same way."""
        rec = self.reconstruct(img)
        return psnr(np.asarray(img, dtype=np.float64)[: rec.shape[0], : rec.shape[1]], rec)


# --------------------------------------------------------------------------- JPEG

def jpeg_bytes(img: np.ndarray, quality: int = 75) -> bytes:
    """The JPEG file of ``img`` (``(H, W)`` or ``(H, W, 3)`` floats in [0, 1], or uint8), as Pillow
    writes it with ``optimize=True`` (image-specific Huffman tables): the library's one JPEG encoder."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def jpeg_roundtrip(img: np.ndarray, quality: int = 75) -> tuple[np.ndarray, float]:
    """Compress ``img`` (``(H, W)`` or ``(H, W, 3)`` floats in [0, 1]) as JPEG and decode it.

    Returns the decoded image and the file size in bits per pixel (:func:`jpeg_bytes`).
    """
    data = jpeg_bytes(img, quality)
    with Image.open(io.BytesIO(data)) as out:
        decoded = np.asarray(out, dtype=np.float32) / 255.0
    return decoded, 8 * len(data) / (decoded.shape[0] * decoded.shape[1])


def jpeg_batch(x: torch.Tensor, quality: int) -> tuple[torch.Tensor, float]:
    """JPEG round trip of every image of an ``(N, C, H, W)`` batch; returns images and mean bits per pixel."""
    outs, bpps = [], []
    for img in x.detach().float().cpu():
        arr = img.permute(1, 2, 0).numpy()
        dec, bpp = jpeg_roundtrip(arr, quality)
        outs.append(torch.from_numpy(dec.reshape(arr.shape)).permute(2, 0, 1))
        bpps.append(bpp)
    return torch.stack(outs).to(x.device), float(np.mean(bpps))


def jpeg_images(images: Sequence[np.ndarray], quality: int) -> tuple[list[np.ndarray], float]:
    """JPEG round trip of whole images; returns the decoded images and bits per pixel over all of them.

    Whole images are compressed (not tiles) so that JPEG's headers and tables,
    a few hundred bytes per file, are shared by many blocks as in real use.
    """
    decoded, bits, pixels = [], 0.0, 0
    for img in images:
        dec, bpp = jpeg_roundtrip(img, quality)
        decoded.append(dec)
        bits += bpp * img.shape[0] * img.shape[1]
        pixels += img.shape[0] * img.shape[1]
    return decoded, bits / pixels


def jpeg_quality_for_bpp(images: Sequence[np.ndarray], target_bpp: float, low: int = 1,
                         high: int = 95) -> tuple[int, float]:
    """The highest JPEG quality in ``low..high`` whose bits per pixel (over ``images``) do not exceed ``target_bpp``.

    Bisection, assuming (as holds for Pillow's encoder) that the file size grows
    with the quality setting. Returns ``(quality, bpp)``.

    Raises
    ------
    ValueError
        If even quality ``low`` needs more than ``target_bpp``.
    """
    if not 1 <= low <= high <= 100:
        raise ValueError(f"need 1 <= low <= high <= 100, got {low}, {high}")
    bpp_low = jpeg_images(images, low)[1]
    if bpp_low > target_bpp:
        raise ValueError(f"JPEG quality {low} already needs {bpp_low:.3f} bpp > {target_bpp}")
    best = (low, bpp_low)
    lo, hi = low + 1, high
    while lo <= hi:
        mid = (lo + hi) // 2
        bpp = jpeg_images(images, mid)[1]
        if bpp <= target_bpp:
            best, lo = (mid, bpp), mid + 1
        else:
            hi = mid - 1
    return best


def jpeg_rate_distortion(images: Sequence[np.ndarray],
                         qualities: Sequence[int] = (5, 10, 20, 30, 50, 75, 90)) -> list[dict[str, float]]:
    """JPEG's rate-distortion curve (:func:`aebook.metrics.rate_distortion_curve`) over whole files
    at these JPEG qualities, as :func:`aebook.codecs.coding.rate_distortion` measures the book's codecs."""
    return rate_distortion_curve(jpeg_roundtrip, images, qualities)


def jpeg_uses_huffman(img: np.ndarray, quality: int = 75) -> bool:
    """True if Pillow's JPEG file for ``img`` defines Huffman tables (marker ``FFC4``) and
    uses a Huffman-coded frame (baseline ``FFC0``, extended ``FFC1`` or progressive ``FFC2``)."""
    data = jpeg_bytes(img, quality)
    return b"\xff\xc4" in data and any(m in data for m in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"))


# --------------------------------------------------------------------------- interpolation

def interpolation_baseline(x: torch.Tensor, factor: int, mode: str = "bicubic",
                           bits: int | None = None) -> torch.Tensor:
    """Keep an antialiased ``1/factor`` downsampled image and interpolate it back up.

    The downsampled image (block means: area averaging) holds ``H*W / factor**2`` numbers per
    channel: the rule-based way to store an image in fewer numbers. With ``bits`` each is also
    rounded to ``2**bits`` levels, so the cost is exactly ``bits / factor**2`` bits per pixel.
    ``mode`` ``"bicubic"`` is :func:`aebook.imageio.upsample_bicubic`; other PyTorch modes
    (``"bilinear"``, ``"nearest"``) are for comparison.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if bits is not None and not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    h, w = x.shape[-2:]
    small = F.interpolate(x.float(), size=(max(1, h // factor), max(1, w // factor)), mode="area")
    if bits is not None:
        levels = 2**bits - 1
        small = torch.round(small.clamp(0, 1) * levels) / levels
    if mode == "bicubic":
        return upsample_bicubic(small, (h, w))
    up = F.interpolate(small, size=(h, w), mode=mode, align_corners=False) if mode != "nearest" else \
        F.interpolate(small, size=(h, w), mode="nearest")
    return up.clamp(0, 1)


def interpolation_codec(img: np.ndarray, factor: int = 4, bits: int = 8, mode: str = "bicubic") -> np.ndarray:
    """:func:`interpolation_baseline` of one grayscale ``(H, W)`` image (H and W multiples of ``factor``)
    with ``bits`` per stored pixel: a rule-based codec of exactly ``bits / factor**2`` bits per pixel.
    Returns the ``(H, W)`` reconstruction, clipped to [0, 1]."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"expected a grayscale (H, W) image, got shape {arr.shape}")
    if factor < 1 or arr.shape[0] % factor or arr.shape[1] % factor:
        raise ValueError(f"image {arr.shape} is not divisible by factor {factor}")
    return interpolation_baseline(torch.from_numpy(arr)[None, None], factor, mode, bits)[0, 0].numpy()
