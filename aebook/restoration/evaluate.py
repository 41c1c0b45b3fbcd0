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

For the networks themselves (chapter 4.4 compares architectures at equal cost):
:func:`describe_restorer` says what a restorer is from its config, :func:`receptive_field`
measures how far it sees, and :func:`cpu_times` times several calls side by side.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from aebook import corrupt
from aebook.metrics import psnr, ssim

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
    super-resolution factor.
    """

    clean: np.ndarray
    damaged: np.ndarray
    mask: np.ndarray | None = None
    sigma: float | None = None
    scale: int | None = None


def make_damage(kind: str, *, fraction: float = 0.25, block: int = 8, n_lines: int = 8, width: float = 3.0,
                sigma: float = 25.0, scale: int = 2) -> Callable[[np.ndarray, int], Damaged]:
    """A damage function ``f(clean_image, seed) -> Damaged`` of one of :data:`DAMAGE_KINDS`.

    Parameters
    ----------
    kind
        ``"blocks"`` (``fraction`` of ``block x block`` cells missing), ``"scratches"``
        (``n_lines`` lines ``width`` pixels thick), ``"pixels"`` (``fraction`` of single
        pixels), ``"blind"`` (blocks filled with uniform random values; the mask is
        kept only for scoring), ``"noise"`` (Gaussian, ``sigma`` on the 0-255 scale,
        unclipped), ``"downsample"`` (area averaging by ``scale``), ``"exposure"``
        (:func:`aebook.corrupt.random_degradation`: exposure and, in colour, a colour cast).
    """
    if kind not in DAMAGE_KINDS:
        raise ValueError(f"unknown damage kind {kind!r}: choose one of {', '.join(DAMAGE_KINDS)}")

    def masked(img: np.ndarray, mask: np.ndarray, fill: np.ndarray | float = 0.0) -> Damaged:
        out = corrupt.apply_mask(img, mask)
        if not np.isscalar(fill):
            out[mask] = np.asarray(fill, dtype=np.float32)[mask]
        return Damaged(img, out, mask=mask)

    def damage(img: np.ndarray, seed: int) -> Damaged:
        img = corrupt.as_image(img)
        if kind == "blocks":
            return masked(img, corrupt.block_mask(img.shape, block, fraction, rng=seed))
        if kind == "scratches":
            return masked(img, corrupt.scratch_mask(img.shape, n_lines, width, rng=seed))
        if kind == "pixels":
            return masked(img, corrupt.pixel_mask(img.shape, fraction, rng=seed))
        if kind == "blind":
            rng = np.random.default_rng(seed)
            mask = corrupt.block_mask(img.shape, block, fraction, rng=rng)
            return masked(img, mask, rng.random(img.shape, dtype=np.float32))
        if kind == "noise":
            return Damaged(img, corrupt.add_gaussian_noise(img, sigma, rng=seed), sigma=float(sigma))
        if kind == "downsample":
            return Damaged(corrupt.crop_to_multiple(img, scale), corrupt.downsample(img, scale), scale=scale)
        return Damaged(img, corrupt.random_degradation(img, rng=seed))

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
    from aebook.data import HELD_OUT_PHOTOS, load_photo

    return {n: center_crop(load_photo(n, gray=gray), crop) for n in (names or HELD_OUT_PHOTOS)}


def cpu_times(calls: Mapping[str, Callable[[], object]], repeats: int = 5, threads: int = 1) -> dict[str, float]:
    """CPU seconds of each call, measured side by side: ``{name: shortest process time}``.

    The calls take turns (one of each per round, ``repeats`` rounds, after one untimed round
    that warms caches), so a change in the machine's load touches all of them alike; each is
    scored by its shortest round. ``time.process_time`` counts the work of this process only,
    not the time other programs take; PyTorch runs on ``threads`` threads meanwhile (one by
    default: then no thread is counted while it waits for another), and its setting is restored.
    """
    if repeats < 1 or threads < 1:
        raise ValueError(f"repeats and threads must be >= 1, got {repeats} and {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for fn in calls.values():
            fn()
        best = {name: float("inf") for name in calls}
        for _ in range(repeats):
            for name, fn in calls.items():
                start = time.process_time()
                fn()
                best[name] = min(best[name], time.process_time() - start)
    finally:
        torch.set_num_threads(before)
    return best


def receptive_field(model, channels: int | None = None, cond_channels: int | None = None,
                    size: int = 512) -> int:
    """The side of the square of input pixels that can change one output pixel of ``model``
    (its view), counted on a ``size x size`` input.

    Computed, not derived from a formula: in a copy of the network whose weights are all
    positive and whose biases are zero, no ReLU blocks anything and the network is linear, so a
    single bright pixel at the centre of a dark image lights exactly the outputs that see it:
    as far as the view reaches, on each side. A view as large as ``size`` means "at least
    ``size``". ``channels`` and ``cond_channels`` default to the model's own.
    """
    net = copy.deepcopy(model).float().eval()
    c = channels if channels is not None else model.channels
    k = cond_channels if cond_channels is not None else model.cond_channels
    x = torch.zeros(1, c, size, size)
    x[0, :, size // 2, size // 2] = 1.0
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.fill_(1.0 / p[0].numel() if p.ndim > 1 else 0.0)
        out = net(x, torch.zeros(1, k, size, size)) if k else net(x)
        lit = ((out - x)[0].abs().sum(0) > 0).cpu().numpy()  # the correction the restorer adds to x
    lit[size // 2, size // 2] = True
    rows, cols = np.flatnonzero(lit.any(1)), np.flatnonzero(lit.any(0))
    return int(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)


def describe_restorer(config: Mapping[str, object]) -> str:
    """What a restorer is, in words, from its config (``model.config`` of :mod:`aebook.restore`)."""
    kind = config.get("model")
    if kind == "residual_cnn":
        return (f"full-resolution residual CNN (DnCNN-style, no downsampling, no bottleneck): "
                f"{config['depth']} convolutions of {config['width']} channels")
    if kind == "encoder_decoder":
        widths, blocks = list(config["widths"]), list(config["blocks"])
        links = ("with skips (U-Net)" if config.get("skips", True)
                 else "without skips (an autoencoder: its correction passes the bottleneck)")
        return (f"encoder-decoder {links}: {len(widths)} scales down to 1/{2 ** (len(widths) - 1)}, "
                f"widths {'-'.join(map(str, widths))}, residual blocks {'-'.join(map(str, blocks))}")
    raise ValueError(f"not a restorer config: model {kind!r}")


def time_call(fn: Callable[..., object], *args, repeats: int = 1, **kwargs) -> float:
    """Shortest wall time in seconds of ``repeats`` calls ``fn(*args, **kwargs)``."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best


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
        from aebook.summary import markdown_table

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
        from aebook.plots import side_by_side

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
            start = time.perf_counter()
            out = np.asarray(fn(d), dtype=np.float32)
            seconds = time.perf_counter() - start
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
    from scipy.ndimage import uniform_filter

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


def verdict(a_name: str, a: float, b_name: str, b: float, unit: str = "dB", tie: float = 0.0) -> str:
    """A verdict sentence computed from two measurements, e.g. ``"X beats Y by 1.23 dB"``.

    Differences of at most ``tie`` read as "matches".
    """
    diff = a - b
    if abs(diff) <= tie:
        return f"{a_name} matches {b_name} (difference {diff:+.2f} {unit})"
    verb = "beats" if diff > 0 else "trails"
    return f"{a_name} {verb} {b_name} by {abs(diff):.2f} {unit}"


def goals_table(goals: Sequence[tuple[str, float, float]], unit: str = "dB") -> tuple[str, list[bool]]:
    """Markdown table of goals ``(goal, measured, target)`` with a computed "met?" column.

    A goal is met when ``measured >= target`` (state goals as "higher is
    better", e.g. a PSNR gain). Returns the table and the list of verdicts.
    """
    from aebook.summary import markdown_table

    met = [bool(measured >= target) for _, measured, target in goals]
    rows = [[goal, f"{measured:+.2f} {unit}", f"{target:+.2f} {unit}", "yes" if ok else "no"]
            for (goal, measured, target), ok in zip(goals, met)]
    return markdown_table(["goal", "measured", "target", "met?"], rows), met
