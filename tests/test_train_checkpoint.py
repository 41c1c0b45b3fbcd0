import json

import pytest
import torch

from aebook.checkpoint import load_run, save_run
from aebook.models import build_model
from aebook.train import TrainConfig, evaluate_loss, fit


def test_fit_reduces_loss_and_is_seeded(digits):
    cfg = TrainConfig(epochs=3, batch_size=64, progress=False, device="cpu")
    m1 = build_model("mlp", digits.shape, 8)
    torch.manual_seed(1)
    before = evaluate_loss(m1, digits.test)
    h = fit(m1, digits.train, cfg, val=digits.test)
    assert len(h.train_loss) == 3 and len(h.val_loss) == 3
    assert h.val_loss[-1] < before
    torch.manual_seed(1)
    m2 = build_model("mlp", digits.shape, 8)
    fit(m2, digits.train, cfg)
    torch.manual_seed(1)
    m3 = build_model("mlp", digits.shape, 8)
    fit(m3, digits.train, cfg)
    assert torch.equal(m2.reconstruct(digits.test[:4]), m3.reconstruct(digits.test[:4]))


def test_fit_with_corruption_learns_to_denoise(digits):
    def noisy(x):
        return (x + 0.3 * torch.randn_like(x)).clamp(0, 1)

    m = build_model("mlp", digits.shape, 32)
    fit(m, digits.train, TrainConfig(epochs=20, batch_size=64, progress=False, device="cpu"), corrupt=noisy)
    torch.manual_seed(0)
    x = digits.test
    xn = noisy(x)
    assert torch.mean((m.reconstruct(xn) - x) ** 2) < torch.mean((xn - x) ** 2)


def test_bad_config():
    with pytest.raises(ValueError, match="invalid training settings"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="expects images"):
        fit(build_model("conv", (1, 8, 8), 4), torch.rand(4, 1, 9, 9), TrainConfig(epochs=1, progress=False))


def test_schedules(digits):
    with pytest.raises(ValueError, match="unknown schedule 'linear'; choose one of cosine, constant"):
        TrainConfig(schedule="linear")
    # a constant schedule leaves the learning rate where it was set; cosine decays it
    lrs = {}
    for schedule in ("constant", "cosine"):
        m = build_model("linear", digits.shape, 4)
        seen = []
        original = torch.optim.AdamW.step

        def spy(self, *args, **kwargs):
            seen.append(self.param_groups[0]["lr"])
            return original(self, *args, **kwargs)

        torch.optim.AdamW.step = spy
        try:
            fit(m, digits.train[:256], TrainConfig(epochs=2, batch_size=64, lr=1e-3, schedule=schedule,
                                                   progress=False, device="cpu"))
        finally:
            torch.optim.AdamW.step = original
        lrs[schedule] = seen
    assert lrs["constant"] == [1e-3] * 8
    assert max(lrs["cosine"]) <= 1e-3 and lrs["cosine"][-1] < 1e-3 / 5


def test_save_load_round_trip(tmp_path, digits):
    m = build_model("vae", digits.shape, 5, beta=0.5)
    run = save_run(tmp_path / "run", m, {"train_loss": [1.0]}, {"dataset": "digits"})
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "history.json", "model.safetensors"]
    m2, cfg = load_run(run)
    assert cfg["model"]["beta"] == 0.5 and cfg["train"]["dataset"] == "digits"
    x = digits.test[:4]
    assert torch.equal(m.eval().reconstruct(x), m2.reconstruct(x))
    save_run(run, m)  # overwriting an existing run works and leaves no temp folders
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_checkpoint_is_not_pickle(tmp_path):
    run = save_run(tmp_path / "r", build_model("linear", (1, 4, 4), 2))
    head = (run / "model.safetensors").read_bytes()[:8]
    assert not head.startswith(b"\x80")  # a pickle would start with PROTO
    assert not (run / "model.safetensors").read_bytes().startswith(b"PK")  # nor a torch zip


def test_tampered_corrupted_and_mismatched_checkpoints(tmp_path):
    run = save_run(tmp_path / "r", build_model("conv", (1, 8, 8), 4))
    w = run / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        load_run(run)
    w.write_bytes(b"garbage")
    cfg = json.loads((run / "config.json").read_text())
    cfg.pop("weights_sha256")
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_run(run)
    save_run(run, build_model("conv", (1, 8, 8), 4))
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["latent_dim"] = 9
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match its config"):
        load_run(run)
    (run / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid aebook config"):
        load_run(run)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "missing")
