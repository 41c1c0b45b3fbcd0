"""Tables the chapters compute: inside a model, best and worst cases, verdicts and goals.

- :func:`layer_shapes`: what each layer of a model does to the shape of one
  batch, recorded with forward hooks (the shape-by-shape tables of chapter 3.2).
- :func:`worst_and_best`: indices of the worst and best scores (failures
  are shown next to successes in chapter 3.3).
- :func:`verdict`, :func:`goals_table`: a sentence and a table whose verdicts are computed
  from two measurements, never typed (chapters 4.3 and 4.4).

Tables are formatted by :func:`aebook.plots.markdown_table`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from aebook.plots import markdown_table


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


def verdict(a_name: str, a: float, b_name: str, b: float, unit: str = "dB", tie: float = 0.0) -> str:
    """A verdict sentence computed from two measurements, e.g. ``"X beats Y by 1.23 dB"``.

    Differences of at most ``tie`` read as "matches".
    """
    diff = a - b
    if abs(diff) <= tie:
        return f"{a_name} matches {b_name} (difference {diff:+.2f} {unit})"
    verb = "beats" if diff > 0 else "trails"
    return f"{a_name} {verb} {b_name} by {abs(diff):.2f} {unit}"


def goals_table(goals: Sequence[tuple], unit: str = "dB") -> tuple[str, list[bool]]:
    """Markdown table of goals ``(goal, measured, target)`` with a computed "met?" column.

    A goal is met when ``measured >= target`` (state goals as "higher is
    better", e.g. a PSNR gain). A goal may give its own unit as a fourth item
    (``""`` for a plain number such as an SSIM gain, shown with three decimals).
    Returns the table and the list of verdicts.
    """
    met = [bool(goal[1] >= goal[2]) for goal in goals]

    def shown(value: float, u: str) -> str:
        return f"{value:+.2f} {u}" if u else f"{value:+.3f}"

    rows = [[goal[0], shown(goal[1], goal[3] if len(goal) > 3 else unit),
             shown(goal[2], goal[3] if len(goal) > 3 else unit), "yes" if ok else "no"]
            for goal, ok in zip(goals, met)]
    return markdown_table(["goal", "measured", "target", "met?"], rows), met
