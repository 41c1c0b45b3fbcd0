"""Side-by-side evaluation of restoration methods (chapters 4.3 and 4.4).

The same damaged images go to every method, classical or learned, and each
result is scored against the clean image with PSNR and SSIM and timed:

>>> images = load_held_out(gray=True, crop=128)                       # doctest: +SKIP
>>> ev = evaluate_methods(images, make_damage("blocks", fraction=0.25),
...                       {"biharmonic": lambda d: inpaint_biharmonic(d.damaged, d.mask)})  # doctest: +SKIP
>>> ev.means()["biharmonic"]["psnr"]                                   # doctest: +SKIP

A damage function takes a clean image and a seed and returns a
:class:`Damaged` record (clean reference, damaged input and what a restorer is
told: the mask, the noise level or the scale). The seed of image ``i`` is
``seed + i``, so every chapter, method and run sees exactly the same damage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import uniform_filter

from aebook.data import HELD_OUT_PHOTOS, load_photo
from aebook.metrics import psnr, ssim
from aebook.plots import markdown_table, side_by_side
from aebook.restoration import damage as damage_models
from aebook.runtime import timed

#: The damage kinds :func:`make_damage` knows.
DAMAGE_KINDS: tuple[str, ...] = ("blocks", "scratches", "pixels", "blind", "noise", "downsample", "exposure")

#: Name of the pseudo-method that scores the damaged input itself.
DAMAGED = "damaged input"


@dataclass
class Damaged:
    """One damaged image and what a restorer may know about the damage.

    ``clean`` is the reference the result is scored against (cropped to a
    multiple of ``scale`` for super-resolution); ``mask`` is True where pixels
    are missing (inpainting, and for blind damage the truth the restorer is
    *not* given); ``sigma`` is the noise level (0-255 scale); ``scale`` the
    super-resolution factor and ``kernel`` the downscaling kernel that made the small image.
    """

    clean: np.ndarray
    damaged: np.ndarray
    mask: np.ndarray | None = None
    sigma: float | None = None
    scale: int | None = None
    kernel: str | None = None


def make_damage(kind: str, *, fraction: float = 0.25, block: int = 8, n_lines: int = 8, width: float = 3.0,
                sigma: float = 25.0, scale: int = 2, eight_bit: bool = False,
                kernel: str = "area") -> Callable[[np.ndarray, int], Damaged]:
    """A damage function ``f(clean_image, seed) -> Damaged`` of one of :data:`DAMAGE_KINDS`.

    Parameters
    ----------
    kind
        ``"blocks"`` (``fraction`` of ``block x block`` cells missing), ``"scratches"``
        (``n_lines`` lines ``width`` pixels thick), ``"pixels"`` (``fraction`` of single
        pixels), ``"blind"`` (blocks filled with uniform random values; the mask is
        kept only for scoring), ``"noise"`` (Gaussian, ``sigma`` on the 0-255 scale,
        unclipped), ``"downsample"`` (shrinking by ``scale`` with ``kernel``: ``"area"``, block
        means, or ``"bicubic"``, antialiased as image editors shrink), ``"exposure"``
        (:func:`aebook.restoration.damage.random_degradation`: exposure and, in colour, a colour cast).
    eight_bit
        Give the restorers the damaged image as an 8-bit file holds it
        (:func:`aebook.restoration.damage.as_eight_bit`: clipped to [0, 1], rounded to 256
        levels), as the command line reads it. For noise this clips it.
    """
    if kind not in DAMAGE_KINDS:
        raise ValueError(f"unknown damage kind {kind!r}: choose one of {', '.join(DAMAGE_KINDS)}")
    damage_models.check_kernel(kernel)

    def masked(img: np.ndarray, mask: np.ndarray, fill: np.ndarray | float = 0.0) -> Damaged:
        out = damage_models.apply_mask(img, mask)
        if not np.isscalar(fill):
            out[mask] = np.asarray(fill, dtype=np.float32)[mask]
        return Damaged(img, out, mask=mask)

    def damage(img: np.ndarray, seed: int) -> Damaged:
        out = _damage(damage_models.as_image(img), seed)
        if eight_bit:
            out.damaged = damage_models.as_eight_bit(out.damaged)
        return out

    def _damage(img: np.ndarray, seed: int) -> Damaged:
        if kind == "blocks":
            return masked(img, damage_models.block_mask(img.shape, block, fraction, rng=seed))
        if kind == "scratches":
            return masked(img, damage_models.scratch_mask(img.shape, n_lines, width, rng=seed))
        if kind == "pixels":
            return masked(img, damage_models.pixel_mask(img.shape, fraction, rng=seed))
        if kind == "blind":
            rng = np.random.default_rng(seed)
            mask = damage_models.block_mask(img.shape, block, fraction, rng=rng)
            return masked(img, mask, rng.random(img.shape, dtype=np.float32))
        if kind == "noise":
            return Damaged(img, damage_models.add_gaussian_noise(img, sigma, rng=seed), sigma=float(sigma))
        if kind == "downsample":
            return Damaged(damage_models.crop_to_multiple(img, scale), damage_models.downsample(img, scale, kernel),
                           scale=scale, kernel=kernel)
        return Damaged(img, damage_models.random_degradation(img, rng=seed))

    return damage


def center_crop(img: np.ndarray, size: int | None) -> np.ndarray:
    """The central ``size x size`` part of an image (the whole image when ``size`` is None)."""
    img = np.asarray(img)
    if size is None:
        return img
    if size < 1 or size > min(img.shape[:2]):
        raise ValueError(f"crop size must be in 1..{min(img.shape[:2])} for an image of shape {img.shape}, got {size}")
    y, x = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return img[y : y + size, x : x + size]


def load_held_out(gray: bool = True, crop: int | None = None,
                  names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The held-out photos (``aebook.HELD_OUT_PHOTOS``), optionally centre-cropped to ``crop x crop``."""
    return {n: center_crop(load_photo(n, gray=gray), crop) for n in (names or HELD_OUT_PHOTOS)}


def _viewable(d: Damaged) -> np.ndarray:
    """The damaged input at the reference's size (nearest-neighbour enlargement for low-res inputs), clipped."""
    img = d.damaged
    if img.shape[:2] != d.clean.shape[:2]:
        f = d.clean.shape[0] // img.shape[0]
        img = np.repeat(np.repeat(img, f, axis=0), f, axis=1)
    return np.clip(img, 0.0, 1.0)


@dataclass
class Evaluation:
    """What :func:`evaluate_methods` measured: one row per (image, method), plus the images."""

    rows: list[dict] = field(default_factory=list)
    damages: dict[str, Damaged] = field(default_factory=dict)
    outputs: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        """Method names in evaluation order (the damaged input first, when scored)."""
        return list(dict.fromkeys(r["method"] for r in self.rows))

    def means(self) -> dict[str, dict[str, float]]:
        """``{method: {"psnr", "ssim", "seconds"}}``: means over the images."""
        out = {}
        for m in self.methods:
            rows = [r for r in self.rows if r["method"] == m]
            out[m] = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim", "seconds")}
        return out

    def per_image(self, metric: str = "psnr") -> dict[str, dict[str, float]]:
        """``{method: {image: value}}`` for ``metric`` (``"psnr"``, ``"ssim"`` or ``"seconds"``)."""
        return {m: {r["image"]: r[metric] for r in self.rows if r["method"] == m} for m in self.methods}

    def table(self, reference: str | None = None) -> str:
        """Markdown table of the means; with ``reference``, a column of PSNR gains over that method."""
        means = self.means()
        headers = ["method", "PSNR (dB)", "SSIM", "seconds per image"]
        if reference is not None:
            if reference not in means:
                raise ValueError(f"unknown reference method {reference!r}: choose one of {', '.join(means)}")
            headers.append(f"PSNR gain over {reference} (dB)")
        rows = []
        for m, v in means.items():
            row = [m, f"{v['psnr']:.2f}", f"{v['ssim']:.3f}", f"{v['seconds']:.2f}"]
            if reference is not None:
                row.append(f"{v['psnr'] - means[reference]['psnr']:+.2f}")
            rows.append(row)
        names = ", ".join(self.damages)
        return markdown_table(headers, rows) + f"\n\nMeans over {len(self.damages)} held-out images ({names})."

    def figure(self, image: str, methods: Sequence[str], size: float = 2.6,
               box: tuple[int, int, int] | None = None):
        """A row of images: original, damaged, then each method's result for one image, PSNR/SSIM in the titles.

        ``box = (top, left, side)`` shows (and scores) only that square of the image, to see detail.
        """
        d = self.damages[image]
        shown = [m for m in methods if m != DAMAGED]
        images = [d.clean, _viewable(d)] + [self.outputs[(image, m)] for m in shown]
        if box is not None:
            top, left, side = box
            if side < 1 or top < 0 or left < 0 or top + side > d.clean.shape[0] or left + side > d.clean.shape[1]:
                raise ValueError(f"box {box} does not fit in image {image!r} of shape {d.clean.shape}")
            images = [img[top : top + side, left : left + side] for img in images]
        return side_by_side(images, ["original", "damaged"] + shown, reference=images[0], size=size)


def evaluate_methods(images: Mapping[str, np.ndarray], damage_fn: Callable[[np.ndarray, int], Damaged],
                     methods: Mapping[str, Callable[[Damaged], np.ndarray]], seed: int = 0,
                     score_damaged: bool = True) -> Evaluation:
    """Damage every image once, restore it with every method, and score and time each result.

    Parameters
    ----------
    images
        ``{name: clean image}`` (float arrays in [0, 1]).
    damage_fn
        ``f(clean, seed) -> Damaged``, e.g. from :func:`make_damage`; image ``i`` gets seed ``seed + i``.
    methods
        ``{name: f(damaged: Damaged) -> restored image}``; each result must have the reference's shape.
    score_damaged
        Also score the damaged input itself, as method :data:`DAMAGED` (when it has the reference's shape).

    Returns
    -------
    Evaluation
        Rows ``{"image", "method", "psnr", "ssim", "seconds"}``, the damages and the restored images.
    """
    if not images:
        raise ValueError("evaluate_methods needs at least one image")
    if not methods:
        raise ValueError("evaluate_methods needs at least one method")
    ev = Evaluation()
    for i, (name, img) in enumerate(images.items()):
        d = damage_fn(img, seed + i)
        ev.damages[name] = d
        if score_damaged and d.damaged.shape == d.clean.shape:
            view = np.clip(d.damaged, 0.0, 1.0)
            ev.rows.append({"image": name, "method": DAMAGED, "psnr": psnr(d.clean, d.damaged),
                            "ssim": ssim(d.clean, view), "seconds": 0.0})
        for method, fn in methods.items():
            out, seconds = timed(fn, d)
            out = np.asarray(out, dtype=np.float32)
            if out.shape != d.clean.shape:
                raise ValueError(f"method {method!r} returned shape {out.shape} for image {name!r}, "
                                 f"expected {d.clean.shape}")
            ev.outputs[(name, method)] = out
            ev.rows.append({"image": name, "method": method, "psnr": psnr(d.clean, out),
                            "ssim": ssim(d.clean, out), "seconds": seconds})
    return ev


def local_contrast(img: np.ndarray, window: int = 9) -> np.ndarray:
    """The standard deviation of ``img`` in a ``window`` x ``window`` neighbourhood of every pixel
    (channels averaged first): 0 in flat regions, large on edges and strong texture."""
    if window < 2:
        raise ValueError(f"window must be at least 2, got {window}")
    x = np.asarray(img, dtype=np.float64)
    x = x.mean(axis=2) if x.ndim == 3 else x
    mean = uniform_filter(x, window, mode="reflect")
    return np.sqrt(np.maximum(uniform_filter(x * x, window, mode="reflect") - mean * mean, 0.0))


def gain_by_contrast(ev: Evaluation, method: str, reference: str, bins: int = 4,
                     window: int = 9) -> dict[str, list[float]]:
    """Where one method beats another: PSNR gain of ``method`` over ``reference`` (dB) in each of
    ``bins`` equal parts of every image, from its flattest pixels to its busiest.

    The pixels of each clean image are ranked by :func:`local_contrast` and cut at its quantiles,
    so every part holds the same number of pixels; the PSNR of both methods is computed on each
    part alone. Returns ``{image: [gain in part 1 (flattest), ..., part bins (busiest)]}``.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    for m in (method, reference):
        if m not in ev.methods or m == DAMAGED:
            raise ValueError(f"unknown method {m!r}: choose one of {', '.join(x for x in ev.methods if x != DAMAGED)}")
    out = {}
    for name, d in ev.damages.items():
        contrast = local_contrast(d.clean, window)
        part = np.digitize(contrast, np.quantile(contrast, np.arange(1, bins) / bins))
        if d.clean.ndim == 3:
            part = np.repeat(part[:, :, None], d.clean.shape[2], axis=2)
        gains = []
        for k in range(bins):
            sel = part == k
            if not sel.any():  # ties (a flat image): an empty part has no gain to report
                gains.append(float("nan"))
                continue
            mse = [float(np.mean((ev.outputs[(name, m)][sel].astype(np.float64) - d.clean[sel]) ** 2))
                   for m in (method, reference)]
            gains.append(10 * float(np.log10(max(mse[1], 1e-20) / max(mse[0], 1e-20))))
        out[name] = gains
    return out
