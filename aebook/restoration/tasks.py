"""The restoration tasks: how each one damages clean training patches, and how a network's
output becomes the restored image (chapter 4).

One network architecture (:mod:`aebook.restoration.nets`) serves every task; the tasks differ only
in how training pairs are made from clean patches (:class:`Task`, :func:`make_task`) and in what
the network is given:

=========== ================================ ======================================
task         network input                    output
=========== ================================ ======================================
denoise      noisy image + sigma/255 map      noisy + correction
inpaint      holes pre-filled by                kept pixels, holes filled by the model
             :func:`smooth_fill` + mask
upscale2/4   bicubic-upscaled low-res image   bicubic + correction
             (+ kernel map, if conditioned)
enhance      badly exposed / colour-cast RGB  corrected image
=========== ================================ ======================================

``inpaint_blind`` is the blind variant of ``inpaint`` (chapter 4.3): the holes
hold random values and no mask is given, so the network must find the damage
as well as fill it. The damage is drawn on the device, batch by batch, with the batch
versions of :mod:`aebook.restoration.damage`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from aebook.imageio import upsample_bicubic
from aebook.restoration.damage import (as_eight_bit_batch, block_mask_batch, degradation_batch, downsample_batch,
                                       scratch_mask_batch)

#: Names of the restoration tasks.
TASKS = ("denoise", "inpaint", "inpaint_blind", "upscale2", "upscale4", "enhance")


@dataclass
class Task:
    """How a task damages clean images and how the network's answer is assembled.

    ``make(clean, generator)`` returns ``(damaged, cond)``; ``finish(damaged, cond, out)``
    turns the network output into the restored image (e.g. keeps the known pixels).
    """

    name: str
    channels: int
    cond_channels: int
    make: Callable[[torch.Tensor, torch.Generator | None], tuple[torch.Tensor, torch.Tensor | None]]
    finish: Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor]


#: The interval of noise levels (0-255 scale) from which the denoiser's training draws, uniformly.
SIGMA_RANGE = (0.0, 55.0)


def _denoise_make(clean, gen, sigmas=SIGMA_RANGE, eight_bit: float = 0.0):
    n = clean.shape[0]
    sigma = sigmas[0] + (sigmas[1] - sigmas[0]) * torch.rand(n, generator=gen, device=clean.device)
    noisy = clean + torch.randn(clean.shape, generator=gen, device=clean.device) * (sigma / 255).view(-1, 1, 1, 1)
    if eight_bit > 0:  # no extra draw otherwise: runs recorded before this setting replay exactly
        saved = torch.rand(n, generator=gen, device=clean.device) < eight_bit
        noisy = torch.where(saved.view(-1, 1, 1, 1), as_eight_bit_batch(noisy), noisy)
    return noisy, (sigma / 255).view(-1, 1, 1, 1).expand(n, 1, *clean.shape[-2:])


def _hole_mask(clean, gen, scratches: bool = True):
    """Training holes: 8x8 blocks (5-45 %), and for some images lost pixels or scratches."""
    n, dev = clean.shape[0], clean.device
    frac = 0.05 + 0.4 * torch.rand((), generator=gen, device=dev).item()
    mask = block_mask_batch(clean.shape, 8, frac, generator=gen, device=dev)
    pixels = (torch.rand(n, 1, *clean.shape[-2:], generator=gen, device=dev) < frac * 0.5).float()
    mask = torch.maximum(mask, pixels * (torch.rand(n, 1, 1, 1, generator=gen, device=dev) < 0.3).float())
    if not scratches:
        return mask
    lines = scratch_mask_batch(clean.shape, 2, (1.0, 5.0), generator=gen, device=dev)
    return torch.maximum(mask, lines * (torch.rand(n, 1, 1, 1, generator=gen, device=dev) < 0.4).float())


def smooth_fill(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill the holes (``mask`` = 1) of ``x`` smoothly from the known pixels, by push-pull.

    Pull: average the known pixels (weighted by how much of each cell is known) into
    ever coarser grids until no cell is empty. Push: from the coarsest grid down, a
    pixel keeps its own average where it is known and takes the bilinear upsampling of
    the coarser level where it is not. Known pixels are returned unchanged; the cost is
    a few poolings, so the fill is part of the network's input, in training and in use.
    """
    if mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} and images {tuple(x.shape)} differ in size")
    known = (1 - mask).to(x.dtype)
    values, weights = [x * known], [known]
    while min(values[-1].shape[-2:]) > 1 and bool((weights[-1] == 0).any()):
        values.append(F.avg_pool2d(values[-1], 2, ceil_mode=True))
        weights.append(F.avg_pool2d(weights[-1], 2, ceil_mode=True))
    fill = values[-1] / weights[-1].clamp_min(1e-8)
    for v, wt in zip(reversed(values[:-1]), reversed(weights[:-1])):
        up = F.interpolate(fill, size=v.shape[-2:], mode="bilinear", align_corners=False)
        alpha = wt.clamp(0, 1)  # fully known cells keep their own mean; empty ones take the coarse one
        fill = alpha * (v / wt.clamp_min(1e-8)) + (1 - alpha) * up
    return x * known + fill * (1 - known)


def _inpaint_make(clean, gen):
    mask = _hole_mask(clean, gen)
    return smooth_fill(clean * (1 - mask), mask), mask


def _inpaint_blind_make(clean, gen):
    """Holes as in ``inpaint`` but filled with uniform random values, and no mask for the network."""
    mask = _hole_mask(clean, gen, scratches=False)  # as when chapter 4.3 was written
    fill = torch.rand(clean.shape, generator=gen, device=clean.device)
    return clean * (1 - mask) + fill * mask, None


#: The value of the kernel map a kernel-conditioned super-resolution network is given
#: (``make_task(..., kernel_condition=True)``): how the small image was shrunk.
KERNEL_CODES: dict[str, float] = {"area": 0.0, "bicubic": 1.0}


def _upscale_make(scale, bicubic_downscale: float = 0.0, kernel_condition: bool = False):
    def make(clean, gen):
        h, w = clean.shape[-2:]
        small = downsample_batch(clean, scale)  # block means
        chosen = torch.zeros(clean.shape[0], dtype=torch.bool, device=clean.device)
        if bicubic_downscale > 0:  # no extra draw otherwise: runs recorded before this setting replay exactly
            chosen = torch.rand(clean.shape[0], generator=gen, device=clean.device) < bicubic_downscale
            small = torch.where(chosen.view(-1, 1, 1, 1), downsample_batch(clean, scale, "bicubic"), small)
        cond = None
        if kernel_condition:  # tell the network which kernel made each small image
            code = torch.where(chosen, KERNEL_CODES["bicubic"], KERNEL_CODES["area"]).to(clean.dtype)
            cond = code.view(-1, 1, 1, 1).expand(-1, 1, h, w)
        return upsample_bicubic(small, (h, w)), cond
    return make


def _enhance_make(clean, gen):
    return degradation_batch(clean, gen), None


def keep_known(damaged: torch.Tensor, mask: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The inpainting result: the known pixels of ``damaged`` and, where ``mask`` is 1, the network's ``out``."""
    return damaged * (1 - mask) + out.clamp(0, 1) * mask


def _plain(damaged, cond, out):
    return out.clamp(0, 1)


def make_task(name: str, channels: int = 1, sigma_range: tuple[float, float] | None = None,
              eight_bit: float = 0.0, bicubic_downscale: float = 0.0, kernel_condition: bool = False) -> Task:
    """The :class:`Task` called ``name`` (one of :data:`TASKS`).

    ``sigma_range`` (denoising only; default :data:`SIGMA_RANGE`) is the interval, on the 0-255
    scale, from which each training patch's noise level is drawn uniformly.

    ``eight_bit`` (denoising only; a probability, default 0) is the share of noisy training
    patches that are clipped to [0, 1] and rounded to 256 levels, as a noisy photo saved to an
    8-bit PNG or JPEG file is: the form in which ``aebook denoise`` receives it. Clipping biases
    the noise in dark and bright regions (a pixel at 0 stays at 0 or goes up), which a network
    trained on unclipped noise alone does not undo. The rest of the patches keep the unclipped
    noise of the denoising literature, and a patch shows which kind it is (values outside
    [0, 1], or exactly at 0 and 1).

    ``bicubic_downscale`` (super-resolution only; a probability, default 0) is the share of
    training pairs whose low-resolution image is shrunk with antialiased bicubic interpolation
    (:func:`aebook.restoration.damage.downsample_batch`, as PIL, MATLAB's ``imresize`` and the
    super-resolution benchmarks shrink) instead of block means. A network trained on one kernel
    alone loses part of its gain on images shrunk with the other.

    ``kernel_condition`` (super-resolution only) gives the network one more input channel, a
    constant map saying which kernel shrank the small image (:data:`KERNEL_CODES`: 0 for block
    means, 1 for bicubic), as the noise-level map tells the denoiser its sigma. Trained on both
    kernels (``bicubic_downscale`` between 0 and 1) and told the right one, a network gains more
    on each than told the wrong one, and more than a network trained on the same mix untold
    (``benchmarks/sr_kernels.py`` and ``benchmarks/results/README.md`` measure it).
    """
    for setting, value in (("eight_bit", eight_bit), ("bicubic_downscale", bicubic_downscale)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{setting} must be a probability in [0, 1], got {value}")
    if eight_bit and name != "denoise":
        raise ValueError(f"eight_bit is a setting of the denoise task, not of {name!r}")
    for setting, value in (("bicubic_downscale", bicubic_downscale), ("kernel_condition", kernel_condition)):
        if value and name not in ("upscale2", "upscale4"):
            raise ValueError(f"{setting} is a setting of the upscale tasks, not of {name!r}")
    if sigma_range is not None:
        if name != "denoise":
            raise ValueError(f"sigma_range is a setting of the denoise task, not of {name!r}")
        lo, hi = (float(v) for v in sigma_range)
        if not 0 <= lo <= hi:
            raise ValueError(f"sigma_range must be (low, high) with 0 <= low <= high, got {tuple(sigma_range)}")
    if name == "denoise":
        sigmas = SIGMA_RANGE if sigma_range is None else (lo, hi)
        share = float(eight_bit)
        return Task(name, channels, 1, lambda clean, gen: _denoise_make(clean, gen, sigmas, share), _plain)
    if name == "inpaint":
        return Task(name, channels, 1, _inpaint_make, keep_known)
    if name == "inpaint_blind":
        return Task(name, channels, 0, _inpaint_blind_make, _plain)
    if name in ("upscale2", "upscale4"):
        return Task(name, channels, int(bool(kernel_condition)),
                    _upscale_make(int(name[-1]), float(bicubic_downscale), bool(kernel_condition)), _plain)
    if name == "enhance":
        return Task(name, 3, 0, _enhance_make, _plain)
    raise ValueError(f"unknown restoration task {name!r}: choose one of {', '.join(TASKS)}")
