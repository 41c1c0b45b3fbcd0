"""One training loop for every model in :mod:`aebook.models` (chapter 3.3), and the one
optimisation step and learning-rate schedule that every trainer of the library takes.

What :func:`fit` does that the textbook loop doesn't: the data is held on the
training device as one tensor and shuffled there (no ``DataLoader``, no
per-batch copies), mixed precision (bfloat16 autocast) on CUDA, optional
``torch.compile`` or CUDA-graph capture of the whole step (:class:`CudaGraphStep`),
a warm-up + cosine learning-rate schedule, a ``tqdm.auto`` progress bar and a
loss history.

:class:`TrainStep` is the step itself (AdamW, :func:`warmup_cosine` over the steps or over
a wall-clock budget, optional gradient clipping, bfloat16 autocast on CUDA). Trainers whose
batches are not :func:`fit`'s (the restorers of :mod:`aebook.restoration.training`, the
digit classifier of :mod:`aebook.generation`, the DDP loop of :mod:`aebook.distributed`)
write their own few lines of loop around it, and nothing else.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

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
    batch_size: int = 32  # on real digits, 32 beat 64 and 16 at an equal number of epochs
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


def _cosine(t: float, floor: float) -> float:
    """Cosine decay from 1 at ``t = 0`` to ``floor`` at ``t = 1``."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, t))))


def warmup_cosine(total_steps: int, warmup_fraction: float = 0.05, floor: float = 0.02) -> Callable[[int], float]:
    """Learning-rate factor of a step: linear warm-up over the first ``warmup_fraction`` of the
    steps (at least one), then cosine decay to ``floor`` at ``total_steps``.

    The one schedule of the library (:class:`TrainStep`); :func:`warmup_cosine_at` is the same
    schedule over a fraction of training done, for a wall-clock budget.
    """
    warmup = max(1, int(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return _cosine((step - warmup) / max(1, total_steps - warmup), floor)

    return factor


def warmup_cosine_at(progress: float, warmup_fraction: float = 0.05, floor: float = 0.02) -> float:
    """:func:`warmup_cosine`'s factor at ``progress``, the fraction of training done (0 to 1), for
    training that runs for a time instead of a number of steps: a linear ramp from 0 over the
    first ``warmup_fraction``, then the cosine over the rest."""
    if progress < warmup_fraction:
        return max(0.0, progress) / warmup_fraction
    return _cosine((progress - warmup_fraction) / max(1e-12, 1 - warmup_fraction), floor)


class TrainStep:
    """The optimisation step every trainer takes: AdamW under the warm-up + cosine schedule.

    ``step(loss)`` (or ``update(loss)`` then ``advance()``) zeroes the gradients, back-propagates
    ``loss``, clips the gradient norm to ``grad_clip`` (when given), takes the AdamW step and sets
    the learning rate of the next one: ``lr`` times :func:`warmup_cosine` of the steps taken out of
    ``total_steps``, or, with ``minutes``, :func:`warmup_cosine_at` of the wall-clock time spent out
    of that budget (:attr:`finished` then says when it is spent). ``schedule="constant"`` keeps
    ``lr``. :meth:`autocast` is the forward pass's precision: bfloat16 on CUDA when ``amp``.

    ``capturable=True`` (for :class:`CudaGraphStep`) keeps the learning rate in a device tensor
    that :meth:`advance` writes in place: call :meth:`update` inside the captured step and
    :meth:`advance` outside it.

    Parameters
    ----------
    parameters
        What the optimiser trains.
    lr
        Peak learning rate.
    total_steps
        Steps over which the cosine runs (ignored with ``minutes``).
    weight_decay, warmup, floor
        AdamW's weight decay; the schedule's warm-up fraction and final factor.
    """

    def __init__(self, parameters: Iterable[torch.nn.Parameter], lr: float, total_steps: int, *,
                 weight_decay: float = 0.0, warmup: float = 0.05, floor: float = 0.02, schedule: str = "cosine",
                 minutes: float | None = None, grad_clip: float | None = None, amp: bool = True,
                 capturable: bool = False, device: torch.device | str = "cpu") -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not 0.0 <= warmup <= 1.0:
            raise ValueError(f"warmup must be a fraction in [0, 1], got {warmup}")
        if minutes is not None and not minutes > 0:
            raise ValueError(f"minutes must be positive, got {minutes}")
        self.parameters = list(parameters)
        self.peak_lr, self.total_steps = float(lr), max(1, int(total_steps))
        self.warmup, self.floor, self.schedule = float(warmup), float(floor), schedule
        self.grad_clip, self.device = grad_clip, torch.device(device)
        self.amp, self.capturable = amp and self.device.type == "cuda", capturable
        self.budget = None if minutes is None else 60.0 * minutes
        self.steps, self.start = 0, time.perf_counter()
        self._by_step = warmup_cosine(self.total_steps, self.warmup, self.floor)
        first = self.peak_lr * self.factor()
        self.lr_tensor = torch.tensor(first, device=self.device) if capturable else None
        self.optimizer = torch.optim.AdamW(self.parameters, lr=first if self.lr_tensor is None else self.lr_tensor,
                                           weight_decay=weight_decay, capturable=capturable)

    def progress(self) -> float:
        """The fraction of training done: of the time budget, or of ``total_steps``."""
        if self.budget is not None:
            return (time.perf_counter() - self.start) / self.budget
        return self.steps / self.total_steps

    @property
    def finished(self) -> bool:
        """Whether the time budget (``minutes``) is spent; always False without one."""
        return self.budget is not None and time.perf_counter() - self.start >= self.budget

    def factor(self) -> float:
        """The learning-rate factor of the next step."""
        if self.schedule == "constant":
            return 1.0
        if self.budget is not None:
            return warmup_cosine_at(self.progress(), self.warmup, self.floor)
        return self._by_step(self.steps)

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return float(self.optimizer.param_groups[0]["lr"])

    def autocast(self) -> torch.autocast:
        """The forward pass's autocast: bfloat16 on CUDA when ``amp``, off elsewhere (its weight
        cache off when capturable: the cache cannot outlive a graph capture)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp,
                              cache_enabled=not self.capturable)

    def update(self, loss: torch.Tensor) -> torch.Tensor:
        """Back-propagate ``loss`` and take the optimiser step (the schedule does not move); returns
        ``loss`` detached."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def advance(self) -> None:
        """Count the step and set the next one's learning rate."""
        self.steps += 1
        rate = self.peak_lr * self.factor()
        if self.lr_tensor is not None:  # written in place: a captured step reads this tensor
            self.lr_tensor.fill_(rate)
        else:
            for group in self.optimizer.param_groups:
                group["lr"] = rate

    def step(self, loss: torch.Tensor) -> torch.Tensor:
        """:meth:`update` then :meth:`advance`; returns ``loss`` detached."""
        out = self.update(loss)
        self.advance()
        return out


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
    graphed = config.cuda_graph and device.type == "cuda"
    optimiser = TrainStep(model.parameters(), peak_lr, steps, weight_decay=config.weight_decay,
                          schedule=config.schedule, grad_clip=config.grad_clip, amp=config.amp,
                          capturable=graphed, device=device)
    loss_fn = torch.compile(model.loss) if config.compile else model.loss

    def step(target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs = corrupt(target) if corrupt else target
        with optimiser.autocast():
            loss, stats = loss_fn(inputs, target)
        return optimiser.update(loss), stats

    run_step = CudaGraphStep(step, train[: min(config.batch_size, len(train))]) if graphed else step
    history = History()
    bar = tqdm(range(config.epochs), desc=f"training {model.name}", disable=not config.progress)
    for _ in bar:
        start = time.perf_counter()
        total = torch.zeros((), device=device)
        sums: dict[str, torch.Tensor] = {}
        for idx in _batches(len(train), config.batch_size, generator, device):
            loss, stats = run_step(train[idx])
            optimiser.advance()  # outside a captured step: the next step's learning rate
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
