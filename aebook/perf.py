"""Performance: what a model costs and how fast a training loop runs (chapter 5.1).

- :func:`forward_flops`, :func:`training_flops_per_image`: floating-point operations of
  a model, counted by PyTorch's ``FlopCounterMode`` (convolutions and matrix products).
- :func:`peak_flops`: the FLOP/s a device reaches on one large matrix product, the
  yardstick for "how close to the hardware's limit does the loop get".
- :func:`inference_images_per_second`: images per second through a model in eval mode;
  :func:`time_forward_backward`: seconds of one training step's forward and backward pass.
- :func:`compare_layouts`, :func:`shipped_layouts`, :func:`shipped_layouts_in_new_process`:
  a restorer on one image in the default and the channels-last memory layout, side by side,
  in this process or a new one (the engine of ``benchmarks/inference.py``).
- :func:`textbook_loop`, :func:`aebook_loop`, :func:`compare_loops`: the same conv
  autoencoder trained on the same images, with the same loss (the model's own), the same
  start and the same optimiser settings (:data:`LOOP_LR`), by the tutorial loop (torchvision
  dataset, ``DataLoader``, per-batch ``.to(device)``) and by :func:`aebook.train.fit`; the CLI
  front end is ``benchmarks/throughput.py``.
- :class:`DecoderSweepAutoencoder`, :func:`latent_sweep`, :func:`decoder_sweep`:
  quality against cost when the latent size or the decoder's depth and width change.

Every time here is measured by :func:`aebook.runtime.time_call` (or :func:`~aebook.runtime.timed`),
synchronised with the device.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from aebook.data import load_photo, photo_patches
from aebook.imageio import image_to_tensor
from aebook.metrics import mean_metrics
from aebook.models import Autoencoder, build_model, count_parameters
from aebook.restoration.inference import apply_tiled
from aebook.runtime import KEEP_THRESHOLD, KEEP_TOP_PAD, time_call, timed
from aebook.train import TrainConfig, evaluate_loss, fit
from aebook.zoo import pretrained


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Floating-point operations of one forward pass ``model(x)`` (a multiply-add counts 2).

    Counted with ``torch.utils.flop_counter.FlopCounterMode``, which sees matrix products
    and convolutions (the bulk of the work); element-wise operations are not counted.
    """
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(x.to(param.device, param.dtype))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def training_flops_per_image(model: nn.Module, shape: Sequence[int]) -> float:
    """FLOPs of one training step per image: 3x the forward pass (the backward pass
    computes two products per forward one: gradients of the inputs and of the weights)."""
    return 3.0 * forward_flops(model, torch.zeros(1, *shape))


def peak_flops(device: torch.device | str = "cpu", size: int = 1024, repeats: int = 5,
               dtype: torch.dtype = torch.float32) -> float:
    """Measured FLOP/s of a ``size`` x ``size`` matrix product (best of ``repeats``).

    A large matrix product is the most efficient thing a device does, so this is a
    practical peak: a training loop reaching a sizeable fraction of it is compute-bound.
    """
    if size < 1 or repeats < 1:
        raise ValueError(f"need size >= 1 and repeats >= 1, got {size} and {repeats}")
    device = torch.device(device)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    return 2.0 * size**3 / time_call(torch.matmul, a, b, repeats=repeats, device=device)


@torch.no_grad()
def inference_images_per_second(model: nn.Module, x: torch.Tensor, repeats: int = 3) -> float:
    """Images per second of ``model(x)`` in eval mode (best of ``repeats`` after a warm-up)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    param = next(model.parameters())
    x = x.to(param.device, param.dtype)
    was_training = model.training
    model.eval()
    model(x)
    best = time_call(model, x, repeats=repeats, device=param.device)
    model.train(was_training)
    return len(x) / best


def time_forward_backward(model: nn.Module, x: torch.Tensor, repeats: int = 5, warmup: int = 1) -> float:
    """Median seconds for ``model.loss(x)`` forward and backward (one training step without the update).

    Parameters
    ----------
    model
        A model with a ``loss(inputs)`` method (every :mod:`aebook.models` model)
        or any module, for which the mean of ``model(x)`` is back-propagated.
    x
        One batch, moved to the model's device.
    repeats, warmup
        Timed and untimed runs; the median of the timed runs is returned.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    param = next(model.parameters())
    x = x.to(param.device)
    was_training = model.training

    def forward_backward() -> None:
        loss = model.loss(x)[0] if hasattr(model, "loss") else model(x).float().mean()
        loss.backward()  # the gradient only: this times a step, it does not train

    model.train()
    times = []
    try:
        for i in range(warmup + repeats):
            seconds = timed(forward_backward, device=param.device)[1]
            if i >= warmup:
                times.append(seconds)
            model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    return float(np.median(times))


def compare_layouts(model: nn.Module, image: torch.Tensor, cond: torch.Tensor | None = None, tile: int = 512,
                    repeats: int = 3) -> dict[str, float]:
    """Time :func:`aebook.restoration.inference.apply_tiled` on one ``(1, C, H, W)`` image in both memory layouts.

    The default (channels-first) layout and channels-last run alternately, twice each, after a
    warm-up of both, and each keeps its best time, so that a busy machine slows both alike.
    Returns ``seconds_default``, ``seconds_channels_last``, their ratio ``speedup`` and
    ``max_abs_diff``, the largest difference between the two outputs (the same computation, so
    rounding only). The engine of ``benchmarks/inference.py``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    runs = {layout: (lambda cl=(layout == "channels_last"): apply_tiled(model, image, cond, tile=tile,
                                                                     channels_last=cl))
            for layout in ("default", "channels_last")}
    for fn in runs.values():  # warm-up: the first calls pay for choosing kernels
        fn()
    device = next(model.parameters()).device
    seconds: dict[str, float] = {}
    outs: dict[str, torch.Tensor] = {}
    for _ in range(2):
        for layout, fn in runs.items():
            for _ in range(repeats):
                outs[layout], took = timed(fn, device=device)
                seconds[layout] = min(took, seconds.get(layout, float("inf")))
    return {"seconds_default": seconds["default"], "seconds_channels_last": seconds["channels_last"],
            "speedup": seconds["default"] / seconds["channels_last"],
            "max_abs_diff": (outs["default"] - outs["channels_last"]).abs().max().item()}


#: Environment for a process whose glibc allocator keeps freed memory instead of handing it
#: back to the system at once: :func:`aebook.runtime.keep_freed_memory`'s settings, given
#: before start-up. Large tensors are then reused, not fetched again.
GLIBC_KEEP_MEMORY: dict[str, str] = {"MALLOC_TOP_PAD_": str(KEEP_TOP_PAD),
                                     "MALLOC_TRIM_THRESHOLD_": str(KEEP_THRESHOLD),
                                     "MALLOC_MMAP_THRESHOLD_": str(KEEP_THRESHOLD)}


def shipped_layouts(name: str = "denoise", size: int = 512, repeats: int = 3) -> dict[str, float]:
    """:func:`compare_layouts` for a shipped restorer on the ``size x size`` corner of the
    cameraman (the astronaut for a colour model), with the CLI's tile (512) and, for a
    condition channel, a constant 0.1 (the noise level 25.5 for the denoiser)."""
    model, _ = pretrained(name)
    gray = model.channels == 1
    x = image_to_tensor(load_photo("camera" if gray else "astronaut", gray=gray)[:size, :size])
    cond = torch.full((1, model.cond_channels, *x.shape[-2:]), 0.1) if model.cond_channels else None
    return compare_layouts(model, x, cond, tile=512, repeats=repeats)


def shipped_layouts_in_new_process(name: str = "denoise", size: int = 512, repeats: int = 3,
                                   env: dict[str, str] | None = None) -> dict[str, float]:
    """:func:`shipped_layouts` run in a new Python process (as the CLI runs), with ``env`` added
    to its environment (e.g. :data:`GLIBC_KEEP_MEMORY`): a long-running process, such as a
    notebook's kernel, has its memory allocator in another state."""
    code = ("import json, sys; from aebook.perf import shipped_layouts; "
            "print(json.dumps(shipped_layouts(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))")
    threads = {"OMP_NUM_THREADS": str(torch.get_num_threads())}  # as many threads as this process
    out = subprocess.run([sys.executable, "-c", code, name, str(size), str(repeats)], capture_output=True,
                         text=True, env={**os.environ, **threads, **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"the timing process failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the two training loops

@dataclass
class LoopResult:
    """What one training loop did: wall-clock seconds, images seen, final loss."""

    seconds: float
    images: int
    final_loss: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


def write_mnist_layout(images: np.ndarray, root: Path) -> None:
    """Write uint8 ``(N, 28, 28)`` images as ``root/MNIST/raw`` IDX files, so that
    ``torchvision.datasets.MNIST`` reads them exactly as it reads MNIST (offline)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}")
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, part in (("train", images), ("t10k", images[:16])):
        with open(raw / f"{prefix}-images-idx3-ubyte", "wb") as f:
            f.write(struct.pack(">IIII", 0x0803, len(part), 28, 28) + part.tobytes())
        with open(raw / f"{prefix}-labels-idx1-ubyte", "wb") as f:
            f.write(struct.pack(">II", 0x0801, len(part)) + bytes(len(part)))


#: The learning rate of both loops in :func:`compare_loops`: Adam's customary rate in the
#: tutorials, held constant. ``fit``'s own default is the model's ``default_lr`` under a
#: warm-up + cosine schedule; the comparison keeps the tutorial's so that both loops take the
#: same steps.
LOOP_LR = 1e-3


def objective_name(model: nn.Module) -> str:
    """The loss a model trains on: ``model.recon`` (``"bce"`` or ``"mse"``) for the autoencoders
    whose decoder outputs logits, ``"mse"`` for the others (the base :class:`~aebook.models.Autoencoder`'s loss)."""
    return str(getattr(model, "recon", "mse"))


def textbook_loop(model: Autoencoder, root: Path, epochs: int, batch_size: int, device: torch.device,
                  lr: float = LOOP_LR) -> LoopResult:
    """The tutorial loop: ``MNIST`` dataset with ``ToTensor``, a shuffling ``DataLoader``,
    ``.to(device)`` per batch, Adam at a constant learning rate.

    The loss of a batch is the model's own, ``model.loss(x)`` (binary cross-entropy of the logits
    for the conv autoencoder; the squared error of ``model(x)`` for a module without ``loss``), and
    a model with ``init_from_data`` gets it on the whole training set before the first step, as
    :func:`aebook.train.fit` does: against :func:`aebook_loop`, only the data path (and the order
    of the batches) differs. ``final_loss`` is the last epoch's mean training loss."""
    from torchvision import datasets, transforms  # heavy, and only for this comparison

    ds = datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=0)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)  # the tutorial's own loop, kept as the baseline

    def batch_loss(x: torch.Tensor) -> torch.Tensor:
        if hasattr(model, "loss"):
            return model.loss(x)[0]
        return torch.nn.functional.mse_loss(model(x), x)

    def tutorial_epochs() -> tuple[int, float]:
        if hasattr(model, "init_from_data"):  # fit's start: the output bias at the data's mean
            model.init_from_data(ds.data.unsqueeze(1).float().div(255).to(device))  # what ToTensor yields
        seen, total = 0, 0.0
        for _ in range(epochs):
            total = 0.0
            for x, _ in loader:
                x = x.to(device)
                loss = batch_loss(x)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(x)
                seen += len(x)
        return seen, total

    (seen, total), seconds = timed(tutorial_epochs, device=device)
    return LoopResult(seconds, seen, total / len(ds))


def aebook_loop(model: Autoencoder, data: torch.Tensor, epochs: int, batch_size: int, device: torch.device,
                lr: float = LOOP_LR, compile: bool = False, channels_last: bool = True,
                schedule: str = "constant", cuda_graph: bool = False, seed: int = 0) -> LoopResult:
    """:func:`aebook.train.fit` (data held on the device, bfloat16 autocast on CUDA, optional
    ``torch.compile`` or CUDA-graph capture of the step: ``cuda_graph``, CUDA only), with the model
    and data first converted to the channels-last memory layout by this wrapper when
    ``channels_last`` (``fit`` itself leaves the layout alone). ``final_loss`` as in :func:`textbook_loop`.

    The defaults (a constant :data:`LOOP_LR`, no weight decay: ``fit``'s AdamW is then Adam) are
    the textbook loop's, and both train on ``model.loss`` from the same ``init_from_data`` start,
    so that a comparison measures the data path and nothing else; ``schedule="cosine"`` gives
    ``fit``'s own warm-up + cosine schedule instead. ``seed`` is ``fit``'s (its batch order)."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        data = data.contiguous(memory_format=torch.channels_last)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, device=str(device), compile=compile,
                      cuda_graph=cuda_graph, schedule=schedule, progress=False, seed=seed)
    history, seconds = timed(fit, model, data, cfg, device=device)
    return LoopResult(seconds, epochs * len(data), history.train_loss[-1])


def compare_loops(n: int = 2000, epochs: int = 2, width: int = 16, device: torch.device | str = "cpu",
                  batch_size: int = 64, aebook_batch_size: int = 64, aebook_lr: float = LOOP_LR,
                  compile: bool = False, channels_last: bool = True, seed: int = 0,
                  cuda_graph: bool = False) -> dict[str, Any]:
    """Train the same conv autoencoder (latent 16) on the same ``n`` 28x28 photo patches
    with both loops, then measure both models with the same held-out loss.

    Both loops train on the model's own loss from the same start (:func:`textbook_loop`); the
    textbook loop at :data:`LOOP_LR`, aebook's at ``aebook_lr`` (the same by default). ``seed``
    draws the patches, the common start and aebook's batch order (the DataLoader's comes from
    torch's global generator). Returns a dict with ``baseline_img_s``, ``aebook_img_s``, ``speedup``, ``loss`` (the loss
    both trained on and are scored with: :func:`objective_name`), ``baseline_lr``, each loop's
    ``*_final_loss`` (last training epoch), ``*_eval_loss`` (``model.loss`` of the trained
    model on the same 512 patches that neither trained on) and ``*_eval_mse`` (the mean squared
    error of its reconstructions of those patches), ``train_gflop_per_image``,
    ``peak_gflop_s`` (a matrix product on the same device, same run, in ``peak_dtype``:
    bfloat16 on CUDA, where aebook's loop computes in bfloat16, else float32) and
    ``aebook_fraction_of_peak``, and the settings of aebook's loop (``aebook_batch_size``,
    ``aebook_lr``, ``compile``, ``cuda_graph``, ``channels_last``).
    """
    if n < 1 or epochs < 1:
        raise ValueError(f"need n >= 1 and epochs >= 1, got n={n}, epochs={epochs}")
    TrainConfig(batch_size=aebook_batch_size, lr=aebook_lr, compile=compile, cuda_graph=cuda_graph)  # fail early
    device = torch.device(device)
    patches = photo_patches(n + 512, size=28, gray=True, seed=seed)
    images = (patches[:, 0].numpy() * 255).round().astype(np.uint8)
    data = torch.from_numpy(images[:n]).float().div(255).unsqueeze(1)  # exactly what ToTensor yields
    held = torch.from_numpy(images[n:]).float().div(255).unsqueeze(1)
    results: dict[str, Any] = {
        "device": str(device), "torch": torch.__version__, "n": n, "epochs": epochs, "width": width,
        "batch_size": batch_size, "aebook_batch_size": aebook_batch_size, "baseline_lr": LOOP_LR,
        "aebook_lr": aebook_lr,
        "compile": compile, "cuda_graph": cuda_graph, "channels_last": channels_last,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"}
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_mnist_layout(images[:n], Path(tmp))
        torch.manual_seed(seed)
        models["baseline"] = build_model("conv", (1, 28, 28), 16, width=width)
        base = textbook_loop(models["baseline"], Path(tmp), epochs, batch_size, device, LOOP_LR)
        results["loss"] = objective_name(models["baseline"])
    torch.manual_seed(seed)
    models["aebook"] = build_model("conv", (1, 28, 28), 16, width=width)
    ours = aebook_loop(models["aebook"], data, epochs, aebook_batch_size, device, aebook_lr, compile, channels_last,
                       cuda_graph=cuda_graph, seed=seed)
    for name, res in (("baseline", base), ("aebook", ours)):
        trained = models[name].float().to(device)
        results.update({f"{name}_img_s": res.images_per_second, f"{name}_seconds": res.seconds,
                        f"{name}_final_loss": res.final_loss, f"{name}_eval_loss": evaluate_loss(trained, held),
                        f"{name}_eval_mse": float(torch.mean((trained.reconstruct(held) - held) ** 2))})
    results["speedup"] = results["aebook_img_s"] / results["baseline_img_s"]
    flops = training_flops_per_image(build_model("conv", (1, 28, 28), 16, width=width), (1, 28, 28))
    # the peak in the precision aebook's loop computes in: bfloat16 under autocast on CUDA (a
    # float32 product there runs on the GPU's slower float32 units), float32 elsewhere
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = peak_flops(device, size=8192 if device.type == "cuda" else 1024, dtype=peak_dtype)
    results.update(train_gflop_per_image=flops / 1e9, peak_gflop_s=peak / 1e9,
                   peak_dtype=str(peak_dtype).removeprefix("torch."),
                   aebook_fraction_of_peak=results["aebook_img_s"] * flops / peak,
                   baseline_fraction_of_peak=results["baseline_img_s"] * flops / peak)
    return results


# --------------------------------------------------------------------------- quality against cost

class DecoderSweepAutoencoder(Autoencoder):
    """A fixed small encoder and a fully-connected decoder of ``depth`` hidden layers of
    ``width`` units (ReLU), sigmoid output: only the decoder changes between sweeps."""

    name = "decsweep"

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, depth: int = 1, width: int = 128) -> None:
        super().__init__(shape, latent_dim, depth=depth, width=width)
        if depth < 0 or width < 1:
            raise ValueError(f"need depth >= 0 and width >= 1, got depth={depth}, width={width}")
        d = int(np.prod(self.shape))
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, latent_dim))
        layers: list[nn.Module] = []
        c_in = latent_dim
        for _ in range(depth):
            layers += [nn.Linear(c_in, width), nn.ReLU()]
            c_in = width
        self.decoder = nn.Sequential(*layers, nn.Linear(c_in, d), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.shape)


def _train_and_score(model: Autoencoder, train: torch.Tensor, test: torch.Tensor, epochs: int,
                     batch_size: int, seed: int) -> dict[str, float]:
    """Train with :func:`aebook.train.fit` (timed) and score PSNR on ``test``."""
    config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, progress=False, device="cpu")
    seconds = timed(fit, model, train, config)[1]
    return {"train_img_s": epochs * len(train) / seconds,
            "infer_img_s": inference_images_per_second(model, test),
            "psnr": mean_metrics(test, model.reconstruct(test))["psnr"],
            "params": count_parameters(model)}


def latent_sweep(latent_dims: Sequence[int], train: torch.Tensor, test: torch.Tensor, epochs: int = 20,
                 batch_size: int = 64, model: str = "mlp", seed: int = 0, **options: Any) -> list[dict[str, float]]:
    """Train one autoencoder (:func:`aebook.models.build_model` ``model`` with ``options``) per
    latent size; per size: training and inference images/s, test PSNR (dB), parameters,
    forward FLOPs per image."""
    rows = []
    for d in latent_dims:
        torch.manual_seed(seed)
        model_ = build_model(model, tuple(train.shape[1:]), int(d), **options)
        row = {"latent_dim": int(d), **_train_and_score(model_, train, test, epochs, batch_size, seed)}
        row["mflop_per_image"] = forward_flops(model_, test[:1]) / 1e6
        rows.append(row)
    return rows


def decoder_sweep(depths: Sequence[int], widths: Sequence[int], train: torch.Tensor, test: torch.Tensor,
                  latent_dim: int = 8, epochs: int = 20, batch_size: int = 64,
                  seed: int = 0) -> list[dict[str, float]]:
    """Train a :class:`DecoderSweepAutoencoder` per (depth, width): test PSNR and parameters."""
    rows = []
    for depth in depths:
        for width in widths:
            torch.manual_seed(seed)
            model = DecoderSweepAutoencoder(tuple(train.shape[1:]), latent_dim, int(depth), int(width))
            row = _train_and_score(model, train, test, epochs, batch_size, seed)
            row["decoder_params"] = count_parameters(model.decoder)
            rows.append({"depth": int(depth), "width": int(width), **row})
    return rows
