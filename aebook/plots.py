"""How results are shown throughout the book: figures (matplotlib) and Markdown tables.

Every number a table shows is computed (:func:`markdown_table` formats rows of them), so
that no number in the book's prose is typed by hand.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from aebook.metrics import psnr, ssim
from aebook.runtime import live_frontend


def _img(x) -> np.ndarray:
    """Tensor ``(C, H, W)`` or array -> array ready for ``imshow``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu()
        x = x.permute(1, 2, 0).numpy() if x.ndim == 3 else x.numpy()
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    return np.clip(x, 0, 1)


def show_image(ax, img, title: str = "") -> None:
    """Draw one image (gray colormap for single-channel) without axes ticks."""
    arr = _img(img)
    ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def compare_grid(originals: torch.Tensor, rows: Mapping[str, torch.Tensor], n: int = 8,
                 metrics: bool = True, scale: float = 1.2):
    """Originals in the first row, one row per method below, PSNR/SSIM per image in titles.

    Parameters
    ----------
    originals
        ``(N, C, H, W)`` reference images.
    rows
        Method name -> images of the same shape (e.g. ``{"PCA": ..., "conv AE": ...}``).
    n
        Number of images (columns) to show.
    """
    n = min(n, len(originals))
    fig, axes = plt.subplots(1 + len(rows), n, figsize=(scale * n, scale * 1.25 * (1 + len(rows))), squeeze=False)
    for j in range(n):
        show_image(axes[0, j], originals[j])
        for i, (name, imgs) in enumerate(rows.items(), start=1):
            title = f"{psnr(originals[j], imgs[j]):.1f} dB\n{ssim(originals[j], imgs[j]):.2f}" if metrics else ""
            show_image(axes[i, j], imgs[j], title)
        for i, name in enumerate(["original", *rows]):
            if j == 0:
                axes[i, 0].text(-0.15, 0.5, name, transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def side_by_side(images: Sequence, titles: Sequence[str], reference=None, size: float = 3.0):
    """Images in one row; with ``reference``, PSNR and SSIM against it are added to each title."""
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size * 1.1), squeeze=False)
    for ax, img, title in zip(axes[0], images, titles):
        if reference is not None and img is not reference:
            title = f"{title}\n{psnr(reference, img):.2f} dB, SSIM {ssim(reference, img):.3f}"
        show_image(ax, img, title)
    fig.tight_layout()
    return fig


def image_grid(images: torch.Tensor, nrow: int = 8, title: str = "", scale: float = 1.0):
    """A grid of ``(N, C, H, W)`` images (samples, traversals, interpolations)."""
    n = len(images)
    ncol = min(nrow, n)
    nr = -(-n // ncol)
    fig, axes = plt.subplots(nr, ncol, figsize=(scale * ncol, scale * nr), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < n:
            show_image(ax, images[k])
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(histories: Mapping[str, "object"], log: bool = True):
    """Training (solid) and validation (dashed) loss per epoch for one or more runs."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, h in histories.items():
        line, = ax.plot(range(1, len(h.train_loss) + 1), h.train_loss, label=f"{name} train")
        if h.val_loss:
            ax.plot(range(1, len(h.val_loss) + 1), h.val_loss, "--", color=line.get_color(), label=f"{name} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_runs(curves: Mapping[tuple[str, Any], Sequence[float]], every: int = 1,
              lines: Mapping[str, float] | None = None, ylabel: str = "held-out loss", log: bool = True):
    """Several runs of a few methods: ``curves[method, run]`` sampled every ``every`` steps.

    Runs of one method share a colour and one legend entry; ``lines`` adds labelled horizontal
    references (e.g. the error of a trivial output).
    """
    fig, ax = plt.subplots(figsize=(7, 3.2))
    colours: dict[str, str] = {}
    for (method, _), curve in curves.items():
        first = method not in colours
        colours.setdefault(method, f"C{len(colours)}")
        ax.plot(range(every, every * len(curve) + 1, every), curve, color=colours[method], alpha=0.8,
                label=method if first else None)
    for i, (label, value) in enumerate((lines or {}).items()):
        ax.axhline(value, color="k", ls=(":", "--", "-.")[i % 3], lw=1, label=label)
    ax.set(xlabel="training steps", ylabel=ylabel, yscale="log" if log else "linear")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def grouped_bars(values: Mapping[str, Sequence[float]], groups: Sequence[str], ylabel: str, mean: bool = True):
    """Bars of ``values[series][group]``, one colour per series, side by side in each group; with
    ``mean``, a black mark at each group's mean over the series, and a line at zero."""
    fig, ax = plt.subplots(figsize=(7, 3))
    width = 0.8 / max(len(values), 1)
    x = np.arange(len(groups))
    for i, (name, vals) in enumerate(values.items()):
        ax.bar(x + (i - (len(values) - 1) / 2) * width, vals, width, label=name)
    if mean and values:
        ax.plot(x, np.mean(list(values.values()), axis=0), "k_", markersize=30, mew=2, label="mean")
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xticks(x, [g.replace(" ", "\n", 1) for g in groups])
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncols=len(values) + 1, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return fig


def plot_metric_vs_latent(results: Mapping[str, Mapping[int, float]], metric: str = "PSNR (dB)",
                          xlabel: str = "latent size", logx: bool = True):
    """One line per method: ``results[method][latent_size] = value``."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, points in results.items():
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], "o-", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    if logx:
        ax.set_xscale("log", base=2)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


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


def explore(show: Callable[[int], None], name: str, value: int, low: int, high: int, step: int = 1,
            description: str | None = None) -> None:
    """Draw ``show(value)``, the static figure every page shows; and, where a person drives the
    notebook (:func:`aebook.runtime.live_frontend`), an integer slider above it, from ``low`` to
    ``high``, that calls ``show(**{name: v})`` again as it moves (``ipywidgets``, the ``book`` extra)."""
    if not low <= value <= high or step < 1:
        raise ValueError(f"slider {name!r}: need low <= value <= high and step >= 1, got {low}, {value}, {high}, {step}")
    if live_frontend():
        import ipywidgets as widgets

        widgets.interact(show, **{name: widgets.IntSlider(value=value, min=low, max=high, step=step,
                                                          description=description or name)})
    show(value)
