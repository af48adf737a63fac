"""Training on CUDA: everything on the device, and the first losses agree with the CPU's."""

from __future__ import annotations

import pytest
import torch
from train_models import SmallCNN, ce, images

from pytest_modelviz import short_train


def adam(params):  # noqa: ANN001, ANN201
    return torch.optim.Adam(params, lr=0.01)


@pytest.mark.gpu
def test_model_batches_and_optimizer_state_on_cuda() -> None:
    seen = []

    class Probe(SmallCNN):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.device.type)
            return super().forward(x)

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(y.device.type)
        return ce(out, y)

    result = short_train(Probe(), images(32), loss_fn=loss_fn, optimizer=adam, steps=3, device="cuda")
    assert set(seen) == {"cuda"}
    assert result.device.startswith("cuda")
    assert all(p.is_cuda for p in result.model.parameters())
    assert all(b.is_cuda for b in result.model.buffers())
    states = [s for s in result.optimizer.state.values()]
    assert states and all(s["exp_avg"].is_cuda and s["exp_avg_sq"].is_cuda for s in states)
    result.assert_finite()
    result.assert_resume_equivalent(rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_first_losses_match_the_cpu() -> None:
    cpu = short_train(SmallCNN(), images(32), loss_fn=ce, optimizer=adam, steps=3, device="cpu")
    gpu = short_train(SmallCNN(), images(32), loss_fn=ce, optimizer=adam, steps=3, device="cuda")
    assert gpu.losses == pytest.approx(cpu.losses, rel=1e-4, abs=1e-5)
