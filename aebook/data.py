"""Datasets for the book, all usable offline.

Defaults need no network at all:

- ``digits``: scikit-learn's 8x8 handwritten digits (1,797 images, embedded).
- ``mnist_sample``: 5,000 real 28x28 MNIST digits (4,000 train / 1,000 test,
  with labels) embedded in the package (:data:`MNIST_SAMPLE`; source and
  licence: Y. LeCun, C. Cortes, C. J. C. Burges, CC BY-SA 3.0).
- ``photos`` / ``photos_rgb``: natural photos bundled with scikit-image,
  scikit-learn and matplotlib, cut into patches. Training patches come only
  from :data:`TRAIN_PHOTOS`; test patches only from :data:`HELD_OUT_PHOTOS`
  (cameraman among them), which no model in the book is ever trained on.

On request, torchvision's ``mnist``, ``fashion_mnist`` and ``cifar10`` are
downloaded to a cache folder; a folder already in torchvision's own layout
(what ``torchvision.datasets.MNIST(root, download=True)`` writes) loads
offline. ``folder`` loads a user's own folder of images.

Data that fits in memory is returned as float32 tensors in [0, 1] with shape
``(N, C, H, W)``, optionally already on the training device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage
import torch
from PIL import Image, ImageOps

from aebook.imageio import is_high_depth, pil_to_array
from aebook.synthetic import dead_leaves

DATASET_NAMES = ("digits", "mnist_sample", "mnist", "fashion_mnist", "cifar10", "photos", "photos_rgb", "folder")

#: The embedded real-MNIST sample (MNIST's test images 0-4999 re-split 4,000 / 1,000, CC BY-SA 3.0).
MNIST_SAMPLE = Path(__file__).parent / "datasets" / "mnist_sample.npz"


def load_mnist_sample() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The embedded MNIST sample as ``(train_images, train_labels, test_images, test_labels)``.

    Images are uint8 arrays of shape ``(N, 28, 28)``, labels uint8 of shape ``(N,)``.
    """
    with np.load(MNIST_SAMPLE, allow_pickle=False) as f:
        return f["train_images"], f["train_labels"], f["test_images"], f["test_labels"]


#: Photos used for training patches, never evaluated on.
TRAIN_PHOTOS: tuple[str, ...] = (
    "chelsea", "rocket", "china", "flower", "motorcycle_left", "coins", "moon",
    "brick", "grass", "gravel", "hubble_deep_field", "retina", "ihc", "text", "page",
)
#: Photos held out from every training run; all quality claims are measured on them.
HELD_OUT_PHOTOS: tuple[str, ...] = ("camera", "astronaut", "coffee", "grace_hopper")


def _photo_path(name: str) -> Path:
    import matplotlib  # heavy: only to find the sample photos these packages ship
    import sklearn

    folders = [
        Path(skimage.__file__).parent / "data",
        Path(sklearn.__file__).parent / "datasets" / "images",
        Path(matplotlib.get_data_path()) / "sample_data",
    ]
    for folder in folders:
        for ext in (".png", ".jpg"):
            path = folder / f"{name}{ext}"
            if path.exists():
                return path
    known = ", ".join(TRAIN_PHOTOS + HELD_OUT_PHOTOS)
    raise ValueError(f"unknown photo {name!r}: choose one of {known}")


def load_photo(name: str, gray: bool = False) -> np.ndarray:
    """Load a bundled photo as float32 in [0, 1].

    Parameters
    ----------
    name
        One of :data:`TRAIN_PHOTOS` or :data:`HELD_OUT_PHOTOS` (``"camera"`` is the cameraman).
    gray
        Return ``(H, W)`` luminance instead of ``(H, W, 3)`` colour.
    """
    with Image.open(_photo_path(name)) as im:
        im = im.convert("L" if gray else "RGB")
        return np.asarray(im, dtype=np.float32) / 255.0


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) array -> (N, C, H, W) float tensor."""
    t = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32)
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


def _shrink(patch: np.ndarray, size: int) -> np.ndarray:
    """A ``(h, w[, 3])`` float patch in [0, 1] shrunk to ``size`` x ``size`` by area-averaging."""
    channels = [patch] if patch.ndim == 2 else [patch[..., c] for c in range(patch.shape[-1])]
    small = [np.asarray(Image.fromarray(c).resize((size, size), Image.BOX), dtype=np.float32) for c in channels]
    return small[0] if patch.ndim == 2 else np.stack(small, axis=-1)


def photo_patches(
    n: int,
    size: int = 32,
    gray: bool = True,
    names: tuple[str, ...] = TRAIN_PHOTOS,
    seed: int = 0,
    augment: bool = True,
    scale_range: tuple[float, float] = (1.0, 1.0),
    channel_mix: bool = False,
    synthetic: float = 0.0,
    synthetic_images: int = 48,
    synthetic_patterns: float = 0.0,
) -> torch.Tensor:
    """Cut ``n`` random ``size`` x ``size`` patches from the named photos.

    Patches are drawn uniformly over photos, then over positions; with
    ``augment`` each is randomly flipped and rotated by a multiple of 90°.
    Returns a ``(n, C, size, size)`` float tensor in [0, 1].

    A few photos are little data for a network trained long (on a GPU it learns them by heart
    and does worse on other photos), so two more augmentations make new images from them:
    ``scale_range`` ``(lo, hi)`` cuts a square of ``size / s`` pixels for a factor ``s`` drawn
    uniformly in it (``0 < lo <= hi <= 1``) and shrinks it to ``size`` (area-averaging), so a
    texture is seen at several scales, as in DnCNN's training; ``channel_mix`` makes a
    grayscale patch of a colour photo with random channel weights (summing to 1) instead of
    the luminance. The defaults leave both off.

    ``synthetic`` (a share, 0 to 1) cuts that share of the patches from ``synthetic_images``
    :func:`~aebook.synthetic.dead_leaves` images instead, made once from the named photos (their textures and
    colours, new shapes and edges): unlimited new scenes for a network that has learnt the few
    photos by heart. ``synthetic_patterns`` is their ``pattern_share``: discs filled with
    repeated patterns.
    """
    lo, hi = (float(v) for v in scale_range)
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"scale_range must satisfy 0 < lo <= hi <= 1, got {scale_range}")
    rng = np.random.default_rng(seed)
    mix = gray and channel_mix
    if not 0.0 <= synthetic <= 1.0:
        raise ValueError(f"synthetic must be a share in [0, 1], got {synthetic}")
    if not 0.0 <= synthetic_patterns <= 1.0 or (synthetic_patterns and not synthetic):
        raise ValueError(f"synthetic_patterns must be a share in [0, 1], used with synthetic > 0; got "
                         f"synthetic_patterns={synthetic_patterns}, synthetic={synthetic}")
    photos = [load_photo(p, gray=gray and not mix) for p in names]
    leaves: list[np.ndarray] = []
    if synthetic > 0:  # a separate stream: runs without synthetic patches draw exactly as before
        if synthetic_images < 1:
            raise ValueError(f"synthetic_images must be at least 1, got {synthetic_images}")
        leaf_side = 2 * max(size, int(np.ceil(size / lo)))  # room for the widest patch cut
        leaf_rng = np.random.default_rng([seed, 1])
        leaves = [dead_leaves(leaf_side, leaf_rng, photos, pattern_share=synthetic_patterns)
                  for _ in range(synthetic_images)]
    out = np.empty((n, size, size) if gray else (n, size, size, 3), dtype=np.float32)
    for i in range(n):
        if synthetic > 0 and rng.random() < synthetic:
            img = leaves[rng.integers(len(leaves))]
        else:
            img = photos[rng.integers(len(photos))]
        side = size if hi == 1.0 and lo == 1.0 else min(int(round(size / rng.uniform(lo, hi))), *img.shape[:2])
        y = rng.integers(img.shape[0] - side + 1)
        x = rng.integers(img.shape[1] - side + 1)
        patch = img[y : y + side, x : x + side]
        if mix:
            patch = patch @ rng.dirichlet(np.ones(3)).astype(np.float32)
        if side != size:
            patch = _shrink(patch, size)
        if augment:
            patch = np.rot90(patch, k=int(rng.integers(4)))
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
        out[i] = patch
    return _to_tensor(out)


def photo_tiles(names: tuple[str, ...] = HELD_OUT_PHOTOS, size: int = 32, gray: bool = True) -> torch.Tensor:
    """Cut the named photos into non-overlapping ``size`` x ``size`` tiles (the test split of ``photos``)."""
    tiles = []
    for p in names:
        img = load_photo(p, gray=gray)
        h, w = (img.shape[0] // size) * size, (img.shape[1] // size) * size
        img = img[:h, :w]
        t = img.reshape(h // size, size, w // size, size, *img.shape[2:]).swapaxes(1, 2)
        tiles.append(t.reshape(-1, size, size, *img.shape[2:]))
    return _to_tensor(np.concatenate(tiles))


@dataclass
class ImageData:
    """A dataset split into train and test tensors of shape ``(N, C, H, W)`` in [0, 1]."""

    name: str
    train: torch.Tensor
    test: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.train.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> "ImageData":
        """Move both splits to ``device`` (data that fits is held on the training device)."""
        return ImageData(self.name, self.train.to(device), self.test.to(device))


def default_data_dir() -> Path:
    """Cache folder for downloads: ``$AEBOOK_DATA`` or ``~/.cache/aebook``."""
    return Path(os.environ.get("AEBOOK_DATA", Path.home() / ".cache" / "aebook"))


_TORCHVISION = {"mnist": ("MNIST", "MNIST/raw"), "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw"),
                "cifar10": ("CIFAR10", "cifar-10-batches-py")}


def _load_torchvision(name: str, root: Path, download: bool) -> tuple[np.ndarray, np.ndarray]:
    import torchvision  # heavy: only for torchvision's datasets

    cls_name, layout = _TORCHVISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    if not download and not (root / layout).exists():
        raise FileNotFoundError(
            f"{name} not found in {root} (expected torchvision's layout {root / layout}); "
            "pass download=True (CLI: --download) to fetch it"
        )
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(f"{name} in {root} is missing or incomplete: {err}") from None
    arrays = []
    for ds in (train, test):
        data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
        arrays.append(data.astype(np.float32) / 255.0)
    return arrays[0], arrays[1]


def _load_folder(folder: Path, image_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts)
    if len(files) < 2:
        raise ValueError(f"folder {folder} holds {len(files)} images; need at least 2 (png/jpg/bmp/tif/webp)")
    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = ImageOps.exif_transpose(im)
                if is_high_depth(im):  # 16-bit grayscale: resized
                    gray = pil_to_array(im, gray=True)[0]  # in floating point, not cut to 8 bits
                    fitted = np.asarray(ImageOps.fit(Image.fromarray(gray), (image_size, image_size)))
                    images.append(np.repeat(fitted.clip(0, 1)[:, :, None], 3, axis=2))
                else:
                    im = ImageOps.fit(im.convert("RGB"), (image_size, image_size))
                    images.append(np.asarray(im, dtype=np.float32) / 255.0)
        except OSError as err:
            raise ValueError(f"cannot read image {f}: {err}") from None
    arr = np.stack(images)
    if np.allclose(arr[..., 0], arr[..., 1]) and np.allclose(arr[..., 1], arr[..., 2]):
        arr = arr[..., 0]
    order = np.random.default_rng(seed).permutation(len(arr))
    n_test = max(1, len(arr) // 10)
    return arr[order[n_test:]], arr[order[:n_test]]


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = False,
    limit_train: int | None = None,
    limit_test: int | None = None,
    device: torch.device | str | None = None,
    patch_size: int = 32,
    n_patches: int = 20000,
    image_size: int = 64,
    seed: int = 0,
) -> ImageData:
    """Load a dataset by name as train and test tensors.

    Parameters
    ----------
    name
        ``digits``, ``mnist_sample`` (embedded real MNIST), ``mnist``, ``fashion_mnist``, ``cifar10``, ``photos``
        (grayscale patches), ``photos_rgb`` (colour patches) or ``folder``
        (your own images in ``data_dir``, centre-cropped to ``image_size``).
    data_dir
        For torchvision datasets, the root folder in torchvision's layout
        (default :func:`default_data_dir`); required for ``folder``.
    download
        Allow torchvision to download a missing dataset. Off by default:
        nothing is fetched unless asked for.
    limit_train, limit_test
        Keep only the first N images of each split (quick mode uses this).
    device
        Move the tensors there (data that fits is held on the training device).
    patch_size, n_patches
        Size and number of training patches for ``photos``; the test split is
        the held-out photos cut into tiles of the same size.
    seed
        Fixes the digits/folder train-test split and the patch positions.

    Raises
    ------
    ValueError
        Unknown name or unusable folder.
    FileNotFoundError
        Missing data folder with downloads off.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASET_NAMES)}")
    if name == "digits":
        from sklearn.datasets import load_digits  # heavy: only for this dataset

        images = load_digits().images.astype(np.float32) / 16.0
        order = np.random.default_rng(seed).permutation(len(images))
        n_test = len(images) // 5
        train, test = images[order[n_test:]], images[order[:n_test]]
    elif name == "mnist_sample":
        tr, _, te, _ = load_mnist_sample()
        train, test = tr.astype(np.float32) / 255.0, te.astype(np.float32) / 255.0
    elif name in ("photos", "photos_rgb"):
        gray = name == "photos"
        n = n_patches if limit_train is None else min(n_patches, limit_train)
        train_t = photo_patches(n, size=patch_size, gray=gray, seed=seed)
        test_t = photo_tiles(size=patch_size, gray=gray)
        return _finish(name, train_t, test_t, None, limit_test, device)
    elif name == "folder":
        if data_dir is None:
            raise ValueError("dataset 'folder' needs data_dir (CLI: --data-dir DIR)")
        folder = Path(data_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"data folder {folder} does not exist")
        train, test = _load_folder(folder, image_size, seed)
    else:
        root = Path(data_dir) if data_dir is not None else default_data_dir()
        if data_dir is not None and not root.is_dir() and not download:
            raise FileNotFoundError(f"data folder {root} does not exist (pass download=True to create it)")
        train, test = _load_torchvision(name, root, download)
    return _finish(name, _to_tensor(train), _to_tensor(test), limit_train, limit_test, device)


def _finish(name, train, test, limit_train, limit_test, device) -> ImageData:
    if limit_train is not None:
        train = train[:limit_train]
    if limit_test is not None:
        test = test[:limit_test]
    data = ImageData(name, train.contiguous(), test.contiguous())
    return data.to(device) if device is not None else data
