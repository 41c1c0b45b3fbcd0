"""Training a restoration network on patches of the training photos (chapter 4).

:func:`train_restorer` draws clean patches from ``TRAIN_PHOTOS`` only (never the held-out
photos), damages each batch afresh on the device (:mod:`aebook.restoration.tasks`) and takes
the library's one optimisation step, :class:`aebook.train.TrainStep`. It can warm-start from
another restorer's run folder and grow it deeper first (:func:`~aebook.restoration.nets.deepen`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from aebook.data import photo_patches
from aebook.restoration.nets import ResidualCNN, add_condition_channels, build_restorer, deepen, load_restorer
from aebook.restoration.tasks import Task, make_task
from aebook.runtime import pick_device
from aebook.train import TrainStep


#: The ``"psnr"`` loss's floor on a patch's MSE (about 45 dB), so that a nearly perfect patch does
#: not get an unbounded weight.
PSNR_LOSS_FLOOR = 3e-5


def training_objective(out: torch.Tensor, target: torch.Tensor, loss: str = "mse") -> tuple[torch.Tensor, torch.Tensor]:
    """The quantity :func:`train_restorer` minimises, and the batch MSE it reports.

    ``"mse"``: the batch's mean squared error. ``"psnr"``: a surrogate of the patches' mean
    PSNR, whose gradient is that of ``mean(log(MSE_i + floor))``: each patch's squared error
    divided by its own detached MSE (floored at :data:`PSNR_LOSS_FLOOR`), rescaled by the
    batch's mean so that the learning rate means the same under both losses.
    """
    mse = F.mse_loss(out, target)
    if loss == "mse":
        return mse, mse
    if loss != "psnr":
        raise ValueError(f"unknown loss {loss!r}: choose 'mse' or 'psnr'")
    per_patch = ((out - target) ** 2).flatten(1).mean(1)
    held = per_patch.detach()
    return (per_patch / (held + PSNR_LOSS_FLOOR)).mean() * (held.mean() + PSNR_LOSS_FLOOR), mse


#: Tasks whose networks may warm-start one another. Super-resolution at another scale has the
#: same input (a bicubic enlargement) and the same job, sharpening it.
SUPER_RESOLUTION = {"upscale2", "upscale4"}


def train_restorer(task: str | Task, epochs: int = 10, n_patches: int = 20000, patch_size: int = 48,
                   depth: int = 17, width: int = 64, batch_size: int = 64, lr: float = 1e-3,
                   seed: int = 0, device: str = "auto", progress: bool = True,
                   init: str | Path | nn.Module | None = None,
                   minutes: float | None = None, warmup: float = 0.0,
                   sigma_range: tuple[float, float] | None = None,
                   loss: str = "mse", arch: str = "residual_cnn",
                   widths: tuple[int, ...] = (32, 64, 128, 256), blocks: tuple[int, ...] = (1, 1, 1, 1),
                   skips: bool = True, global_context: bool = False,
                   scale_range: tuple[float, float] = (1.0, 1.0),
                   channel_mix: bool = False, eight_bit: float = 0.0,
                   bicubic_downscale: float = 0.0,
                   kernel_condition: bool = False, synthetic: float = 0.0,
                   synthetic_patterns: float = 0.0) -> tuple[nn.Module, list[float]]:
    """Train a restorer for ``task`` on patches of the training photos (never the held-out ones).

    ``arch`` chooses the network (:data:`~aebook.restoration.nets.ARCHITECTURES`): ``"residual_cnn"``
    (a :class:`~aebook.restoration.nets.ResidualCNN` of ``depth`` convolutions of ``width``
    channels) or ``"encoder_decoder"`` (an :class:`~aebook.restoration.nets.EncoderDecoder` with
    ``widths``, ``blocks``, ``skips`` and ``global_context``); the other architecture's settings are ignored.

    Returns the model (in eval mode) and the mean training loss (MSE) per epoch.
    Patches are held on the device; damage is drawn afresh for every batch. On CUDA the network
    and the patches are laid out channels-last and cuDNN picks its kernels by timing them.
    ``init`` (a run folder, or a network in hand) warm-starts from those weights (a shipped
    model's folder is ``aebook.zoo.resolve(name)``) instead of a random initialisation: they
    must be a restorer for the same ``task`` (or, for super-resolution, another scale:
    :data:`~aebook.restoration.training.SUPER_RESOLUTION`) with the same architecture and settings
    (``ValueError`` otherwise), except that a :class:`~aebook.restoration.nets.ResidualCNN` may
    have fewer than ``depth`` layers: a shallower start is grown by :func:`~aebook.restoration.nets.deepen`, keeping its
    function. A second run with a new ``seed`` then sees new patches and new damage: training
    continued in stages.

    ``task`` is one of :data:`~aebook.restoration.tasks.TASKS` or a :class:`~aebook.restoration.tasks.Task` of its own (e.g. the compression
    artefacts of :func:`aebook.codecs.klt.klt_damage_task`); such a task may warm-start
    from a restorer of *another* task with the same shape (transfer learning: a denoiser
    fine-tuned to remove other damage).

    Every step is :class:`aebook.train.TrainStep`'s (Adam, the library's warm-up + cosine
    schedule from ``lr`` down to ``lr / 50``, bfloat16 autocast on CUDA). ``minutes`` gives
    training a wall-clock budget instead, for a machine whose speed is not known in advance
    (a lent GPU): the learning rate follows the same schedule, but over the elapsed fraction
    of the budget, and training stops when the budget is spent (``epochs`` is then only an
    upper bound). The result then depends on the machine's speed.

    ``warmup`` (a fraction of training, 0 to 1) ramps the learning rate up linearly
    over that first part of the steps (or of the time budget), then follows the cosine. For
    warm starts: Adam's first steps move every weight by about ``lr`` whatever its gradient,
    which knocks a trained network off its optimum before the run can start to improve it.

    ``sigma_range`` (denoising) narrows or widens the noise levels drawn for training
    (:func:`~aebook.restoration.tasks.make_task`), and ``eight_bit`` trains it on that share of
    patches clipped and rounded as an 8-bit file is (the form in which the CLI reads a noisy photo).
    ``bicubic_downscale`` (super-resolution) shrinks that share of the training pairs with
    antialiased bicubic instead of block means, and ``kernel_condition`` tells the network which
    kernel shrank each pair (:func:`~aebook.restoration.tasks.make_task`); a start without that
    input channel gets it with zero weights (:func:`~aebook.restoration.nets.add_condition_channels`).
    ``loss`` is ``"mse"`` (the mean squared error of the batch) or
    ``"psnr"``: the mean of the patches' PSNRs, i.e. each patch's squared-error gradient divided
    by that patch's own (detached) MSE, floored at :data:`PSNR_LOSS_FLOOR`. Under plain MSE the
    noisiest patches dominate the gradient; under ``"psnr"`` a patch counts by its *relative*
    error, as the book's tables count images. The reported losses stay the batch MSE.

    ``scale_range`` and ``channel_mix`` make more training images from the few photos
    (:func:`~aebook.data.photo_patches`): patches shrunk by a random factor, and grayscale
    patches of colour photos with random channel weights. Long runs need them: without them
    a network trained for minutes on a GPU learns the training photos by heart. ``synthetic``
    cuts that share of the patches from :func:`~aebook.synthetic.dead_leaves` images made from the
    photos' textures and colours instead: new scenes, not new views of the same ones;
    ``synthetic_patterns`` fills that share of their wide discs with repeated patterns.
    """
    if loss not in ("mse", "psnr"):
        raise ValueError(f"unknown loss {loss!r}: choose 'mse' or 'psnr'")
    if minutes is not None and not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    if not 0.0 <= warmup <= 1.0:
        raise ValueError(f"warmup must be a fraction in [0, 1], got {warmup}")
    if isinstance(task, Task) and (sigma_range is not None or eight_bit or bicubic_downscale or kernel_condition):
        raise ValueError("sigma_range, eight_bit, bicubic_downscale and kernel_condition apply to the built-in "
                         "tasks, not to a Task of its own")
    spec = task if isinstance(task, Task) else make_task(task, sigma_range=sigma_range, eight_bit=eight_bit,
                                                         bicubic_downscale=bicubic_downscale,
                                                         kernel_condition=kernel_condition)
    dev = pick_device(device)
    torch.manual_seed(seed)
    clean = photo_patches(n_patches, size=patch_size, gray=spec.channels == 1, seed=seed,
                          scale_range=tuple(scale_range), channel_mix=channel_mix,
                          synthetic=synthetic, synthetic_patterns=synthetic_patterns).to(dev)
    options = {"depth": depth, "width": width} if arch == "residual_cnn" else {
        "widths": tuple(widths), "blocks": tuple(blocks), "skips": skips, "global_context": global_context}
    model = build_restorer(arch, spec.channels, spec.cond_channels, **options)
    if init is not None:
        if isinstance(init, nn.Module):  # a network in hand (e.g. a codec's decoder): the caller's task
            start, start_task = init, spec.name
        else:
            start, start_task, _ = load_restorer(init)
        if isinstance(start, ResidualCNN) and arch == "residual_cnn" and start.config["depth"] < depth:
            start = deepen(start, depth)  # more layers than the start: grow it, same function
        if start.cond_channels < model.cond_channels and {**start.config, "cond_channels": 0} == {
                **model.config, "cond_channels": 0}:
            start = add_condition_channels(start, model.cond_channels)  # a new condition map, same function
        same_job = start_task == spec.name or {start_task, spec.name} <= SUPER_RESOLUTION
        if (not same_job and not isinstance(task, Task)) or start.config != model.config:
            what = "the given network" if isinstance(init, nn.Module) else f"init {init!r}"
            raise ValueError(f"{what} is a {start_task!r} restorer with {start.config}: it cannot "
                             f"warm-start a {spec.name!r} restorer with {model.config}")
        model.load_state_dict(start.state_dict())
    model = model.to(dev)
    if dev.type == "cuda":  # fixed shapes: let cuDNN pick its fastest kernels; NHWC suits its tensor cores
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
        clean = clean.contiguous(memory_format=torch.channels_last)
    steps = max(1, epochs * (-(-n_patches // batch_size)))
    optimiser = TrainStep(model.parameters(), lr, steps, warmup=warmup, minutes=minutes, device=dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    losses = []
    for _ in tqdm(range(epochs), desc=f"training {spec.name}", disable=not progress):
        order = torch.randperm(n_patches, generator=gen, device=dev)
        total = torch.zeros((), device=dev)
        seen = 0
        for i in range(0, n_patches, batch_size):
            if optimiser.finished:  # the time budget is spent
                break
            target = clean[order[i : i + batch_size]]
            damaged, cond = spec.make(target, gen)
            with optimiser.autocast():
                out = model(damaged, cond)
            out = out.float()
            if spec.name == "inpaint":  # score only the holes' fill; no clamp here: its gradient is 0 outside
                out = damaged * (1 - cond) + out * cond  # [0, 1] (zero-filled holes once froze training)
            objective, mse = training_objective(out, target, loss)
            optimiser.step(objective)
            total += mse.detach() * len(target)
            seen += len(target)
        if seen:
            losses.append(total.item() / seen)
        if optimiser.finished:
            break
    return model.eval(), losses
