"""Latent diffusion: a flow-matching model of an autoencoder's codes (chapter 4.2).

A two-stage generator: an autoencoder (:func:`aebook.models.build_model`,
trained by :func:`aebook.train.fit`) compresses 28x28 digits into codes of a
few dozen numbers, and a second model learns to *sample* that code space; its
samples go through the autoencoder's decoder.

The second model here is **flow matching** (rectified flow; Lipman et al.
2023, Liu et al. 2023): draw a code ``x0``, noise ``eps ~ N(0, I)`` and a time
``t ~ U(0, 1)``, form ``x_t = (1 - t) x0 + t eps`` and regress the velocity
``eps - x0`` with a small network ``v(x_t, t)``. Sampling integrates
``dx/dt = v(x, t)`` from pure noise at ``t = 1`` back to ``t = 0`` in a few
dozen Heun (or Euler) steps: a deterministic ODE, the same kind of sampler
as DDIM is for DDPM, with no noise schedule to choose.

Codes are standardised before the flow sees them (:class:`FlowPrior` keeps
their mean and standard deviation as buffers): the noise end of the path is
``N(0, I)``, and codes of another scale would make the path start (or end)
somewhere the network was never trained well.

Views for chapter 4.2: :func:`codes_figure` (the codes' scale), :func:`steps_figure` (quality
against sampler steps), :func:`decode_path` with :func:`path_figure` and :func:`path_explorer`
(the sampler's states, decoded).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aebook.models import Autoencoder, Shape, build_model
from aebook.plots import show_image
from aebook.train import History, TrainConfig, fit

SOLVERS = ("euler", "heun")
#: Default epochs of the flow prior per epoch of the autoencoder (see :func:`train_latent_diffusion`).
#: On 32-number codes of 4,000 real digits, 400 epochs instead of 200 lowered the flow's loss
#: (1.211 to 1.172) and its samples' Fréchet distance (8.9 to 8.4), level with the decoded
#: training codes (8.3): a pass over the codes costs little next to a pass over the images.
PRIOR_EPOCHS_PER_EPOCH = 40
#: Default code size of the autoencoder (stage 1). No prior draws better images than the autoencoder
#: reconstructs, so the codes are sized for reconstruction: on 4,000 real digits (10 epochs), the
#: Fréchet distance of decoded training codes to held-out digits fell from 17.1 with 16 numbers
#: to 8.3 with 32 (6.9 with 64), and that of the samples of a 200-epoch flow from 18.7 to 10.1
#: (10.3 with 64: larger codes are harder to model). ``benchmarks/generation_fd.py`` measures it.
LATENT_DIM = 32


def time_embedding(t: torch.Tensor, dim: int, max_period: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of times ``t`` (shape ``(N,)``, in [0, 1]) as ``(N, dim)``: the Transformer's positions.

    Frequencies go geometrically from 1 to ``1 / max_period`` (on ``1000 t``), so both
    coarse and fine differences in ``t`` are visible to the network.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"time embedding size must be even and >= 2, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResidualBlock(nn.Module):
    """``h + W2 SiLU(W1 LayerNorm(h) + E(t))``: one fully connected residual block told the time."""

    def __init__(self, hidden: int, time_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.time = nn.Linear(time_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(F.silu(self.fc1(self.norm(h)) + self.time(temb)))


class VelocityMLP(nn.Module):
    """The velocity network ``v(x, t)`` for vector codes: residual MLP blocks, each given the time embedding."""

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, time_dim: int = 64) -> None:
        super().__init__()
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU())
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(ResidualBlock(hidden, time_dim) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.out[-1].weight)  # starts as v = 0: no wild first steps
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time_mlp(time_embedding(t, self.time_dim))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(h)


class FlowPrior(nn.Module):
    """A flow-matching model of vector codes ``(N, dim)``, trained by :func:`aebook.train.fit`.

    ``loss(codes)`` is the flow-matching regression (mean squared velocity
    error) on standardised codes; :meth:`set_scaling` stores the codes' mean and
    standard deviation first (``scale=False`` keeps the codes as they are, the
    chapter's ablation). :meth:`sample` returns codes on the original scale.
    """

    name = "flow"

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, time_dim: int = 64) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 0:
            raise ValueError(f"invalid flow prior: dim={dim}, hidden={hidden}, depth={depth}")
        self.dim = int(dim)
        self.config: dict[str, Any] = {"dim": self.dim, "hidden": hidden, "depth": depth, "time_dim": time_dim}
        self.net = VelocityMLP(dim, hidden, depth, time_dim)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def check_input(self, z: torch.Tensor) -> None:
        """Raise ``ValueError`` when ``z`` is not a batch of codes ``(N, dim)``."""
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"flow prior expects codes of shape (N, {self.dim}), got {tuple(z.shape)}")

    @torch.no_grad()
    def set_scaling(self, codes: torch.Tensor, scale: bool = True) -> None:
        """Standardise with the per-dimension mean and standard deviation of ``codes`` (or not, ``scale=False``)."""
        self.check_input(codes)
        if scale:
            self.mean.copy_(codes.float().mean(0))
            self.std.copy_(codes.float().std(0).clamp_min(1e-6))
        else:
            self.mean.zero_()
            self.std.fill_(1.0)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Flow-matching loss ``|v(x_t, t) - (eps - x0)|^2`` averaged over the batch and dimensions."""
        x0 = (inputs.float() - self.mean) / self.std
        eps = torch.randn_like(x0)
        t = torch.rand(len(x0), device=x0.device)
        xt = (1 - t[:, None]) * x0 + t[:, None] * eps
        mse = F.mse_loss(self.net(xt, t).float(), eps - x0)
        return mse, {"velocity_mse": mse.detach()}

    @torch.no_grad()
    def sample(self, n: int, steps: int = 32, seed: int | None = 0, solver: str = "heun",
               return_path: bool = False, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``n`` codes ``(n, dim)`` by integrating the flow from noise (``t = 1``) to codes (``t = 0``).

        ``solver`` is ``"euler"`` (one network call per step) or ``"heun"`` (two; second order,
        the last step is Euler). The start noise comes from a CPU generator seeded with ``seed``
        (or is given as ``noise``), so a seed fixes the samples. With ``return_path`` the result
        is ``(steps + 1, n, dim)``: every intermediate state, noise first.
        """
        if n < 1 or steps < 1:
            raise ValueError(f"need n >= 1 and steps >= 1, got n={n}, steps={steps}")
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}: choose {' or '.join(SOLVERS)}")
        device = self.mean.device
        if noise is None:
            gen = torch.Generator().manual_seed(seed) if seed is not None else None
            noise = torch.randn(n, self.dim, generator=gen)
        x = noise.to(device).float()
        was = self.training
        self.eval()
        ts = torch.linspace(1.0, 0.0, steps + 1, device=device)
        path = [x]
        for i in range(steps):
            t, t_next = ts[i], ts[i + 1]
            v = self.net(x, t.expand(n))
            x_next = x + (t_next - t) * v
            if solver == "heun" and i < steps - 1:
                v_next = self.net(x_next, t_next.expand(n))
                x_next = x + (t_next - t) * 0.5 * (v + v_next)
            x = x_next
            path.append(x)
        self.train(was)
        out = torch.stack(path) if return_path else x
        return out * self.std + self.mean


class LatentDiffusion(nn.Module):
    """Autoencoder + :class:`FlowPrior` on its codes: one module, saved as one run folder.

    ``config`` records both stages (``build_latent_diffusion(config)`` rebuilds it);
    :meth:`sample` decodes the prior's codes into images in [0, 1].
    """

    name = "latent-diffusion"

    def __init__(self, autoencoder: Autoencoder, prior: FlowPrior) -> None:
        super().__init__()
        if prior.dim != autoencoder.latent_dim:
            raise ValueError(f"prior of size {prior.dim} for an autoencoder with latent_dim {autoencoder.latent_dim}")
        self.autoencoder = autoencoder
        self.prior = prior
        self.shape = autoencoder.shape
        self.config: dict[str, Any] = {"model": self.name, "shape": list(self.shape),
                                       "autoencoder": autoencoder.config, "prior": prior.config}

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = 0, steps: int = 32, solver: str = "heun",
               batch_size: int = 1024) -> torch.Tensor:
        """``n`` images ``(n, C, H, W)`` in [0, 1] on the CPU: codes from the flow, decoded."""
        z = self.prior.sample(n, steps=steps, seed=seed, solver=solver)
        return decode_codes(self.autoencoder, z, batch_size)


@torch.no_grad()
def decode_codes(autoencoder: Autoencoder, z: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Decode codes ``(N, d)`` in eval mode, batch by batch, into images on the CPU clipped to [0, 1]."""
    was = autoencoder.training
    autoencoder.eval()
    device = next(autoencoder.parameters()).device
    out = torch.cat([autoencoder.decode(z[i : i + batch_size].to(device)).float().clamp(0, 1).cpu()
                     for i in range(0, len(z), batch_size)])
    autoencoder.train(was)
    return out


def build_latent_diffusion(config: dict[str, Any]) -> LatentDiffusion:
    """Rebuild an untrained :class:`LatentDiffusion` from its ``config`` (what a run folder stores)."""
    ae = dict(config["autoencoder"])
    name, shape, latent = ae.pop("model"), tuple(ae.pop("shape")), ae.pop("latent_dim")
    if "hidden" in ae:
        ae["hidden"] = tuple(ae["hidden"])
    return LatentDiffusion(build_model(name, shape, latent, **ae), FlowPrior(**config["prior"]))


@torch.no_grad()
def encode_codes(autoencoder: Autoencoder, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Codes of images ``x`` in eval mode on the autoencoder's device (a VAE gives its posterior means)."""
    autoencoder.check_input(x)
    was = autoencoder.training
    autoencoder.eval()
    device = next(autoencoder.parameters()).device
    out = torch.cat([autoencoder.encode(x[i : i + batch_size].to(device)).float() for i in range(0, len(x), batch_size)])
    autoencoder.train(was)
    return out


def train_latent_diffusion(train: torch.Tensor, latent_dim: int = LATENT_DIM, epochs: int = 10, prior_epochs: int | None = None,
                           autoencoder: str = "conv", ae_options: dict[str, Any] | None = None,
                           hidden: int = 256, depth: int = 3,
                           scale: bool = True, config: TrainConfig | None = None,
                           prior_config: TrainConfig | None = None,
                           val: torch.Tensor | None = None) -> tuple[LatentDiffusion, dict[str, History]]:
    """Train both stages: the autoencoder on ``train`` images, then the flow prior on their codes.

    Returns the generator and a dict of the two stages' histories (keys ``autoencoder`` and ``prior``).

    Parameters
    ----------
    train, val
        Images ``(N, C, H, W)`` in [0, 1].
    latent_dim
        Code size of the autoencoder (default :data:`LATENT_DIM`).
    epochs
        Epochs of the autoencoder (stage 1).
    prior_epochs
        Epochs of the flow prior over the codes (stage 2); default ``PRIOR_EPOCHS_PER_EPOCH * epochs``:
        a pass over a few thousand codes through a small MLP costs a tiny fraction of a pass
        of images through the autoencoder, and the flow needs many more steps to converge.
    autoencoder, ae_options
        ``"conv"`` (deterministic codes) or ``"vae"`` (posterior means), and its keyword
        arguments for :func:`aebook.models.build_model` (``width``, ``blocks``, ``beta``;
        default: the library's own).
    scale
        Standardise the codes before the flow (the default); ``False`` is the chapter's ablation.
    config, prior_config
        :class:`aebook.train.TrainConfig` of each stage (their ``epochs`` are overridden).
    """
    if prior_epochs is None:
        prior_epochs = PRIOR_EPOCHS_PER_EPOCH * epochs
    base = config or TrainConfig()
    ae_config = TrainConfig(**{**base.__dict__, "epochs": epochs})
    ae = build_model(autoencoder, tuple(train.shape[1:]), latent_dim, **(ae_options or {}))
    ae_history = fit(ae, train, ae_config, val=val)
    codes = encode_codes(ae, train)
    prior = FlowPrior(latent_dim, hidden=hidden, depth=depth)
    prior.set_scaling(codes, scale=scale)
    pbase = prior_config or TrainConfig(batch_size=256, lr=1e-3, seed=base.seed, device=base.device,
                                        progress=base.progress)
    p_config = TrainConfig(**{**pbase.__dict__, "epochs": prior_epochs})
    p_val = encode_codes(ae, val) if val is not None else None
    prior_history = fit(prior, codes, p_config, val=p_val)
    return LatentDiffusion(ae, prior).eval(), {"autoencoder": ae_history, "prior": prior_history}


def latent_statistics(codes: torch.Tensor) -> dict[str, float]:
    """Scale of a set of codes ``(N, d)``: per-dimension standard deviations and the overall norm.

    Returns ``std_min``, ``std_max``, ``std_mean`` (over dimensions), ``mean_abs`` (largest
    absolute mean of a dimension) and ``rms_norm`` (root-mean-square code norm over ``sqrt(d)``:
    1 for codes shaped like ``N(0, I)``).
    """
    if codes.ndim != 2 or len(codes) < 2:
        raise ValueError(f"expected codes of shape (N >= 2, d), got {tuple(codes.shape)}")
    c = codes.double()
    std = c.std(0)
    return {"std_min": float(std.min()), "std_max": float(std.max()), "std_mean": float(std.mean()),
            "mean_abs": float(c.mean(0).abs().max()),
            "rms_norm": float(c.pow(2).sum(1).mean().sqrt() / math.sqrt(c.shape[1]))}


@torch.no_grad()
def decode_path(model: LatentDiffusion, n: int, steps: int = 32, seed: int = 0, solver: str = "heun") -> torch.Tensor:
    """Decode every intermediate state of the sampler: ``(steps + 1, n, C, H, W)``, pure noise first."""
    path = model.prior.sample(n, steps=steps, seed=seed, solver=solver, return_path=True)
    return decode_codes(model.autoencoder, path.flatten(0, 1)).view(steps + 1, n, *model.shape)


def codes_figure(codes: torch.Tensor, dims: tuple[int, int] = (0, 1), seed: int = 0):
    """Two panels: each coordinate's mean and standard deviation, and a scatter of two coordinates over ``N(0, I)``.

    Shows at a glance whether codes ``(N, d)`` are on the scale of the noise a diffusion
    model starts from (the dotted line marks a standard deviation of 1).
    """
    import matplotlib.pyplot as plt

    if codes.ndim != 2 or max(dims) >= codes.shape[1]:
        raise ValueError(f"expected codes (N, d) with d > {max(dims)}, got {tuple(codes.shape)}")
    codes = codes.detach().float().cpu()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    axes[0].bar(range(codes.shape[1]), codes.std(0).numpy(), label="standard deviation")
    axes[0].bar(range(codes.shape[1]), codes.mean(0).numpy(), alpha=0.6, label="mean")
    axes[0].axhline(1, color="k", lw=0.8, ls=":")
    axes[0].set(xlabel="code coordinate", ylabel="value", title="codes of the training images")
    axes[0].legend(fontsize=8)
    noise = torch.randn(len(codes), 2, generator=torch.Generator().manual_seed(seed))
    axes[1].scatter(codes[:, dims[0]], codes[:, dims[1]], s=2, alpha=0.4, label=f"codes (coordinates {dims[0]}, {dims[1]})")
    axes[1].scatter(noise[:, 0], noise[:, 1], s=2, alpha=0.4, label="N(0, I): where diffusion starts")
    axes[1].set(xlabel=f"z[{dims[0]}]", ylabel=f"z[{dims[1]}]", aspect="equal")
    axes[1].legend(fontsize=8, markerscale=4)
    fig.tight_layout()
    return fig


def steps_figure(scores: dict[tuple[str, int], float], ylabel: str = "Fréchet distance"):
    """Sample quality against network evaluations per sample, one line per solver.

    ``scores`` maps ``(solver, steps)`` to a score (lower is better). Euler costs one
    evaluation per step; Heun two, except its last step, which is an Euler step.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for solver in sorted({s for s, _ in scores}):
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}: choose {' or '.join(SOLVERS)}")
        steps = sorted(k for s, k in scores if s == solver)
        evals = [k if solver == "euler" else 2 * k - 1 for k in steps]
        ax.plot(evals, [scores[solver, k] for k in steps], "o-", label=solver)
    ax.set(xscale="log", yscale="log", xlabel="network evaluations per sample", ylabel=ylabel,
           title="flow sampler: quality against cost")
    ax.legend()
    return fig


def path_figure(frames: torch.Tensor, columns: int = 8, scale: float = 0.9):
    """Static view of :func:`decode_path`: one row per sample, ``columns`` evenly spaced steps from noise to image."""
    import matplotlib.pyplot as plt

    if frames.ndim != 5 or columns < 2:
        raise ValueError(f"expected frames (steps + 1, n, C, H, W) and columns >= 2, got {tuple(frames.shape)}, {columns}")
    picks = torch.linspace(0, len(frames) - 1, min(columns, len(frames))).round().long().tolist()
    n = frames.shape[1]
    fig, axes = plt.subplots(n, len(picks), figsize=(scale * len(picks), scale * n), squeeze=False)
    last = len(frames) - 1
    for j, k in enumerate(picks):
        for i in range(n):
            show_image(axes[i, j], frames[k, i], f"t = {1 - k / last:.2f}" if i == 0 else "")
    fig.tight_layout()
    return fig


def path_explorer(frames: torch.Tensor):
    """An ipywidgets slider over the sampler's steps, redrawing the decoded images (static stand-in: :func:`path_figure`)."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if frames.ndim != 5:
        raise ValueError(f"expected frames (steps + 1, n, C, H, W), got {tuple(frames.shape)}")
    last = len(frames) - 1

    def draw(step: int):
        fig, axes = plt.subplots(1, frames.shape[1], figsize=(1.2 * frames.shape[1], 1.4), squeeze=False)
        for i, ax in enumerate(axes[0]):
            show_image(ax, frames[step, i])
        fig.suptitle(f"step {step} of {last}: t = {1 - step / last:.2f}", fontsize=9)
        plt.show()
        return fig

    slider = widgets.IntSlider(value=last, min=0, max=last, step=1, description="step", continuous_update=True)
    return widgets.interactive(draw, step=slider)
