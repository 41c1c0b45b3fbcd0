"""aebook: the library behind the book *Image generation with autoencoders*.

Each module holds one concern and is taught by a chapter of the book:

- :mod:`aebook.runtime`  quick mode, device choice, seeds (chapter 3.1)
- :mod:`aebook.data`     embedded and torchvision datasets, held-out photos (chapter 2)
- :mod:`aebook.models`   linear, fully-connected, convolutional and variational autoencoders (chapter 3.2)
- :mod:`aebook.train`    one training loop for every model (chapter 3.3)
- :mod:`aebook.checkpoint` safetensors + JSON run folders (chapter 3.3, 5.3)
- :mod:`aebook.metrics`  PSNR and SSIM (chapter 3.3)
- :mod:`aebook.baselines` PCA, JPEG and interpolation baselines (chapter 2.3)
- :mod:`aebook.plots`    figures used throughout the book
- :mod:`aebook.corrupt`  damage models: noise, masks, downsampling, exposure (chapter 4)
- :mod:`aebook.classical` classical restoration baselines: biharmonic, TV, wavelet, NL-means, BM3D, bicubic (chapter 4)
- :mod:`aebook.entropy`  empirical entropy and canonical Huffman codes of quantised latents (chapter 5)
- :mod:`aebook.bitstream` the ``.aeb`` compressed-image file format (chapter 5)
- :mod:`aebook.cli`      the ``aebook`` command
"""

from __future__ import annotations

__version__ = "0.1.0"

from aebook.runtime import describe_environment, pick_device, quick_mode, seed_everything
from aebook.data import (
    HELD_OUT_PHOTOS,
    TRAIN_PHOTOS,
    ImageData,
    load_dataset,
    load_photo,
    photo_patches,
)
from aebook.models import build_model, MODEL_NAMES
from aebook.train import TrainConfig, History, fit
from aebook.checkpoint import load_run, save_run
from aebook.metrics import psnr, ssim, batch_metrics
from aebook.baselines import PCABaseline, jpeg_roundtrip

__all__ = [
    "__version__",
    "describe_environment",
    "pick_device",
    "quick_mode",
    "seed_everything",
    "HELD_OUT_PHOTOS",
    "TRAIN_PHOTOS",
    "ImageData",
    "load_dataset",
    "load_photo",
    "photo_patches",
    "build_model",
    "MODEL_NAMES",
    "TrainConfig",
    "History",
    "fit",
    "load_run",
    "save_run",
    "psnr",
    "ssim",
    "batch_metrics",
    "PCABaseline",
    "jpeg_roundtrip",
]
