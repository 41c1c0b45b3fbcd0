"""Training throughput: the textbook PyTorch loop against aebook's loop, same model, same data, one run.

The textbook loop is what most tutorials write: a torchvision dataset whose
``ToTensor`` transform converts one PIL image at a time, a ``DataLoader``
that collates batches, and a ``.to(device)`` copy per batch. aebook's loop
(:func:`aebook.train.fit`) holds the whole dataset on the device as one
tensor, shuffles indices there, uses larger batches, channels-last and
bfloat16 autocast on CUDA, and optionally ``torch.compile``.

Both train the same convolutional autoencoder (latent 16) on the same 28x28
images for the same number of epochs; the script reports images per second
for each and their ratio, plus the final training loss of each so that a
speed-up bought by worse optimisation would show.

Offline by construction: the images are patches of the bundled photos,
written as an MNIST-layout folder so that ``torchvision.datasets.MNIST``
reads them exactly as it would read MNIST.

Usage::

    python benchmarks/throughput.py --device cpu --json
    python benchmarks/throughput.py --device cuda --n 60000 --epochs 3 --compile --json
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def write_mnist_layout(images: np.ndarray, root: Path) -> None:
    """Write uint8 ``(N, 28, 28)`` images as ``root/MNIST/raw`` IDX files (train and t10k)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, part in (("train", images), ("t10k", images[:16])):
        with open(raw / f"{prefix}-images-idx3-ubyte", "wb") as f:
            f.write(struct.pack(">IIII", 0x0803, len(part), 28, 28) + part.tobytes())
        with open(raw / f"{prefix}-labels-idx1-ubyte", "wb") as f:
            f.write(struct.pack(">II", 0x0801, len(part)) + bytes(len(part)))


def textbook_loop(model, root: Path, epochs: int, batch_size: int, device: torch.device, lr: float) -> tuple[float, float, int]:
    """The tutorial loop; returns (seconds, final epoch loss, images seen)."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    ds = datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=0)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        total = 0.0
        for x, _ in loader:
            x = x.to(device)
            loss = torch.nn.functional.mse_loss(model(x), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
            seen += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, total / len(ds), seen


def aebook_loop(model, data: torch.Tensor, epochs: int, batch_size: int, device: torch.device, lr: float,
                compile: bool) -> tuple[float, float, int]:
    """aebook.train.fit; returns (seconds, final epoch loss, images seen)."""
    from aebook.train import TrainConfig, fit

    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, device=str(device), compile=compile, progress=False)
    start = time.perf_counter()
    history = fit(model, data, cfg)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, history.train_loss[-1], epochs * len(data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps (default: cpu)")
    p.add_argument("--n", type=int, default=6000, help="training images (default: 6000)")
    p.add_argument("--epochs", type=int, default=2, help="epochs for each loop (default: 2)")
    p.add_argument("--batch-size", type=int, default=64, help="textbook batch size (default: 64)")
    p.add_argument("--aebook-batch-size", type=int, default=64, help="aebook batch size (default: 64, the same as the textbook loop, so both take the same optimisation steps)")
    p.add_argument("--width", type=int, default=32, help="conv AE width (default: 32)")
    p.add_argument("--compile", action="store_true", help="torch.compile in aebook's loop (default: off)")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = p.parse_args(argv)

    from aebook.data import photo_patches
    from aebook.models import build_model
    from aebook.runtime import pick_device

    try:
        device = pick_device(args.device)
    except ValueError as err:
        print(f"throughput: error: {err}", file=sys.stderr)
        return 2
    patches = photo_patches(args.n, size=28, gray=True, seed=0)
    images = (patches[:, 0].numpy() * 255).round().astype(np.uint8)
    data = torch.from_numpy(images).float().div(255).unsqueeze(1)  # exactly what ToTensor yields
    results = {"device": str(device), "device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else
               f"cpu ({torch.get_num_threads()} threads)", "torch": torch.__version__, "n": args.n, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        write_mnist_layout(images, Path(tmp))
        torch.manual_seed(0)
        model = build_model("conv", (1, 28, 28), 16, width=args.width)
        secs, loss, seen = textbook_loop(model, Path(tmp), args.epochs, args.batch_size, device, 1e-3)
        results.update(baseline_img_s=seen / secs, baseline_seconds=secs, baseline_final_loss=loss)
    torch.manual_seed(0)
    model = build_model("conv", (1, 28, 28), 16, width=args.width)
    secs, loss, seen = aebook_loop(model, data, args.epochs, args.aebook_batch_size, device, 2e-3, args.compile)
    results.update(aebook_img_s=seen / secs, aebook_seconds=secs, aebook_final_loss=loss)
    results["speedup"] = results["aebook_img_s"] / results["baseline_img_s"]
    print(f"{'loop':10s} {'images/s':>10s} {'seconds':>9s} {'final loss':>11s}")
    for name in ("baseline", "aebook"):
        print(f"{name:10s} {results[name + '_img_s']:10.0f} {results[name + '_seconds']:9.1f} {results[name + '_final_loss']:11.5f}")
    print(f"speed-up: {results['speedup']:.2f}x on {results['device_name']}")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
