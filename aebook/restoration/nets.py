"""The restoration networks and their run folders (chapter 4).

Two architectures, one interface, for every task of :mod:`aebook.restoration.tasks`. Each looks
at the damaged image (plus a condition map: the noise level for denoising, the mask for
inpainting, as FFDNet does) and predicts the *correction* to add to it:

* :class:`EncoderDecoder`, the recipe of ``python -m aebook.train_pretrained``: an
  autoencoder-shaped network in the style of DRUNet (Zhang et al., 2021). Stride-2 convolutions
  halve the resolution stage by stage down to a coarse bottleneck, transposed convolutions bring
  it back, and (with ``skips``) each decoder stage adds the encoder's features of the same
  scale, so fine detail does not have to squeeze through the bottleneck. Channels double as the
  resolution halves, so each stage costs about the same per pixel while the coarse stages see
  far (a wide view at low cost).
* :class:`ResidualCNN`, a full-resolution stack of convolutions in the style of DnCNN
  (Zhang et al., 2017): no downsampling, no bottleneck, a view of ``depth`` pixels each way.
  The weights shipped in ``aebook/zoo/weights`` are of this kind until encoder–decoders trained
  by the recipe above beat them. :func:`deepen` grows a trained one without changing what it
  computes.

:func:`build_restorer` makes either by name (:data:`ARCHITECTURES`); :func:`describe_restorer` says
what one is and :func:`receptive_field` measures how far it sees (chapter 4.4 compares them at
equal cost); :func:`save_restorer` and :func:`load_restorer` write and read a run folder
(safetensors + ``config.json``, hash-checked).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aebook.checkpoint import check_sizes, load_module, save_run
from aebook.imageio import pad_to_multiple
from aebook.restoration.tasks import TASKS, make_task


class ResidualCNN(nn.Module):
    """``depth`` 3x3 convolutions with ReLU; the last predicts a correction added to the image.

    Parameters
    ----------
    channels
        Image channels (1 or 3).
    cond_channels
        Extra input channels (noise-level map or mask) concatenated to the image.
    depth, width
        Number of convolutions and their feature channels (DnCNN: 17 and 64).
    """

    name = "residual_cnn"

    def __init__(self, channels: int = 1, cond_channels: int = 0, depth: int = 17, width: int = 64) -> None:
        super().__init__()
        if channels not in (1, 3) or depth < 2 or width < 1:
            raise ValueError(f"bad ResidualCNN settings: channels={channels}, depth={depth}, width={width}")
        self.config = {"model": self.name, "channels": channels, "cond_channels": cond_channels,
                       "depth": depth, "width": width}
        self.channels, self.cond_channels = channels, cond_channels
        layers: list[nn.Module] = [nn.Conv2d(channels + cond_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        for layer in layers[:-1]:  # He initialisation: without it (or batch norm) the signal and its
            if isinstance(layer, nn.Conv2d):  # gradient shrink layer by layer and a deep stack never trains
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        nn.init.zeros_(layers[-1].weight)  # start as the identity: output = input
        nn.init.zeros_(layers[-1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected images (N, {self.channels}, H, W), got {tuple(x.shape)}")
        inp = x if cond is None else torch.cat([x, cond.to(x.dtype)], dim=1)
        if inp.shape[1] != self.channels + self.cond_channels:
            raise ValueError(f"expected {self.cond_channels} condition channels, got {inp.shape[1] - self.channels}")
        return x + self.body(inp)


class ResBlock(nn.Module):
    """``x + conv(relu(conv(x)))``: two 3x3 convolutions of ``width`` channels around a ReLU.

    The second convolution starts small (He initialisation scaled by 0.1), so a deep stack of
    blocks starts close to the identity and trains without normalisation layers.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        with torch.no_grad():
            self.conv2.weight.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class EncoderDecoder(nn.Module):
    """A convolutional encoder–decoder (U-Net) that predicts a correction added to the image.

    Stage ``s`` works at ``1 / 2**s`` of the resolution with ``widths[s]`` channels and
    ``blocks[s]`` :class:`ResBlock` s. The encoder runs the stages from fine to coarse, each
    followed by a 2x2 stride-2 convolution; the last (coarsest) stage is the bottleneck; the
    decoder comes back up with 2x2 stride-2 transposed convolutions, each followed by the
    blocks of its scale. With ``skips`` the decoder adds the encoder's output of the same
    scale before its blocks (DRUNet's additive skips); without them the correction is computed
    by a pure autoencoder, so all of it must pass through the bottleneck (the damaged image
    itself is still added at full resolution).

    Images of any size are padded (by reflection) to a multiple of ``2 ** (len(widths) - 1)``
    and cropped back.

    Parameters
    ----------
    channels
        Image channels (1 or 3).
    cond_channels
        Extra input channels (noise-level map or mask) concatenated to the image.
    widths
        Channels of each stage, finest first (e.g. ``(32, 64, 128, 256)``: 3 halvings).
    blocks
        Residual blocks per stage, same length as ``widths``.
    skips
        Add the encoder's features to the decoder's at each scale.
    global_context
        Add a global branch: the bottleneck's features averaged over the whole image, through a
        small MLP, scale and shift the features of the bottleneck and of every decoder stage
        (FiLM). It lets a correction depend on statistics of the whole image (its exposure, its
        colour cast), which no convolution's window holds. It starts as the identity.
        :func:`~aebook.restoration.inference.apply_tiled` averages the bottleneck over all the
        tiles of a large image first, so every tile is corrected by the whole image's statistics.
    """

    name = "encoder_decoder"
    #: Default tile size and overlap for :func:`~aebook.restoration.inference.apply_tiled`: the coarse stages see far, so
    #: tiles are large (a 512 x 512 image is one tile) and overlap by 32 pixels each way.
    tile, overlap = 512, 32

    def __init__(self, channels: int = 1, cond_channels: int = 0, widths: tuple[int, ...] = (32, 64, 128, 256),
                 blocks: tuple[int, ...] = (1, 1, 1, 1), skips: bool = True, global_context: bool = False) -> None:
        super().__init__()
        widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
        if (channels not in (1, 3) or not 2 <= len(widths) <= 6 or len(blocks) != len(widths)
                or min(widths) < 1 or min(blocks) < 0):
            raise ValueError(f"bad EncoderDecoder settings: channels={channels}, widths={widths}, blocks={blocks}")
        self.config = {"model": self.name, "channels": channels, "cond_channels": cond_channels,
                       "widths": list(widths), "blocks": list(blocks), "skips": bool(skips),
                       "global_context": bool(global_context)}
        self.channels, self.cond_channels, self.skips = channels, cond_channels, bool(skips)
        self.multiple = 2 ** (len(widths) - 1)
        self.head = nn.Conv2d(channels + cond_channels, widths[0], 3, padding=1)
        self.encoder = nn.ModuleList(nn.Sequential(*[ResBlock(w) for _ in range(b)])
                                     for w, b in zip(widths[:-1], blocks[:-1]))
        self.down = nn.ModuleList(nn.Conv2d(a, b, 2, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        self.bottleneck = nn.Sequential(*[ResBlock(widths[-1]) for _ in range(blocks[-1])])
        self.up = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        self.decoder = nn.ModuleList(nn.Sequential(*[ResBlock(w) for _ in range(b)])
                                     for w, b in zip(widths[:-1], blocks[:-1]))
        self.tail = nn.Conv2d(widths[0], channels, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # start as the identity: output = input
        nn.init.zeros_(self.tail.bias)
        self.film_widths = [widths[-1], *reversed(widths[:-1])]  # bottleneck, then decoder stages
        self.context: nn.Module | None = None
        if global_context:
            self.context = nn.Sequential(nn.Linear(widths[-1], widths[-1]), nn.ReLU(inplace=True),
                                         nn.Linear(widths[-1], 2 * sum(self.film_widths)))
            nn.init.zeros_(self.context[-1].weight)  # no modulation at the start
            nn.init.zeros_(self.context[-1].bias)

    def _encode(self, x: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected images (N, {self.channels}, H, W), got {tuple(x.shape)}")
        inp = x if cond is None else torch.cat([x, cond.to(x.dtype)], dim=1)
        if inp.shape[1] != self.channels + self.cond_channels:
            raise ValueError(f"expected {self.cond_channels} condition channels, got {inp.shape[1] - self.channels}")
        h = self.head(pad_to_multiple(inp, self.multiple))
        saved = []
        for blocks, down in zip(self.encoder, self.down):
            h = blocks(h)
            saved.append(h)
            h = down(h)
        return self.bottleneck(h), saved

    def bottleneck_features(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The bottleneck's features of ``x``, ``(N, widths[-1], H / multiple, W / multiple)``: what
        the global branch averages. :func:`~aebook.restoration.inference.apply_tiled` averages them
        over all the tiles of a large image first, so that every tile gets the whole image's
        statistics."""
        return self._encode(x, cond)[0]

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None,
                pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Restore ``x``. ``pooled`` (``(N, widths[-1])``, global branch only) replaces the mean of
        ``x``'s own bottleneck features: the statistics of a whole image when ``x`` is a tile of it."""
        h0, w0 = x.shape[-2:]
        h, saved = self._encode(x, cond)
        films: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.context is not None:  # one (scale, shift) per channel of each modulated stage
            mean = h.mean(dim=(2, 3)) if pooled is None else pooled.to(h.dtype)
            params = self.context(mean)[..., None, None].split(
                [w for w in self.film_widths for _ in range(2)], dim=1)
            films = list(zip(params[0::2], params[1::2]))
            h = h * (1 + films[0][0]) + films[0][1]
        for i, (up, blocks, skip) in enumerate(zip(reversed(self.up), reversed(self.decoder), reversed(saved)), 1):
            h = up(h)
            h = blocks(h + skip if self.skips else h)
            if films:
                h = h * (1 + films[i][0]) + films[i][1]
        return x + self.tail(h)[..., :h0, :w0]


#: The restorer architectures by the name their config records.
ARCHITECTURES: dict[str, type[nn.Module]] = {ResidualCNN.name: ResidualCNN, EncoderDecoder.name: EncoderDecoder}


def build_restorer(arch: str, channels: int, cond_channels: int, **options) -> nn.Module:
    """A new restorer of architecture ``arch`` (a key of :data:`ARCHITECTURES`).

    ``options`` are the architecture's own settings: ``depth``, ``width`` for ``residual_cnn``;
    ``widths``, ``blocks``, ``skips`` for ``encoder_decoder``.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown restorer architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](channels, cond_channels, **options)


def deepen(model: ResidualCNN, depth: int) -> ResidualCNN:
    """A deeper copy of ``model`` that computes exactly the same function (Net2DeeperNet).

    ``depth - model_depth`` new 3x3 convolutions are spread evenly between the hidden layers.
    Each starts as the identity (weight 1 at the centre tap of its own channel, 0 elsewhere,
    bias 0) and follows a ReLU, so its input is non-negative and the ReLU after it changes
    nothing: the deeper network starts where the shallower one ended, and training then uses
    the new layers (Chen, Goodfellow and Shlens, 2016, "Net2Net"). The way to give a trained
    restorer more capacity without starting again.
    """
    old = model.config["depth"]
    if depth < old:
        raise ValueError(f"cannot deepen a {old}-layer network to {depth} layers")
    out = ResidualCNN(model.channels, model.cond_channels, depth, model.config["width"])
    old_convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    new_convs = [m for m in out.body if isinstance(m, nn.Conv2d)]
    hidden, extra = old - 1, depth - old  # ReLUs after which a layer may go (all but the output); new layers
    after = [max(1, round((k + 1) * hidden / (extra + 1))) for k in range(extra)]  # 1-based old layer
    j = 0
    with torch.no_grad():
        for i, conv in enumerate(old_convs, start=1):
            new_convs[j].weight.copy_(conv.weight)
            new_convs[j].bias.copy_(conv.bias)
            j += 1
            for _ in range(after.count(i)):
                ident = new_convs[j]
                ident.weight.zero_()
                ident.bias.zero_()
                for c in range(ident.weight.shape[0]):
                    ident.weight[c, c, 1, 1] = 1.0
                j += 1
    assert j == len(new_convs)
    return out.train(model.training)


def add_condition_channels(model: nn.Module, cond_channels: int) -> nn.Module:
    """A copy of ``model`` that takes ``cond_channels`` condition channels (more than it has)
    and computes exactly the same function whatever they hold.

    The first convolution gets input channels whose weights are zero; training then learns to
    use them. The way to give a trained restorer a new condition map (e.g. the downscaling
    kernel of a super-resolution network) without starting again.
    """
    old = int(model.cond_channels)
    if cond_channels < old:
        raise ValueError(f"cannot drop condition channels: the model has {old}, asked for {cond_channels}")
    out = build_from_config({**model.config, "cond_channels": cond_channels})
    state = model.state_dict()
    first = "head.weight" if isinstance(model, EncoderDecoder) else "body.0.weight"
    weight = state[first]
    extra = weight.new_zeros(weight.shape[0], cond_channels - old, *weight.shape[2:])
    out.load_state_dict({**state, first: torch.cat([weight, extra], dim=1)})
    return out.train(model.training)


def receptive_field(model, channels: int | None = None, cond_channels: int | None = None,
                    size: int = 512) -> int:
    """The side of the square of input pixels that can change one output pixel of ``model``
    (its view), counted on a ``size x size`` input.

    Computed, not derived from a formula: in a copy of the network whose weights are all
    positive and whose biases are zero, no ReLU blocks anything and the network is linear, so a
    single bright pixel at the centre of a dark image lights exactly the outputs that see it:
    as far as the view reaches, on each side. A view as large as ``size`` means "at least
    ``size``". ``channels`` and ``cond_channels`` default to the model's own.
    """
    net = copy.deepcopy(model).float().eval()
    c = channels if channels is not None else model.channels
    k = cond_channels if cond_channels is not None else model.cond_channels
    x = torch.zeros(1, c, size, size)
    x[0, :, size // 2, size // 2] = 1.0
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.fill_(1.0 / p[0].numel() if p.ndim > 1 else 0.0)
        out = net(x, torch.zeros(1, k, size, size)) if k else net(x)
        lit = ((out - x)[0].abs().sum(0) > 0).cpu().numpy()  # the correction the restorer adds to x
    lit[size // 2, size // 2] = True
    rows, cols = np.flatnonzero(lit.any(1)), np.flatnonzero(lit.any(0))
    return int(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)


def describe_restorer(config: Mapping[str, object]) -> str:
    """What a restorer is, in words, from its config (``model.config`` of :class:`ResidualCNN` or
    :class:`EncoderDecoder`)."""
    kind = config.get("model")
    if kind == "residual_cnn":
        return (f"full-resolution residual CNN (DnCNN-style, no downsampling, no bottleneck): "
                f"{config['depth']} convolutions of {config['width']} channels")
    if kind == "encoder_decoder":
        widths, blocks = list(config["widths"]), list(config["blocks"])
        links = ("with skips (U-Net)" if config.get("skips", True)
                 else "without skips (an autoencoder: its correction passes the bottleneck)")
        glob = ", with a global branch (whole-image statistics)" if config.get("global_context") else ""
        return (f"encoder-decoder {links}: {len(widths)} scales down to 1/{2 ** (len(widths) - 1)}, "
                f"widths {'-'.join(map(str, widths))}, residual blocks {'-'.join(map(str, blocks))}{glob}")
    raise ValueError(f"not a restorer config: model {kind!r}")


def save_restorer(run_dir, model: nn.Module, task: str, losses: list[float] | None = None,
                  train_config: dict | None = None, storage: str = "float32"):
    """Save a trained restorer as a run folder (safetensors + config.json with SHA-256), atomically.

    ``storage`` is ``"float32"`` or ``"float16"`` (half the file; see :func:`aebook.checkpoint.save_run`).
    """
    make_task(task)  # validates the name
    return save_run(run_dir, model, {"train_loss": losses or []}, {"task": task, **(train_config or {})},  # type: ignore[arg-type]
                    storage=storage)


def build_from_config(cfg: dict, where: str | Path = "config.json") -> nn.Module:
    """An untrained restorer from a saved configuration (``cfg["model"]`` names the architecture),
    its sizes checked first (``where`` names the file in errors)."""
    if cfg["model"] == EncoderDecoder.name:
        check_sizes(cfg, where, channels=(1, 3), cond_channels=(0, 8), widths=(1, 1024), blocks=(0, 64))
        widths, blocks, skips = cfg["widths"], cfg["blocks"], cfg.get("skips")
        if not (isinstance(widths, list) and isinstance(blocks, list) and 2 <= len(widths) <= 6
                and len(blocks) == len(widths)):
            raise ValueError(f"{where}: widths and blocks must be lists of 2 to 6 integers of the same "
                             f"length, got {widths!r} and {blocks!r}")
        glob = cfg.get("global_context", False)
        if not isinstance(skips, bool) or not isinstance(glob, bool):
            raise ValueError(f"{where}: the model's skips and global_context must be true or false, "
                             f"got {skips!r} and {glob!r}")
        return EncoderDecoder(cfg["channels"], cfg["cond_channels"], widths, blocks, skips, glob)
    if cfg["model"] != ResidualCNN.name:
        raise ValueError(f"{where} describes a {cfg['model']!r} model, not a restorer")
    check_sizes(cfg, where, channels=(1, 3), cond_channels=(0, 8), depth=(2, 256), width=(1, 1024))
    return ResidualCNN(cfg["channels"], cfg["cond_channels"], cfg["depth"], cfg["width"])


def load_restorer(run_dir, device: torch.device | str = "cpu", *,
                  task: str | None = None) -> tuple[nn.Module, str, dict]:
    """Load a restorer saved by :func:`save_restorer`; returns ``(model, task, config)``.

    ``task``, when given, is the job the caller needs: a network trained for another task is
    refused with a ``ValueError`` that names both, so a denoiser is never used to upscale.

    Raises ``FileNotFoundError`` or ``ValueError`` (tampered, corrupted or another kind of model).
    """
    where = Path(run_dir) / "config.json"
    model, config = load_module(run_dir, lambda cfg: build_from_config(cfg, where), device)
    trained_for = config.get("train", {}).get("task")
    if trained_for not in TASKS:
        raise ValueError(f"{where} does not name a restoration task (got {trained_for!r})")
    if task is not None and trained_for != task:
        raise ValueError(f"{run_dir} is a restorer for {trained_for!r}, not for {task!r}")
    return model, trained_for, config  # type: ignore[return-value]
