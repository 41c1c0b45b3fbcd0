"""VQ-VAE with an autoregressive PixelCNN prior over its code grid (chapter 4.2).

- :class:`VectorQuantizer`: nearest-neighbour quantisation of each vector of an
  encoder's output grid against a codebook of ``codes`` vectors, with the
  straight-through estimator (the decoder's gradient is copied to the
  encoder), a commitment loss, codebook updates by exponential moving
  averages (EMA; van den Oord et al. 2017, appendix) and restarts of dead codes.
- :class:`VQVAE`: convolutional encoder to a grid (28x28 -> 7x7), quantiser, decoder.
- :class:`PixelCNN`: a gated PixelCNN (van den Oord et al. 2016) over the grid of
  code indices, with vertical and horizontal masked-convolution stacks (no blind
  spot); its cross-entropy is the number of bits an entropy coder needs per image.
- :class:`VQGenerator`: both stages as one module (one run folder).

Every module exposes ``loss(inputs, targets) -> (loss, stats)`` and
``check_input``, so :func:`aebook.train.fit` trains both stages.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aebook.models import Shape, logit
from aebook.train import History, TrainConfig, fit


# ---------------------------------------------------------------- quantiser
class VectorQuantizer(nn.Module):
    """Quantise vectors ``(N, dim, H, W)`` to their nearest codebook entries.

    The codebook is not trained by gradient: each training step moves every
    code to the exponential moving average of the encoder vectors assigned to it
    (``decay``), with Laplace smoothing of the counts. A code whose average
    count falls below ``restart_below`` vectors per step is *dead* and restarts
    at a random encoder vector of the current batch. The codebook starts from
    random encoder vectors of the first training batch.
    """

    def __init__(self, codes: int = 256, dim: int = 16, beta: float = 0.25, decay: float = 0.99,
                 restart_below: float = 0.5, eps: float = 1e-5) -> None:
        super().__init__()
        if codes < 2 or dim < 1 or not 0 < decay < 1 or beta < 0:
            raise ValueError(f"invalid quantiser: codes={codes}, dim={dim}, decay={decay}, beta={beta}")
        self.codes, self.dim, self.beta, self.decay = int(codes), int(dim), float(beta), float(decay)
        self.restart_below, self.eps = float(restart_below), float(eps)
        self.register_buffer("codebook", torch.randn(codes, dim))
        self.register_buffer("ema_count", torch.ones(codes))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean distance) for each row of ``flat`` ``(M, dim)``."""
        cb = self.codebook
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ cb.T + cb.pow(2).sum(1)[None]
        return d.argmin(1)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor, gen: torch.Generator | None = None) -> int:
        if not bool(self.initialised):
            pick = torch.randint(len(flat), (self.codes,), device=flat.device)
            self.codebook.copy_(flat[pick])
            self.ema_sum.copy_(self.codebook)
            self.ema_count.fill_(1.0)
            self.initialised.fill_(True)
            return 0
        onehot = F.one_hot(idx, self.codes).type_as(flat)
        self.ema_count.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(onehot.T @ flat, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.codes * self.eps) * n
        self.codebook.copy_(self.ema_sum / smoothed[:, None])
        dead = self.ema_count < self.restart_below
        n_dead = int(dead.sum())
        if n_dead:
            pick = torch.randint(len(flat), (n_dead,), device=flat.device)
            self.codebook[dead] = flat[pick]
            self.ema_sum[dead] = flat[pick]
            self.ema_count[dead] = 1.0
        return n_dead

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Quantise ``z`` ``(N, dim, H, W)``.

        Returns ``(z_q, indices, stats)``: ``z_q`` has ``z``'s shape and passes the
        gradient straight through to ``z``; ``indices`` is ``(N, H, W)``; ``stats``
        holds the ``commitment`` loss (mean of ``|z - sg(z_q)|^2``, already weighted by
        ``beta`` in ``loss``), the batch's code ``perplexity`` and the number of ``restarts``.
        """
        n, d, h, w = z.shape
        if d != self.dim:
            raise ValueError(f"quantiser of dimension {self.dim} got vectors of dimension {d}")
        flat = z.float().permute(0, 2, 3, 1).reshape(-1, d)
        idx = self.nearest(flat)
        restarts = self._ema_update(flat.detach(), idx) if self.training else 0
        if self.training:
            idx = self.nearest(flat)  # against the updated codebook
        q = self.codebook[idx]
        commitment = F.mse_loss(flat, q.detach())
        q = flat + (q - flat).detach()  # straight-through: forward q, backward identity
        probs = torch.bincount(idx, minlength=self.codes).float() / len(idx)
        perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum())
        z_q = q.view(n, h, w, d).permute(0, 3, 1, 2).contiguous()
        stats = {"commitment": commitment, "perplexity": perplexity.detach(),
                 "restarts": torch.tensor(float(restarts), device=z.device)}
        return z_q, idx.view(n, h, w), stats

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors ``(N, dim, H, W)`` of an index grid ``(N, H, W)``."""
        return self.codebook[indices].permute(0, 3, 1, 2).contiguous()


def perplexity(indices: torch.Tensor, codes: int) -> float:
    """``exp`` of the entropy (nats) of the code usage in ``indices``: the number of equally used codes it equals."""
    probs = torch.bincount(indices.flatten().cpu(), minlength=codes).double()
    probs = probs / probs.sum()
    return float(torch.exp(-(probs[probs > 0] * probs[probs > 0].log()).sum()))


# ---------------------------------------------------------------- VQ-VAE
class ResBlock(nn.Module):
    """``x + Conv1x1(GELU(BatchNorm(Conv3x3(GELU(x)))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.GELU(), nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VQVAE(nn.Module):
    """Convolutional VQ-VAE: ``# HxW => H/4 x W/4`` grid of ``dim``-vectors, each one of ``codes`` codebook entries.

    ``loss`` is the binary cross-entropy of the decoder's logits (mean per pixel)
    plus ``beta`` times the commitment loss; ``decode`` applies a sigmoid. BatchNorm
    in both halves, and an output bias started at the logit of the data's mean
    (:meth:`init_from_data`, called by :func:`aebook.train.fit`), make it learn
    in a few hundred steps, as :mod:`aebook.models`' autoencoders do.
    """

    name = "vq-autoencoder"
    #: Peak learning rate of :func:`aebook.train.fit` (and so of the CLI): BatchNorm in both halves
    #: lets it train at the rate of the library's other BatchNorm models (on 1,500 real digits,
    #: 3 epochs: 1e-2 gave +1.2 dB PSNR and +0.07 SSIM over 2e-3).
    default_lr = 1e-2

    def __init__(self, shape: Shape, codes: int = 256, dim: int = 16, width: int = 32, beta: float = 0.25,
                 decay: float = 0.99) -> None:
        super().__init__()
        c, h, w = (int(s) for s in shape)
        if h % 4 or w % 4:
            raise ValueError(f"VQVAE needs a height and width divisible by 4, got {h}x{w}")
        self.shape = (c, h, w)
        self.grid = (h // 4, w // 4)
        self.config: dict[str, Any] = {"model": self.name, "shape": list(self.shape), "codes": codes, "dim": dim,
                                       "width": width, "beta": beta, "decay": decay}
        self.encoder = nn.Sequential(
            nn.Conv2d(c, width, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.GELU(),  # => H/2 x W/2
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width),  # => H/4 x W/4
            ResBlock(2 * width), ResBlock(2 * width), nn.GELU(), nn.Conv2d(2 * width, dim, 1))
        self.quantizer = VectorQuantizer(codes, dim, beta, decay)
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width),
            ResBlock(2 * width), ResBlock(2 * width), nn.GELU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.GELU(),
            nn.ConvTranspose2d(width, c, 4, stride=2, padding=1))                                   # => H x W (logits)
        self.register_buffer("data_initialised", torch.zeros((), dtype=torch.bool))

    @property
    def output_layer(self) -> nn.Module:
        """The decoder's last layer, whose bias :meth:`init_from_data` sets."""
        return self.decoder[-1]

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Start the output bias at the logit of the data's mean per channel (once: ``data_initialised``)."""
        if bool(self.data_initialised):
            return
        mean = x.float().mean(dim=(0, 2, 3))
        self.output_layer.bias.copy_(logit(mean.to(self.output_layer.bias.device)))
        self.data_initialised.fill_(True)

    @property
    def codes(self) -> int:
        return self.quantizer.codes

    def bits_per_image(self) -> float:
        """Raw size of one image's code grid, ``H/4 * W/4 * log2(codes)`` bits (no entropy coding)."""
        return self.grid[0] * self.grid[1] * math.log2(self.codes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the problem when ``x`` is not ``(N, *shape)``."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"VQVAE expects images of shape (N, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")

    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices ``(N, H/4, W/4)`` of images ``x`` (no codebook update outside training)."""
        return self.quantizer(self.encoder(x))[1]

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from a grid of code indices."""
        return torch.sigmoid(self.decoder(self.quantizer.lookup(indices)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.quantizer(self.encoder(x))[0]))

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        targets = inputs if targets is None else targets
        z_q, _, stats = self.quantizer(self.encoder(inputs))
        rec = F.binary_cross_entropy_with_logits(self.decoder(z_q).float(), targets.float())
        loss = rec + self.quantizer.beta * stats["commitment"]
        return loss, {"recon": rec.detach(), "commitment": stats["commitment"].detach(),
                      "perplexity": stats["perplexity"], "restarts": stats["restarts"]}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Reconstruct ``x`` in eval mode, batch by batch (on ``x``'s device)."""
        self.check_input(x)
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        out = torch.cat([self(x[i : i + batch_size].to(dev)).float() for i in range(0, len(x), batch_size)])
        self.train(was)
        return out.to(x.device)

    @torch.no_grad()
    def indices(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Code grids of ``x`` in eval mode, batch by batch, on the CPU (``torch.long``)."""
        self.check_input(x)
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        out = torch.cat([self.encode_indices(x[i : i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)])
        self.train(was)
        return out


# ---------------------------------------------------------------- PixelCNN prior
def causal_mask(kernel: int, stack: str, include_centre: bool) -> torch.Tensor:
    """0/1 mask of a ``stack`` (``"vertical"``: ``kernel x kernel``; ``"horizontal"``: ``1 x kernel``) convolution.

    The vertical stack sees the rows above (and, when ``include_centre``, its own row);
    the horizontal stack sees the pixels to the left (and, when ``include_centre``, itself).
    The first layer excludes the centre, so no output ever sees its own input.
    """
    c = kernel // 2
    if stack == "vertical":
        mask = torch.ones(kernel, kernel)
        mask[c + (1 if include_centre else 0) :] = 0
    elif stack == "horizontal":
        mask = torch.ones(1, kernel)
        mask[0, c + (1 if include_centre else 0) :] = 0
    else:
        raise ValueError(f"unknown stack {stack!r}: choose vertical or horizontal")
    return mask


class MaskedConv2d(nn.Conv2d):
    """A 2-D convolution whose kernel is multiplied by a fixed 0/1 ``mask`` (``(kh, kw)``), same-size output."""

    def __init__(self, c_in: int, c_out: int, mask: torch.Tensor) -> None:
        kh, kw = mask.shape
        super().__init__(c_in, c_out, (kh, kw), padding=(kh // 2, kw // 2))
        self.register_buffer("mask", mask[None, None].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def _gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated PixelCNN layer: vertical stack, horizontal stack fed by the vertical one, residual on the horizontal."""

    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.v = MaskedConv2d(channels, 2 * channels, causal_mask(kernel, "vertical", True))
        self.h = MaskedConv2d(channels, 2 * channels, causal_mask(kernel, "horizontal", True))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_feat = self.v(v)
        h_feat = self.h(h) + self.v_to_h(v_feat)
        return _gate(v_feat), h + self.h_out(_gate(h_feat))


class PixelCNN(nn.Module):
    """Autoregressive prior over grids ``(N, H, W)`` of code indices in raster order (rows, then columns).

    ``forward`` gives logits ``(N, codes, H, W)``; the logits at a position depend only on
    the indices before it. ``loss`` is the cross-entropy in nats per position.
    """

    name = "pixelcnn"

    def __init__(self, codes: int, grid: tuple[int, int], channels: int = 48, layers: int = 5, kernel: int = 3) -> None:
        super().__init__()
        if codes < 2 or layers < 0 or kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"invalid PixelCNN: codes={codes}, layers={layers}, kernel={kernel} (odd, >= 3)")
        self.codes, self.grid = int(codes), (int(grid[0]), int(grid[1]))
        self.config: dict[str, Any] = {"codes": self.codes, "grid": list(self.grid), "channels": channels,
                                       "layers": layers, "kernel": kernel}
        self.embed = nn.Embedding(codes, channels)
        self.v0 = MaskedConv2d(channels, channels, causal_mask(kernel, "vertical", False))
        self.h0 = MaskedConv2d(channels, channels, causal_mask(kernel, "horizontal", False))
        self.v0_to_h = nn.Conv2d(channels, channels, 1)
        self.layers = nn.ModuleList(GatedLayer(channels, kernel) for _ in range(layers))
        self.out = nn.Sequential(nn.GELU(), nn.Conv2d(channels, channels, 1), nn.GELU(), nn.Conv2d(channels, codes, 1))

    def check_input(self, idx: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``idx`` is an integer grid ``(N, *grid)`` of valid codes."""
        if idx.ndim != 3 or tuple(idx.shape[1:]) != self.grid or idx.is_floating_point():
            raise ValueError(f"PixelCNN expects integer code grids (N, {self.grid[0]}, {self.grid[1]}), "
                             f"got {tuple(idx.shape)} {idx.dtype}")
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= self.codes):
            raise ValueError(f"code indices must lie in [0, {self.codes}), got [{int(idx.min())}, {int(idx.max())}]")

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx).permute(0, 3, 1, 2)
        v, h = self.v0(x), self.h0(x)
        h = h + self.v0_to_h(v)
        v, h = F.gelu(v), F.gelu(h)
        for layer in self.layers:
            v, h = layer(v, h)
        return self.out(h)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce = F.cross_entropy(self(inputs).float(), inputs)
        bits = ce.detach() * inputs[0].numel() / math.log(2)
        return ce, {"bits_per_image": bits}

    @torch.no_grad()
    def bits_per_image(self, idx: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Code length ``-log2 p(grid)`` of each grid in ``idx``, in bits (``(N,)``, on the CPU)."""
        self.check_input(idx)
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        out = []
        for i in range(0, len(idx), batch_size):
            b = idx[i : i + batch_size].to(dev)
            nats = F.cross_entropy(self(b).float(), b, reduction="none").flatten(1).sum(1)
            out.append(nats.cpu() / math.log(2))
        self.train(was)
        return torch.cat(out)

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = 0, temperature: float = 1.0) -> torch.Tensor:
        """Draw ``n`` grids position by position in raster order (one network call per position).

        A CPU generator seeded with ``seed`` draws the codes, so a seed fixes the grids;
        ``temperature`` divides the logits (below 1: safer, less varied samples).
        """
        if n < 1 or temperature <= 0:
            raise ValueError(f"need n >= 1 and temperature > 0, got n={n}, temperature={temperature}")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        grid = torch.zeros(n, *self.grid, dtype=torch.long, device=dev)
        for r in range(self.grid[0]):
            for c in range(self.grid[1]):
                # rows below r cannot reach row r (the masks look up and left): leave them out
                logits = self(grid[:, : r + 1])[:, :, r, c].float().cpu() / temperature
                grid[:, r, c] = torch.multinomial(torch.softmax(logits, 1), 1, generator=gen)[:, 0].to(dev)
        self.train(was)
        return grid.cpu()


# ---------------------------------------------------------------- both stages
class VQGenerator(nn.Module):
    """:class:`VQVAE` + :class:`PixelCNN` over its codes, as one module (one run folder)."""

    name = "vqvae"

    def __init__(self, vqvae: VQVAE, prior: PixelCNN) -> None:
        super().__init__()
        if prior.codes != vqvae.codes or prior.grid != vqvae.grid:
            raise ValueError(f"prior over {prior.codes} codes on {prior.grid} does not fit a VQVAE with "
                             f"{vqvae.codes} codes on {vqvae.grid}")
        self.vqvae, self.prior, self.shape = vqvae, prior, vqvae.shape
        self.config: dict[str, Any] = {"model": self.name, "shape": list(self.shape), "autoencoder": vqvae.config,
                                       "prior": prior.config}

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = 0, temperature: float = 1.0, batch_size: int = 1024) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` in [0, 1] on the CPU: code grids from the PixelCNN, decoded."""
        grids = torch.cat([self.prior.sample(min(batch_size, n - i), seed=None if seed is None else seed + i,
                                             temperature=temperature) for i in range(0, n, batch_size)])
        dev = next(self.parameters()).device
        was = self.vqvae.training
        self.vqvae.eval()
        out = torch.cat([self.vqvae.decode_indices(grids[i : i + batch_size].to(dev)).float().cpu()
                         for i in range(0, n, batch_size)])
        self.vqvae.train(was)
        return out.clamp(0, 1)


def build_vq_generator(config: dict[str, Any]) -> VQGenerator:
    """Rebuild an untrained :class:`VQGenerator` from its ``config`` (what a run folder stores)."""
    ae = {k: v for k, v in config["autoencoder"].items() if k != "model"}
    pr = dict(config["prior"])
    pr["grid"] = tuple(pr["grid"])
    return VQGenerator(VQVAE(tuple(ae.pop("shape")), **ae), PixelCNN(**pr))


def train_vq_generator(train: torch.Tensor, epochs: int = 10, prior_epochs: int | None = None, codes: int = 256,
                       dim: int = 16, width: int = 32, channels: int = 48, layers: int = 5,
                       config: TrainConfig | None = None, prior_config: TrainConfig | None = None,
                       val: torch.Tensor | None = None) -> tuple[VQGenerator, dict[str, History]]:
    """Train the VQ-VAE on ``train`` images for ``epochs``, then the PixelCNN on their code grids.

    ``prior_epochs`` defaults to ``epochs``. ``config``/``prior_config`` are the
    :class:`aebook.train.TrainConfig` of each stage (their ``epochs`` are overridden).
    Returns the generator and ``{"autoencoder": History, "prior": History}``.
    """
    base = config or TrainConfig()
    vq = VQVAE(tuple(train.shape[1:]), codes=codes, dim=dim, width=width)
    vq_history = fit(vq, train, TrainConfig(**{**base.__dict__, "epochs": epochs}), val=val)
    grids = vq.indices(train)
    prior = PixelCNN(codes, vq.grid, channels=channels, layers=layers)
    pbase = prior_config or TrainConfig(batch_size=32, lr=3e-3, seed=base.seed, device=base.device,
                                        progress=base.progress)
    p_epochs = epochs if prior_epochs is None else prior_epochs
    prior_history = fit(prior, grids, TrainConfig(**{**pbase.__dict__, "epochs": p_epochs}),
                        val=vq.indices(val) if val is not None else None)
    return VQGenerator(vq, prior).eval(), {"autoencoder": vq_history, "prior": prior_history}
