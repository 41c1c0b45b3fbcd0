"""aebook: the library behind the book *Image generation with autoencoders*.

Grouped by subject, not by chapter: flat modules where one file is one subject, subpackages
for families.

- :mod:`aebook.runtime`  quick mode, device choice, seeds, timing (chapter 3.1)
- :mod:`aebook.data`     embedded and torchvision datasets, held-out photos (chapter 2)
- :mod:`aebook.imageio`  image files and tensors, the one bicubic resize
- :mod:`aebook.models`   linear, fully-connected, convolutional and variational autoencoders (chapter 3.2)
- :mod:`aebook.train`    one training loop, and the one optimisation step and schedule every trainer takes (chapter 3.3)
- :mod:`aebook.checkpoint` safetensors + JSON run folders (chapter 3.3, 5.4)
- :mod:`aebook.metrics`  PSNR, SSIM and rate-distortion curves (chapter 3.3)
- :mod:`aebook.baselines` PCA, the block KLT, JPEG and interpolation baselines (chapters 2.3, 5.2)
- :mod:`aebook.plots`    figures and Markdown tables used throughout the book
- :mod:`aebook.generation`, :mod:`aebook.vqvae`, :mod:`aebook.diffusion`, :mod:`aebook.generators`
  sampling and its measures; two-stage generators (chapters 4.1, 4.2)
- :mod:`aebook.restoration` damage, classical restorers, restoration networks and their evaluation (chapter 4)
- :mod:`aebook.codecs`   entropy coding, the ``.aeb`` format and the learned codecs (chapter 5.2)
- :mod:`aebook.perf`     FLOPs, peak FLOP/s, training-loop throughput, quality-vs-cost sweeps (chapter 5.1)
- :mod:`aebook.distributed`, :mod:`aebook.streaming` DDP training with torchrun; streaming image folders (chapter 5.3)
- :mod:`aebook.security` AES-GCM for ``.aeb`` files, pickle inspection, membership inference (chapter 5.4)
- :mod:`aebook.zoo`      shipped weights by name (``aebook.pretrained("denoise")``) and the command
  that trains them (``python -m aebook.train_pretrained``)
- :mod:`aebook.book`     what only the chapters use (tables, saved results, subspaces, comparisons)
- :mod:`aebook.cli`      the ``aebook`` command

This file imports no submodule when it runs: the names below load on first use, so importing
one submodule (which runs this file first) never pulls in the rest of the library.
"""

from __future__ import annotations

#: The one place that names the version: pyproject.toml reads it, each release is tagged ``v<version>``,
#: and every chapter's Colab cell installs that tag (tests/test_packaging.py checks all three agree).
__version__ = "0.3.0"

import importlib
from typing import TYPE_CHECKING, Any

#: Public names re-exported here, loaded on first use (PEP 562) so that ``import aebook``
#: and the ``aebook`` command do not pay for scikit-image and friends until they need them.
_EXPORTS = {
    "describe_environment": "runtime", "pick_device": "runtime", "quick_mode": "runtime",
    "seed_everything": "runtime",
    "HELD_OUT_PHOTOS": "data", "TRAIN_PHOTOS": "data", "ImageData": "data", "load_dataset": "data",
    "load_photo": "data", "photo_patches": "data",
    "build_model": "models", "MODEL_NAMES": "models",
    "TrainConfig": "train", "History": "train", "fit": "train",
    "load_run": "checkpoint", "save_run": "checkpoint",
    "psnr": "metrics", "ssim": "metrics", "batch_metrics": "metrics",
    "PCABaseline": "baselines", "jpeg_roundtrip": "baselines",
    "pretrained": "zoo",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"aebook.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aebook' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover
    from aebook.baselines import PCABaseline, jpeg_roundtrip
    from aebook.checkpoint import load_run, save_run
    from aebook.data import HELD_OUT_PHOTOS, TRAIN_PHOTOS, ImageData, load_dataset, load_photo, photo_patches
    from aebook.metrics import batch_metrics, psnr, ssim
    from aebook.models import MODEL_NAMES, build_model
    from aebook.runtime import describe_environment, pick_device, quick_mode, seed_everything
    from aebook.train import History, TrainConfig, fit
    from aebook.zoo import pretrained

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
    "pretrained",
]
