import pytest
import torch

from aebook.models import MODEL_NAMES, ConvVAE, build_model, count_parameters


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 20, 12)])
def test_shapes_round_trip(name, shape):
    model = build_model(name, shape, 7)
    x = torch.rand(3, *shape)
    z = model.encode(x)
    assert z.shape == (3, 7)
    assert model.decode(z).shape == x.shape
    loss, stats = model.loss(x)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_reconstruct_is_clipped_and_checks_shape():
    model = build_model("conv", (1, 8, 8), 4)
    out = model.reconstruct(torch.rand(5, 1, 8, 8))
    assert out.shape == (5, 1, 8, 8) and 0 <= out.min() and out.max() <= 1
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 1, 8, 8\), got \(2, 3, 8, 8\)"):
        model.reconstruct(torch.rand(2, 3, 8, 8))


def test_bad_names_and_options():
    with pytest.raises(ValueError, match="unknown model 'gan'"):
        build_model("gan", (1, 8, 8), 4)
    with pytest.raises(ValueError, match="bad options"):
        build_model("conv", (1, 8, 8), 4, depth=3)
    with pytest.raises(ValueError, match="latent_dim"):
        build_model("conv", (1, 8, 8), 0)


def test_vae_loss_is_negative_elbo_parts():
    torch.manual_seed(0)
    vae = ConvVAE((1, 8, 8), 4, beta=2.0)
    x = torch.rand(6, 1, 8, 8)
    loss, stats = vae.loss(x)
    assert stats["kl"] >= 0
    assert torch.allclose(loss, stats["recon"] + 2.0 * stats["kl"], rtol=1e-5)
    assert vae.sample(3, torch.Generator().manual_seed(0)).shape == (3, 1, 8, 8)


def test_width_controls_size():
    assert count_parameters(build_model("conv", (1, 28, 28), 8, width=16)) < count_parameters(
        build_model("conv", (1, 28, 28), 8, width=32))
