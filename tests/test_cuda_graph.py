"""CUDA-graph capture of the training step (aebook.train.CudaGraphStep, TrainConfig.cuda_graph).

The capture itself needs a GPU: those tests are skipped on a machine without one and run by
``benchmarks/gpu_session.sh`` on a lent GPU. The rest runs everywhere."""

import pytest
import torch

from aebook.models import build_model
from aebook.train import CudaGraphStep, TrainConfig, fit

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_config_refuses_compile_with_cuda_graph():
    with pytest.raises(ValueError, match="choose compile or cuda_graph, not both"):
        TrainConfig(compile=True, cuda_graph=True)


def test_step_refuses_a_cpu_tensor():
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA tensor, got one on cpu"):
        CudaGraphStep(lambda b: b, torch.zeros(2, 1, 4, 4))


def test_cuda_graph_is_ignored_off_cuda(digits):
    # like amp: the setting applies on CUDA only, and elsewhere the loop is exactly the eager one
    histories, outputs = [], []
    for graphed in (False, True):
        torch.manual_seed(0)
        m = build_model("conv", digits.shape, 8)
        h = fit(m, digits.train[:300], TrainConfig(epochs=2, batch_size=64, device="cpu", progress=False,
                                                  cuda_graph=graphed))
        histories.append(h.train_loss)
        outputs.append(m.reconstruct(digits.test[:4]))
    assert histories[0] == histories[1]
    assert torch.equal(outputs[0], outputs[1])


def _train(data, graphed, kind="conv", corrupt=None, **kw):
    torch.manual_seed(0)
    m = build_model(kind, data.shape[1:], 8)
    cfg = TrainConfig(epochs=3, batch_size=64, lr=1e-3, device="cuda", progress=False, cuda_graph=graphed, **kw)
    return m, fit(m, data, cfg, corrupt=corrupt)


@cuda
def test_graphed_training_matches_eager(digits):
    # 1000 images: 15 full batches (3 warm-up, 1 capture, 11 replays) and a partial one (eager)
    data = digits.train[:1000]
    _, eager = _train(data, False)
    m, graphed = _train(data, True)
    assert graphed.train_loss[-1] < 0.8 * graphed.train_loss[0]   # it trains: replays do update the weights
    for a, b in zip(eager.train_loss, graphed.train_loss):
        assert abs(a - b) <= 0.03 * a, (eager.train_loss, graphed.train_loss)   # bf16 and cuDNN atomics only


@cuda
def test_captured_optimiser_reads_its_learning_rate_tensor():
    # fit sets the scheduled rate in a device tensor; a replay must use the value it holds then
    p = torch.nn.Parameter(torch.ones(4, device="cuda"))
    lr = torch.tensor(0.1, device="cuda")
    opt = torch.optim.AdamW([p], lr=lr, weight_decay=0.0, capturable=True)

    def step(b):
        opt.zero_grad(set_to_none=True)
        (p * b).sum().backward()
        opt.step()
        return p.detach()

    batch = torch.ones(4, device="cuda")
    g = CudaGraphStep(step, batch, warmup=1)
    g(batch), g(batch)  # warm-up, then capture and replay
    assert g.graph is not None
    lr.fill_(0.0)
    before = p.detach().clone()
    g(batch)
    assert torch.equal(p.detach(), before)
    lr.fill_(0.1)
    g(batch)
    assert not torch.equal(p.detach(), before)


@cuda
def test_graphed_schedule_reaches_the_optimiser(digits):
    # the captured optimiser reads its learning rate from the device; a cosine schedule must move it
    m, h = _train(digits.train[:640], True, schedule="cosine")
    _, eager = _train(digits.train[:640], False, schedule="cosine")
    assert abs(h.train_loss[-1] - eager.train_loss[-1]) <= 0.03 * eager.train_loss[-1]


@cuda
def test_graphed_vae_with_device_side_noise_and_clipping(digits):
    def noisy(x):
        return (x + 0.2 * torch.randn_like(x)).clamp(0, 1)

    m, h = _train(digits.train[:1000], True, kind="vae", corrupt=noisy, grad_clip=1.0)
    assert all(torch.isfinite(torch.tensor(h.train_loss)))
    assert h.train_loss[-1] < h.train_loss[0]
    # the noise is drawn afresh at each replay, not frozen at capture
    step_inputs = []
    static = torch.zeros(4, 1, 8, 8, device="cuda")
    g = CudaGraphStep(lambda b: noisy(b).sum(), static, warmup=1)
    for _ in range(4):
        step_inputs.append(float(g(static)))
    assert len(set(step_inputs[2:])) == 2
