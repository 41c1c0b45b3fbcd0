"""One training loop for every model in :mod:`aebook.models` (chapter 3.3).

What it does that the textbook loop doesn't: the data is held on the
training device as one tensor and shuffled there (no ``DataLoader``, no
per-batch copies), mixed precision (bfloat16 autocast) on CUDA, optional
``torch.compile`` or CUDA-graph capture of the whole step (:class:`CudaGraphStep`),
a warm-up + cosine learning-rate schedule, a ``tqdm.auto`` progress bar and a
loss history.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from aebook.models import Autoencoder
from aebook.runtime import pick_device

Corruption = Callable[[torch.Tensor], torch.Tensor]


SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """Settings of :func:`fit`; change fields one by one, e.g. ``TrainConfig(epochs=5)``."""

    epochs: int = 10
    batch_size: int = 32  # on real digits, 32 beat 64 and 16 at an equal number of epochs (chapter 3.2)
    lr: float | None = None  # peak rate; None: the model's own ``default_lr`` (1e-2 for the BatchNorm models)
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast, used on CUDA only
    compile: bool = False
    cuda_graph: bool = False  # capture the training step as a CUDA graph (CUDA only, ignored elsewhere)
    grad_clip: float | None = None  # clip the gradient norm to this value (off by default)
    schedule: str = "cosine"  # "cosine" (warm-up + cosine decay) or "constant" learning rate
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or (self.lr is not None and not 0 < self.lr < math.inf):
            raise ValueError(f"invalid training settings: epochs={self.epochs}, "
                             f"batch_size={self.batch_size}, lr={self.lr}")
        if self.compile and self.cuda_graph:
            raise ValueError("choose compile or cuda_graph, not both (torch.compile has its own "
                             "CUDA-graph mode)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")


@dataclass
class History:
    """Per-epoch training (and validation) loss, and seconds per epoch."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    stats: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _batches(n: int, batch_size: int, generator: torch.Generator | None, device: torch.device):
    """Index batches of a shuffled epoch; a last batch of one image joins the one before it
    (BatchNorm cannot normalise a batch of one)."""
    order = torch.randperm(n, generator=generator).to(device) if generator is not None else torch.arange(n, device=device)
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    for j, i in enumerate(starts):
        yield order[i : starts[j + 1] if j + 1 < len(starts) else n]


def warmup_cosine(total_steps: int, warmup_fraction: float = 0.05, floor: float = 0.02) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then cosine decay to ``floor`` at ``total_steps``."""
    warmup = max(1, int(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


@torch.no_grad()
def evaluate_loss(model: Autoencoder, data: torch.Tensor, batch_size: int = 512,
                  corrupt: Corruption | None = None) -> float:
    """Mean of ``model.loss`` over ``data`` in eval mode (inputs corrupted if ``corrupt`` is given)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(data), batch_size):
        target = data[i : i + batch_size].to(device)
        loss, _ = model.loss(corrupt(target) if corrupt else target, target)
        total += loss.item() * len(target)
        count += len(target)
    model.train(was_training)
    return total / max(count, 1)


class CudaGraphStep:
    """A training step captured once as a CUDA graph and replayed for every full batch.

    ``step(batch)`` runs one whole step (forward, loss, backward, optimiser) and returns
    its outputs. Each kernel launch costs the CPU a few microseconds, and a small model at
    a small batch is then limited by the CPU's launches, not by the GPU: replaying a graph
    launches the whole step at once. This is PyTorch's "whole network capture"
    (``torch.cuda.graph``): the first ``warmup`` steps run eagerly on a side stream, the
    next is captured on a copy of its batch held in a fixed buffer, then each step copies
    its batch into that buffer and replays. Batches of another shape (the last, partial
    batch of an epoch) run eagerly. The optimiser must be built with ``capturable=True``.

    The returned outputs of a replay are the graph's own tensors, overwritten by the next
    replay: read them (or queue work on them) before the next call.
    """

    def __init__(self, step: Callable[[torch.Tensor], object], example: torch.Tensor, warmup: int = 3):
        if example.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA tensor, got one on {example.device}")
        self.step, self.warmup, self.calls = step, warmup, 0
        self.static = torch.empty_like(example)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: object = None

    def __call__(self, batch: torch.Tensor) -> object:
        if batch.shape != self.static.shape:
            return self.step(batch)
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.step(batch)
            torch.cuda.current_stream().wait_stream(side)
            torch.cuda.synchronize()  # a few warm-up steps: no cross-stream reuse of their memory
            return out
        self.static.copy_(batch)
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):  # records the step; nothing runs yet
                self.out = self.step(self.static)
        self.graph.replay()
        return self.out


def fit(
    model: Autoencoder,
    train: torch.Tensor,
    config: TrainConfig | None = None,
    val: torch.Tensor | None = None,
    corrupt: Corruption | None = None,
) -> History:
    """Train ``model`` to reconstruct ``train`` (shape ``(N, C, H, W)``, values in [0, 1]).

    Parameters
    ----------
    model
        Any :class:`aebook.models.Autoencoder`; it is moved to the chosen device.
    train, val
        Image tensors; they are moved to the device once, not per batch.
    config
        :class:`TrainConfig` (defaults if omitted).
    corrupt
        Optional damage applied to each input batch on the device (denoising
        and inpainting autoencoders learn ``corrupt(x) -> x``). With
        ``config.cuda_graph`` it is captured with the step, so it must draw its
        randomness on the device (``torch.randn_like``, ``torch.rand``), which
        a replay renews; randomness drawn on the host would be frozen.

    Returns
    -------
    History
        Loss per epoch; ``model`` is trained in place and left in eval mode.
    """
    config = config or TrainConfig()
    model.check_input(train[:1])
    peak_lr = config.lr if config.lr is not None else getattr(model, "default_lr", 2e-3)
    device = pick_device(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model.to(device).train()
    train = train.to(device)
    if hasattr(model, "init_from_data"):  # a fresh model's output starts at the data's mean
        model.init_from_data(train)
    val = val.to(device) if val is not None else None
    steps = max(1, config.epochs * -(-len(train) // config.batch_size))
    factor = warmup_cosine(steps) if config.schedule == "cosine" else (lambda step: 1.0)
    graphed = config.cuda_graph and device.type == "cuda"
    # a captured step reads its learning rate from a device tensor, which the loop sets in place
    lr_tensor = torch.tensor(peak_lr * factor(0), device=device) if graphed else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr if lr_tensor is None else lr_tensor,
                                  weight_decay=config.weight_decay, capturable=graphed)
    scheduler = None if graphed else torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    loss_fn = torch.compile(model.loss) if config.compile else model.loss
    use_amp = config.amp and device.type == "cuda"

    def step(target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs = corrupt(target) if corrupt else target
        # autocast's weight cache cannot outlive a graph capture
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp, cache_enabled=not graphed):
            loss, stats = loss_fn(inputs, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        return loss.detach(), stats

    run_step = CudaGraphStep(step, train[: min(config.batch_size, len(train))]) if graphed else step
    history = History()
    done = 0  # optimiser steps taken
    bar = tqdm(range(config.epochs), desc=f"training {model.name}", disable=not config.progress)
    for _ in bar:
        start = time.perf_counter()
        total = torch.zeros((), device=device)
        sums: dict[str, torch.Tensor] = {}
        for idx in _batches(len(train), config.batch_size, generator, device):
            loss, stats = run_step(train[idx])
            done += 1
            if lr_tensor is None:
                scheduler.step()
            else:  # what LambdaLR sets, written in place: LambdaLR rebinds the rate on older torch
                lr_tensor.fill_(peak_lr * factor(done))
            total += loss * len(idx)
            for k, v in stats.items():
                sums[k] = sums.get(k, 0) + v * len(idx)
        history.train_loss.append(total.item() / len(train))
        history.stats.append({k: float(v) / len(train) for k, v in sums.items()})
        if val is not None:
            history.val_loss.append(evaluate_loss(model, val, corrupt=corrupt))
            model.train()
        history.seconds.append(time.perf_counter() - start)
        bar.set_postfix(loss=f"{history.train_loss[-1]:.4g}")
    model.eval()
    return history
