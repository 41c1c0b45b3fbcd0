"""Training throughput: the textbook PyTorch loop against aebook's loop, same model, same data, one run.

The textbook loop is what most tutorials write: a torchvision dataset whose
``ToTensor`` transform converts one PIL image at a time, a ``DataLoader``
that collates batches, and a ``.to(device)`` copy per batch, Adam at a
constant learning rate. aebook's loop (:func:`aebook.train.fit`) holds the
whole dataset on the device as one tensor, shuffles indices there, uses
channels-last memory, bfloat16 autocast on CUDA, and optionally larger batches,
``torch.compile`` or CUDA-graph capture of the step.

Both train the same convolutional autoencoder (latent 16) on the same 28x28
images for the same number of epochs (:func:`aebook.perf.compare_loops`), from the
same start (the output bias set from the data, as ``fit`` does), on the model's own
loss (binary cross-entropy of the logits), with Adam at the same constant rate
(``aebook.perf.LOOP_LR``). The script reports images per second for each and their
ratio, and, so that a speed-up bought by worse optimisation would show, the final
training loss of each and the loss and mean squared error of both trained models on
the same 512 patches neither saw. Runs recorded before the model moved to
cross-entropy (no ``"loss"`` key in their JSON) trained on the mean squared error.
It also counts the model's FLOPs per training image and times a large matrix
product on the same device in the same run, to say how close each loop gets to
the device's practical peak.

Offline by construction: the images are patches of the bundled photos,
written as an MNIST-layout folder so that ``torchvision.datasets.MNIST``
reads them exactly as it would read MNIST.

Large batches: at batch 256 and the same number of epochs the aebook loop takes
4x fewer optimisation steps and can stall on the "mean image" plateau (a worse
final loss); the default therefore keeps both loops at batch 64. On a GPU, where
large batches pay, raise ``--aebook-batch-size`` together with ``--aebook-lr``
and ``--epochs`` and compare the reported losses.

Usage::

    python benchmarks/throughput.py --device cpu --json
    python benchmarks/throughput.py --device cuda --n 60000 --epochs 3 --width 32 --cuda-graph --json

CUDA graphs: a small model at batch 64 is limited by the CPU's kernel launches, not by the GPU
(measured on an H100: aebook's eager step took about 7 ms at batch 64, 256 and 512 alike).
``--cuda-graph`` captures the whole step once and replays it (:class:`aebook.train.CudaGraphStep`).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from aebook.perf import LOOP_LR


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps (default: cpu)")
    p.add_argument("--n", type=int, default=4000, help="training images (default: 4000)")
    p.add_argument("--epochs", type=int, default=2, help="epochs for each loop (default: 2)")
    p.add_argument("--width", type=int, default=16, help="conv AE width (default: 16)")
    p.add_argument("--batch-size", type=int, default=64, help="textbook batch size (default: 64)")
    p.add_argument("--aebook-batch-size", type=int, default=64,
                   help="aebook batch size (default: 64, the textbook's, so both take the same steps)")
    p.add_argument("--aebook-lr", type=float, default=LOOP_LR,
                   help=f"aebook learning rate (default: {LOOP_LR:g}, constant, as in the textbook loop)")
    p.add_argument("--compile", action="store_true", help="torch.compile in aebook's loop (default: off)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="capture aebook's training step as a CUDA graph (CUDA only; default: off)")
    p.add_argument("--no-channels-last", action="store_true", help="keep the default memory layout (default: channels-last)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: 0 = PyTorch's choice)")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = p.parse_args(argv)

    from aebook.perf import compare_loops
    from aebook.runtime import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = pick_device(args.device)
        results = compare_loops(args.n, args.epochs, args.width, device, args.batch_size, args.aebook_batch_size,
                                args.aebook_lr, args.compile, not args.no_channels_last,
                                cuda_graph=args.cuda_graph)
    except ValueError as err:
        print(f"throughput: error: {err}", file=sys.stderr)
        return 2
    print(f"{'loop':10s} {'images/s':>10s} {'seconds':>9s} {'final loss':>11s} {'held-out loss':>14s} {'of peak':>8s}")
    for name in ("baseline", "aebook"):
        print(f"{name:10s} {results[name + '_img_s']:10.0f} {results[name + '_seconds']:9.1f} "
              f"{results[name + '_final_loss']:11.5f} {results[name + '_eval_loss']:14.5f} "
              f"{results[name + '_fraction_of_peak']:8.1%}")
    print(f"speed-up: {results['speedup']:.2f}x on {results['device_name']}; "
          f"{results['train_gflop_per_image']:.3f} GFLOP per training image, "
          f"measured peak {results['peak_gflop_s']:.1f} GFLOP/s ({results['peak_dtype']})")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
