"""A learned image codec: convolutional autoencoder + quantisation + Huffman coding (chapter 5.2).

Compressing an image takes three steps, and only the first is learned:

1. **Transform.** A fully-convolutional encoder maps an ``(H, W)`` image to a latent
   tensor ``z`` of shape ``(latent_channels, H/8, W/8)`` (three stride-2 stages, plus a
   linear shortcut per 8x8 block).
2. **Quantise.** ``q = round(z / step)``: integers, with a step set by the quality
   level (:data:`QUALITY_STEPS`). This is the only lossy step besides the transform.
3. **Entropy-code.** The integers are Huffman-coded into an ``.aeb`` file
   (:mod:`aebook.bitstream`, :mod:`aebook.entropy`): lossless.

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

:func:`compress`, :func:`decompress` and :func:`rate_distortion` also serve
:class:`aebook.transform_codec.KLTCodec`, which replaces the learned transform by the block
KLT and Huffman by ANS, and beats JPEG (chapter 5.2).

A file decodes to exactly the symbols that were written, on any machine; the decoded
*image* can differ in the last bits between CPU and GPU (floating-point convolutions).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aebook.bitstream import MODES, AebFile, AebHeader, check_header
from aebook.checkpoint import CONFIG, check_sizes, load_module, save_run
from aebook.imageio import MAX_PIXELS, image_to_tensor, tensor_to_image
from aebook.restore import tile_boxes

#: Quality level (1 = smallest file ... 8 = best image) -> quantisation step of the latents:
#: geometric from 4 down to 1/4, rounded to float32 (the precision an ``.aeb`` file stores).
QUALITY_STEPS: dict[int, float] = {q: float(np.float32(4.0 * 16.0 ** (-(q - 1) / 7))) for q in range(1, 9)}
DOWNSAMPLE = 8  # three stride-2 stages
# decompress refuses images of more than MAX_PIXELS pixels (aebook.imageio) by default: a tiny file could claim a huge one
MAX_LATENT = 1e6  # ... and latents this large, which no trained encoder produces
#: Tiles of the whole-image encoder and decoder, in latent cells of 8 x 8 pixels, so that memory
#: stays bounded whatever the image size; the result is the same as in one piece (the overlap
#: exceeds the networks' receptive fields, 36 pixels for the encoder and 3.5 cells for the decoder).
TILE_CELLS, TILE_OVERLAP = 128, 6


def weights_id(codec: nn.Module) -> str:
    """A codec's ``model_id``: its ``name``, ``-`` and 12 hex digits of the SHA-256 of its
    ``state_dict`` (weights and buffers, as float32, in key order): names exactly these weights."""
    h = hashlib.sha256()
    for key, value in sorted(codec.state_dict().items()):
        h.update(key.encode() + value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return f"{codec.name}-{h.hexdigest()[:12]}"


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
        h, w = x.shape[-2:]
        ph, pw = (-h) % DOWNSAMPLE, (-w) % DOWNSAMPLE
        if ph or pw:  # reflect needs the pad to be smaller than the image
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
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

    # The codec interface that compress() and decompress() use (shared with aebook.transform_codec.KLTCodec).

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


@torch.no_grad()
def compress(img: np.ndarray, codec: ConvCodec, quality: int = 4, model_id: str | None = None) -> AebFile:
    """Compress an image into an :class:`~aebook.bitstream.AebFile`.

    Parameters
    ----------
    img : np.ndarray
        ``(H, W)`` (grayscale codec) or ``(H, W, 3)`` (RGB codec), floats in [0, 1]
        (clipped) or uint8. A :class:`ConvCodec` encodes a large image in tiles of
        :data:`TILE_CELLS` latent cells, so its working memory stays bounded.
    codec : ConvCodec or KLTCodec
        Any codec with the interface ``quality_step``, ``encode``, ``to_symbols``, ``coder``
        (:class:`ConvCodec`, :class:`aebook.transform_codec.KLTCodec`).
    quality : int
        1 to 8: higher means a smaller step, more bits, a better image.
    model_id : str, optional
        Stored in the file header; defaults to ``codec.model_id``.

    Returns
    -------
    AebFile
        Its ``symbols`` are the codec's quantised latents (``round(z / step)`` here, a dead
        zone for :class:`~aebook.transform_codec.KLTCodec`); ``to_bytes()`` codes them with
        the codec's ``coder`` (Huffman for this codec, ANS for the KLT codec).
    """
    step = codec.quality_step(quality)
    x = image_to_tensor(img, codec.channels)
    param = next(iter(codec.state_dict().values()))  # where the codec lives, and its precision
    z = codec.encode(x.to(param.device, param.dtype))[0].float().cpu()  # same in train and eval mode
    q = codec.to_symbols(z, step)
    if not torch.isfinite(q).all() or q.abs().max() >= 2**31:
        raise ValueError("latents out of the int32 range: is the codec's training broken?")
    height, width = x.shape[-2:]
    return AebFile(height, width, codec.mode, codec.model_id if model_id is None else model_id, quality,
                   tuple(q.shape), step, q.numpy().astype(np.int64), coder=codec.coder)


def check_fits(aeb: AebFile | AebHeader, codec: ConvCodec, expected_model_id: str | None = None,
               max_pixels: int | None = MAX_PIXELS) -> None:
    """Refuse (``ValueError``) a file, or a file's header (:func:`aebook.bitstream.read_aeb_header`),
    that ``codec`` cannot decode: another colour mode, another ``expected_model_id`` (when given),
    more than ``max_pixels`` pixels, or a latent shape other than the one ``codec`` produces for the
    declared image size. Checked on the header, it refuses a file before its payload is decoded."""
    if aeb.mode != codec.mode:
        raise ValueError(f"file holds a {aeb.mode} image but the codec decodes {codec.mode} images")
    if expected_model_id is not None and aeb.model_id != expected_model_id:
        raise ValueError(f"file was made by model {aeb.model_id!r}, expected {expected_model_id!r}")
    check_header(aeb, max_pixels, codec.latent_shape)


@torch.no_grad()
def decompress(aeb: AebFile, codec: ConvCodec, expected_model_id: str | None = None,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an :class:`~aebook.bitstream.AebFile` back to an image.

    Returns an ``(H, W)`` or ``(H, W, 3)`` float32 array in [0, 1], the size and mode the
    file declares. Raises ``ValueError`` if the file does not fit ``codec`` (mode, latent
    shape, ``expected_model_id`` when given), claims more than ``max_pixels`` pixels, or
    its latents make the decoder overflow.
    """
    check_fits(aeb, codec, expected_model_id, max_pixels)
    top = max(int(aeb.symbols.max()), -int(aeb.symbols.min()))  # no copy of the symbols
    if top * aeb.step > MAX_LATENT:  # int32 symbols and a float32 step: no overflow in Python floats
        raise ValueError(f"latents out of range: |symbol * step| exceeds {MAX_LATENT:g}")
    z = np.empty(aeb.symbols.shape, dtype=np.float32)
    for c in range(len(z)):  # symbol * step in float64, rounded to float32, a channel at a time (memory)
        z[c] = aeb.symbols[c] * aeb.step
    param = next(iter(codec.state_dict().values()))  # where the codec lives, and its precision
    z = torch.from_numpy(z)[None]
    out = codec.decode_quantised(z.to(param.device, param.dtype), (aeb.height, aeb.width), aeb.step)
    if not torch.isfinite(out).all():
        raise ValueError("latents out of range: the decoder overflows")
    return tensor_to_image(out)


def bits_per_pixel(aeb: AebFile) -> float:
    """Size of the whole ``.aeb`` file (header, code table, payload, CRC) in bits per image pixel."""
    return len(aeb.to_bytes()) * 8 / (aeb.height * aeb.width)


def codec_roundtrip(img: np.ndarray, codec: ConvCodec, quality: int = 4) -> tuple[np.ndarray, float]:
    """Compress to bytes and decode them again, like :func:`aebook.baselines.jpeg_roundtrip`.

    Returns the decoded image and the file size in bits per pixel.
    """
    aeb = compress(img, codec, quality)
    data = aeb.to_bytes()
    decoded = decompress(AebFile.from_bytes(data), codec)
    return decoded, len(data) * 8 / (aeb.height * aeb.width)


def save_codec(run_dir: str | os.PathLike[str], codec: ConvCodec, history: dict | None = None,
               train_config: dict[str, Any] | None = None) -> Path:
    """Save ``codec`` like :func:`aebook.checkpoint.save_run` (the same function, in fact).

    ``run_dir`` gets ``model.safetensors`` (never pickle), ``config.json`` (the codec's
    ``config``, ``train_config`` and the SHA-256 of the weights) and ``history.json``,
    written to a temporary folder first and moved into place. Load it with :func:`load_codec`.
    """
    return save_run(run_dir, codec, history, train_config)  # type: ignore[arg-type]


def load_codec(run_dir: str | os.PathLike[str], device: torch.device | str = "cpu") -> tuple[ConvCodec, dict[str, Any]]:
    """Load a codec saved by :func:`save_codec`, after checking the SHA-256 of its weights.

    Returns the codec (eval mode, on ``device``) and the parsed ``config.json``.
    ``FileNotFoundError`` for a missing folder or file; ``ValueError`` naming the file for
    a corrupted, tampered or mismatched one (including a run folder of another model).
    """
    def build(model: dict[str, Any]) -> ConvCodec:
        from aebook.transform_codec import KLTCodec

        where = Path(run_dir) / CONFIG
        if model["model"] == KLTCodec.name:
            check_sizes(model, where, depth=(0, 256), width=(1, 1024), rounding=(1e-6, 0.5))
            return KLTCodec(model["depth"], model["width"], model["rounding"])  # type: ignore[return-value]
        if model["model"] != ConvCodec.name:
            raise ValueError(f"{where} describes a {model['model']!r} model, not a codec "
                             f"({ConvCodec.name} or {KLTCodec.name})")
        check_sizes(model, where, channels=(1, 3), latent_channels=(1, 1024), widths=(1, 1024), lmbda=(0.0, 1e6))
        return ConvCodec(**{k: model[k] for k in ("channels", "latent_channels", "widths", "lmbda")},
                         entropy_model=model.get("entropy_model", "proxy"))

    return load_module(run_dir, build, device)  # type: ignore[return-value]

def train_codec(n_patches: int = 8000, patch_size: int = 32, epochs: int = 10, latent_channels: int = 8,
                lmbda: float = 0.004, seed: int = 0, device: str = "auto", widths: Sequence[int] = (32, 48, 64),
                batch_size: int = 8, lr: float = 2e-3, progress: bool = False,
                entropy_model: str = "proxy") -> tuple[ConvCodec, Any]:
    """Train a grayscale :class:`ConvCodec` on random patches of the training photos.

    Uses :func:`aebook.data.photo_patches` (``TRAIN_PHOTOS`` only, never the held-out
    ones) and the book's training loop :func:`aebook.train.fit`. Returns the codec
    (eval mode) and the :class:`~aebook.train.History`.
    """
    from aebook.data import photo_patches
    from aebook.train import TrainConfig, fit

    patches = photo_patches(n_patches, patch_size, gray=True, seed=seed)
    torch.manual_seed(seed)
    codec = ConvCodec(1, latent_channels, widths, lmbda, entropy_model)
    # amp=False: bfloat16 would round the latents more coarsely than the quantiser does.
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, amp=False,
                         progress=progress)
    history = fit(codec, patches, config)
    return codec, history


def _curve(roundtrip, images: Sequence[np.ndarray], qualities: Sequence[int]) -> list[dict[str, float]]:
    """Per quality: ``roundtrip(img, q) -> (decoded, bpp)`` on every image, then mean bpp, PSNR, SSIM."""
    from aebook.metrics import psnr, ssim

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


@torch.no_grad()
def unquantised_psnr(codec: ConvCodec, images: Sequence[np.ndarray]) -> float:
    """Mean PSNR of ``decode(encode(x))`` with *no* quantisation: the best any quality level,
    entropy coder or file size could give with this transform (its ceiling)."""
    from aebook.metrics import psnr

    param = next(iter(codec.state_dict().values()))
    values = []
    for img in images:
        ref = np.asarray(img, dtype=np.float32)
        x = image_to_tensor(ref, codec.channels).to(param.device, param.dtype)
        values.append(psnr(ref, tensor_to_image(codec.decode(codec.encode(x), ref.shape[:2]))))
    return float(np.mean(values))


def rate_distortion(codec: ConvCodec, images: Sequence[np.ndarray],
                    qualities: Sequence[int] = tuple(QUALITY_STEPS)) -> list[dict[str, float]]:
    """The codec's rate-distortion curve: for each quality, the mean over ``images`` of the
    bits per pixel of the whole ``.aeb`` file and of the PSNR and SSIM of the decoded image."""
    curve = _curve(lambda img, q: codec_roundtrip(img, codec, q), images, qualities)
    return [{"quality": p["quality"], "step": codec.quality_step(p["quality"]), **p} for p in curve]


def jpeg_rate_distortion(images: Sequence[np.ndarray],
                         qualities: Sequence[int] = (5, 10, 20, 30, 50, 75, 90)) -> list[dict[str, float]]:
    """The same for JPEG files (Pillow with ``optimize=True`` Huffman tables) at these JPEG qualities."""
    from aebook.baselines import jpeg_roundtrip

    return _curve(jpeg_roundtrip, images, qualities)


def value_at_bpp(curve: Sequence[dict[str, float]], bpp: float, key: str = "psnr") -> float:
    """``key`` of a rate-distortion curve at ``bpp``, linearly interpolated; NaN outside its range."""
    points = sorted((p["bpp"], p[key]) for p in curve)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if not points or not xs[0] <= bpp <= xs[-1]:
        return float("nan")
    return float(np.interp(bpp, xs, ys))
