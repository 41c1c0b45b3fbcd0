"""Training the codecs on patches of the training photos (chapter 5.2).

- :func:`train_codec`: the convolutional codec, end to end, with the book's training loop
  :func:`aebook.train.fit` (its loss is ``MSE + lmbda * rate``).
- :func:`train_klt_codec`: the block-KLT codec: the transform fitted in closed form, then its
  decoder network trained as a restorer of the quantisation damage
  (:func:`aebook.restoration.training.train_restorer` on :func:`~aebook.codecs.klt.klt_damage_task`).

Both use ``TRAIN_PHOTOS`` only; the book measures on the held-out photos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from aebook.checkpoint import read_config
from aebook.codecs.coding import load_codec
from aebook.codecs.conv import ConvCodec
from aebook.codecs.klt import BLOCK, KLTCodec, klt_damage_task
from aebook.data import TRAIN_PHOTOS, load_photo, photo_patches
from aebook.restoration.nets import ResidualCNN
from aebook.restoration.training import train_restorer
from aebook.train import TrainConfig, fit


def train_codec(n_patches: int = 8000, patch_size: int = 32, epochs: int = 10, latent_channels: int = 8,
                lmbda: float = 0.004, seed: int = 0, device: str = "auto", widths: Sequence[int] = (32, 48, 64),
                batch_size: int = 8, lr: float = 2e-3, progress: bool = False,
                entropy_model: str = "proxy") -> tuple[ConvCodec, Any]:
    """Train a grayscale :class:`~aebook.codecs.conv.ConvCodec` on random patches of the training photos.

    Uses :func:`aebook.data.photo_patches` (``TRAIN_PHOTOS`` only, never the held-out
    ones) and the book's training loop :func:`aebook.train.fit`. Returns the codec
    (eval mode) and the :class:`~aebook.train.History`.
    """
    patches = photo_patches(n_patches, patch_size, gray=True, seed=seed)
    torch.manual_seed(seed)
    codec = ConvCodec(1, latent_channels, widths, lmbda, entropy_model)
    # amp=False: bfloat16 would round the latents more coarsely than the quantiser does.
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, amp=False,
                         progress=progress)
    history = fit(codec, patches, config)
    return codec, history


def train_klt_codec(n_patches: int = 16000, patch_size: int = 40, epochs: int = 4, depth: int = 12,
                    width: int = 32, batch_size: int = 32, lr: float = 3e-4, seed: int = 0,
                    device: str = "auto", progress: bool = False, init: str | Path | None = None,
                    minutes: float | None = None, warmup: float = 0.0) -> tuple[KLTCodec, list[float]]:
    """Fit the KLT on the training photos, then train the decoder network.

    The network starts from ``init`` (None: from scratch), a run folder of the same width and at
    most ``depth`` layers (a shallower one grown by :func:`aebook.restoration.nets.deepen`): a
    restorer (the shipped recipe starts from the full-resolution denoiser, ``aebook.zoo.resolve("denoise_cnn")``:
    quantisation error looks much like noise) or a kltcodec, whose own decoder network then goes
    on training (continued in stages). It trains with
    :func:`aebook.restoration.training.train_restorer` on :func:`~aebook.codecs.klt.klt_damage_task`.
    Only ``TRAIN_PHOTOS`` are used. Returns the codec (eval mode, on the CPU) and the loss per epoch.
    """
    if patch_size % BLOCK:
        raise ValueError(f"patch_size must be a multiple of 8, got {patch_size}")
    start: str | Path | ResidualCNN | None = init
    if init is not None and read_config(init).get("model", {}).get("model") == KLTCodec.name:
        previous, _ = load_codec(init)
        assert isinstance(previous, KLTCodec) and previous.refine is not None
        start = previous.refine  # continue that codec's own decoder network
    codec = KLTCodec(depth, width).fit_transform([load_photo(n, gray=True) for n in TRAIN_PHOTOS])
    model, losses = train_restorer(klt_damage_task(codec), epochs=epochs, n_patches=n_patches,
                                   patch_size=patch_size, depth=depth, width=width, batch_size=batch_size,
                                   lr=lr, seed=seed, device=device, progress=progress, init=start,
                                   minutes=minutes, warmup=warmup)
    codec = codec.cpu()
    assert codec.refine is not None
    codec.refine.load_state_dict(model.cpu().state_dict())
    return codec.eval(), losses
