"""aebook: the library behind the book *Image generation with autoencoders*.

Each module holds one concern and is taught by a chapter of the book:

- :mod:`aebook.runtime`  quick mode, device choice, seeds (chapter 3.1)
- :mod:`aebook.data`     embedded and torchvision datasets, held-out photos (chapter 2)
- :mod:`aebook.models`   linear, fully-connected, convolutional and variational autoencoders (chapter 3.2)
- :mod:`aebook.train`    one training loop for every model (chapter 3.3)
- :mod:`aebook.checkpoint` safetensors + JSON run folders (chapter 3.3, 5.4)
- :mod:`aebook.metrics`  PSNR and SSIM (chapter 3.3)
- :mod:`aebook.baselines` PCA, JPEG and interpolation baselines (chapter 2.3)
- :mod:`aebook.plots`    figures used throughout the book
- :mod:`aebook.corrupt`  damage models: noise, masks, downsampling, exposure (chapter 4)
- :mod:`aebook.classical` classical restoration baselines: biharmonic, TV, wavelet, NL-means, BM3D, bicubic (chapter 4)
- :mod:`aebook.entropy`  empirical entropy and canonical Huffman codes of quantised latents (chapter 5.2)
- :mod:`aebook.bitstream` the ``.aeb`` compressed-image file format (chapter 5.2)
- :mod:`aebook.restore`, :mod:`aebook.restore_eval` restoration networks and their side-by-side evaluation (chapter 4)
- :mod:`aebook.generation` sampling, interpolation, ELBO in bits/dim, Fréchet distance (chapter 4.1)
- :mod:`aebook.codec`    a learned image codec writing ``.aeb`` files (chapter 5.2)
- :mod:`aebook.perf`     FLOPs, peak FLOP/s, training-loop throughput, quality-vs-cost sweeps (chapter 5.1)
- :mod:`aebook.distributed`, :mod:`aebook.streaming` DDP training with torchrun; streaming image folders (chapter 5.3)
- :mod:`aebook.security` AES-GCM for ``.aeb`` files, pickle inspection, membership inference (chapter 5.4)
- :mod:`aebook.pretrained`, :mod:`aebook.train_pretrained` shipped weights by name and the command that trains them
- :mod:`aebook.results`  headline numbers saved by the chapters, gathered by the conclusion (chapter 6)
- :mod:`aebook.cli`      the ``aebook`` command
"""

from __future__ import annotations

#: The one place that names the version: pyproject.toml reads it, each release is tagged ``v<version>``,
#: and every chapter's Colab cell installs that tag (tests/test_packaging.py checks all three agree).
__version__ = "0.2.0"

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
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f"aebook.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aebook' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


from aebook import pretrained  # noqa: E402  (a callable module: aebook.pretrained("denoise"))

if TYPE_CHECKING:  # pragma: no cover
    from aebook.baselines import PCABaseline, jpeg_roundtrip
    from aebook.checkpoint import load_run, save_run
    from aebook.data import HELD_OUT_PHOTOS, TRAIN_PHOTOS, ImageData, load_dataset, load_photo, photo_patches
    from aebook.metrics import batch_metrics, psnr, ssim
    from aebook.models import MODEL_NAMES, build_model
    from aebook.runtime import describe_environment, pick_device, quick_mode, seed_everything
    from aebook.train import History, TrainConfig, fit

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
