"""A block-transform autoencoder codec: the linear autoencoder's transform, a dead-zone
quantiser, ANS, and a convolutional decoder network (chapter 5.2).

:class:`aebook.codecs.conv.ConvCodec` learns its whole transform by gradient descent, and a
short training leaves it short of JPEG. This codec splits the work differently:

1. **Encoder: the block KLT.** Each 8x8 block of pixels becomes 64 coefficients through the
   Karhunen-Loeve transform (the principal components of the training photos' blocks):
   the optimum of a *linear* autoencoder of 8x8 blocks, fitted in closed form
   (:meth:`KLTCodec.fit_transform`, with the library's one block KLT, :func:`aebook.baselines.block_klt`).
   It is an 8x8 convolution of stride 8; its inverse is
   the matching transposed convolution. Orthonormal, so coefficients are in pixel units.
2. **Quantise with a dead zone:** ``q = sign(z) * floor(|z| / step + ROUNDING)``. With
   ``ROUNDING`` below one half, small coefficients fall to zero more often than plain
   rounding would send them: fewer bits for a little more error, a good trade at low rates.
3. **Entropy-code with ANS** (``.aeb`` format version 2): each of the 64 channels gets a
   two-number model fitted to the image (:func:`aebook.codecs.ans.fit_zero_geometric`), so a
   channel that is almost always zero costs almost nothing. Huffman could not do that: it
   spends at least one bit per symbol, 64 symbols per 64 pixels, one bit per pixel.
4. **Decoder: inverse transform, then a network.** A :class:`aebook.restoration.nets.ResidualCNN`,
   told the quantisation step, removes what quantisation left behind (blocking, ringing,
   flattened texture). It is trained on the training photos coded at random steps
   (:func:`klt_damage_task`), starting from the weights of the shipped full-resolution
   denoiser, ``denoise_cnn``
   (:func:`aebook.codecs.training.train_klt_codec`).

Only the decoder network is learned by gradient descent; the encoder is the linear
autoencoder's closed-form optimum. The file stays decodable on any machine: the entropy
models are built with integer arithmetic, and only the decoded *pixels* can differ in the
last bits between CPU and GPU.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aebook.baselines import block_klt
from aebook.checkpoint import CONFIG, check_sizes, weights_id
from aebook.restoration.inference import apply_tiled
from aebook.restoration.nets import ResidualCNN
from aebook.restoration.tasks import Task

BLOCK = 8
#: Quality level (1 = smallest file ... 8 = best image) -> quantisation step of the KLT
#: coefficients, in pixel units of [0, 1] images: geometric from 0.32 down to 0.02.
KLT_QUALITY_STEPS: dict[int, float] = {q: float(np.float32(0.32 * 16.0 ** (-(q - 1) / 7))) for q in range(1, 9)}
#: The offset of the dead-zone quantiser, ``floor(|z| / step + ROUNDING)`` (0.5 would be plain rounding).
ROUNDING = 0.3


class KLTCodec(nn.Module):
    """Block-KLT encoder, dead-zone quantiser and a step-conditioned decoder network.

    Parameters
    ----------
    depth, width
        Of the decoder's :class:`~aebook.restoration.nets.ResidualCNN` (0 depth: no network, the
        plain inverse transform).
    rounding
        The dead zone's rounding offset (see :data:`ROUNDING`).
    """

    name = "kltcodec"
    channels = 1
    latent_channels = BLOCK * BLOCK
    coder = "ans"

    def __init__(self, depth: int = 12, width: int = 32, rounding: float = ROUNDING) -> None:
        super().__init__()
        if not 0 < rounding <= 0.5:
            raise ValueError(f"rounding must be in (0, 0.5], got {rounding}")
        self.rounding = float(rounding)
        n = self.latent_channels
        self.register_buffer("analysis", torch.eye(n))  # rows: the basis vectors, largest variance first
        self.register_buffer("mean", torch.zeros(n))
        self.refine = ResidualCNN(1, 1, depth, width) if depth else None
        self.config: dict[str, Any] = {"model": self.name, "depth": int(depth), "width": int(width),
                                       "rounding": self.rounding}

    @property
    def mode(self) -> str:
        """``"L"``: grayscale images only."""
        return "L"

    @property
    def model_id(self) -> str:
        """``"kltcodec-"`` + 12 hex digits of the SHA-256 of the weights and the transform."""
        return weights_id(self)

    # ------------------------------------------------------------------ transform

    @torch.no_grad()
    def fit_transform(self, images: Sequence[np.ndarray]) -> "KLTCodec":
        """Fit the block KLT to the 8x8 blocks of ``images`` (grayscale, in [0, 1]); returns ``self``.

        :func:`aebook.baselines.block_klt`: eigenvectors of the blocks' covariance, largest
        eigenvalue first, each with its largest entry made positive so that the fit is the same
        wherever it runs.
        """
        mean, basis = block_klt(images, BLOCK)
        self.analysis.copy_(basis.float())
        self.mean.copy_(mean.float())
        return self

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is an ``(N, 1, H, W)`` batch."""
        if x.ndim != 4 or x.shape[1] != 1 or min(x.shape) < 1:
            raise ValueError(f"{self.name} expects grayscale images of shape (N, 1, H, W), got {tuple(x.shape)}")

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Shape of the latent of an ``height x width`` image: 64 coefficients per 8x8 block."""
        return self.latent_channels, -(-height // BLOCK), -(-width // BLOCK)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` in [0, 1] -> KLT coefficients ``(N, 64, ceil(H/8), ceil(W/8))``
        (edges padded by repetition to whole blocks)."""
        self.check_input(x)
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % BLOCK, 0, (-h) % BLOCK), mode="replicate")
        blocks = F.pixel_unshuffle(x, BLOCK) - self.mean.view(1, -1, 1, 1).to(x.dtype)
        return torch.einsum("kc,nchw->nkhw", self.analysis.to(x.dtype), blocks)

    def inverse(self, z: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Coefficients -> pixels by the inverse (transposed) transform, cropped to ``size``."""
        blocks = torch.einsum("kc,nkhw->nchw", self.analysis.to(z.dtype), z) + self.mean.view(1, -1, 1, 1).to(z.dtype)
        x = F.pixel_shuffle(blocks, BLOCK)
        return x if size is None else x[..., : size[0], : size[1]]

    # ------------------------------------------------------------------ the codec interface of aebook.codecs.coding

    def quality_step(self, quality: int) -> float:
        """The quantisation step of a quality level (a key of :data:`KLT_QUALITY_STEPS`)."""
        if quality not in KLT_QUALITY_STEPS:
            raise ValueError(f"quality must be one of {sorted(KLT_QUALITY_STEPS)}, got {quality!r}")
        return KLT_QUALITY_STEPS[quality]

    def to_symbols(self, z: torch.Tensor, step: float | torch.Tensor) -> torch.Tensor:
        """Dead-zone quantisation: ``sign(z) * floor(|z| / step + rounding)``, as floats."""
        return torch.sign(z) * torch.floor(z.abs() / step + self.rounding)

    def decode_quantised(self, z: torch.Tensor, size: tuple[int, int], step: float | torch.Tensor) -> torch.Tensor:
        """Dequantised coefficients ``symbols * step`` -> images in [0, 1] of ``size``: the inverse
        transform, then the decoder network told the step (one image: in tiles, bounded memory)."""
        x = self.inverse(z, size)
        if self.refine is None:
            return x.clamp(0, 1)
        step_t = torch.as_tensor(step, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        cond = step_t.expand(x.shape[0], 1, *x.shape[-2:])
        if x.shape[0] == 1:
            return apply_tiled(self.refine, x, cond).clamp(0, 1)
        return self.refine(x, cond).clamp(0, 1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, quality: int = 4) -> torch.Tensor:
        """Encode, quantise with the quality's step and decode (no file written)."""
        step = self.quality_step(quality)
        return self.decode_quantised(self.to_symbols(self.encode(x), step) * step, tuple(x.shape[-2:]), step)


def klt_damage_task(codec: KLTCodec, steps: tuple[float, float] | None = None) -> Task:
    """The decoder network's training task: clean patches coded by ``codec``'s transform and
    dead-zone quantiser at a random step each (log-uniform over ``steps``, by default the
    range of :data:`KLT_QUALITY_STEPS`); the condition channel holds the step."""
    lo, hi = steps or (min(KLT_QUALITY_STEPS.values()), max(KLT_QUALITY_STEPS.values()))
    if not 0 < lo <= hi:
        raise ValueError(f"steps must satisfy 0 < low <= high, got {steps}")

    def make(clean: torch.Tensor, gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        if clean.shape[-1] % BLOCK or clean.shape[-2] % BLOCK:
            raise ValueError(f"training patches must be whole 8x8 blocks, got {tuple(clean.shape[-2:])}")
        u = torch.rand(clean.shape[0], generator=gen, device=clean.device)
        step = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u).view(-1, 1, 1, 1)
        local = codec.to(clean.device)
        with torch.no_grad():
            coded = local.inverse(local.to_symbols(local.encode(clean), step) * step)
        return coded, step.expand(-1, 1, *clean.shape[-2:])

    return Task("klt_dequantise", 1, 1, make, lambda damaged, cond, out: out.clamp(0, 1))


def build_klt_codec(model: dict[str, Any], where: str | Path = CONFIG) -> KLTCodec:
    """An untrained :class:`KLTCodec` from a saved configuration, its sizes checked first
    (:func:`aebook.checkpoint.check_sizes`; ``where`` names the file in errors)."""
    check_sizes(model, where, depth=(0, 256), width=(1, 1024), rounding=(1e-6, 0.5))
    return KLTCodec(model["depth"], model["width"], model["rounding"])
