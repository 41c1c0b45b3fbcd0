"""Shared fixtures: tiny data so unit tests stay fast on a 2-core CPU."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def digits():
    import aebook

    return aebook.load_dataset("digits")


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array in the IDX format MNIST uses (magic 0x0803 images, 0x0801 labels)."""
    magic = {3: 0x0803, 1: 0x0801}[array.ndim]
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for d in array.shape:
            f.write(struct.pack(">I", d))
        f.write(array.astype(np.uint8).tobytes())


@pytest.fixture()
def fake_mnist(tmp_path) -> Path:
    """A folder in torchvision's MNIST layout (root/MNIST/raw/*-ubyte) with tiny random data."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 8)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)))
    return tmp_path
