"""Unit tests for aebook.book.subspace (fast: tiny synthetic data)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from aebook.data import ImageData
from aebook.book.subspace import SweepResult, bottleneck_sweep, plot_directions, principal_angles, project_onto
from aebook.train import TrainConfig


def test_same_subspace_any_basis_gives_zero_angles():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 3))
    mix = rng.normal(size=(3, 3)) + 3 * np.eye(3)  # invertible
    angles = principal_angles(a, a @ mix)
    assert angles.shape == (3,)
    np.testing.assert_allclose(angles, 0.0, atol=1e-5)


def test_known_angle_and_orthogonal_subspaces():
    t = np.radians(30.0)
    e1 = np.array([[1.0], [0.0], [0.0]])
    tilted = np.array([[np.cos(t)], [np.sin(t)], [0.0]])
    np.testing.assert_allclose(principal_angles(e1, tilted), [30.0], atol=1e-8)
    np.testing.assert_allclose(principal_angles(e1, np.array([[0.0], [0.0], [1.0]])), [90.0], atol=1e-8)


def test_angles_ascending_and_accept_tensors():
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.normal(size=(10, 4))).float()
    b = rng.normal(size=(10, 4))
    angles = principal_angles(a, b)
    assert np.all(np.diff(angles) >= 0)
    assert np.all((angles >= 0) & (angles <= 90))


def test_angles_reject_bad_shapes():
    with pytest.raises(ValueError, match="same number of rows"):
        principal_angles(np.ones((4, 2)), np.ones((5, 2)))
    with pytest.raises(ValueError, match="2-D"):
        principal_angles(np.ones(4), np.ones((4, 1)))


def test_project_onto():
    rng = np.random.default_rng(2)
    basis = rng.normal(size=(6, 2))
    inside = basis @ rng.normal(size=(2, 3))
    np.testing.assert_allclose(project_onto(basis, inside), inside, atol=1e-10)
    q, _ = np.linalg.qr(basis, mode="complete")
    outside = q[:, 2:3]  # orthogonal to the basis
    np.testing.assert_allclose(project_onto(basis, outside), 0.0, atol=1e-10)
    with pytest.raises(ValueError):
        project_onto(basis, np.ones((5, 1)))


def _tiny_data() -> ImageData:
    g = torch.Generator().manual_seed(0)
    return ImageData("tiny", torch.rand(64, 1, 4, 4, generator=g), torch.rand(16, 1, 4, 4, generator=g))


def test_bottleneck_sweep_pca_and_linear():
    data = _tiny_data()
    cfg = TrainConfig(epochs=1, batch_size=32, device="cpu", progress=False)
    res = bottleneck_sweep(data, ["pca", "linear"], [2, 4], config={"linear": cfg})
    assert set(res.metrics) == {"pca", "linear"}
    assert set(res.metrics["pca"]) == {2, 4}
    for per in res.metrics.values():
        for m in per.values():
            assert np.isfinite(m["psnr"]) and -1 <= m["ssim"] <= 1 and m["seconds"] >= 0
    table = res.table("psnr")
    assert table["linear"][2] == res.metrics["linear"][2]["psnr"]
    md = res.markdown("psnr", label="PSNR (dB)")
    assert md.splitlines()[0] == "| PSNR (dB) | latent 2 | latent 4 |"
    assert len(md.splitlines()) == 4
    assert res.models["linear"][4].latent_dim == 4


def test_bottleneck_sweep_rejects_empty():
    with pytest.raises(ValueError):
        bottleneck_sweep(_tiny_data(), [], [2])
    with pytest.raises(ValueError, match="unknown model"):
        bottleneck_sweep(_tiny_data(), ["nope"], [2], config=TrainConfig(epochs=1, device="cpu", progress=False))


def test_sweep_result_markdown_missing_cells():
    res = SweepResult(metrics={"a": {2: {"psnr": 1.0}}, "b": {4: {"psnr": 2.0}}})
    lines = res.markdown("psnr", fmt=".1f").splitlines()
    assert lines[2] == "| a | 1.0 |  |"
    assert lines[3] == "| b |  | 2.0 |"


def test_plot_directions():
    rng = np.random.default_rng(3)
    fig = plot_directions({"A": rng.normal(size=(16, 3)), "B": rng.normal(size=(16, 2))}, image_shape=(4, 4))
    assert len(fig.axes) == 6
    import matplotlib.pyplot as plt

    plt.close(fig)
