"""Generating images with autoencoders, and measuring what comes out (chapter 4.1).

- Moving in latent space: :func:`lerp`, :func:`slerp`, :func:`interpolate`,
  :func:`traverse`, :func:`decode_grid_2d`, :func:`kl_per_dim`, and an
  ipywidgets explorer (:func:`latent_explorer`, with :func:`explorer_figure`
  as its static stand-in).
- Training the VAE with a likelihood that fits the pixels: :func:`train_vae`.
- Likelihood: :func:`negative_elbo` (nats per image and bits per dimension
  under a binomial pixel model) and :func:`pixel_histogram_bits`, the same
  number for a model that ignores all correlations between pixels.
- Sample quality: a small classifier (:class:`FeatureClassifier`,
  :func:`train_classifier`, :func:`features`, :func:`accuracy`) whose
  penultimate layer is the feature space of an FID-style
  :func:`frechet_distance`; :class:`LatentGaussian` samples from a Gaussian fitted
  to the codes of a plain autoencoder or of PCA.
- Copies or new images? :func:`nearest_neighbours` in pixel space (chapter 4.2).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aebook.data import default_data_dir, load_mnist_sample
from aebook.models import build_model
from aebook.plots import show_image
from aebook.runtime import live_frontend  # noqa: F401  (the one definition; chapter 4.1 imports it from here)
from aebook.runtime import pick_device
from aebook.train import TrainConfig, TrainStep, fit


# ---------------------------------------------------------------- latent paths
def _weights(t: Sequence[float] | torch.Tensor | int) -> torch.Tensor:
    if isinstance(t, int):
        if t < 2:
            raise ValueError(f"need at least 2 interpolation steps, got {t}")
        return torch.linspace(0, 1, t)
    return torch.as_tensor(t, dtype=torch.float32).flatten()


def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"expected two latent vectors of the same shape (d,), got {tuple(a.shape)} and {tuple(b.shape)}")
    return a.float(), b.float()


def lerp(a: torch.Tensor, b: torch.Tensor, t: Sequence[float] | torch.Tensor | int) -> torch.Tensor:
    """Straight line ``(1 - t) a + t b`` for each weight in ``t`` (or ``t`` evenly spaced steps): ``(len(t), d)``."""
    a, b = _pair(a, b)
    w = _weights(t).to(a.device)[:, None]
    return (1 - w) * a + w * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: Sequence[float] | torch.Tensor | int) -> torch.Tensor:
    """Spherical interpolation (great-circle arc through the angle between ``a`` and ``b``): ``(len(t), d)``.

    ``sin((1 - t) Ω) / sin Ω · a + sin(t Ω) / sin Ω · b`` with ``Ω`` the angle
    between the vectors. For vectors of equal norm every point keeps that
    norm, where :func:`lerp` cuts the chord and shrinks towards the origin.
    Nearly parallel vectors fall back to :func:`lerp`.
    """
    a, b = _pair(a, b)
    w = _weights(t).to(a.device)[:, None]
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1, 1))
    if omega.abs() < 1e-4:
        return lerp(a, b, w.flatten())
    so = torch.sin(omega)
    return torch.sin((1 - w) * omega) / so * a + torch.sin(w * omega) / so * b


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _decode(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    was = model.training
    model.eval()
    out = model.decode(z.to(_device(model))).float().cpu()
    model.train(was)
    return out


@torch.no_grad()
def encode(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Codes of ``x`` in eval mode, batch by batch, on the CPU (a VAE gives the posterior mean)."""
    model.check_input(x)
    was = model.training
    model.eval()
    out = torch.cat([model.encode(x[i : i + batch_size].to(_device(model))).float().cpu()
                     for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


def interpolate(model: nn.Module, x0: torch.Tensor, x1: torch.Tensor, steps: int = 8,
                mode: str = "linear") -> torch.Tensor:
    """Decode a path between the codes of images ``x0`` and ``x1`` (each ``(C, H, W)``).

    ``mode`` is ``"linear"`` (:func:`lerp`) or ``"spherical"`` (:func:`slerp`).
    Returns ``(steps, C, H, W)``; the first and last images are the model's
    reconstructions of ``x0`` and ``x1``.
    """
    paths = {"linear": lerp, "spherical": slerp}
    if mode not in paths:
        raise ValueError(f"unknown interpolation mode {mode!r}: choose linear or spherical")
    if x0.shape != x1.shape or x0.ndim != 3:
        raise ValueError(f"expected two images of the same shape (C, H, W), got {tuple(x0.shape)} and {tuple(x1.shape)}")
    z = encode(model, torch.stack([x0, x1]))
    return _decode(model, paths[mode](z[0], z[1], steps))


def traverse(model: nn.Module, z: torch.Tensor, dim: int, values: Sequence[float]) -> torch.Tensor:
    """Decode copies of the code ``z`` (shape ``(d,)``) with coordinate ``dim`` set to each of ``values``."""
    if z.ndim != 1:
        raise ValueError(f"expected one latent vector of shape (d,), got {tuple(z.shape)}")
    if not 0 <= dim < len(z):
        raise ValueError(f"latent dimension {dim} out of range for a code of size {len(z)}")
    zs = z.float().repeat(len(values), 1)
    zs[:, dim] = torch.as_tensor(list(values), dtype=torch.float32)
    return _decode(model, zs)


def grid_values(n: int, quantile: float = 0.95) -> np.ndarray:
    """``n`` latent values at evenly spaced quantiles of N(0, 1), from ``1 - quantile`` to ``quantile``."""
    from scipy.stats import norm

    if n < 2 or not 0.5 < quantile < 1:
        raise ValueError(f"need n >= 2 and 0.5 < quantile < 1, got n={n}, quantile={quantile}")
    return norm.ppf(np.linspace(1 - quantile, quantile, n))


def decode_grid_2d(model: nn.Module, n: int = 12, quantile: float = 0.95) -> torch.Tensor:
    """Decode an ``n`` x ``n`` grid over a 2-D latent space (Kingma & Welling's figure 4).

    Grid points sit at quantiles of the prior (:func:`grid_values`), so equal
    steps carry equal prior mass. Rows go from high to low ``z[1]``, columns
    from low to high ``z[0]``; returns ``(n * n, C, H, W)`` in row-major order.
    """
    if getattr(model, "latent_dim", None) != 2:
        raise ValueError(f"decode_grid_2d needs a model with a 2-D latent, got latent_dim={getattr(model, 'latent_dim', None)}")
    v = torch.as_tensor(grid_values(n, quantile), dtype=torch.float32)
    z1, z0 = torch.meshgrid(v.flip(0), v, indexing="ij")
    return _decode(model, torch.stack([z0.flatten(), z1.flatten()], dim=1))


@torch.no_grad()
def kl_per_dim(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean KL(q(z_j | x) || N(0, 1)) in nats for each latent dimension ``j`` of a VAE, over the images ``x``.

    Dimensions with a KL near zero are unused ("collapsed"): the decoder ignores them.
    """
    if not hasattr(model, "encode_stats"):
        raise ValueError("kl_per_dim needs a VAE (a model with encode_stats)")
    model.check_input(x)
    was = model.training
    model.eval()
    mu, logvar = model.encode_stats(x.to(_device(model)))
    model.train(was)
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).float().mean(0).cpu()


# ---------------------------------------------------------------- training and likelihood
def train_vae(train: torch.Tensor, latent_dim: int, beta: float = 1.0, trials: int = 16, width: int = 32,
              config=None, val: torch.Tensor | None = None):
    """Train the library's convolutional VAE so that ``beta = 1`` maximises the binomial ELBO.

    :class:`aebook.models.ConvVAE` minimises ``BCE + beta_lib * KL`` with the
    cross-entropy summed over pixels. For pixels ``k / trials`` with a
    Binomial(``trials``, p) likelihood, ``-log p = trials * BCE + const``, so
    ``beta_lib = beta / trials`` trains ``trials * BCE + beta * KL``: the
    negative ELBO for ``beta = 1``, a beta-VAE otherwise. Returns ``(model, history)``.
    """
    if beta <= 0 or trials < 1:
        raise ValueError(f"need beta > 0 and trials >= 1, got beta={beta}, trials={trials}")
    model = build_model("vae", tuple(train.shape[1:]), latent_dim, width=width, beta=beta / trials)
    history = fit(model, train, config or TrainConfig(), val=val)
    return model, history


def _counts(x: torch.Tensor, trials: int) -> torch.Tensor:
    k = x.float() * trials
    if (k - k.round()).abs().max() > 1e-3 or k.min() < -1e-3 or k.max() > trials + 1e-3:
        raise ValueError(f"pixels are not multiples of 1/{trials} in [0, 1]: choose trials to match the pixel "
                         f"scale (digits: 16, 8-bit images: 255)")
    return k.round()


def _log_binomial(k: torch.Tensor, logits: torch.Tensor, trials: int) -> torch.Tensor:
    log_choose = math.lgamma(trials + 1) - torch.lgamma(k + 1) - torch.lgamma(trials - k + 1)
    return log_choose + k * F.logsigmoid(logits) + (trials - k) * F.logsigmoid(-logits)


@torch.no_grad()
def negative_elbo(model: nn.Module, x: torch.Tensor, trials: int = 16, samples: int = 8,
                  seed: int = 0, batch_size: int = 512) -> dict[str, float]:
    """Test-set negative ELBO of a VAE under a binomial pixel likelihood.

    Each pixel holds a count ``k = x * trials`` (the 8x8 digits are counts of
    on-pixels in 4x4 blocks: ``trials = 16``; 8-bit images: ``trials = 255``)
    and the decoder's sigmoid output ``p`` gives ``k ~ Binomial(trials, p)``: a
    proper distribution over the ``trials + 1`` pixel values, so the numbers
    are code lengths. The reconstruction term is averaged over ``samples``
    draws of ``z ~ q(z | x)``; the KL to N(0, I) is exact.

    Returns
    -------
    dict
        ``nats_per_image``, ``bits_per_dim`` (nats / (pixels * ln 2)),
        ``recon_nats`` and ``kl_nats`` (per image).
    """
    if not hasattr(model, "encode_stats"):
        raise ValueError("negative_elbo needs a VAE (a model with encode_stats)")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    model.check_input(x)
    counts = _counts(x, trials)
    gen = torch.Generator().manual_seed(seed)
    was = model.training
    model.eval()
    rec, kl = 0.0, 0.0
    for i in range(0, len(x), batch_size):
        k = counts[i : i + batch_size].to(_device(model))
        mu, logvar = model.encode_stats(k / trials)
        kl += (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).float().sum().item()
        for _ in range(samples):
            eps = torch.randn(mu.shape, generator=gen).to(mu.device)
            logits = model.decoder(mu + eps * torch.exp(0.5 * logvar)).float()
            rec -= _log_binomial(k, logits, trials).sum().item() / samples
    model.train(was)
    n, dims = len(x), x[0].numel()
    nats = (rec + kl) / n
    return {"nats_per_image": nats, "bits_per_dim": nats / (dims * math.log(2)),
            "recon_nats": rec / n, "kl_nats": kl / n}


def pixel_histogram_bits(train: torch.Tensor, test: torch.Tensor, trials: int = 16) -> float:
    """Bits per dimension of ``test`` when every pixel is coded on its own, with its histogram from ``train``.

    Each pixel gets a categorical distribution over its ``trials + 1`` values
    (counts on ``train`` plus one, so unseen values keep a finite cost): the
    best a model can do that ignores every correlation between pixels. A VAE
    that captures the shapes of digits must beat it.
    """
    if train.shape[1:] != test.shape[1:]:
        raise ValueError(f"train and test images differ in shape: {tuple(train.shape[1:])} vs {tuple(test.shape[1:])}")
    k_train, k_test = _counts(train, trials).long().flatten(1), _counts(test, trials).long().flatten(1)
    hist = torch.ones(k_train.shape[1], trials + 1)
    hist.scatter_add_(1, k_train.T, torch.ones(k_train.T.shape))
    logp = (hist / hist.sum(1, keepdim=True)).log()
    ll = logp.gather(1, k_test.T).sum()
    return float(-ll / (test.numel() * math.log(2)))


# ---------------------------------------------------------------- feature classifier and Fréchet distance
class FeatureClassifier(nn.Module):
    """Small CNN classifier; its penultimate layer (``features``) is the space of :func:`frechet_distance`.

    ``# HxW => H/2 x W/2`` twice, average-pooled to 2x2, then ``feature_dim`` GELU units and the class logits.
    """

    def __init__(self, channels: int = 1, n_classes: int = 10, feature_dim: int = 64, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8 * width, feature_dim), nn.GELU())
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_classifier(x: torch.Tensor, y: torch.Tensor, epochs: int = 20, batch_size: int = 64, lr: float = 3e-3,
                     seed: int = 0, **options) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` on images ``x`` ``(N, C, H, W)`` and integer labels ``y`` (CPU or GPU),
    with the library's optimisation step (:class:`aebook.train.TrainStep`: AdamW, warm-up + cosine)."""
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"expected images (N, C, H, W) and labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    device = pick_device()
    model = FeatureClassifier(x.shape[1], int(y.max()) + 1, **options).to(device)
    # a long warm-up and a decay to almost nothing (the shape of a one-cycle schedule)
    step = TrainStep(model.parameters(), lr, epochs * -(-len(x) // batch_size), weight_decay=1e-4, warmup=0.3,
                     floor=4e-6, device=device)
    x, y = x.float().to(device), y.long().to(device)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen).to(device)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            step.step(F.cross_entropy(model(x[idx]), y[idx]))
    return model.eval()


@torch.no_grad()
def features(classifier: FeatureClassifier, x: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Penultimate-layer features of ``x`` as a float64 array ``(N, feature_dim)``."""
    classifier.eval()
    dev = _device(classifier)
    return torch.cat([classifier.features(x[i : i + batch_size].float().to(dev)).cpu()
                      for i in range(0, len(x), batch_size)]).double().numpy()


@torch.no_grad()
def accuracy(classifier: FeatureClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of images ``x`` whose predicted class equals the label ``y``."""
    classifier.eval()
    pred = classifier(x.float().to(_device(classifier))).argmax(1).cpu()
    return float((pred == y.cpu()).float().mean())


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(N, d)`` (the FID formula).

    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)``,
    computed with symmetric eigendecompositions (equal to the
    ``scipy.linalg.sqrtm(S_a S_b)`` form, and stable for singular covariances).
    """
    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two feature arrays (N, d) with the same d, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 samples per set to fit a covariance, got {len(a)} and {len(b)}")
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    sa = _sqrt_psd(ca)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(sa @ cb @ sa), 0, None)).sum()
    d = float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * cross)
    return max(d, 0.0)


# ---------------------------------------------------------------- copies of the training set?
@torch.no_grad()
def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean pixel distance from each image in ``queries`` to its nearest image in ``reference``, and its index.

    A generator that memorised its training set would produce samples much closer to their
    nearest training image than held-out real images are: compare the two distributions of
    distances. Returns ``(distances, indices)``, both ``(len(queries),)`` on the CPU.
    """
    if queries.shape[1:] != reference.shape[1:] or queries.ndim != 4:
        raise ValueError(f"expected two image batches (N, C, H, W) of the same image shape, got "
                         f"{tuple(queries.shape)} and {tuple(reference.shape)}")
    ref = reference.flatten(1).float().cpu()
    dists, idxs = [], []
    for i in range(0, len(queries), batch_size):
        d = torch.cdist(queries[i : i + batch_size].flatten(1).float().cpu(), ref)
        best = d.min(1)
        dists.append(best.values)
        idxs.append(best.indices)
    return torch.cat(dists), torch.cat(idxs)


# ---------------------------------------------------------------- Gaussian in a code space
class LatentGaussian:
    """A full-covariance Gaussian fitted to codes; samples from it are decoded into images.

    A plain autoencoder (or PCA) has no prior to sample from: this gives it one.

    Examples
    --------
    >>> g = LatentGaussian().fit(encode(ae, data.train))      # doctest: +SKIP
    >>> images = ae.decode(g.sample(100, seed=0))             # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.mean: torch.Tensor | None = None
        self.cov: torch.Tensor | None = None

    def fit(self, codes: torch.Tensor) -> "LatentGaussian":
        if codes.ndim != 2 or len(codes) < 2:
            raise ValueError(f"expected codes of shape (N >= 2, d), got {tuple(codes.shape)}")
        c = codes.detach().double().cpu()
        self.mean = c.mean(0)
        centred = c - self.mean
        self.cov = centred.T @ centred / (len(c) - 1) + 1e-6 * torch.eye(c.shape[1], dtype=torch.float64)
        return self

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` codes ``(n, d)`` drawn with a fixed seed."""
        if self.mean is None or self.cov is None:
            raise ValueError("LatentGaussian is not fitted: call fit(codes) first")
        gen = torch.Generator().manual_seed(seed)
        eps = torch.randn(n, len(self.mean), generator=gen, dtype=torch.float64)
        return (self.mean + eps @ torch.linalg.cholesky(self.cov).T).float()


# ---------------------------------------------------------------- labels and the live explorer
def dataset_labels(name: str, data_dir: str | Path | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class labels ``(train, test)`` matching :func:`aebook.data.load_dataset` ``(name, data_dir, seed=seed)``.

    ``digits`` repeats the loader's seeded split; ``mnist_sample`` reads the embedded labels;
    ``mnist`` and ``fashion_mnist`` read torchvision's folder offline (never downloaded).
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        target = load_digits().target
        order = np.random.default_rng(seed).permutation(len(target))
        n_test = len(target) // 5
        return torch.as_tensor(target[order[n_test:]]), torch.as_tensor(target[order[:n_test]])
    if name == "mnist_sample":
        _, train_labels, _, test_labels = load_mnist_sample()
        return torch.as_tensor(train_labels.astype(np.int64)), torch.as_tensor(test_labels.astype(np.int64))
    if name in ("mnist", "fashion_mnist"):
        import torchvision  # heavy: only for these labels

        root = Path(data_dir) if data_dir is not None else default_data_dir()
        cls = getattr(torchvision.datasets, {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[name])
        try:
            return tuple(torch.as_tensor(cls(str(root), train=t, download=False).targets) for t in (True, False))
        except RuntimeError as err:
            raise FileNotFoundError(f"{name} labels not found in {root}: {err}") from None
    raise ValueError(f"no class labels for dataset {name!r}: choose digits, mnist_sample, mnist or fashion_mnist")


def explorer_figure(model: nn.Module, z: torch.Tensor, dims: Sequence[int], values: Sequence[float], scale: float = 1.0):
    """Static stand-in for :func:`latent_explorer`: row ``i`` sweeps ``dims[i]`` over ``values`` from the code ``z``."""
    import matplotlib.pyplot as plt

    if not dims:
        raise ValueError("explorer_figure needs at least one latent dimension")
    fig, axes = plt.subplots(len(dims), len(values), figsize=(scale * len(values), scale * len(dims)), squeeze=False)
    for i, d in enumerate(dims):
        for j, img in enumerate(traverse(model, z, d, values)):
            show_image(axes[i, j], img, f"{values[j]:+.1f}" if i == 0 else "")
        axes[i, 0].text(-0.15, 0.5, f"z[{d}]", transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def latent_explorer(model: nn.Module, z: torch.Tensor, dims: Sequence[int], span: float = 3.0):
    """An ipywidgets ``interactive``: one slider per latent dimension in ``dims``, the decoded image redrawn live.

    Other coordinates stay at ``z``. Display it only where :func:`aebook.runtime.live_frontend` is True.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if z.ndim != 1 or not dims or not all(0 <= d < len(z) for d in dims):
        raise ValueError(f"need a code of shape (d,) and dimensions in range, got {tuple(z.shape)} and {list(dims)}")

    def draw(**sliders: float):
        code = z.float().clone()
        for name, v in sliders.items():
            code[int(name[1:])] = v
        fig, ax = plt.subplots(figsize=(2.5, 2.5))
        show_image(ax, _decode(model, code[None])[0])
        plt.show()
        return fig

    sliders = {f"z{d}": widgets.FloatSlider(value=float(z[d]), min=-span, max=span, step=0.1,
                                             description=f"z[{d}]", continuous_update=False) for d in dims}
    return widgets.interactive(draw, **sliders)
