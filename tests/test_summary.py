"""Tests for aebook.book.tables: layer shapes, worst/best ranking, timing, Markdown tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from aebook.book.tables import LayerInfo, layer_shapes, worst_and_best
from aebook.perf import time_forward_backward
from aebook.plots import markdown_table
from aebook.models import build_model, count_parameters


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_layer_shapes_of_conv_autoencoder(shape: tuple[int, int, int]) -> None:
    model = build_model("conv", shape, 16).train()
    rows = layer_shapes(model, torch.zeros(2, *shape))
    assert all(isinstance(r, LayerInfo) for r in rows)
    assert rows[0].in_shape == shape
    assert rows[-1].out_shape == shape  # decoder logits have the image's shape
    head = next(r for r in rows if r.name == "encoder.head")
    assert head.out_shape == (16,)
    # Every parameter is owned by exactly one leaf module, called once.
    assert sum(r.params for r in rows) == count_parameters(model)
    assert model.training  # mode restored
    # No hooks left behind.
    assert all(not m._forward_hooks for m in model.modules())


def test_layer_shapes_stride_two_halves_the_size() -> None:
    rows = layer_shapes(build_model("conv", (1, 28, 28), 8), torch.zeros(1, 1, 28, 28))
    convs = [r for r in rows if r.name.startswith("encoder.body") and r.kind == "Conv2d"]
    sizes = [r.out_shape[1] for r in convs]
    assert sizes[0] == 28 and 14 in sizes and sizes[-1] == 7


def test_layer_shapes_removes_hooks_after_an_error() -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(RuntimeError):
        layer_shapes(model, torch.zeros(1, 5))
    assert not model[0]._forward_hooks


def test_worst_and_best() -> None:
    worst, best = worst_and_best([3.0, 1.0, 2.0, 5.0, 1.0], k=2)
    assert worst.tolist() == [1, 4]
    assert best.tolist() == [3, 0]
    with pytest.raises(ValueError, match="k must be"):
        worst_and_best([1.0], k=2)
    with pytest.raises(ValueError, match="NaN"):
        worst_and_best([1.0, float("nan")], k=1)


def test_time_forward_backward_positive_and_leaves_no_grad() -> None:
    model = build_model("mlp", (1, 8, 8), 4, hidden=(16,)).eval()
    seconds = time_forward_backward(model, torch.rand(4, 1, 8, 8), repeats=2)
    assert seconds > 0
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    plain = nn.Linear(3, 2)
    assert time_forward_backward(plain, torch.rand(5, 3), repeats=1, warmup=0) > 0
    with pytest.raises(ValueError):
        time_forward_backward(plain, torch.rand(5, 3), repeats=0)


def test_markdown_table() -> None:
    text = markdown_table(["name", "shape", "value"], [["a|b", (32, 14, 14), 1.23456], ["c", (), np.float32(2)]])
    lines = text.splitlines()
    assert lines[0] == "| name | shape | value |"
    assert lines[1] == "|---|---|---|"
    assert lines[2] == "| a\\|b | 32×14×14 | 1.23 |"
    assert lines[3] == "| c | – | 2.00 |"
    with pytest.raises(ValueError, match="headers"):
        markdown_table(["a"], [[1, 2]])


def test_plot_runs_one_colour_and_label_per_method_and_reference_lines() -> None:
    import matplotlib.pyplot as plt

    from aebook.plots import plot_runs

    curves = {("a", 0): [3.0, 2.0, 1.0], ("a", 1): [3.0, 2.5, 2.0], ("b", 0): [1.0, 0.5, 0.2]}
    fig = plot_runs(curves, every=25, lines={"blank": 4.0, "mean": 2.2})
    ax = fig.axes[0]
    runs = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert [list(line.get_xdata()) for line in runs] == [[25, 50, 75]] * 3       # steps, not indices
    assert runs[0].get_color() == runs[1].get_color() != runs[2].get_color()     # one colour per method
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "blank", "mean"]
    assert ax.get_yscale() == "log"
    plt.close(fig)


def test_grouped_bars_one_bar_per_series_and_group_and_the_mean() -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    from aebook.plots import grouped_bars

    values = {"camera": [1.0, -2.0, 0.5], "coffee": [3.0, 0.0, -0.5]}
    fig = grouped_bars(values, ["flat part", "faint texture", "edges"], "gain (dB)")
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == sorted([1.0, -2.0, 0.5, 3.0, 0.0, -0.5])
    mean = next(line for line in ax.get_lines() if line.get_label() == "mean")
    assert np.allclose(mean.get_ydata(), [2.0, -1.0, 0.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["flat\npart", "faint\ntexture", "edges"]
    plt.close(fig)
