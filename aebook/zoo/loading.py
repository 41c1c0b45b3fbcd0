"""Shipped models by name: :func:`pretrained` loads any of them, hash-checked, with one return shape.

The kind of model a run folder holds is the name its ``config.json`` records (``residual_cnn``,
``encoder_decoder``, ``convcodec``, ``kltcodec``: registry entries, never module paths); :data:`LOADERS` maps each
to the function that loads it. The zoo sits at the top of the library: it knows every kind
of model, and nothing below it imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from aebook.checkpoint import read_config
from aebook.codecs.coding import CODECS, load_codec
from aebook.restoration.nets import ARCHITECTURES, load_restorer
from aebook.zoo.registry import resolve


def _restorer(run_dir: Path, device: torch.device | str) -> tuple[nn.Module, dict[str, Any]]:
    model, _task, config = load_restorer(run_dir, device)  # the task is config["train"]["task"]
    return model, config


#: The model names a shipped ``config.json`` may record, and how each kind is loaded.
LOADERS: dict[str, Callable[[Path, torch.device | str], tuple[nn.Module, dict[str, Any]]]] = {
    **{name: _restorer for name in ARCHITECTURES}, **{name: load_codec for name in CODECS}}


def pretrained(name: str, device: torch.device | str = "cpu",
               root: Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load a shipped model by name, hash-checked against the manifest: ``(model, config)``.

    Every kind returns the same two things: the model in eval mode on ``device`` and its parsed
    ``config.json``. A restorer (``"denoise"``, ``"inpaint"``, ``"upscale2"``, ``"upscale4"``,
    ``"enhance"``) is an :class:`~aebook.restoration.nets.EncoderDecoder` or a
    :class:`~aebook.restoration.nets.ResidualCNN` whose task is
    ``config["train"]["task"]``; a codec (``"codec"``, ``"kltcodec"``) is a
    :class:`~aebook.codecs.conv.ConvCodec` or :class:`~aebook.codecs.klt.KLTCodec`, as
    :func:`aebook.codecs.coding.load_codec` returns it. Also ``aebook.pretrained(name)``.

    ``root`` is another folder of shipped weights (default: the package's). Raises
    ``ValueError`` for an unknown name, a file that fails its SHA-256, or a kind of model
    this version cannot load.
    """
    run_dir = resolve(name, root)
    kind = read_config(run_dir)["model"]["model"]
    if kind not in LOADERS:
        raise ValueError(f"pretrained model {name!r} is a {kind!r}, which this version cannot load "
                         f"(it loads {', '.join(LOADERS)})")
    return LOADERS[kind](run_dir, device)
