"""Subspaces and bottlenecks: what a linear autoencoder learns, and how latent size matters (chapters 2.1, 2.2).

- :func:`principal_angles` measures how far apart two subspaces are, e.g. the
  column space of a linear decoder and PCA's top components (Baldi & Hornik, 1989:
  they coincide at the optimum, but the bases need not).
- :func:`project_onto` aligns one basis with another subspace, for figures.
- :func:`bottleneck_sweep` trains one model per method and latent size and measures
  PSNR and SSIM on held-out images: the bottleneck curve of chapter 2.2 (what a model
  costs per latent size is :func:`aebook.perf.latent_sweep`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

from aebook.baselines import PCABaseline
from aebook.data import ImageData
from aebook.metrics import PSNR_CAP, mean_metrics
from aebook.models import build_model
from aebook.train import TrainConfig, fit


def _as_matrix(a: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().float().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"{name} must be a 2-D matrix whose columns span a subspace, got shape {a.shape}")
    return a


def principal_angles(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
    """Principal angles, in degrees and ascending, between the column spaces of ``a`` and ``b``.

    Parameters
    ----------
    a, b
        Matrices of shape ``(d, p)`` and ``(d, q)``: each column is a vector of
        the same ``d``-dimensional space (e.g. a linear decoder's weight, or
        PCA's components transposed). The columns need not be orthonormal.

    Returns
    -------
    numpy.ndarray
        ``min(p, q)`` angles in [0, 90]. All zero means one column space
        contains the other; the largest angle is the worst-aligned direction.
    """
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must have the same number of rows, got {a.shape[0]} and {b.shape[0]}")
    return np.sort(np.degrees(subspace_angles(a, b)))


def project_onto(basis: np.ndarray | torch.Tensor, vectors: np.ndarray | torch.Tensor) -> np.ndarray:
    """Orthogonal projection of the columns of ``vectors`` onto the column space of ``basis``.

    If the two spaces coincide, the projection returns ``vectors`` unchanged:
    projecting PCA's components onto a linear decoder's column space shows
    which combinations of the decoder's directions reproduce them.

    Parameters
    ----------
    basis
        ``(d, k)`` matrix (e.g. the decoder weight).
    vectors
        ``(d, m)`` matrix (e.g. PCA components as columns).

    Returns
    -------
    numpy.ndarray
        ``(d, m)`` projected vectors, ``basis @ c`` with ``c`` the least-squares coefficients.
    """
    basis, vectors = _as_matrix(basis, "basis"), _as_matrix(vectors, "vectors")
    if basis.shape[0] != vectors.shape[0]:
        raise ValueError(f"basis and vectors must have the same number of rows, got {basis.shape[0]} and {vectors.shape[0]}")
    coef, *_ = np.linalg.lstsq(basis, vectors, rcond=None)
    return basis @ coef


@dataclass
class SweepResult:
    """Output of :func:`bottleneck_sweep`.

    Attributes
    ----------
    metrics
        ``metrics[method][latent] = {"psnr": ..., "ssim": ..., "seconds": ...}``
        (means over the test images; seconds of training).
    models
        ``models[method][latent]``: the trained model (a :class:`~aebook.baselines.PCABaseline` for ``"pca"``).
    """

    metrics: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    models: dict[str, dict[int, Any]] = field(default_factory=dict)

    def table(self, metric: str = "psnr") -> dict[str, dict[int, float]]:
        """``{method: {latent: value}}`` for one metric: the input of :func:`aebook.plots.plot_metric_vs_latent`."""
        return {m: {k: v[metric] for k, v in per.items()} for m, per in self.metrics.items()}

    def markdown(self, metric: str = "psnr", fmt: str = ".2f", label: str | None = None) -> str:
        """A Markdown table: one row per method, one column per latent size."""
        sizes = sorted({k for per in self.metrics.values() for k in per})
        head = f"| {label or metric} | " + " | ".join(f"latent {k}" for k in sizes) + " |"
        rule = "|---|" + "---:|" * len(sizes)
        rows = [f"| {m} | " + " | ".join(format(per[k][metric], fmt) if k in per else "" for k in sizes) + " |"
                for m, per in self.metrics.items()]
        return "\n".join([head, rule, *rows])


def bottleneck_sweep(
    data: ImageData,
    methods: Sequence[str],
    latent_sizes: Sequence[int],
    config: TrainConfig | Mapping[str, TrainConfig] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> SweepResult:
    """Train one model per method and latent size on ``data.train``; measure PSNR/SSIM on ``data.test``.

    Parameters
    ----------
    data
        Train and test images.
    methods
        Model names of :func:`aebook.models.build_model` (``"linear"``,
        ``"mlp"``, ``"conv"``), or ``"pca"`` for :class:`~aebook.baselines.PCABaseline`.
    latent_sizes
        Bottleneck sizes to try.
    config
        One :class:`~aebook.train.TrainConfig` for all models, or one per method name.
    options
        Model keyword arguments per method name, e.g. ``{"conv": {"width": 16}}``.

    Returns
    -------
    SweepResult
        Metrics and the trained models.
    """
    if not methods or not latent_sizes:
        raise ValueError("bottleneck_sweep needs at least one method and one latent size")
    options = options or {}
    result = SweepResult()
    for method in methods:
        result.metrics[method], result.models[method] = {}, {}
        for k in latent_sizes:
            start = time.perf_counter()
            if method == "pca":
                model: Any = PCABaseline(int(k)).fit(data.train)
            else:
                cfg = config.get(method, TrainConfig()) if isinstance(config, Mapping) else (config or TrainConfig())
                model = build_model(method, data.shape, int(k), **dict(options.get(method, {})))
                fit(model, data.train, cfg)
            seconds = time.perf_counter() - start
            m = mean_metrics(data.test, model.reconstruct(data.test))
            result.metrics[method][int(k)] = {"psnr": m["psnr"], "ssim": m["ssim"], "seconds": seconds}
            result.models[method][int(k)] = model
    return result


def plot_directions(rows: Mapping[str, np.ndarray | torch.Tensor], image_shape: tuple[int, int],
                    n: int | None = None, scale: float = 1.0):
    """Show basis vectors as images: one row per matrix, one column per direction.

    Each direction is drawn with a diverging colormap scaled to its own largest
    absolute value (red positive, blue negative), since directions have no
    natural brightness.

    Parameters
    ----------
    rows
        Row label -> ``(d, k)`` matrix whose columns are directions in pixel space
        (``d = H * W``), e.g. PCA components (transposed) or a decoder weight.
    image_shape
        ``(H, W)`` of one direction as an image.
    n
        Number of directions (columns) to show; default: all of the widest row.
    """
    mats = {name: _as_matrix(m, name) for name, m in rows.items()}
    n = n or max(m.shape[1] for m in mats.values())
    fig, axes = plt.subplots(len(mats), n, figsize=(scale * n + 1.5, scale * 1.15 * len(mats)), squeeze=False)
    for i, (name, m) in enumerate(mats.items()):
        for j in range(n):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < m.shape[1]:
                v = m[:, j].reshape(image_shape)
                lim = float(np.abs(v).max()) or 1.0
                ax.imshow(v, cmap="coolwarm", vmin=-lim, vmax=lim, interpolation="nearest")
            else:
                ax.axis("off")
            if i == 0:
                ax.set_title(f"{j + 1}", fontsize=9)
        axes[i, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def pca_psnr_curve(train: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor | None = None,
                   max_k: int | None = None) -> dict[int, float]:
    """Mean PSNR of PCA reconstructions for every latent size ``k = 1 .. max_k``, from one PCA fit.

    Equivalent to ``PCABaseline(k).fit(train).reconstruct(inputs)`` scored with
    :func:`aebook.metrics.psnr` against ``targets`` (clipped to [0, 1], per-image
    PSNR averaged), but fitted once: the first ``k`` components of a larger PCA
    are the ``k``-component PCA.

    Parameters
    ----------
    train
        ``(N, C, H, W)`` images PCA is fitted on.
    inputs
        Images to encode and decode (e.g. noisy test images).
    targets
        Images to compare with (default: ``inputs``).
    max_k
        Largest latent size (default: ``min(N, C*H*W)``).

    Returns
    -------
    dict
        ``{k: mean PSNR in dB}``.
    """
    targets = inputs if targets is None else targets
    if inputs.shape != targets.shape or inputs.shape[1:] != train.shape[1:]:
        raise ValueError(f"shapes differ: train {tuple(train.shape)}, inputs {tuple(inputs.shape)}, "
                         f"targets {tuple(targets.shape)}")
    x = train.detach().double().cpu().flatten(1).numpy()
    max_k = max_k or min(x.shape)
    if not 1 <= max_k <= min(x.shape):
        raise ValueError(f"max_k must be in 1..{min(x.shape)}, got {max_k}")
    pca = PCA(n_components=max_k).fit(x)
    xin = inputs.detach().double().cpu().flatten(1).numpy()
    ref = targets.detach().double().cpu().flatten(1).numpy()
    codes = (xin - pca.mean_) @ pca.components_.T
    recon = np.repeat(pca.mean_[None], len(xin), axis=0)
    curve = {}
    for k in range(1, max_k + 1):
        recon = recon + np.outer(codes[:, k - 1], pca.components_[k - 1])
        mse = ((np.clip(recon, 0, 1) - ref) ** 2).mean(axis=1)
        with np.errstate(divide="ignore"):
            psnr = np.minimum(10 * np.log10(1.0 / mse), PSNR_CAP)
        curve[k] = float(psnr.mean())
    return curve


def equivalent_size(curve: Mapping[int, float], value: float) -> float:
    """Smallest latent size at which ``curve`` (``{k: PSNR}``) reaches ``value``, linearly interpolated.

    Used to say "PCA needs this many numbers to match a model that uses k".
    Returns ``inf`` when the curve never reaches ``value`` and the smallest
    ``k`` when it is reached already there.
    """
    ks = sorted(curve)
    if not ks:
        raise ValueError("empty curve")
    if curve[ks[0]] >= value:
        return float(ks[0])
    for k0, k1 in zip(ks[:-1], ks[1:]):
        v0, v1 = curve[k0], curve[k1]
        if v1 >= value:
            return float(k0 + (k1 - k0) * (value - v0) / (v1 - v0))
    return float("inf")
