"""PSNR and SSIM, computed with scikit-image (chapter 3.3), and rate-distortion curves (chapter 5.2).

Images are float arrays or tensors in [0, 1]: ``(H, W)``, ``(H, W, C)`` or,
for tensors, ``(C, H, W)``; batches are ``(N, C, H, W)`` tensors.

PSNR is ``10 log10(1 / MSE)`` in decibels; identical images would give
infinity, which is capped at :data:`PSNR_CAP` so that means stay finite.
SSIM compares local means, variances and covariance in a 7x7 window
(smaller for tiny images such as the 8x8 digits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

#: PSNR (dB) reported for identical images, whose PSNR would be infinite.
PSNR_CAP = 100.0


def _as_hwc(img) -> np.ndarray:
    if isinstance(img, torch.Tensor):
        img = img.detach().float().cpu().numpy()
        if img.ndim == 3:
            img = img.transpose(1, 2, 0)
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3):
        raise ValueError(f"expected one image (H, W), (H, W, C) or (C, H, W), got shape {img.shape}")
    return img


def _pair(reference, test) -> tuple[np.ndarray, np.ndarray]:
    ref, out = _as_hwc(reference), _as_hwc(test)
    if ref.shape != out.shape:
        raise ValueError(f"images differ in shape: {ref.shape} vs {out.shape}")
    return ref, out


def psnr(reference, test) -> float:
    """Peak signal-to-noise ratio in dB (data range 1), capped at :data:`PSNR_CAP`."""
    ref, out = _pair(reference, test)
    if np.array_equal(ref, out):
        return PSNR_CAP
    return float(min(peak_signal_noise_ratio(ref, out, data_range=1.0), PSNR_CAP))


def ssim(reference, test) -> float:
    """Structural similarity (data range 1); colour images are averaged over channels."""
    ref, out = _pair(reference, test)
    win = min(7, min(ref.shape[:2]))
    win -= 1 - win % 2  # odd
    if win < 3:
        raise ValueError(f"image {ref.shape} too small for SSIM (needs at least 3x3)")
    return float(structural_similarity(ref, out, data_range=1.0, win_size=win,
                                       channel_axis=2 if ref.ndim == 3 else None))


def batch_metrics(reference: torch.Tensor, test: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image PSNR and SSIM of two ``(N, C, H, W)`` batches."""
    if reference.shape != test.shape:
        raise ValueError(f"batches differ in shape: {tuple(reference.shape)} vs {tuple(test.shape)}")
    ref = reference.detach().float().cpu()
    out = test.detach().float().cpu()
    return {
        "psnr": np.array([psnr(r, o) for r, o in zip(ref, out)]),
        "ssim": np.array([ssim(r, o) for r, o in zip(ref, out)]),
    }


def mean_metrics(reference: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    """Mean PSNR and SSIM over a batch, plus the count ``n``."""
    m = batch_metrics(reference, test)
    return {"n": int(len(reference)), "psnr": float(m["psnr"].mean()), "ssim": float(m["ssim"].mean())}


def rate_distortion_curve(roundtrip: Callable[[np.ndarray, int], tuple[np.ndarray, float]],
                          images: Sequence[np.ndarray], qualities: Sequence[int]) -> list[dict[str, float]]:
    """A codec's rate-distortion curve: for each quality ``q``, ``roundtrip(img, q) -> (decoded, bpp)``
    on every image, then the mean bits per pixel, PSNR and SSIM as ``{"quality", "bpp", "psnr", "ssim"}``.

    The one measurement behind every rate-distortion comparison (the book's codecs and JPEG).
    """
    curve = []
    for q in qualities:
        rows = []
        for img in images:
            ref = np.asarray(img, dtype=np.float32)
            decoded, bpp = roundtrip(ref, q)
            decoded = decoded.reshape(ref.shape)
            rows.append((bpp, psnr(ref, decoded), ssim(ref, decoded)))
        bpp, p, s = np.mean(rows, axis=0).tolist()
        curve.append({"quality": q, "bpp": bpp, "psnr": p, "ssim": s})
    return curve


def value_at_bpp(curve: Sequence[dict[str, float]], bpp: float, key: str = "psnr") -> float:
    """``key`` of a rate-distortion curve at ``bpp``, linearly interpolated; NaN outside its range."""
    points = sorted((p["bpp"], p[key]) for p in curve)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if not points or not xs[0] <= bpp <= xs[-1]:
        return float("nan")
    return float(np.interp(bpp, xs, ys))
