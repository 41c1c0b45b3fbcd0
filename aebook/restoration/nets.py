"""Image restoration networks for chapter 4: denoising, inpainting, super-resolution, enhancement.

Two architectures, one interface. Each looks at the damaged image (plus a condition map: the
noise level for denoising, the mask for inpainting, as FFDNet does) and predicts the
*correction* to add to it:

* :class:`EncoderDecoder`, the shipped one: an autoencoder-shaped network in the style of
  DRUNet (Zhang et al., 2021). Stride-2 convolutions halve the resolution stage by stage down
  to a coarse bottleneck, transposed convolutions bring it back, and (with ``skips``) each
  decoder stage adds the encoder's features of the same scale, so fine detail does not have
  to squeeze through the bottleneck. Channels double as the resolution halves, so each stage
  costs about the same per pixel while the coarse stages see far (a wide view at low cost).
* :class:`ResidualCNN`, a full-resolution stack of convolutions in the style of DnCNN
  (Zhang et al., 2017): no downsampling, no bottleneck, a view of ``depth`` pixels each way.

The tasks differ only in how training pairs are made from clean patches (:class:`Task`) and
in what the network is given:

=========== ================================ ======================================
task         network input                    output
=========== ================================ ======================================
denoise      noisy image + sigma/255 map      noisy + correction
inpaint      holes pre-filled by                kept pixels, holes filled by the model
             :func:`smooth_fill` + mask
upscale2/4   bicubic-upscaled low-res image   bicubic + correction
enhance      badly exposed / colour-cast RGB  corrected image
=========== ================================ ======================================

``inpaint_blind`` is the blind variant of ``inpaint`` (chapter 4.3): the holes
hold random values and no mask is given, so the network must find the damage
as well as fill it.

Large images are processed in overlapping tiles (:func:`apply_tiled`) so that
memory stays bounded.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
import pywt
from scipy.ndimage import maximum_filter
from torch import nn

from aebook.imageio import image_to_tensor, tensor_to_image

#: Names of the restoration tasks.
TASKS = ("denoise", "inpaint", "inpaint_blind", "upscale2", "upscale4", "enhance")


class ResidualCNN(nn.Module):
    """``depth`` 3x3 convolutions with ReLU; the last predicts a correction added to the image.

    Parameters
    ----------
    channels
        Image channels (1 or 3).
    cond_channels
        Extra input channels (noise-level map or mask) concatenated to the image.
    depth, width
        Number of convolutions and their feature channels (DnCNN: 17 and 64).
    """

    name = "residual_cnn"

    def __init__(self, channels: int = 1, cond_channels: int = 0, depth: int = 17, width: int = 64) -> None:
        super().__init__()
        if channels not in (1, 3) or depth < 2 or width < 1:
            raise ValueError(f"bad ResidualCNN settings: channels={channels}, depth={depth}, width={width}")
        self.config = {"model": self.name, "channels": channels, "cond_channels": cond_channels,
                       "depth": depth, "width": width}
        self.channels, self.cond_channels = channels, cond_channels
        layers: list[nn.Module] = [nn.Conv2d(channels + cond_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        for layer in layers[:-1]:  # He initialisation: without it (or batch norm) the signal and its
            if isinstance(layer, nn.Conv2d):  # gradient shrink layer by layer and a deep stack never trains
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        nn.init.zeros_(layers[-1].weight)  # start as the identity: output = input
        nn.init.zeros_(layers[-1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected images (N, {self.channels}, H, W), got {tuple(x.shape)}")
        inp = x if cond is None else torch.cat([x, cond.to(x.dtype)], dim=1)
        if inp.shape[1] != self.channels + self.cond_channels:
            raise ValueError(f"expected {self.cond_channels} condition channels, got {inp.shape[1] - self.channels}")
        return x + self.body(inp)


class ResBlock(nn.Module):
    """``x + conv(relu(conv(x)))``: two 3x3 convolutions of ``width`` channels around a ReLU.

    The second convolution starts small (He initialisation scaled by 0.1), so a deep stack of
    blocks starts close to the identity and trains without normalisation layers.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        with torch.no_grad():
            self.conv2.weight.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the last two axes of ``x`` at the bottom and right to multiples of ``multiple``,
    by reflection (by repeating the edge where the image is too small to reflect)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class EncoderDecoder(nn.Module):
    """A convolutional encoder–decoder (U-Net) that predicts a correction added to the image.

    Stage ``s`` works at ``1 / 2**s`` of the resolution with ``widths[s]`` channels and
    ``blocks[s]`` :class:`ResBlock` s. The encoder runs the stages from fine to coarse, each
    followed by a 2x2 stride-2 convolution; the last (coarsest) stage is the bottleneck; the
    decoder comes back up with 2x2 stride-2 transposed convolutions, each followed by the
    blocks of its scale. With ``skips`` the decoder adds the encoder's output of the same
    scale before its blocks (DRUNet's additive skips); without them the network is a pure
    autoencoder, and everything it outputs must pass through the bottleneck.

    Images of any size are padded (by reflection) to a multiple of ``2 ** (len(widths) - 1)``
    and cropped back.

    Parameters
    ----------
    channels
        Image channels (1 or 3).
    cond_channels
        Extra input channels (noise-level map or mask) concatenated to the image.
    widths
        Channels of each stage, finest first (e.g. ``(32, 64, 128, 256)``: 3 halvings).
    blocks
        Residual blocks per stage, same length as ``widths``.
    skips
        Add the encoder's features to the decoder's at each scale.
    """

    name = "encoder_decoder"
    #: Default tile size and overlap for :func:`apply_tiled`: the coarse stages see far, so
    #: tiles are large (a 512 x 512 image is one tile) and overlap by 32 pixels each way.
    tile, overlap = 512, 32

    def __init__(self, channels: int = 1, cond_channels: int = 0, widths: tuple[int, ...] = (32, 64, 128, 256),
                 blocks: tuple[int, ...] = (1, 1, 1, 1), skips: bool = True) -> None:
        super().__init__()
        widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
        if (channels not in (1, 3) or not 2 <= len(widths) <= 6 or len(blocks) != len(widths)
                or min(widths) < 1 or min(blocks) < 0):
            raise ValueError(f"bad EncoderDecoder settings: channels={channels}, widths={widths}, blocks={blocks}")
        self.config = {"model": self.name, "channels": channels, "cond_channels": cond_channels,
                       "widths": list(widths), "blocks": list(blocks), "skips": bool(skips)}
        self.channels, self.cond_channels, self.skips = channels, cond_channels, bool(skips)
        self.multiple = 2 ** (len(widths) - 1)
        self.head = nn.Conv2d(channels + cond_channels, widths[0], 3, padding=1)
        self.encoder = nn.ModuleList(nn.Sequential(*[ResBlock(w) for _ in range(b)])
                                     for w, b in zip(widths[:-1], blocks[:-1]))
        self.down = nn.ModuleList(nn.Conv2d(a, b, 2, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        self.bottleneck = nn.Sequential(*[ResBlock(widths[-1]) for _ in range(blocks[-1])])
        self.up = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        self.decoder = nn.ModuleList(nn.Sequential(*[ResBlock(w) for _ in range(b)])
                                     for w, b in zip(widths[:-1], blocks[:-1]))
        self.tail = nn.Conv2d(widths[0], channels, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # start as the identity: output = input
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected images (N, {self.channels}, H, W), got {tuple(x.shape)}")
        inp = x if cond is None else torch.cat([x, cond.to(x.dtype)], dim=1)
        if inp.shape[1] != self.channels + self.cond_channels:
            raise ValueError(f"expected {self.cond_channels} condition channels, got {inp.shape[1] - self.channels}")
        h0, w0 = inp.shape[-2:]
        h = self.head(pad_to_multiple(inp, self.multiple))
        saved = []
        for blocks, down in zip(self.encoder, self.down):
            h = blocks(h)
            saved.append(h)
            h = down(h)
        h = self.bottleneck(h)
        for up, blocks, skip in zip(reversed(self.up), reversed(self.decoder), reversed(saved)):
            h = up(h)
            h = blocks(h + skip if self.skips else h)
        return x + self.tail(h)[..., :h0, :w0]


#: The restorer architectures by the name their config records.
ARCHITECTURES: dict[str, type[nn.Module]] = {ResidualCNN.name: ResidualCNN, EncoderDecoder.name: EncoderDecoder}


def build_restorer(arch: str, channels: int, cond_channels: int, **options) -> nn.Module:
    """A new restorer of architecture ``arch`` (a key of :data:`ARCHITECTURES`).

    ``options`` are the architecture's own settings: ``depth``, ``width`` for ``residual_cnn``;
    ``widths``, ``blocks``, ``skips`` for ``encoder_decoder``.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown restorer architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](channels, cond_channels, **options)


def deepen(model: ResidualCNN, depth: int) -> ResidualCNN:
    """A deeper copy of ``model`` that computes exactly the same function (Net2DeeperNet).

    ``depth - model_depth`` new 3x3 convolutions are spread evenly between the hidden layers.
    Each starts as the identity (weight 1 at the centre tap of its own channel, 0 elsewhere,
    bias 0) and follows a ReLU, so its input is non-negative and the ReLU after it changes
    nothing: the deeper network starts where the shallower one ended, and training then uses
    the new layers (Chen, Goodfellow and Shlens, 2016, "Net2Net"). The way to give a trained
    restorer more capacity without starting again.
    """
    old = model.config["depth"]
    if depth < old:
        raise ValueError(f"cannot deepen a {old}-layer network to {depth} layers")
    out = ResidualCNN(model.channels, model.cond_channels, depth, model.config["width"])
    old_convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    new_convs = [m for m in out.body if isinstance(m, nn.Conv2d)]
    hidden, extra = old - 1, depth - old  # ReLUs after which a layer may go (all but the output); new layers
    after = [max(1, round((k + 1) * hidden / (extra + 1))) for k in range(extra)]  # 1-based old layer
    j = 0
    with torch.no_grad():
        for i, conv in enumerate(old_convs, start=1):
            new_convs[j].weight.copy_(conv.weight)
            new_convs[j].bias.copy_(conv.bias)
            j += 1
            for _ in range(after.count(i)):
                ident = new_convs[j]
                ident.weight.zero_()
                ident.bias.zero_()
                for c in range(ident.weight.shape[0]):
                    ident.weight[c, c, 1, 1] = 1.0
                j += 1
    assert j == len(new_convs)
    return out.train(model.training)


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


def _denoise_make(clean, gen, sigmas=SIGMA_RANGE):
    n = clean.shape[0]
    sigma = sigmas[0] + (sigmas[1] - sigmas[0]) * torch.rand(n, generator=gen, device=clean.device)
    noisy = clean + torch.randn(clean.shape, generator=gen, device=clean.device) * (sigma / 255).view(-1, 1, 1, 1)
    return noisy, (sigma / 255).view(-1, 1, 1, 1).expand(n, 1, *clean.shape[-2:])


def _hole_mask(clean, gen, scratches: bool = True):
    """Training holes: 8x8 blocks (5-45 %), and for some images lost pixels or scratches."""
    from aebook.corrupt import block_mask_batch, scratch_mask_batch

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


def _upscale_make(scale):
    def make(clean, gen):
        h, w = clean.shape[-2:]
        small = F.avg_pool2d(clean, scale)  # block means, as aebook.corrupt.downsample
        return upsample_bicubic(small, (h, w)), None
    return make


def _enhance_make(clean, gen):
    n, dev = clean.shape[0], clean.device

    def u(lo, hi):
        return (lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=gen, device=dev))

    gamma = torch.exp(u(np.log(0.5), np.log(2.0)))
    out = clean.clamp(0, 1) ** gamma
    out = (out - 0.5) * u(0.6, 1.4) + 0.5 + u(-0.2, 0.2)
    gains = 0.8 + 0.4 * torch.rand(n, clean.shape[1], 1, 1, generator=gen, device=dev)
    return (out * gains).clamp(0, 1), None


def upsample_bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic upsampling of a batch, clipped to [0, 1] (the super-resolution baseline and input)."""
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


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


def _keep_known(damaged, mask, out):
    return damaged * (1 - mask) + out.clamp(0, 1) * mask


def _plain(damaged, cond, out):
    return out.clamp(0, 1)


def make_task(name: str, channels: int = 1, sigma_range: tuple[float, float] | None = None) -> Task:
    """The :class:`Task` called ``name`` (one of :data:`TASKS`).

    ``sigma_range`` (denoising only; default :data:`SIGMA_RANGE`) is the interval, on the 0-255
    scale, from which each training patch's noise level is drawn uniformly.
    """
    if sigma_range is not None:
        if name != "denoise":
            raise ValueError(f"sigma_range is a setting of the denoise task, not of {name!r}")
        lo, hi = (float(v) for v in sigma_range)
        if not 0 <= lo <= hi:
            raise ValueError(f"sigma_range must be (low, high) with 0 <= low <= high, got {tuple(sigma_range)}")
    if name == "denoise":
        sigmas = SIGMA_RANGE if sigma_range is None else (lo, hi)
        return Task(name, channels, 1, lambda clean, gen: _denoise_make(clean, gen, sigmas), _plain)
    if name == "inpaint":
        return Task(name, channels, 1, _inpaint_make, lambda d, m, o: _keep_known(d, m, o))
    if name == "inpaint_blind":
        return Task(name, channels, 0, _inpaint_blind_make, _plain)
    if name in ("upscale2", "upscale4"):
        return Task(name, channels, 0, _upscale_make(int(name[-1])), _plain)
    if name == "enhance":
        return Task(name, 3, 0, _enhance_make, _plain)
    raise ValueError(f"unknown restoration task {name!r}: choose one of {', '.join(TASKS)}")


@torch.no_grad()
def apply_tiled(model: nn.Module, image: torch.Tensor, cond: torch.Tensor | None = None,
                tile: int | None = None, overlap: int | None = None,
                channels_last: bool | None = None) -> torch.Tensor:
    """Run ``model`` on a ``(1, C, H, W)`` image tile by tile.

    Tiles overlap by ``2 * overlap`` pixels and only each tile's interior
    (``overlap`` pixels away from any inner edge) is kept, so the result equals
    running the model on the whole image whenever ``overlap`` is at least the
    network's receptive-field radius (``depth`` pixels for a :class:`ResidualCNN` of 3x3
    convolutions; its default overlap is the larger of 24 and its depth, its default tile 256):
    no seams, and memory bounded by the tile size whatever the image size. An
    :class:`EncoderDecoder` sees farther than any affordable overlap; its defaults
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
    out = torch.empty(1, c, h, w, device=image.device)
    for y0, y1, x0, x1, ty, by, tx, bx in tile_boxes(h, w, tile, overlap):
        patch = image[:, :, y0:y1, x0:x1].to(param.device, param.dtype, memory_format=layout)
        pc = None if cond is None else cond[:, :, y0:y1, x0:x1].to(param.device, param.dtype,
                                                                   memory_format=layout)
        res = model(patch, pc).float().to(image.device)
        out[:, :, y0 + ty : y0 + by, x0 + tx : x0 + bx] = res[:, :, ty:by, tx:bx]
    return out


def dihedral(x: torch.Tensor, k: int, flip: bool, inverse: bool = False) -> torch.Tensor:
    """One of the 8 symmetries of the square applied to the last two axes of ``x``:
    a left-right flip (if ``flip``) after ``k`` quarter turns, or its inverse."""
    if inverse:
        return torch.rot90(x.flip(-1) if flip else x, -k, dims=(-2, -1))
    x = torch.rot90(x, k, dims=(-2, -1))
    return x.flip(-1) if flip else x


def restore_image(model: nn.Module, task: str, img: np.ndarray, *, sigma: float | None = None,
                  mask: np.ndarray | None = None, tile: int | None = None, ensemble: bool = False) -> np.ndarray:
    """Restore one image (float array in [0, 1]) with a trained network.

    ``denoise`` needs ``sigma`` (0-255 scale); ``inpaint`` needs ``mask``
    (True = missing); ``inpaint_blind`` gets no mask (the model finds the
    damage itself); ``upscale2``/``upscale4`` take the low-resolution image
    and return it ``scale`` times larger; ``enhance`` takes a colour image.
    The output keeps the input's mode: a grayscale model restores a colour
    image channel by channel; a colour model sees a grayscale image as three
    equal channels and returns their mean. ``tile`` (default: the model's own, see
    :func:`apply_tiled`) bounds the memory.

    ``ensemble=True`` is the geometric self-ensemble (Lim et al., 2017, "EDSR+"):
    the network restores the 8 rotated and flipped copies of the input, each
    result is turned back and the 8 are averaged. Eight times the work for a
    cleaner estimate; chapters 4.3 and 4.4 measure the gain.
    """
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[2] == 3 and model.channels == 1:
        return np.stack([restore_image(model, task, arr[:, :, i], sigma=sigma, mask=mask, tile=tile,
                                       ensemble=ensemble) for i in range(3)], axis=2)
    if arr.ndim == 2 and model.channels == 3:
        return restore_image(model, task, np.repeat(arr[:, :, None], 3, axis=2), sigma=sigma, mask=mask,
                             tile=tile, ensemble=ensemble).mean(axis=2)
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
    elif task not in ("enhance", "inpaint_blind"):
        raise ValueError(f"unknown restoration task {task!r}: choose one of {', '.join(TASKS)}")
    model.eval()
    if not ensemble:
        out = apply_tiled(model, x, cond, tile=tile)
    else:
        out = torch.zeros_like(x)
        for k in range(4):
            for flip in (False, True):
                c = None if cond is None else dihedral(cond, k, flip)
                out += dihedral(apply_tiled(model, dihedral(x, k, flip), c, tile=tile), k, flip, inverse=True)
        out /= 8
    if task == "inpaint":
        out = _keep_known(x, cond, out)
    return tensor_to_image(out)


#: The ``"psnr"`` loss's floor on a patch's MSE (about 45 dB), so that a nearly perfect patch does
#: not get an unbounded weight.
PSNR_LOSS_FLOOR = 3e-5


def training_objective(out: torch.Tensor, target: torch.Tensor, loss: str = "mse") -> tuple[torch.Tensor, torch.Tensor]:
    """The quantity :func:`train_restorer` minimises, and the batch MSE it reports.

    ``"mse"``: the batch's mean squared error. ``"psnr"``: a surrogate of the patches' mean
    PSNR, whose gradient is that of ``mean(log(MSE_i + floor))``: each patch's squared error
    divided by its own detached MSE (floored at :data:`PSNR_LOSS_FLOOR`), rescaled by the
    batch's mean so that the learning rate means the same under both losses.
    """
    mse = F.mse_loss(out, target)
    if loss == "mse":
        return mse, mse
    if loss != "psnr":
        raise ValueError(f"unknown loss {loss!r}: choose 'mse' or 'psnr'")
    per_patch = ((out - target) ** 2).flatten(1).mean(1)
    held = per_patch.detach()
    return (per_patch / (held + PSNR_LOSS_FLOOR)).mean() * (held.mean() + PSNR_LOSS_FLOOR), mse


def train_restorer(task: str | Task, epochs: int = 10, n_patches: int = 20000, patch_size: int = 48,
                   depth: int = 17, width: int = 64, batch_size: int = 64, lr: float = 1e-3,
                   seed: int = 0, device: str = "auto", progress: bool = True,
                   init: str | ResidualCNN | None = None,
                   minutes: float | None = None, warmup: float = 0.0,
                   sigma_range: tuple[float, float] | None = None,
                   loss: str = "mse", arch: str = "residual_cnn",
                   widths: tuple[int, ...] = (32, 64, 128, 256), blocks: tuple[int, ...] = (1, 1, 1, 1),
                   skips: bool = True) -> tuple[nn.Module, list[float]]:
    """Train a restorer for ``task`` on patches of the training photos (never the held-out ones).

    ``arch`` chooses the network (:data:`ARCHITECTURES`): ``"residual_cnn"`` (a :class:`ResidualCNN`
    of ``depth`` convolutions of ``width`` channels) or ``"encoder_decoder"`` (an
    :class:`EncoderDecoder` with ``widths``, ``blocks`` and ``skips``); the other architecture's
    settings are ignored.

    Returns the model (in eval mode) and the mean training loss (MSE) per epoch.
    Patches are held on the device; damage is drawn afresh for every batch.
    ``init`` (a run folder, a shipped model's name, or a :class:`ResidualCNN`) warm-starts from those weights
    instead of a random initialisation: they must be a restorer for the same ``task``
    with the same architecture and settings (``ValueError`` otherwise), except that a
    :class:`ResidualCNN` may have fewer than ``depth`` layers: a shallower
    start is grown by :func:`deepen`, keeping its function. A second run with a
    new ``seed`` then sees new patches and new damage: training continued in stages.

    ``task`` is one of :data:`TASKS` or a :class:`Task` of its own (e.g. the compression
    artefacts of :func:`aebook.transform_codec.klt_damage_task`); such a task may warm-start
    from a restorer of *another* task with the same shape (transfer learning: a denoiser
    fine-tuned to remove other damage).

    ``minutes`` gives training a wall-clock budget instead, for a machine whose speed is not
    known in advance (a lent GPU): the learning rate follows the same cosine, but over the
    elapsed fraction of the budget, and training stops when the budget is spent (``epochs``
    is then only an upper bound). The result then depends on the machine's speed.

    ``warmup`` (a fraction of training, 0 to 1) ramps the learning rate up linearly from 0
    over that first part of the steps (or of the time budget), then follows the cosine. For
    warm starts: Adam's first steps move every weight by about ``lr`` whatever its gradient,
    which knocks a trained network off its optimum before the run can start to improve it.

    ``sigma_range`` (denoising) narrows or widens the noise levels drawn for training
    (:func:`make_task`). ``loss`` is ``"mse"`` (the mean squared error of the batch) or
    ``"psnr"``: the mean of the patches' PSNRs, i.e. each patch's squared-error gradient divided
    by that patch's own (detached) MSE, floored at :data:`PSNR_LOSS_FLOOR`. Under plain MSE the
    noisiest patches dominate the gradient; under ``"psnr"`` a patch counts by its *relative*
    error, as the book's tables count images. The reported losses stay the batch MSE.
    """
    if loss not in ("mse", "psnr"):
        raise ValueError(f"unknown loss {loss!r}: choose 'mse' or 'psnr'")
    if minutes is not None and not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    if not 0.0 <= warmup <= 1.0:
        raise ValueError(f"warmup must be a fraction in [0, 1], got {warmup}")
    from tqdm.auto import tqdm

    from aebook.data import photo_patches
    from aebook.runtime import pick_device

    if isinstance(task, Task) and sigma_range is not None:
        raise ValueError("sigma_range applies to the built-in denoise task, not to a Task of its own")
    spec = task if isinstance(task, Task) else make_task(task, sigma_range=sigma_range)
    dev = pick_device(device)
    torch.manual_seed(seed)
    clean = photo_patches(n_patches, size=patch_size, gray=spec.channels == 1, seed=seed).to(dev)
    options = {"depth": depth, "width": width} if arch == "residual_cnn" else {
        "widths": tuple(widths), "blocks": tuple(blocks), "skips": skips}
    model = build_restorer(arch, spec.channels, spec.cond_channels, **options)
    if init is not None:
        from aebook.pretrained import resolve

        if isinstance(init, nn.Module):  # a network in hand (e.g. a codec's decoder): the caller's task
            start, start_task = init, spec.name
        else:
            start, start_task, _ = load_restorer(resolve(init))
        if isinstance(start, ResidualCNN) and arch == "residual_cnn" and start.config["depth"] < depth:
            # more layers than the start: grow it, same function
            start = deepen(start, depth)
        if (start_task != spec.name and not isinstance(task, Task)) or start.config != model.config:
            what = "the given network" if isinstance(init, nn.Module) else f"init {init!r}"
            raise ValueError(f"{what} is a {start_task!r} restorer with {start.config}: it cannot "
                             f"warm-start a {spec.name!r} restorer with {model.config}")
        model.load_state_dict(start.state_dict())
    model = model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = max(1, epochs * (-(-n_patches // batch_size)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr / 50)
    gen = torch.Generator(device=dev).manual_seed(seed)
    use_amp = dev.type == "cuda"
    losses = []
    start, budget = time.perf_counter(), None if minutes is None else 60.0 * minutes
    step = 0
    for _ in tqdm(range(epochs), desc=f"training {spec.name}", disable=not progress):
        order = torch.randperm(n_patches, generator=gen, device=dev)
        total = torch.zeros((), device=dev)
        seen = 0
        for i in range(0, n_patches, batch_size):
            if budget is not None or warmup > 0:  # the cosine by hand: over elapsed time or steps
                frac = (time.perf_counter() - start) / budget if budget is not None else step / steps
                if frac >= 1:  # the time budget is spent
                    break
                rate = lr / 50 + (lr - lr / 50) * (1 + math.cos(math.pi * frac)) / 2
                if frac < warmup:
                    rate *= frac / warmup
                for group in opt.param_groups:
                    group["lr"] = rate
            step += 1
            target = clean[order[i : i + batch_size]]
            damaged, cond = spec.make(target, gen)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                out = model(damaged, cond)
            out = out.float()
            if spec.name == "inpaint":  # score only the holes' fill; no clamp here: its gradient is 0 outside
                out = damaged * (1 - cond) + out * cond  # [0, 1] (zero-filled holes once froze training)
            objective, mse = training_objective(out, target, loss)
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()
            if budget is None and warmup == 0:
                sched.step()
            total += mse.detach() * len(target)
            seen += len(target)
        if seen:
            losses.append(total.item() / seen)
        if budget is not None and time.perf_counter() - start >= budget:
            break
    return model.eval(), losses


def save_restorer(run_dir, model: nn.Module, task: str, losses: list[float] | None = None,
                  train_config: dict | None = None):
    """Save a trained restorer as a run folder (safetensors + config.json with SHA-256), atomically."""
    from aebook.checkpoint import save_run

    make_task(task)  # validates the name
    return save_run(run_dir, model, {"train_loss": losses or []}, {"task": task, **(train_config or {})})  # type: ignore[arg-type]


def load_restorer(run_dir, device: torch.device | str = "cpu") -> tuple[nn.Module, str, dict]:
    """Load a restorer saved by :func:`save_restorer`; returns ``(model, task, config)``.

    Raises ``FileNotFoundError`` or ``ValueError`` (tampered, corrupted or another kind of model).
    """
    from pathlib import Path

    from aebook.checkpoint import check_sizes, load_module

    def build(cfg: dict) -> nn.Module:
        where = Path(run_dir) / "config.json"
        if cfg["model"] == EncoderDecoder.name:
            check_sizes(cfg, where, channels=(1, 3), cond_channels=(0, 8), widths=(1, 1024), blocks=(0, 64))
            widths, blocks, skips = cfg["widths"], cfg["blocks"], cfg.get("skips")
            if not (isinstance(widths, list) and isinstance(blocks, list) and 2 <= len(widths) <= 6
                    and len(blocks) == len(widths)):
                raise ValueError(f"{where}: widths and blocks must be lists of 2 to 6 integers of the same "
                                 f"length, got {widths!r} and {blocks!r}")
            if not isinstance(skips, bool):
                raise ValueError(f"{where}: the model's skips must be true or false, got {skips!r}")
            return EncoderDecoder(cfg["channels"], cfg["cond_channels"], widths, blocks, skips)
        if cfg["model"] != ResidualCNN.name:
            raise ValueError(f"{where} describes a {cfg['model']!r} model, not a restorer")
        check_sizes(cfg, where, channels=(1, 3), cond_channels=(0, 8), depth=(2, 256), width=(1, 1024))
        return ResidualCNN(cfg["channels"], cfg["cond_channels"], cfg["depth"], cfg["width"])

    model, config = load_module(run_dir, build, device)
    task = config.get("train", {}).get("task")
    if task not in TASKS:
        raise ValueError(f"{Path(run_dir) / 'config.json'} does not name a restoration task (got {task!r})")
    return model, task, config  # type: ignore[return-value]
