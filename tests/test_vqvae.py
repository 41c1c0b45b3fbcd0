"""Unit tests of aebook.vqvae (chapter 4.2): quantiser, VQ-VAE, PixelCNN prior; tiny tensors, seconds in all."""

from __future__ import annotations

import math

import pytest
import torch

from aebook.checkpoint import save_run
from aebook.generators import load_generator
from aebook.train import TrainConfig
from aebook.generators import quantise_uniform
from aebook.vqvae import (PixelCNN, VectorQuantizer, VQGenerator, VQVAE, build_vq_generator, causal_mask, perplexity,
                          train_vq_generator)


def test_quantiser_picks_the_nearest_code_and_passes_gradients_straight_through():
    torch.manual_seed(0)
    vq = VectorQuantizer(codes=8, dim=3).eval()
    z = torch.randn(2, 3, 4, 5, requires_grad=True)
    z_q, idx, stats = vq(z)
    assert z_q.shape == z.shape and idx.shape == (2, 4, 5)
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.equal(idx.flatten(), torch.cdist(flat, vq.codebook).argmin(1))
    assert torch.allclose(z_q.detach(), vq.lookup(idx))                # forward: the code vectors
    w = torch.randn_like(z)
    (z_q * w).sum().backward()
    assert torch.allclose(z.grad, w)                                    # backward: identity (straight-through)
    assert stats["commitment"].item() == pytest.approx(((flat - vq.lookup(idx).permute(0, 2, 3, 1).reshape(-1, 3)) ** 2)
                                                       .mean().item(), rel=1e-5)
    assert 1.0 <= stats["perplexity"].item() <= 8.0


def test_quantiser_starts_from_data_then_follows_the_ema_and_restarts_dead_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(codes=4, dim=2, decay=0.9, restart_below=0.5, eps=0.0).train()
    z = torch.randn(1, 2, 4, 4)
    vq(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    assert all((flat == c).all(1).any() for c in vq.codebook)          # initialised from encoder vectors
    # a known codebook; every vector of the batch is nearest to code 0
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]))
    vq.ema_sum.copy_(vq.codebook)
    vq.ema_count.fill_(1.0)
    batch = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    zb = batch.T.reshape(1, 2, 2, 2)                                    # vector (h, w) = batch[2 h + w]
    _, idx, stats = vq(zb)
    assert (idx == 0).all() and stats["restarts"].item() == 0
    count0 = 0.9 * 1 + 0.1 * 4
    assert torch.allclose(vq.codebook[0], 0.1 * batch.sum(0) / count0, atol=1e-6)   # the moving average
    assert torch.allclose(vq.ema_count[1:], torch.full((3,), 0.9))      # unused codes' counts decay ...
    for _ in range(20):
        _, _, stats = vq(zb)
        if stats["restarts"].item():
            break
    assert stats["restarts"].item() == 3                                 # ... until they restart together
    assert all((batch == c).all(1).any() for c in vq.codebook[1:])     # at vectors of the batch
    assert torch.equal(vq.ema_count[1:], torch.ones(3))


def test_perplexity_counts_equally_used_codes():
    assert perplexity(torch.tensor([0, 1, 2, 3] * 5), 16) == pytest.approx(4.0)
    assert perplexity(torch.zeros(10, dtype=torch.long), 16) == pytest.approx(1.0)


def test_vqvae_shapes_and_input_checks():
    torch.manual_seed(0)
    vq = VQVAE((1, 28, 28), codes=16, dim=4, width=8).eval()
    x = torch.rand(3, 1, 28, 28)
    idx = vq.encode_indices(x)
    assert idx.shape == (3, 7, 7) and vq.grid == (7, 7)
    assert vq.decode_indices(idx).shape == x.shape
    assert vq.bits_per_image() == pytest.approx(49 * 4)
    loss, stats = vq.train().loss(x)
    assert loss.ndim == 0 and {"recon", "commitment", "perplexity", "restarts"} <= set(stats)
    with pytest.raises(ValueError, match="divisible by 4"):
        VQVAE((1, 30, 28))
    with pytest.raises(ValueError, match="expects images"):
        vq.check_input(torch.rand(2, 1, 8, 8))


def test_causal_masks_never_see_the_future():
    c = 2
    for centre in (False, True):
        v = causal_mask(5, "vertical", centre)          # rows above (and its own row with centre)
        assert v[: c + centre].sum() == 5 * (c + centre) and v[c + centre :].sum() == 0
        h = causal_mask(5, "horizontal", centre)        # pixels to the left (and itself with centre)
        assert h.shape == (1, 5) and h[0, : c + centre].sum() == c + centre and h[0, c + centre :].sum() == 0
    with pytest.raises(ValueError, match="unknown stack"):
        causal_mask(3, "diagonal", True)


def test_pixelcnn_is_causal_in_raster_order_and_has_no_blind_spot():
    torch.manual_seed(0)
    pc = PixelCNN(codes=6, grid=(5, 5), channels=8, layers=3).eval()
    idx = torch.randint(0, 6, (1, 5, 5))
    base = pc(idx).flatten(2)
    for p in range(25):                     # change every input at positions >= p ...
        other = idx.clone().flatten()
        other[p:] = (other[p:] + 1 + torch.randint(0, 5, (25 - p,))) % 6
        out = pc(other.view(1, 5, 5)).flatten(2)
        assert torch.allclose(out[..., : p + 1], base[..., : p + 1])   # ... outputs at positions <= p stay put
    changed = idx.clone()
    changed[0, 1, 3] = (changed[0, 1, 3] + 1) % 6                       # above and to the right of (2, 2)
    assert not torch.allclose(pc(changed)[0, :, 2, 2], pc(idx)[0, :, 2, 2])  # the plain PixelCNN's blind spot
    full = pc(idx)
    for r in range(5):                      # the sampler runs on rows <= r only: the same logits
        assert torch.allclose(pc(idx[:, : r + 1])[:, :, r], full[:, :, r], atol=1e-6)


def test_pixelcnn_bits_sampling_and_checks():
    torch.manual_seed(0)
    pc = PixelCNN(codes=5, grid=(3, 3), channels=8, layers=1)
    idx = torch.randint(0, 5, (4, 3, 3))
    loss, stats = pc.loss(idx)
    bits = pc.bits_per_image(idx)
    assert bits.shape == (4,)
    assert bits.mean().item() == pytest.approx(loss.item() * 9 / math.log(2), rel=1e-4)
    a, b = pc.sample(6, seed=1), pc.sample(6, seed=1)
    assert torch.equal(a, b) and a.shape == (6, 3, 3) and a.min() >= 0 and a.max() < 5
    assert not torch.equal(a, pc.sample(6, seed=2))
    with pytest.raises(ValueError, match="integer code grids"):
        pc.check_input(torch.rand(2, 3, 3))
    with pytest.raises(ValueError, match="lie in"):
        pc.check_input(torch.full((1, 3, 3), 5))


def test_pixelcnn_learns_a_skewed_code_distribution():
    torch.manual_seed(0)
    grids = (torch.rand(256, 2, 2) < 0.1).long()          # code 1 with probability 0.1, else 0
    pc = PixelCNN(codes=2, grid=(2, 2), channels=8, layers=1)
    from aebook.train import fit

    before = pc.bits_per_image(grids).mean().item()
    fit(pc, grids, TrainConfig(epochs=30, batch_size=64, lr=1e-2, progress=False))
    after = pc.bits_per_image(grids).mean().item()
    entropy = -4 * (0.1 * math.log2(0.1) + 0.9 * math.log2(0.9))   # 1.88 bits per grid
    assert after < before and after == pytest.approx(entropy, abs=0.4)


def test_quantise_uniform_levels_and_error():
    z = torch.linspace(-1, 3, 1000)[:, None].repeat(1, 2)
    low, high = torch.tensor([-1.0, -1.0]), torch.tensor([3.0, 3.0])
    q = quantise_uniform(z, low, high, bits=3)
    assert len(torch.unique(q[:, 0])) == 8
    assert (q - z).abs().max() <= 4 / 7 / 2 + 1e-6
    with pytest.raises(ValueError):
        quantise_uniform(z, low, high, bits=0)


def test_vq_generator_trains_saves_loads_and_samples(tmp_path, digits):
    torch.manual_seed(0)
    gen, hist = train_vq_generator(digits.train[:128], epochs=1, prior_epochs=1, codes=8, dim=4, width=8,
                                   channels=8, layers=1, config=TrainConfig(progress=False))
    assert set(hist) == {"autoencoder", "prior"}
    assert isinstance(gen, VQGenerator) and gen.vqvae.grid == (2, 2)
    save_run(tmp_path / "run", gen)
    loaded, config = load_generator(tmp_path / "run")
    assert config["model"]["model"] == "vqvae"
    a, b = gen.sample(5, seed=3), loaded.sample(5, seed=3)
    assert a.shape == (5, 1, 8, 8) and torch.allclose(a, b) and 0 <= a.min() and a.max() <= 1
    assert isinstance(build_vq_generator(gen.config), VQGenerator)
    with pytest.raises(ValueError, match="does not fit"):
        VQGenerator(gen.vqvae, PixelCNN(codes=9, grid=(2, 2), channels=8, layers=1))


def test_quantised_reconstruction_and_independent_samples(digits):
    import aebook
    from aebook.generators import independent_samples, quantised_reconstruction

    torch.manual_seed(0)
    ae = aebook.build_model("conv", (1, 8, 8), 3, width=4).eval()
    x = digits.train[:32]
    fine, coarse = quantised_reconstruction(ae, x, x, bits=12), quantised_reconstruction(ae, x, x, bits=1)
    exact = ae.reconstruct(x)
    assert fine.shape == x.shape and (fine - exact).abs().max() < (coarse - exact).abs().max()
    vq = VQVAE((1, 8, 8), codes=4, dim=2, width=4).eval()
    grids = torch.zeros(10, 2, 2, dtype=torch.long)                     # only code 0 is ever used ...
    a = independent_samples(vq, grids, 3, seed=1)
    with torch.no_grad():
        only = vq.decode_indices(torch.zeros(3, 2, 2, dtype=torch.long))
    assert a.shape == (3, 1, 8, 8) and torch.allclose(a, only)          # ... so every sample decodes code 0
    mixed = torch.randint(0, 4, (10, 2, 2))
    assert torch.equal(independent_samples(vq, mixed, 3, seed=1), independent_samples(vq, mixed, 3, seed=1))
    with pytest.raises(ValueError, match="positive"):
        independent_samples(vq, grids, 0)
