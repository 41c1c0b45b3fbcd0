"""Autoencoders for images of any size and channel count (chapter 3.2).

Every model maps a batch ``x`` of shape ``(N, C, H, W)`` with values in
[0, 1] to a latent code ``z = encode(x)`` of shape ``(N, latent_dim)`` and
back, ``decode(z)``, to the input's shape. ``loss(inputs, targets)`` is the
training objective, so one training loop (:func:`aebook.train.fit`) serves
them all, and ``config`` holds what :func:`build_model` needs to rebuild the
model from a checkpoint.

The encoder is a learned network, not a fixed code: the article the book
follows says the encoder "generally uses Huffman coding", which confuses it
with the entropy coding of *quantised* latents (chapter 5.2, :mod:`aebook.codecs.entropy`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Shape = tuple[int, int, int]


class Autoencoder(nn.Module):
    """Base class: ``forward(x) = decode(encode(x))`` and a mean-squared-error loss."""

    name = "base"
    #: The peak learning rate :func:`aebook.train.fit` uses when its config names none.
    default_lr = 2e-3

    def __init__(self, shape: Shape, latent_dim: int, **options: Any) -> None:
        super().__init__()
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape must be (channels, height, width), got {shape}")
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        self.shape = tuple(int(s) for s in shape)
        self.latent_dim = int(latent_dim)
        self.config: dict[str, Any] = {"model": self.name, "shape": list(self.shape),
                                       "latent_dim": self.latent_dim, **options}

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the problem when ``x`` is not ``(N, *shape)``."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"{self.name} model expects images of shape (N, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean squared error between ``forward(inputs)`` and ``targets`` (default: the inputs).

        Returns the loss and a dict of detached statistics for the history.
        """
        targets = inputs if targets is None else targets
        mse = F.mse_loss(self(inputs).float(), targets.float())
        return mse, {"mse": mse.detach()}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Reconstruct ``x`` in eval mode, batch by batch, clipped to [0, 1]."""
        self.check_input(x)
        was_training = self.training
        self.eval()
        param = next(self.parameters())
        outs = [self(x[i : i + batch_size].to(param.device, param.dtype)).clamp(0, 1) for i in range(0, len(x), batch_size)]
        self.train(was_training)
        return torch.cat(outs).to(x.device)


class LinearAutoencoder(Autoencoder):
    """One linear layer each way, no nonlinearity: it learns PCA's subspace (chapter 2.1)."""

    name = "linear"

    def __init__(self, shape: Shape, latent_dim: int) -> None:
        super().__init__(shape, latent_dim)
        d = math.prod(self.shape)
        self.encoder = nn.Linear(d, latent_dim)
        self.decoder = nn.Linear(latent_dim, d)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.shape)


RECON_LOSSES = ("bce", "mse")


def logit(p: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]``."""
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def reconstruction_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Mean per-pixel reconstruction loss of decoder ``logits`` against ``targets`` in [0, 1].

    ``"bce"`` is binary cross-entropy computed from the logits (the textbook loss for
    [0, 1] pixels; soft targets are fine, its minimum is at ``sigmoid(logits) = targets``);
    its gradient at a logit is ``sigmoid(logit) - target``, which does not vanish when the
    sigmoid saturates. ``"mse"`` is the squared error of ``sigmoid(logits)``, whose gradient
    at a logit carries the factor ``sigmoid'(logit)`` and does vanish there: the cause of the
    blank-image collapse that chapter 3.2 measures.
    """
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float())
    if kind == "mse":
        return F.mse_loss(torch.sigmoid(logits.float()), targets.float())
    raise ValueError(f"unknown reconstruction loss {kind!r}: choose one of {', '.join(RECON_LOSSES)}")


class LogitAutoencoder(Autoencoder):
    """Base of the nonlinear autoencoders: the decoder network outputs logits.

    ``decode(z) = sigmoid(decode_logits(z))``. ``loss`` is :func:`reconstruction_loss` of the
    logits (binary cross-entropy by default), reported with the MSE of the images. The output
    layer's bias starts at the logit of the data's mean (:meth:`init_from_data`, called by
    :func:`aebook.train.fit` before the first step of a fresh model), so the first output is the
    mean intensity instead of 0.5.
    """

    @property
    def output_layer(self) -> nn.Module:
        """The decoder's last layer (a ``Linear`` or ``Conv2d``), whose bias :meth:`init_from_data` sets.

        A property, not an attribute: a module stored under a second name would appear twice
        in the state dict.
        """
        raise NotImplementedError
    #: BatchNorm lets these models train at a high rate (1e-2 gave +0.5 dB over 2e-3 on
    #: real digits in the same number of steps).
    default_lr = 1e-2

    def __init__(self, shape: Shape, latent_dim: int, recon: str = "bce", **options: Any) -> None:
        if recon not in RECON_LOSSES:
            raise ValueError(f"unknown reconstruction loss {recon!r}: choose one of {', '.join(RECON_LOSSES)}")
        super().__init__(shape, latent_dim, recon=recon, **options)
        self.recon = recon
        # set once the output bias has been started from data; saved with the weights, so a
        # loaded model that trains again is not reset
        self.register_buffer("data_initialised", torch.zeros((), dtype=torch.bool))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Start the output bias at the logit of the data's mean (per channel, or per pixel for MLPs).

        Does nothing if it was done before (``data_initialised``).
        """
        if bool(self.data_initialised):
            return
        bias = self.output_layer.bias
        x = x.float()
        mean = x.mean(dim=0).flatten() if bias.numel() == math.prod(self.shape) else x.mean(dim=(0, 2, 3))
        bias.copy_(logit(mean.to(bias.device)).to(bias.dtype))
        self.data_initialised.fill_(True)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:func:`reconstruction_loss` of ``decode_logits(encode(inputs))`` against ``targets``."""
        targets = inputs if targets is None else targets
        logits = self.decode_logits(self.encode(inputs))
        loss = reconstruction_loss(logits, targets, self.recon)
        mse = F.mse_loss(torch.sigmoid(logits.detach().float()), targets.float())
        return loss, {"mse": mse}


class MLPAutoencoder(LogitAutoencoder):
    """Fully-connected autoencoder: flatten, hidden layers with BatchNorm and ReLU, logits out."""

    name = "mlp"

    def __init__(self, shape: Shape, latent_dim: int, hidden: tuple[int, ...] = (512, 256), recon: str = "bce") -> None:
        super().__init__(shape, latent_dim, recon=recon, hidden=list(hidden))
        sizes = [math.prod(self.shape), *hidden]
        enc: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            enc += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        self.encoder = nn.Sequential(nn.Flatten(), *enc, nn.Linear(sizes[-1], latent_dim))
        dec: list[nn.Module] = []
        rev = [latent_dim, *reversed(hidden)]
        for a, b in zip(rev[:-1], rev[1:]):
            dec += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        self.decoder = nn.Sequential(*dec, nn.Linear(rev[-1], sizes[0]))

    @property
    def output_layer(self) -> nn.Module:
        return self.decoder[-1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.shape)


def down_sizes(size: int, max_stages: int = 2, min_size: int = 4) -> list[int]:
    """Spatial sizes after each stride-2 stage: 28 -> [28, 14, 7]; 32 -> [32, 16, 8]; 8 -> [8, 4]."""
    sizes = [size]
    while len(sizes) <= max_stages and sizes[-1] > min_size:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def conv_block(c_in: int, c_out: int, stride: int | tuple[int, int] = 1) -> nn.Sequential:
    """3x3 convolution, BatchNorm, GELU: the unit every stage of the encoder and decoder is made of.

    BatchNorm keeps each layer's outputs centred and scaled whatever the data's statistics
    (sparse digits are 80% zeros), so no unit starts dead or saturated.
    """
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.GELU())


class ConvEncoder(nn.Module):
    """Convolutions with stride 2 (``# HxW => H/2 x W/2``), then a linear map to the latent."""

    def __init__(self, shape: Shape, out_features: int, width: int = 32, blocks: int = 1) -> None:
        super().__init__()
        c, h, w = shape
        self.hs, self.ws = down_sizes(h), down_sizes(w)
        stages = max(len(self.hs), len(self.ws)) - 1
        self.hs += [self.hs[-1]] * (stages + 1 - len(self.hs))
        self.ws += [self.ws[-1]] * (stages + 1 - len(self.ws))
        self.channels = [width * 2**i for i in range(stages + 1)]
        layers: list[nn.Module] = [conv_block(c, self.channels[0])]
        for i in range(stages):
            sh = 2 if self.hs[i + 1] < self.hs[i] else 1
            sw = 2 if self.ws[i + 1] < self.ws[i] else 1
            layers += [conv_block(self.channels[i], self.channels[i + 1], (sh, sw))]
            layers += [conv_block(self.channels[i + 1], self.channels[i + 1]) for _ in range(blocks - 1)]
        self.body = nn.Sequential(*layers)
        self.flat = self.channels[-1] * self.hs[-1] * self.ws[-1]
        self.head = nn.Linear(self.flat, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1))


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: linear map, then upsample x2 + convolutions per stage, logits out."""

    def __init__(self, shape: Shape, latent_dim: int, width: int = 32, blocks: int = 1) -> None:
        super().__init__()
        mirror = ConvEncoder(shape, 1, width)  # reuse its size bookkeeping
        self.hs, self.ws, self.channels = mirror.hs, mirror.ws, mirror.channels
        self.fc = nn.Sequential(nn.Linear(latent_dim, mirror.flat), nn.BatchNorm1d(mirror.flat), nn.GELU())
        self.stages = nn.ModuleList(
            nn.Sequential(conv_block(self.channels[i + 1], self.channels[i]),
                          *(conv_block(self.channels[i], self.channels[i]) for _ in range(blocks - 1)))
            for i in reversed(range(len(self.channels) - 1))
        )
        self.out = nn.Conv2d(self.channels[0], shape[0], 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, self.channels[-1], self.hs[-1], self.ws[-1])
        n = len(self.stages)
        for j, stage in enumerate(self.stages):
            i = n - 1 - j  # target sizes go back up: hs[i]
            x = stage(F.interpolate(x, size=(self.hs[i], self.ws[i]), mode="nearest"))
        return self.out(x)  # logits; decode() applies the sigmoid


class ConvAutoencoder(LogitAutoencoder):
    """Convolutional autoencoder with a vector latent of size ``latent_dim``."""

    name = "conv"

    def __init__(self, shape: Shape, latent_dim: int, width: int = 16, blocks: int = 2, recon: str = "bce") -> None:
        super().__init__(shape, latent_dim, recon=recon, width=width, blocks=blocks)
        self.encoder = ConvEncoder(self.shape, latent_dim, width, blocks)
        self.decoder = ConvDecoder(self.shape, latent_dim, width, blocks)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @property
    def output_layer(self) -> nn.Module:
        return self.decoder.out


class ConvVAE(LogitAutoencoder):
    """Convolutional variational autoencoder (Kingma & Welling) with a Bernoulli decoder.

    ``loss`` is ``BCE(x, decoder(z)) + beta * KL(q(z|x) || N(0, I))`` per image in nats,
    with ``z = mu + sigma * eps`` (the reparameterisation trick). For binary images with
    ``beta = 1`` it is the negative ELBO; for gray values the per-pixel Bernoulli is not a
    normalised likelihood, so it is a reconstruction cost plus a KL penalty (chapter 4.1 uses
    a binomial likelihood for a true ELBO). ``beta > 1`` gives the beta-VAE. ``forward``
    decodes the mean ``mu`` (deterministic).
    """

    name = "vae"

    def __init__(self, shape: Shape, latent_dim: int, width: int = 16, blocks: int = 2, beta: float = 1.0,
                 recon: str = "bce") -> None:
        if recon != "bce":
            raise ValueError(f"the VAE's decoder is a Bernoulli: recon must be 'bce', got {recon!r}")
        super().__init__(shape, latent_dim, recon=recon, width=width, blocks=blocks, beta=beta)
        self.beta = float(beta)
        self.encoder = ConvEncoder(self.shape, 2 * latent_dim, width, blocks)
        self.decoder = ConvDecoder(self.shape, latent_dim, width, blocks)

    def encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_stats(x)[0]

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @property
    def output_layer(self) -> nn.Module:
        return self.decoder.out

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        targets = inputs if targets is None else targets
        mu, logvar = self.encode_stats(inputs)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.decoder(z).float()
        rec = F.binary_cross_entropy_with_logits(logits, targets.float(), reduction="sum") / len(inputs)
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).float().sum()) / len(inputs)
        return rec + self.beta * kl, {"recon": rec.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` draws from the prior N(0, I)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return self.decode(z)


_MODELS: dict[str, type[Autoencoder]] = {m.name: m for m in (LinearAutoencoder, MLPAutoencoder, ConvAutoencoder, ConvVAE)}
MODEL_NAMES = tuple(_MODELS)


def check_model_name(name: str) -> None:
    """Raise ``ValueError`` naming the choices when ``name`` is not a model of :func:`build_model`."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}")


def build_model(name: str, shape: Shape, latent_dim: int, **options: Any) -> Autoencoder:
    """Build a model by name: ``linear``, ``mlp``, ``conv`` or ``vae``.

    ``options`` are the model's own keyword arguments (``width``, ``hidden``,
    ``beta``); ``build_model(**model.config)``-style rebuilding is what
    :func:`aebook.checkpoint.load_run` does.
    """
    check_model_name(name)
    try:
        return _MODELS[name](tuple(shape), latent_dim, **options)
    except TypeError as err:
        raise ValueError(f"bad options for model {name!r}: {err}") from None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
