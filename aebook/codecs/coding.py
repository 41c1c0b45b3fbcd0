"""What every codec shares: compress an image into an ``.aeb`` file and back, save and load a
codec, and measure its rate-distortion curve (chapter 5.2).

A codec is any module with the interface of :class:`aebook.codecs.conv.ConvCodec` and
:class:`aebook.codecs.klt.KLTCodec` (``quality_step``, ``encode``, ``to_symbols``,
``decode_quantised``, ``latent_shape``, ``mode``, ``coder``, ``model_id``): :func:`compress`
quantises its latents into an :class:`~aebook.codecs.bitstream.AebFile`, whose ``to_bytes()``
entropy-codes them (Huffman or ANS); :func:`decompress` checks the file against the codec before
decoding anything. :data:`CODECS` names the codecs a run folder may hold.

A file decodes to exactly the symbols that were written, on any machine; the decoded
*image* can differ in the last bits between CPU and GPU (floating-point convolutions).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from aebook.checkpoint import CONFIG, load_module, save_run
from aebook.codecs.bitstream import AebFile, AebHeader, check_header
from aebook.codecs.conv import QUALITY_STEPS, ConvCodec, build_conv_codec
from aebook.codecs.klt import KLTCodec, build_klt_codec
from aebook.imageio import MAX_PIXELS, image_to_tensor, tensor_to_image
from aebook.metrics import psnr, rate_distortion_curve

# decompress refuses images of more than MAX_PIXELS pixels (aebook.imageio) by default: a tiny file could claim a huge one
MAX_LATENT = 1e6  # ... and latents this large, which no trained encoder produces

#: The codecs a run folder may hold, by the name its ``config.json`` records, and how each is built.
CODECS: dict[str, Callable[[dict[str, Any], Path], nn.Module]] = {
    ConvCodec.name: build_conv_codec, KLTCodec.name: build_klt_codec}


@torch.no_grad()
def compress(img: np.ndarray, codec: ConvCodec, quality: int = 4, model_id: str | None = None) -> AebFile:
    """Compress an image into an :class:`~aebook.codecs.bitstream.AebFile`.

    Parameters
    ----------
    img : np.ndarray
        ``(H, W)`` (grayscale codec) or ``(H, W, 3)`` (RGB codec), floats in [0, 1]
        (clipped) or uint8. A :class:`~aebook.codecs.conv.ConvCodec` encodes a large image in tiles of
        :data:`~aebook.codecs.conv.TILE_CELLS` latent cells, so its working memory stays bounded.
    codec : ConvCodec or KLTCodec
        Any codec with the interface ``quality_step``, ``encode``, ``to_symbols``, ``coder``
        (:class:`~aebook.codecs.conv.ConvCodec`, :class:`~aebook.codecs.klt.KLTCodec`).
    quality : int
        1 to 8: higher means a smaller step, more bits, a better image.
    model_id : str, optional
        Stored in the file header; defaults to ``codec.model_id``.

    Returns
    -------
    AebFile
        Its ``symbols`` are the codec's quantised latents (``round(z / step)`` here, a dead
        zone for :class:`~aebook.codecs.klt.KLTCodec`); ``to_bytes()`` codes them with
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
    """Refuse (``ValueError``) a file, or a file's header (:func:`aebook.codecs.bitstream.read_aeb_header`),
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
    """Decode an :class:`~aebook.codecs.bitstream.AebFile` back to an image.

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
    where = Path(run_dir) / CONFIG

    def build(model: dict[str, Any]) -> nn.Module:
        if model["model"] not in CODECS:
            raise ValueError(f"{where} describes a {model['model']!r} model, not a codec "
                             f"({' or '.join(CODECS)})")
        return CODECS[model["model"]](model, where)

    return load_module(run_dir, build, device)  # type: ignore[return-value]


@torch.no_grad()
def unquantised_psnr(codec: ConvCodec, images: Sequence[np.ndarray]) -> float:
    """Mean PSNR of ``decode(encode(x))`` with *no* quantisation: the best any quality level,
    entropy coder or file size could give with this transform (its ceiling)."""
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
    curve = rate_distortion_curve(lambda img, q: codec_roundtrip(img, codec, q), images, qualities)
    return [{"quality": p["quality"], "step": codec.quality_step(p["quality"]), **p} for p in curve]
