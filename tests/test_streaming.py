"""aebook.streaming: lazy, sharded patches from an image folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from aebook.streaming import ImageFolderPatches, list_images, shard_indices


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray((rng.random((30 + i, 40)) * 255).astype(np.uint8)).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_list_images_and_errors(folder, tmp_path):
    assert [p.name for p in list_images(folder)] == [f"img{i}.png" for i in range(8)]
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        list_images(tmp_path / "empty")


def test_shards_partition_the_files():
    for shards in (1, 2, 3, 4):
        parts = [shard_indices(10, s, shards, seed=1, epoch=2) for s in range(shards)]
        flat = sorted(i for p in parts for i in p)
        assert flat == list(range(10))
    assert shard_indices(10, 0, 2, epoch=0) != shard_indices(10, 0, 2, epoch=1)
    with pytest.raises(ValueError, match="overlap"):
        shard_indices(2, 0, 3)
    with pytest.raises(ValueError, match="shard"):
        shard_indices(5, 2, 2)


def test_ranks_and_workers_read_disjoint_files(folder):
    seen = {}
    for rank in range(2):
        ds = ImageFolderPatches(folder, patch_size=8, samples_per_epoch=64, patches_per_image=2, rank=rank,
                                world_size=2, with_source=True)
        loader = DataLoader(ds, batch_size=4, num_workers=2)
        sources = set()
        count = 0
        for patches, idx in loader:
            assert patches.shape[1:] == (1, 8, 8) and patches.dtype == torch.float32
            assert 0 <= patches.min() and patches.max() <= 1
            sources |= set(idx.tolist())
            count += len(idx)
        assert count == 32  # 64 patches over 2 ranks, equal shares
        seen[rank] = sources
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(8))


def test_one_image_held_at_a_time_and_seeded(folder):
    ds = ImageFolderPatches(folder, patch_size=8, samples_per_epoch=40, patches_per_image=4, gray=False)
    a = torch.stack(list(ds))
    assert a.shape == (40, 3, 8, 8)
    assert ds.images_opened == 10 and ds.max_images_held == 1
    assert torch.equal(a, torch.stack(list(ds)))
    ds.set_epoch(1)
    assert not torch.equal(a, torch.stack(list(ds)))
    assert ds.shape == (3, 8, 8)


def test_bad_settings(folder):
    with pytest.raises(ValueError, match="positive"):
        ImageFolderPatches(folder, patch_size=0)
    with pytest.raises(ValueError, match="at least"):
        list(ImageFolderPatches(folder, patch_size=64, samples_per_epoch=4))


def test_16_bit_grayscale_patches_keep_their_scale(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(1000, 20000, (32, 32), dtype=np.uint16)).save(tmp_path / f"{i}.png")
    patches = torch.stack(list(ImageFolderPatches(tmp_path, patch_size=8, samples_per_epoch=6)))
    assert patches.shape[1:] == (1, 8, 8)
    assert 1000 / 65535 - 1e-6 <= patches.min().item() and patches.max().item() <= 20000 / 65535 + 1e-6
