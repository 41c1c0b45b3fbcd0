"""Stream random patches from a folder of images larger than memory (chapter 5.3).

:class:`ImageFolderPatches` is a :class:`torch.utils.data.IterableDataset`: it
lists the image files once, then opens them one at a time while iterating,
cuts random patches from the decoded image and lets it go before opening the
next one. Memory therefore holds one decoded image per DataLoader worker, not
the folder.

The files are split into disjoint *shards*, one per (DDP rank, DataLoader
worker) pair, so no two readers ever read the same file in an epoch. Every
shard yields the same number of patches (DDP needs the same number of steps
on every rank), cycling through its files when it has fewer than it needs.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image, ImageOps
from torch.utils.data import IterableDataset, get_worker_info

from aebook.imageio import pil_to_array

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted so that every process sees the same list.

    Raises
    ------
    FileNotFoundError
        The folder does not exist.
    ValueError
        It holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"image folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def shard_indices(n_files: int, shard: int, num_shards: int, seed: int = 0, epoch: int = 0) -> list[int]:
    """File indices read by ``shard`` of ``num_shards`` in ``epoch``: a disjoint slice of one shared shuffle.

    Every shard draws the same permutation (seeded by ``seed + epoch``) and
    keeps every ``num_shards``-th entry from position ``shard``, so the
    shards partition the files, as :class:`torch.utils.data.DistributedSampler` does.
    """
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, num_shards), got shard={shard}, num_shards={num_shards}")
    if n_files < num_shards:
        raise ValueError(f"{n_files} image files cannot feed {num_shards} readers without overlap: "
                         "add images or use fewer ranks/workers")
    order = np.random.default_rng(seed + epoch).permutation(n_files)
    return [int(i) for i in order[shard::num_shards]]


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ImageFolderPatches(IterableDataset):
    """Random ``patch_size`` x ``patch_size`` patches streamed from an image folder.

    Parameters
    ----------
    folder
        Folder of images (searched recursively); images smaller than a patch are skipped.
    patch_size
        Side of the square patches.
    samples_per_epoch
        Patches per epoch over all ranks and workers (each shard yields
        ``samples_per_epoch // shards`` of them).
    patches_per_image
        Patches cut from one decoded image before moving to the next file.
    gray
        Yield ``(1, s, s)`` luminance patches instead of ``(3, s, s)`` colour.
    seed
        Fixes the file order and the patch positions (call :meth:`set_epoch` to vary them).
    rank, world_size
        This process's place among the DDP ranks; by default read from
        ``torch.distributed`` when it is initialised, else ``0`` and ``1``.
    with_source
        Yield ``(patch, file_index)`` pairs instead of patches (to check the sharding).

    Notes
    -----
    ``images_opened`` and ``max_images_held`` count, for iterations in this
    process (``num_workers=0``), how many files were decoded and the largest
    number of decoded images held at once.
    """

    def __init__(self, folder: str | Path, patch_size: int = 32, samples_per_epoch: int = 4096,
                 patches_per_image: int = 16, gray: bool = True, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, with_source: bool = False) -> None:
        super().__init__()
        if patch_size < 1 or samples_per_epoch < 1 or patches_per_image < 1:
            raise ValueError(f"patch_size, samples_per_epoch and patches_per_image must be positive, got "
                             f"{patch_size}, {samples_per_epoch}, {patches_per_image}")
        self.files = list_images(folder)
        self.patch_size, self.samples_per_epoch = int(patch_size), int(samples_per_epoch)
        self.patches_per_image, self.gray, self.seed = int(patches_per_image), gray, int(seed)
        self.rank, self.world_size, self.with_source = rank, world_size, with_source
        self.epoch = 0
        self.images_opened = 0
        self.max_images_held = 0
        self._held = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one patch."""
        return (1 if self.gray else 3, self.patch_size, self.patch_size)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle files and patch positions for ``epoch`` (like ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def shard(self) -> tuple[int, int]:
        """``(shard, num_shards)`` of the calling process and DataLoader worker."""
        rank, world = _rank_and_world()
        rank = rank if self.rank is None else self.rank
        world = world if self.world_size is None else self.world_size
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world * workers

    def samples_per_shard(self, num_shards: int) -> int:
        """Patches each shard yields per epoch."""
        return self.samples_per_epoch // num_shards

    def _load(self, path: Path) -> np.ndarray:
        try:
            with Image.open(path) as im:  # 16-bit grayscale at its scale, EXIF orientation applied
                return pil_to_array(ImageOps.exif_transpose(im), gray=self.gray)[0]
        except OSError as err:
            raise ValueError(f"cannot read image {path}: {err}") from None

    def __iter__(self) -> Iterator[torch.Tensor | tuple[torch.Tensor, int]]:
        shard, num_shards = self.shard()
        mine = shard_indices(len(self.files), shard, num_shards, self.seed, self.epoch)
        rng = np.random.default_rng([self.seed, self.epoch, shard])
        remaining = self.samples_per_shard(num_shards)
        s = self.patch_size
        for k in itertools.count():
            if remaining <= 0:
                return
            index = mine[k % len(mine)]
            img = self._load(self.files[index])
            self.images_opened += 1
            self._held += 1
            self.max_images_held = max(self.max_images_held, self._held)
            try:
                if img.shape[0] < s or img.shape[1] < s:
                    if k >= len(mine) and not any(self._fits(i) for i in mine):
                        raise ValueError(f"no image of this shard is at least {s} x {s} pixels")
                    continue
                for _ in range(min(self.patches_per_image, remaining)):
                    y = int(rng.integers(img.shape[0] - s + 1))
                    x = int(rng.integers(img.shape[1] - s + 1))
                    patch = np.ascontiguousarray(img[y : y + s, x : x + s])
                    t = torch.from_numpy(patch[None] if self.gray else patch.transpose(2, 0, 1).copy())
                    remaining -= 1
                    yield (t, index) if self.with_source else t
            finally:
                del img  # let the decoded image go before the next file is opened
                self._held -= 1

    def _fits(self, index: int) -> bool:
        with Image.open(self.files[index]) as im:
            return min(im.size) >= self.patch_size
