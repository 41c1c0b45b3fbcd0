"""A learned image codec: convolutional autoencoder + quantisation + Huffman coding (chapter 5.2).

Compressing an image takes three steps, and only the first is learned:

1. **Transform.** A fully-convolutional encoder maps an ``(H, W)`` image to a latent
   tensor ``z`` of shape ``(latent_channels, H/8, W/8)`` (three stride-2 stages, plus a
   linear shortcut per 8x8 block).
2. **Quantise.** ``q = round(z / step)``: integers, with a step set by the quality
   level (:data:`QUALITY_STEPS`). This is the only lossy step besides the transform.
3. **Entropy-code.** The integers are Huffman-coded into an ``.aeb`` file
   (:mod:`aebook.codecs.bitstream`, :mod:`aebook.codecs.entropy`): lossless.

Decompression Huffman-decodes ``q`` exactly and runs the decoder on ``q * step``.

Rounding has zero gradient almost everywhere, so training replaces it with its
standard differentiable proxy (Ballé et al., *End-to-end optimized image compression*,
ICLR 2017): ``z + step * u`` with ``u ~ U(-1/2, 1/2)``, noise of the same size as the
rounding error. A single codec serves every quality level because each training image
draws its own step, log-uniformly over the range of :data:`QUALITY_STEPS`.

Without a rate term the encoder would simply scale ``z`` up until the noise no longer
mattered, and every quality level would cost many bits. The loss therefore adds
``lmbda`` times a *rate proxy* in bits per pixel: ``sum log2(1 + |z| / step) / (H W)``,
roughly the length of an Exp-Golomb code for the integer ``z / step`` (zero for a zero
latent, about one more bit per doubling of its magnitude). It is a crude stand-in for the
learned entropy models of real neural codecs, but it pins the latent scale and makes small
latents cheap.

Huffman coding spends at least one bit per symbol, so the rate can never drop below
``latent_channels / 64`` bits per pixel: that is why the default ``latent_channels`` is
small (8, a floor of 0.125 bpp). Arithmetic coding, which real codecs use, has no floor.

:func:`aebook.codecs.coding.compress`, :func:`~aebook.codecs.coding.decompress` and
:func:`~aebook.codecs.coding.rate_distortion` serve this codec and :class:`aebook.codecs.klt.KLTCodec`,
which replaces the learned transform by the block KLT and Huffman by ANS, and beats JPEG
(chapter 5.2); :func:`aebook.codecs.training.train_codec` trains it.

A file decodes to exactly the symbols that were written, on any machine; the decoded
*image* can differ in the last bits between CPU and GPU (floating-point convolutions).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aebook.checkpoint import CONFIG, check_sizes, weights_id
from aebook.codecs.bitstream import MODES
from aebook.imageio import pad_to_multiple
from aebook.restoration.inference import tile_boxes

#: Quality level (1 = smallest file ... 8 = best image) -> quantisation step of the latents:
#: geometric from 4 down to 1/4, rounded to float32 (the precision an ``.aeb`` file stores).
QUALITY_STEPS: dict[int, float] = {q: float(np.float32(4.0 * 16.0 ** (-(q - 1) / 7))) for q in range(1, 9)}
DOWNSAMPLE = 8  # three stride-2 stages
#: Tiles of the whole-image encoder and decoder, in latent cells of 8 x 8 pixels, so that memory
#: stays bounded whatever the image size; the result is the same as in one piece (the overlap
#: exceeds the networks' receptive fields, 36 pixels for the encoder and 3.5 cells for the decoder).
TILE_CELLS, TILE_OVERLAP = 128, 6


def quality_step(quality: int) -> float:
    """Quantisation step of a quality level (``ValueError`` for an unknown level)."""
    if quality not in QUALITY_STEPS:
        raise ValueError(f"quality must be one of {sorted(QUALITY_STEPS)}, got {quality!r}")
    return QUALITY_STEPS[quality]


class FactorizedPrior(nn.Module):
    """A learned probability model of the latents, one density per channel (Ballé et al. 2018, appendix 6.1).

    Each channel's cumulative distribution is ``c(x) = sigmoid(f(x))`` with ``f`` a small
    monotone network (1 -> 3 -> 3 -> 3 -> 1: positive weights, and ``x + tanh(a) tanh(x)``
    nonlinearities with ``|tanh(a)| < 1``), so ``c`` increases from 0 to 1 whatever the
    parameters are. A latent quantised with step ``s`` then has probability
    ``c(z + s/2) - c(z - s/2)``, and ``-log2`` of it is the number of bits an ideal entropy
    coder spends on it: the rate term that replaces :meth:`ConvCodec.rate_proxy` when a codec
    is built with ``entropy_model="factorized"``. One model serves every step, because the
    step only sets the width of the bin.
    """

    def __init__(self, channels: int, filters: Sequence[int] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        dims = [1, *filters, 1]
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i, (d_in, d_out) in enumerate(zip(dims, dims[1:])):
            init = math.log(math.expm1(1 / scale / d_out))
            self.matrices.append(nn.Parameter(torch.full((channels, d_out, d_in), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, d_out, 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, d_out, 1)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)`` for latents ``x`` of shape ``(N, C, H, W)``: the CDF's logits, same shape."""
        n, c, h, w = x.shape
        v = x.permute(1, 0, 2, 3).reshape(c, 1, -1)  # (C, 1, N H W)
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            v = torch.matmul(F.softplus(m), v) + b
            if i < len(self.factors):
                v = v + torch.tanh(self.factors[i]) * torch.tanh(v)
        return v.reshape(c, n, h, w).permute(1, 0, 2, 3)

    def likelihood(self, x: torch.Tensor, step: float | torch.Tensor) -> torch.Tensor:
        """Probability of the quantisation bin ``[x - step/2, x + step/2]`` of each latent (at least 1e-9)."""
        lower, upper = self.logits(x - step / 2), self.logits(x + step / 2)
        sign = -torch.sign(lower + upper).detach()  # subtract in the tail where the difference is exact
        return (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs().clamp_min(1e-9)

    def bits(self, x: torch.Tensor, step: float | torch.Tensor) -> torch.Tensor:
        """``-log2`` of :meth:`likelihood`: the ideal code length of each latent, in bits."""
        return -torch.log2(self.likelihood(x, step))


def _conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    """Convolution with replicate padding: zero padding would tell the network where the
    border is, and a codec trained on small patches would then fail on large images."""
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, padding_mode="replicate")


def _tiled(fn, x: torch.Tensor, unit_in: int, unit_out: int, tile: int | None = None,
           overlap: int = TILE_OVERLAP) -> torch.Tensor:
    """``fn(x)`` for a local map ``fn`` that turns ``unit_in`` input pixels into ``unit_out`` output
    pixels per axis (the encoder: 8 -> 1, the decoder: 1 -> 8), computed tile by tile when ``x``
    is one image larger than ``tile`` cells (default :data:`TILE_CELLS`; a cell is ``unit_in``
    pixels of ``x``). Tiles start on cell boundaries and overlap by ``overlap`` cells on each
    side (more than ``fn``'s receptive field), so the result equals ``fn(x)``."""
    tile = TILE_CELLS if tile is None else tile
    n, _, h, w = x.shape
    hc, wc = h // unit_in, w // unit_in
    if n != 1 or (hc <= tile and wc <= tile) or hc * unit_in != h or wc * unit_in != w:
        return fn(x)
    out = None
    u, v = unit_in, unit_out
    for y0, y1, x0, x1, ty, by, tx, bx in tile_boxes(hc, wc, tile, overlap, balanced=True):
        res = fn(x[:, :, y0 * u : y1 * u, x0 * u : x1 * u])
        if out is None:
            out = res.new_empty(1, res.shape[1], hc * v, wc * v)
        out[:, :, (y0 + ty) * v : (y0 + by) * v, (x0 + tx) * v : (x0 + bx) * v] = res[:, :, ty * v : by * v,
                                                                                         tx * v : bx * v]
    assert out is not None
    return out


class ConvCodec(nn.Module):
    """Fully-convolutional autoencoder with an ``(latent_channels, H/8, W/8)`` latent.

    Encoder, per stage: 5x5 convolution with stride 2 (``H x W => H/2 x W/2``), GELU,
    3x3 convolution, GELU; then a 3x3 convolution to ``latent_channels``. The decoder
    mirrors it with sub-pixel convolutions (a 3x3 convolution to 4x the channels and a
    ``PixelShuffle`` that rearranges them into a 2x larger map), and a sigmoid output.
    A linear path per 8x8 block is added to both (short trainings gain about 2 dB from it).
    Images of any size work: they are padded (reflect) to a multiple of 8 and cropped back.

    Parameters
    ----------
    channels : int
        1 (grayscale) or 3 (RGB).
    latent_channels : int
        Channels of the latent: ``latent_channels / 64`` latent numbers per pixel.
    widths : sequence of int
        Feature channels of the three encoder stages (the decoder uses them reversed).
    lmbda : float
        Weight of the rate term (bits per pixel) against the mean squared error.
    entropy_model : str
        The rate term of training: ``"proxy"`` (:meth:`rate_proxy`, a fixed formula) or
        ``"factorized"`` (a learned :class:`FactorizedPrior`: the ideal code length under a
        per-channel density that trains with the codec). Files are Huffman-coded either way.
    """

    name = "convcodec"
    ENTROPY_MODELS = ("proxy", "factorized")
    coder = "huffman"  # the .aeb payload's entropy coder (format version 1)

    def __init__(self, channels: int = 1, latent_channels: int = 8,
                 widths: Sequence[int] = (32, 48, 64), lmbda: float = 0.004, entropy_model: str = "proxy") -> None:
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        widths = [int(w) for w in widths]
        if len(widths) != 3 or min(widths) < 1 or latent_channels < 1 or lmbda < 0:
            raise ValueError(f"invalid codec settings: widths={widths}, latent_channels={latent_channels}, "
                             f"lmbda={lmbda}")
        if entropy_model not in self.ENTROPY_MODELS:
            raise ValueError(f"entropy_model must be one of {self.ENTROPY_MODELS}, got {entropy_model!r}")
        self.channels, self.latent_channels, self.lmbda = channels, int(latent_channels), float(lmbda)
        self.entropy_model = entropy_model
        self.config: dict[str, Any] = {"model": self.name, "channels": channels,
                                       "latent_channels": self.latent_channels, "widths": widths,
                                       "lmbda": self.lmbda}
        if entropy_model != "proxy":  # the shipped proxy codec's config (and model id) stay as they were
            self.config["entropy_model"] = entropy_model
        self.prior = FactorizedPrior(self.latent_channels) if entropy_model == "factorized" else None
        enc: list[nn.Module] = []
        c_in = channels
        for w in widths:  # H x W => H/2 x W/2, three times
            enc += [_conv(c_in, w, 5, stride=2), nn.GELU(), _conv(w, w), nn.GELU()]
            c_in = w
        self.encoder = nn.Sequential(*enc, _conv(c_in, latent_channels))
        # Linear path: each 8x8 block <-> latent_channels numbers, a learned block transform
        # like JPEG's DCT. It learns in seconds; the convolutional path adds the rest.
        self.block_encoder = nn.Sequential(nn.PixelUnshuffle(DOWNSAMPLE), nn.Conv2d(64 * channels, latent_channels, 1))
        self.block_decoder = nn.Sequential(nn.Conv2d(latent_channels, 64 * channels, 1), nn.PixelShuffle(DOWNSAMPLE))
        rev = widths[::-1]
        dec: list[nn.Module] = [_conv(latent_channels, rev[0]), nn.GELU()]
        for c_in, c_out in zip(rev, rev[1:]):  # H/8 => H/4 => H/2
            dec += [_conv(c_in, 4 * c_out), nn.PixelShuffle(2), nn.GELU(), _conv(c_out, c_out), nn.GELU()]
        dec += [_conv(rev[-1], 4 * channels), nn.PixelShuffle(2)]  # H/2 => H, logits
        self.decoder = nn.Sequential(*dec)

    @property
    def mode(self) -> str:
        """``"L"`` or ``"RGB"``: the ``.aeb`` colour mode of this codec's images."""
        return MODES[0] if self.channels == 1 else MODES[1]

    @property
    def model_id(self) -> str:
        """``"convcodec-"`` + 12 hex digits of the SHA-256 of the weights: names exactly this codec."""
        return weights_id(self)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is an ``(N, channels, H, W)`` batch."""
        if x.ndim != 4 or x.shape[1] != self.channels or min(x.shape) < 1:
            raise ValueError(f"{self.name} expects images of shape (N, {self.channels}, H, W), got {tuple(x.shape)}")

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Shape of the latent of an ``height x width`` image."""
        return self.latent_channels, -(-height // DOWNSAMPLE), -(-width // DOWNSAMPLE)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` in [0, 1] -> latents ``(N, latent_channels, ceil(H/8), ceil(W/8))``.

        One large image is encoded in tiles (:data:`TILE_CELLS`): bounded memory, same result."""
        self.check_input(x)
        x = pad_to_multiple(x, DOWNSAMPLE)
        return _tiled(lambda t: self.encoder(t) + self.block_encoder(t - 0.5), x, DOWNSAMPLE, 1)

    def decode(self, z: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Latents -> images in [0, 1], cropped to ``size = (H, W)`` if given.

        The latent of one large image is decoded in tiles (:data:`TILE_CELLS`): bounded memory,
        time proportional to the image, the same result."""
        x = _tiled(lambda t: torch.sigmoid(self.decoder(t) + self.block_decoder(t)), z, 1, DOWNSAMPLE)
        return x if size is None else x[..., : size[0], : size[1]]

    def quantise(self, z: torch.Tensor, step: float | torch.Tensor) -> torch.Tensor:
        """Quantised latents ``q * step``: uniform noise proxy in training mode, rounding in eval mode."""
        if self.training:
            return z + step * (torch.rand_like(z) - 0.5)
        return torch.round(z / step) * step

    def forward(self, x: torch.Tensor, step: float | torch.Tensor = 1.0) -> torch.Tensor:
        """Reconstruction of ``x`` through the quantiser with the given step."""
        return self.decode(self.quantise(self.encode(x), step), x.shape[-2:])

    def rate_proxy(self, z: torch.Tensor, step: float | torch.Tensor, pixels: int) -> torch.Tensor:
        """Differentiable estimate of the bits per pixel of each image: ``sum log2(1 + |z|/step) / pixels``."""
        return torch.log2(1 + z.abs() / step).flatten(1).sum(1) / pixels

    def rate(self, z_noisy: torch.Tensor, z: torch.Tensor, step: float | torch.Tensor, pixels: int) -> torch.Tensor:
        """The training rate term of each image in bits per pixel: :meth:`rate_proxy` of the clean
        latents ``z``, or the learned prior's code length of the noisy ones ``z_noisy``."""
        if self.prior is None:
            return self.rate_proxy(z, step, pixels)
        return self.prior.bits(z_noisy, step).flatten(1).sum(1) / pixels

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``MSE + lmbda * rate``, each image with its own log-uniform random step.

        The signature matches :func:`aebook.train.fit`. Returns the loss and detached
        statistics ``mse`` and ``bpp_proxy``.
        """
        targets = inputs if targets is None else targets
        lo, hi = math.log(min(QUALITY_STEPS.values())), math.log(max(QUALITY_STEPS.values()))
        u = torch.rand(len(inputs), 1, 1, 1, device=inputs.device)
        step = torch.exp(lo + (hi - lo) * u)
        z = self.encode(inputs).float()
        z_noisy = self.quantise(z, step)
        recon = self.decode(z_noisy, inputs.shape[-2:])
        mse = F.mse_loss(recon.float(), targets.float())
        rate = self.rate(z_noisy, z, step, inputs.shape[-2] * inputs.shape[-1]).mean()
        return mse + self.lmbda * rate, {"mse": mse.detach(), "bpp_proxy": rate.detach()}

    # The codec interface that compress() and decompress() use (shared with aebook.codecs.klt.KLTCodec).

    def quality_step(self, quality: int) -> float:
        """The quantisation step of a quality level (:data:`QUALITY_STEPS`)."""
        return quality_step(quality)

    def to_symbols(self, z: torch.Tensor, step: float | torch.Tensor) -> torch.Tensor:
        """The integers a file stores: ``round(z / step)``, as floats."""
        return torch.round(z / step)

    def decode_quantised(self, z: torch.Tensor, size: tuple[int, int], step: float | torch.Tensor) -> torch.Tensor:
        """Dequantised latents ``symbols * step`` -> images (the step is not needed here)."""
        return self.decode(z, size)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, quality: int = 4) -> torch.Tensor:
        """Encode, round with the quality's step and decode, in eval mode (no file written)."""
        was_training = self.training
        self.eval()
        out = self(x, quality_step(quality))
        self.train(was_training)
        return out


def build_conv_codec(model: dict[str, Any], where: str | Path = CONFIG) -> ConvCodec:
    """An untrained :class:`ConvCodec` from a saved configuration, its sizes checked first
    (:func:`aebook.checkpoint.check_sizes`; ``where`` names the file in errors)."""
    check_sizes(model, where, channels=(1, 3), latent_channels=(1, 1024), widths=(1, 1024), lmbda=(0.0, 1e6))
    return ConvCodec(**{k: model[k] for k in ("channels", "latent_channels", "widths", "lmbda")},
                     entropy_model=model.get("entropy_model", "proxy"))
