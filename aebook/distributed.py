"""Data-parallel training on several processes, GPUs or machines with PyTorch's DDP (chapter 5.3).

Launch it with ``torchrun``, PyTorch's own launcher; nothing here is home-made::

    torchrun --standalone --nproc_per_node=2 -m aebook.distributed \\
        --dataset digits --model conv --epochs 2 --batch-size 64 --out RUN_DIR

Every process (a *rank*) builds the same model from the same seed, reads its
own slice of the data (:class:`torch.utils.data.DistributedSampler` for data
held in memory, :class:`aebook.streaming.ImageFolderPatches` for a folder of
images) and :class:`torch.nn.parallel.DistributedDataParallel` averages the
gradients of all ranks after each backward pass, so every rank takes the
same optimiser step. ``--batch-size`` is the *global* batch: each rank gets
``batch_size / world_size`` images per step. Only rank 0 writes the run
folder (:func:`aebook.checkpoint.save_run`). The backend is NCCL on CUDA,
gloo on the CPU. Run without ``torchrun``, the same code trains in one process.

With a dataset whose size is a multiple of the number of ranks, the sampler's
interleaving makes the union of the ranks' batches at each step exactly the
batch a single process with the same global batch would draw; the trained
weights then agree up to float rounding (chapter 5.3 checks it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from aebook.checkpoint import save_run
from aebook.data import load_dataset
from aebook.models import MODEL_NAMES, Autoencoder, build_model
from aebook.streaming import ImageFolderPatches
from aebook.train import TrainStep

DATASETS = ("digits", "photos", "folder")


def pick_backend() -> str:
    """``"nccl"`` when CUDA is available, else ``"gloo"`` (the CPU backend)."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def process_info() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the variables ``torchrun`` sets; ``(0, 1, 0)`` without it."""
    try:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as err:
        raise ValueError(f"bad torchrun environment variable: {err}") from None


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m aebook.distributed`` (each help states its default)."""
    p = argparse.ArgumentParser(prog="torchrun --nproc_per_node=N -m aebook.distributed",
                                description="Train an autoencoder with DistributedDataParallel on N processes.")
    p.add_argument("--dataset", choices=DATASETS, default="digits", help="training data (default: digits)")
    p.add_argument("--data-dir", default=None, help="image folder for --dataset folder (default: none)")
    p.add_argument("--model", choices=MODEL_NAMES, default="conv", help="autoencoder (default: conv)")
    p.add_argument("--latent-dim", type=int, default=16, help="latent size (default: 16)")
    p.add_argument("--epochs", type=int, default=2, help="passes over the data (default: 2)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="GLOBAL batch, split evenly across ranks (default: 64)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of AdamW (default: 0.002)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default: 0.0)")
    p.add_argument("--seed", type=int, default=0, help="seed of model, data order and patches (default: 0)")
    p.add_argument("--limit-train", type=int, default=None, help="keep the first N training images (default: all)")
    p.add_argument("--patch-size", type=int, default=32, help="patch side for photos/folder (default: 32)")
    p.add_argument("--samples-per-epoch", type=int, default=4096,
                   help="patches per epoch for photos/folder, over all ranks (default: 4096)")
    p.add_argument("--num-workers", type=int, default=0,
                   help="DataLoader worker processes per rank for folder (default: 0)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process (default: 1)")
    p.add_argument("--out", required=True, help="run folder that rank 0 writes (required, no default)")
    return p


def _data(args: argparse.Namespace, rank: int, world: int, local_batch: int):
    """The DataLoader of this rank, its sampler/dataset (for ``set_epoch``), image shape and steps per epoch."""
    if args.dataset == "folder":
        if not args.data_dir:
            raise ValueError("--dataset folder needs --data-dir DIR")
        ds = ImageFolderPatches(args.data_dir, args.patch_size, args.samples_per_epoch, seed=args.seed,
                                rank=rank, world_size=world)
        workers = max(1, args.num_workers)
        per_worker = ds.samples_per_shard(world * workers)
        if per_worker < 1:
            raise ValueError(f"--samples-per-epoch {args.samples_per_epoch} is too small for "
                             f"{world} ranks x {workers} workers")
        loader = DataLoader(ds, batch_size=local_batch, num_workers=args.num_workers)
        return loader, ds, ds.shape, workers * -(-per_worker // local_batch)
    data = load_dataset(args.dataset, limit_train=args.limit_train, patch_size=args.patch_size,
                        n_patches=args.samples_per_epoch, seed=args.seed)
    dataset = TensorDataset(data.train)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(dataset, batch_size=local_batch, sampler=sampler)
    return loader, sampler, data.shape, len(loader)


class _Loss(nn.Module):
    """Wraps ``model.loss`` as a forward pass, so that DDP's gradient hooks see it."""

    def __init__(self, model: Autoencoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.loss(x)[0]


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train on this process's share of the data; returns this rank's report (rank 0 saves the run).

    Initialises and destroys the process group when started by ``torchrun``
    (``WORLD_SIZE`` set); otherwise trains in this process alone. Each step is the library's
    :class:`aebook.train.TrainStep` (AdamW, warm-up + cosine over ``epochs * steps``).
    """
    rank, world, local_rank = process_info()
    if args.batch_size < world or args.batch_size % world:
        raise ValueError(f"--batch-size {args.batch_size} must be a multiple of the {world} ranks")
    if args.epochs < 1 or args.latent_dim < 1 or args.lr <= 0:
        raise ValueError(f"invalid settings: epochs={args.epochs}, latent_dim={args.latent_dim}, lr={args.lr}")
    torch.set_num_threads(max(1, args.threads))
    distributed = "WORLD_SIZE" in os.environ
    backend = pick_backend()
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    if distributed:
        dist.init_process_group(backend)
    try:
        loader, epoch_source, shape, steps = _data(args, rank, world, args.batch_size // world)
        torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        model = build_model(args.model, shape, args.latent_dim).to(device)
        net: nn.Module = _Loss(model)
        if distributed:
            net = nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if backend == "nccl" else None)
        step = TrainStep(model.parameters(), args.lr, args.epochs * steps, weight_decay=args.weight_decay,
                         amp=False, device=device)
        history: dict[str, list[float]] = {"train_loss": [], "seconds": []}
        model.train()
        for epoch in range(args.epochs):
            epoch_source.set_epoch(epoch)
            start = time.perf_counter()
            sums = torch.zeros(2, dtype=torch.float64, device=device)
            for batch in loader:
                x = (batch[0] if isinstance(batch, (list, tuple)) else batch).to(device, non_blocking=True)
                loss = step.step(net(x))  # DDP all-reduces (averages) the gradients in the backward pass
                sums += torch.stack([loss.double() * len(x), torch.tensor(len(x), device=device)])
            if distributed:
                dist.all_reduce(sums)
            history["train_loss"].append(float(sums[0] / sums[1]))
            history["seconds"].append(time.perf_counter() - start)
        model.eval()
        wrote = False
        if rank == 0:
            settings = {k: v for k, v in vars(args).items() if k != "out"}
            save_run(args.out, model, history, {**settings, "world_size": world, "backend": backend})
            wrote = True
        if distributed:
            dist.barrier()  # no rank leaves before the checkpoint exists
        return {"rank": rank, "world_size": world, "backend": backend, "wrote_checkpoint": wrote,
                "steps_per_epoch": steps, "out": str(args.out), **history}
    finally:
        if distributed:
            dist.destroy_process_group()


def launch(nproc_per_node: int, argv: Sequence[str], timeout: float = 600) -> list[dict[str, Any]]:
    """Run ``torchrun --standalone --nproc_per_node=N -m aebook.distributed ARGV`` in a subprocess.

    Returns the ranks' reports sorted by rank. ``RuntimeError`` with the end of
    the log when the run fails.
    """
    if nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be at least 1, got {nproc_per_node}")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
           "-m", "aebook.distributed", *map(str, argv)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"torchrun failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return parse_reports(result.stdout)


def parse_reports(text: str) -> list[dict[str, Any]]:
    """The ranks' JSON reports found in ``text`` (the shared stdout), sorted by rank.

    Tolerates other output and two reports written on one line.
    """
    decoder, reports, start = json.JSONDecoder(), [], text.find('{"rank"')
    while start >= 0:
        try:
            report, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError as err:
            raise ValueError(f"garbled rank report in the output: {err}") from None
        reports.append(report)
        start = text.find('{"rank"', end)
    return sorted(reports, key=lambda r: r["rank"])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``torchrun ... -m aebook.distributed``: print this rank's report as one JSON line."""
    args = build_parser().parse_args(argv)
    try:
        report = train(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    line = json.dumps(report) + "\n"
    if "WORLD_SIZE" in os.environ:  # under torchrun: one write, so that the lines of the ranks do not mix
        sys.stdout.flush()
        os.write(sys.stdout.fileno(), line.encode())
    else:
        print(line, end="", flush=True)
    return report


if __name__ == "__main__":
    main()
