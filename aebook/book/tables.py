"""Looking inside models and results (chapters 3.2 and 3.3).

- :func:`layer_shapes`: what each layer of a model does to the shape of one
  batch, recorded with forward hooks (the shape-by-shape tables of chapter 3.2).
- :func:`worst_and_best`: indices of the worst and best scores (failures
  are shown next to successes in chapter 3.3).
- :func:`time_forward_backward`: seconds for one training step's forward and
  backward pass, synchronised on GPUs.
- :func:`markdown_table`: a Markdown table from computed rows, so that no
  number in the book's prose is typed by hand.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn


class LayerInfo(NamedTuple):
    """One row of :func:`layer_shapes`: a leaf module and what it did to one image."""

    name: str
    """Dotted module name inside the model, e.g. ``encoder.body.2``."""
    kind: str
    """Class name, e.g. ``Conv2d``."""
    in_shape: tuple[int, ...]
    """Shape of the module's first input for one image (batch dimension dropped)."""
    out_shape: tuple[int, ...]
    """Shape of its output for one image (batch dimension dropped)."""
    params: int
    """Number of parameters the module owns (not counting children)."""


def _shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    if isinstance(value, torch.Tensor):
        return tuple(int(s) for s in value.shape[1:])
    return ()


def layer_shapes(model: nn.Module, x: torch.Tensor) -> list[LayerInfo]:
    """Run ``model(x)`` once and record every leaf module's input and output shape.

    Parameters
    ----------
    model
        Any module; only leaf modules (those without children) are recorded,
        in the order they are called. Functional operations (``F.interpolate``,
        ``torch.sigmoid``) have no module and show up only as the change of
        shape between one row's output and the next row's input.
    x
        An input batch, e.g. ``torch.zeros(1, 1, 28, 28)``; it is moved to the
        model's device.

    Returns
    -------
    list of LayerInfo
        ``(name, kind, in_shape, out_shape, params)`` per call, shapes without
        the batch dimension.

    Examples
    --------
    >>> from aebook.models import build_model
    >>> rows = layer_shapes(build_model("conv", (1, 28, 28), 16), torch.zeros(1, 1, 28, 28))
    >>> rows[-1].out_shape
    (1, 28, 28)
    """
    rows: list[LayerInfo] = []
    handles = []

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: Any) -> None:
            params = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append(LayerInfo(name, type(module).__name__, _shape(inputs), _shape(output), params))
        return record

    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(param.device)
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return rows


def worst_and_best(scores: Sequence[float] | np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` lowest and ``k`` highest scores.

    Parameters
    ----------
    scores
        One score per item where higher is better (PSNR, SSIM).
    k
        How many of each; at most ``len(scores)``.

    Returns
    -------
    worst : numpy.ndarray
        Indices of the ``k`` lowest scores, from the lowest up.
    best : numpy.ndarray
        Indices of the ``k`` highest scores, from the highest down.
        In both, ties keep the items' original order.

    Raises
    ------
    ValueError
        If ``k`` is not in ``1..len(scores)`` or a score is NaN.
    """
    arr = np.asarray(scores, dtype=np.float64).ravel()
    if not 1 <= k <= len(arr):
        raise ValueError(f"k must be between 1 and {len(arr)} (the number of scores), got {k}")
    if np.isnan(arr).any():
        raise ValueError("scores contain NaN")
    up = np.argsort(arr, kind="stable")
    down = np.argsort(-arr, kind="stable")
    return up[:k], down[:k]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


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
    model.train()
    times = []
    try:
        for i in range(warmup + repeats):
            _sync(param.device)
            start = time.perf_counter()
            loss = model.loss(x)[0] if hasattr(model, "loss") else model(x).float().mean()
            loss.backward()
            _sync(param.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    return float(np.median(times))


def _cell(value: Any, floatfmt: str) -> str:
    if isinstance(value, (float, np.floating)):
        return format(float(value), floatfmt)
    if isinstance(value, (tuple, list)) and all(isinstance(v, (int, np.integer)) for v in value):
        return "×".join(str(int(v)) for v in value) if value else "–"
    return str(value).replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".2f") -> str:
    """Format rows as a GitHub/MyST Markdown table.

    Floats use ``floatfmt``; tuples of ints (shapes) are written ``32×14×14``;
    ``|`` in text is escaped. Display it in a notebook with
    ``IPython.display.Markdown(markdown_table(...))``.

    Raises
    ------
    ValueError
        If a row does not have one value per header.
    """
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {list(row)} has {len(row)} values for {len(headers)} headers")
        lines.append("| " + " | ".join(_cell(v, floatfmt) for v in row) + " |")
    return "\n".join(lines)
