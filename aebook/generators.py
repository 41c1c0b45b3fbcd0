"""Generators as run folders: train one by name, load it, sample it, write the samples (chapter 4.2, CLI).

Three kinds of run folder can sample new images:

- ``vae`` (:class:`aebook.models.ConvVAE`): decode ``z ~ N(0, I)``;
- ``vqvae`` (:class:`aebook.vqvae.VQGenerator`): a PixelCNN draws a code grid, the VQ-VAE decodes it;
- ``latent-diffusion`` (:class:`aebook.diffusion.LatentDiffusion`): a flow-matching model draws a code,
  the autoencoder decodes it.

Each is one folder written by :func:`aebook.checkpoint.save_run` (safetensors + ``config.json``
holding the weights' SHA-256, checked on load). Samples are written as ``.npy`` (float32
``(N, C, H, W)`` in [0, 1]) or as a ``.png`` grid, atomically: a failed write leaves nothing.

Two measurements of any sampler: :func:`seconds_per_1000` (its speed) and :func:`copy_check`
(are its samples copies of training images?, drawn by :func:`copy_check_figure`). Two references
of chapter 4.2: :func:`quantised_reconstruction` (a continuous code at the bits of a VQ-VAE's grid,
rounded by :func:`quantise_uniform`) and :func:`independent_samples` (a VQ-VAE's codes drawn without context).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from aebook.checkpoint import load_module, load_run, read_config, save_run
from aebook.data import ImageData
from aebook.diffusion import (LATENT_DIM, build_latent_diffusion, decode_codes, encode_codes,
                              train_latent_diffusion)
from aebook.generation import nearest_neighbours
from aebook.imageio import write_image
from aebook.train import TrainConfig
from aebook.vqvae import VQVAE, build_vq_generator, train_vq_generator

#: Run kinds that :func:`sample_images` can draw from.
SAMPLERS = ("vae", "vqvae", "latent-diffusion")
#: Two-stage generators that :func:`train_generator` trains (``vae`` is trained like any autoencoder).
TWO_STAGE = ("vqvae", "latent-diffusion")
#: Formats :func:`write_samples` writes.
SAMPLE_FORMATS = (".npy", ".png")

_BUILDERS = {"vqvae": build_vq_generator, "latent-diffusion": build_latent_diffusion}


def load_generator(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a run folder that can sample (a kind in :data:`SAMPLERS`), after checking its SHA-256.

    Raises
    ------
    ValueError
        A run of another kind (e.g. a plain ``conv`` autoencoder, which has no prior to
        sample from), or a corrupted, tampered or mismatched checkpoint.
    FileNotFoundError
        Missing folder or files.
    """
    kind = read_config(run_dir)["model"]["model"]
    if kind not in SAMPLERS:
        raise ValueError(f"run {run_dir} holds a {kind!r} model, which has no prior to sample from: train one with "
                         f"--model {', '.join(SAMPLERS[:-1])} or {SAMPLERS[-1]}")
    if kind == "vae":
        return load_run(run_dir, device)
    return load_module(run_dir, _BUILDERS[kind], device)


@torch.no_grad()
def sample_images(model: nn.Module, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` new images ``(n, C, H, W)``, float32 in [0, 1] on the CPU; the same ``seed`` gives the same images."""
    if n < 1:
        raise ValueError(f"the number of samples must be positive, got {n}")
    if getattr(model, "name", None) == "vae":
        out = model.sample(n, generator=torch.Generator().manual_seed(seed))
    elif getattr(model, "name", None) in TWO_STAGE:
        out = model.sample(n, seed=seed)
    else:
        raise ValueError(f"a {getattr(model, 'name', type(model).__name__)!r} model cannot sample")
    return out.float().clamp(0, 1).cpu()


def check_output(path: str | Path) -> Path:
    """Check that samples can be written to ``path`` (a ``.npy`` or ``.png`` in a writable folder) before any work.

    Raises ``ValueError`` naming the problem; creates nothing.
    """
    path = Path(path)
    if path.suffix.lower() not in SAMPLE_FORMATS:
        raise ValueError(f"cannot write samples to {path}: use a .npy (array) or .png (grid) file name")
    if path.is_dir():
        raise ValueError(f"cannot write samples to {path}: it is a folder")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"cannot write samples to {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"cannot write samples to {path}: permission denied")
    return path


def grid_image(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile images ``(N, C, H, W)`` into one ``(rows, cols)`` (gray) or ``(rows, cols, 3)`` array in [0, 1].

    ``nrow`` images per row (default: about square); the ``pad`` pixels between them are white.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"expected images (N >= 1, C, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    ncol = nrow or math.ceil(math.sqrt(n))
    nr = math.ceil(n / ncol)
    canvas = np.ones((c, nr * (h + pad) + pad, ncol * (w + pad) + pad), dtype=np.float32)
    arr = images.detach().float().clamp(0, 1).cpu().numpy()
    for k in range(n):
        r, q = divmod(k, ncol)
        canvas[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = arr[k]
    return canvas[0] if c == 1 else canvas[:3].transpose(1, 2, 0)


def write_samples(path: str | Path, images: torch.Tensor) -> Path:
    """Write samples atomically: ``.npy`` as float32 ``(N, C, H, W)``, ``.png`` as a grid (:func:`grid_image`)."""
    path = check_output(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if path.suffix.lower() == ".npy":
            np.save(tmp, images.detach().float().cpu().numpy().astype(np.float32), allow_pickle=False)
        else:
            write_image(tmp, grid_image(images))
        os.replace(tmp, path)
    except OSError as err:
        raise ValueError(f"cannot write samples to {path}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def train_generator(kind: str, data: ImageData, epochs: int, latent_dim: int | None = None,
                    prior_epochs: int | None = None,
                    config: TrainConfig | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Train a two-stage generator (``vqvae`` or ``latent-diffusion``) on ``data.train``; return it and its histories.

    ``epochs`` trains the autoencoder; ``prior_epochs`` the second stage (defaults: the
    PixelCNN ``epochs``, the flow :data:`aebook.diffusion.PRIOR_EPOCHS_PER_EPOCH` times ``epochs``).
    ``latent_dim`` is the code size of ``latent-diffusion``'s autoencoder (default
    :data:`aebook.diffusion.LATENT_DIM`), and for ``vqvae``, whose code is a grid of codebook
    entries, the length of each codebook vector (the VQ-VAE's ``dim``, default 16).
    """
    if kind not in TWO_STAGE:
        raise ValueError(f"unknown two-stage generator {kind!r}: choose {' or '.join(TWO_STAGE)}")
    config = config or TrainConfig()
    if kind == "vqvae":
        dim = {} if latent_dim is None else {"dim": latent_dim}
        model, histories = train_vq_generator(data.train, epochs, prior_epochs, config=config, val=data.test, **dim)
    else:
        model, histories = train_latent_diffusion(data.train, latent_dim or LATENT_DIM, epochs, prior_epochs,
                                                  config=config, val=data.test)
    return model, {k: h.to_dict() for k, h in histories.items()}


def save_generator(run_dir: str | Path, model: nn.Module, histories: dict[str, Any] | None = None,
                   train_config: dict[str, Any] | None = None) -> Path:
    """Save a two-stage generator as one run folder (:func:`aebook.checkpoint.save_run`)."""
    return save_run(run_dir, model, histories, train_config)  # type: ignore[arg-type]


def seconds_per_1000(draw: Callable[[int], torch.Tensor], n: int = 200) -> float:
    """Wall-clock seconds that ``draw(n)`` takes, scaled to 1,000 samples (decoding included when ``draw`` decodes)."""
    if n < 1:
        raise ValueError(f"the number of samples must be positive, got {n}")
    start = time.perf_counter()
    draw(n)
    return (time.perf_counter() - start) * 1000 / n


def copy_check(samples: torch.Tensor, decoder: nn.Module, train: torch.Tensor, test: torch.Tensor) -> dict[str, Any]:
    """Are ``samples`` copies of ``train`` images? Nearest-training-image distances, against two references.

    A two-stage generator that memorised a training code would output that image's
    *reconstruction*, so both references pass through the same ``decoder`` (anything with
    ``reconstruct``): ``copies``, reconstructions of training images (what copies look like),
    and ``new``, reconstructions of held-out ``test`` images (new images, same decoder), as
    many of each as there are samples (at most). ``threshold`` is the median of ``copies``.

    Returns
    -------
    dict
        ``samples``, ``copies``, ``new``: pixel distances to the nearest training image;
        ``index``: the nearest training image of each sample; ``threshold``; ``share``: for
        ``samples`` and ``new``, the fraction closer to a training image than ``threshold``.
    """
    if samples.ndim != 4 or samples.shape[1:] != train.shape[1:] or test.shape[1:] != train.shape[1:]:
        raise ValueError(f"samples, train and test must be images of one shape, got {tuple(samples.shape)}, "
                         f"{tuple(train.shape)} and {tuple(test.shape)}")
    n = len(samples)
    dist, index = nearest_neighbours(samples, train)
    copies = nearest_neighbours(decoder.reconstruct(train[:n]), train)[0]
    new = nearest_neighbours(decoder.reconstruct(test[:n]), train)[0]
    threshold = float(copies.median())
    return {"samples": dist, "copies": copies, "new": new, "index": index, "threshold": threshold,
            "share": {"samples": float((dist < threshold).float().mean()),
                      "new": float((new < threshold).float().mean())}}


def copy_check_figure(checks: dict[str, dict[str, Any]]):
    """Histograms of :func:`copy_check`'s three distances, one panel per generator, its threshold dotted."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(checks), figsize=(5 * len(checks), 3), sharey=True, squeeze=False)
    for ax, (name, check) in zip(axes[0], checks.items()):
        for key, label in (("copies", "copies (training reconstructions)"), ("new", "held-out reconstructions"),
                           ("samples", "samples")):
            ax.hist(check[key].numpy(), bins=40, alpha=0.5, label=label)
        ax.axvline(check["threshold"], color="k", ls=":", lw=1)
        ax.set(xlabel="pixel distance to the nearest training image", title=name)
    axes[0, 0].set_ylabel("count")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def quantise_uniform(codes: torch.Tensor, low: torch.Tensor, high: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Round each coordinate of ``codes`` to one of ``2**bits`` evenly spaced levels in ``[low, high]`` (per dimension).

    A continuous autoencoder's code of ``d`` numbers then costs ``d * bits`` bits: the
    comparison at equal bits with a VQ-VAE's grid of indices.
    """
    if bits < 1:
        raise ValueError(f"bits must be >= 1, got {bits}")
    levels = 2**bits - 1
    span = (high - low).clamp_min(1e-12)
    q = torch.round((codes.clamp(low, high) - low) / span * levels)
    return low + q / levels * span


@torch.no_grad()
def quantised_reconstruction(autoencoder: nn.Module, train: torch.Tensor, x: torch.Tensor,
                             bits: int = 8) -> torch.Tensor:
    """Decode the codes of ``x`` after rounding each coordinate to ``bits`` bits (:func:`quantise_uniform`).

    The levels span each coordinate's range on the ``train`` images' codes, so a continuous
    autoencoder with ``d`` numbers per code spends ``d * bits`` bits per image.
    """
    z_train, z = encode_codes(autoencoder, train).cpu(), encode_codes(autoencoder, x).cpu()
    return decode_codes(autoencoder, quantise_uniform(z, z_train.min(0).values, z_train.max(0).values, bits))


@torch.no_grad()
def independent_samples(vqvae: VQVAE, grids: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` images whose grid positions are drawn independently from the codes' overall frequencies in ``grids``.

    The generator without context: what a PixelCNN's conditionals add shows against it.
    """
    if n < 1:
        raise ValueError(f"the number of samples must be positive, got {n}")
    freq = torch.bincount(grids.flatten().cpu(), minlength=vqvae.codes).float()
    idx = torch.multinomial(freq / freq.sum(), n * vqvae.grid[0] * vqvae.grid[1], replacement=True,
                            generator=torch.Generator().manual_seed(seed)).view(n, *vqvae.grid)
    was = vqvae.training
    vqvae.eval()
    out = vqvae.decode_indices(idx.to(next(vqvae.parameters()).device)).float().cpu()
    vqvae.train(was)
    return out
