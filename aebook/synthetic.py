"""Synthetic training images made from a few photos: dead leaves and repeated patterns.

A restorer trained long on a few photos learns them by heart. These images give it new scenes
with the statistics of photos (:func:`dead_leaves`: objects at every scale, occlusion edges in
every direction, a ``1 / f**2`` power spectrum) and the repeated textures that photos hold too
rarely (:func:`repeat_tile`: stripes, tiles, stairs), filled with the photos' own pieces and
colours. :func:`aebook.data.photo_patches` cuts a share of its training patches from them
(``synthetic``, ``synthetic_patterns``).
"""

from __future__ import annotations

import numpy as np


#: The periods (pixels, smallest and largest) of :func:`dead_leaves`' repeated patterns.
PATTERN_PERIODS: tuple[int, int] = (3, 24)


def repeat_tile(tile: np.ndarray, dy: np.ndarray, dx: np.ndarray, angle: float) -> np.ndarray:
    """``tile`` (``(h, w)`` or ``(h, w, C)``) repeated over the plane along two axes turned by
    ``angle`` (radians), sampled at the offsets ``(dy, dx)`` (arrays of one shape) by bilinear
    interpolation that wraps around the tile: a periodic texture, unchanged by a shift of ``h``
    along the first turned axis ``(cos angle, sin angle)`` or of ``w`` along the second. Returns
    float32 of ``dy.shape`` (plus the tile's channels)."""
    from scipy.ndimage import map_coordinates  # scipy comes with scikit-image

    tile = np.asarray(tile, dtype=np.float32)
    c, s = np.cos(angle), np.sin(angle)
    coords = [(c * dy + s * dx) % tile.shape[0], (c * dx - s * dy) % tile.shape[1]]
    if tile.ndim == 2:
        return map_coordinates(tile, coords, order=1, mode="grid-wrap").astype(np.float32)
    return np.stack([map_coordinates(tile[..., k], coords, order=1, mode="grid-wrap")
                     for k in range(tile.shape[2])], axis=-1).astype(np.float32)


def dead_leaves(size: int, rng: np.random.Generator, textures: list[np.ndarray] | tuple[np.ndarray, ...] = (),
                r_min: float = 1.5, r_max: float | None = None, texture_share: float = 0.5,
                blur: tuple[float, float] = (0.4, 1.0), max_leaves: int = 400_000,
                pattern_share: float = 0.0) -> np.ndarray:
    """A ``size`` x ``size`` *dead leaves* image: random discs stacked until they cover the plane.

    The dead leaves model (Matheron; Lee, Mumford and Huang 2001) draws discs of radius ``r`` with
    density proportional to ``r**-3`` between ``r_min`` and ``r_max`` (default ``size / 2``), each
    hiding what lies beneath it. The result has the statistics that make photos hard to restore
    and easy to recognise: objects at every scale, sharp occlusion edges in every direction, and
    a power spectrum close to ``1 / f**2``. Restoration networks trained partly on such images
    see edges and scales that a few photos cannot supply (Achddou, Gousseau and Ladjal, 2021).

    Each disc is filled, with probability ``texture_share``, by a piece of one of ``textures``
    (photos, ``(H, W)`` or ``(H, W, 3)`` in [0, 1], at least ``size`` on each side), and otherwise
    by the colour of a random pixel of one of them (uniform random colours when none are given)
    with a gentle linear shading. The image is then blurred by a Gaussian of standard deviation
    drawn in ``blur`` (pixels), as a lens blurs the edges of real objects. Returns ``(size, size)``
    or ``(size, size, 3)`` float32 in [0, 1], with the textures' channels (grayscale without them).

    ``pattern_share`` fills that share of the discs wide enough to hold a few periods (radius at
    least ``2 * PATTERN_PERIODS[0]``) with a repeated pattern instead (:func:`repeat_tile`): a
    small piece of a texture (random values without them), its contrast scaled by a random
    factor, repeated along two axes turned by a random angle, with periods drawn in
    :data:`PATTERN_PERIODS` (at most half the radius). Photos hold few such patterns (stripes
    on cloth, tiles, stairs), and a network that has not seen them does far worse on them than
    BM3D, which denoises by stacking the repeats. With the default 0 no random number is drawn
    for them, so images made without patterns are unchanged.
    """
    from scipy.ndimage import gaussian_filter  # scipy comes with scikit-image

    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    r_max = float(r_max if r_max is not None else size / 2)
    if not 0 < r_min <= r_max:
        raise ValueError(f"need 0 < r_min <= r_max, got r_min={r_min}, r_max={r_max}")
    if not 0.0 <= texture_share <= 1.0:
        raise ValueError(f"texture_share must be in [0, 1], got {texture_share}")
    if not 0.0 <= pattern_share <= 1.0:
        raise ValueError(f"pattern_share must be in [0, 1], got {pattern_share}")
    textures = [t for t in textures if min(t.shape[:2]) >= size]
    shape = (size, size) + (textures[0].shape[2:] if textures else ())
    out = np.zeros(shape, dtype=np.float32)
    free = np.ones((size, size), dtype=bool)
    left = size * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    a, b = r_min ** -2.0, r_max ** -2.0
    p_lo, p_hi = PATTERN_PERIODS
    for _ in range(max_leaves):
        r = (a - rng.random() * (a - b)) ** -0.5  # inverse CDF of the r**-3 law
        cy, cx = rng.uniform(-r, size + r, 2)
        y0, y1 = max(0, int(cy - r)), min(size, int(cy + r) + 1)
        x0, x1 = max(0, int(cx - r)), min(size, int(cx + r) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        inside = dy**2 + dx**2 <= r * r
        paint = inside & free[y0:y1, x0:x1]
        if not paint.any():
            continue
        if pattern_share and r >= 2 * p_lo and rng.random() < pattern_share:
            py, px = rng.integers(p_lo, min(p_hi, int(r / 2)) + 1, 2)
            if textures:
                src = textures[rng.integers(len(textures))]
                ty, tx = rng.integers(src.shape[0] - py + 1), rng.integers(src.shape[1] - px + 1)
                tile = src[ty : ty + py, tx : tx + px]
            else:
                tile = rng.random((py, px)).astype(np.float32)
            mean = tile.mean(axis=(0, 1))
            tile = mean + rng.uniform(0.5, 2.5) * (tile - mean)
            fill = repeat_tile(tile, dy, dx, rng.uniform(0, np.pi))
        elif textures and rng.random() < texture_share:
            src = textures[rng.integers(len(textures))]
            ty = rng.integers(src.shape[0] - (y1 - y0) + 1)
            tx = rng.integers(src.shape[1] - (x1 - x0) + 1)
            fill = src[ty : ty + y1 - y0, tx : tx + x1 - x0]
        else:
            if textures:
                src = textures[rng.integers(len(textures))]
                colour = src[rng.integers(src.shape[0]), rng.integers(src.shape[1])]
            else:
                colour = np.float32(rng.random())
            slope = rng.normal(0, 0.15, 2) / max(r, 1.0)  # at most a few tenths across the disc
            shade = dy * slope[0] + dx * slope[1]
            fill = colour + (shade[..., None] if out.ndim == 3 else shade)
        out[y0:y1, x0:x1][paint] = fill[paint]
        free[y0:y1, x0:x1][paint] = False
        left -= int(paint.sum())
        if left == 0:
            break
    sigma = rng.uniform(*blur)
    if sigma > 0:
        out = gaussian_filter(out, sigma=(sigma, sigma) + (0,) * (out.ndim - 2), mode="reflect")
    return np.clip(out, 0.0, 1.0).astype(np.float32)
