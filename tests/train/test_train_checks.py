"""Each TrainResult check passes on a healthy run and fails naming the culprit on a broken one."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from train_models import SmallCNN, WithUnusedLayer, blobs, bn_mlp, ce, images, mlp, sgd

from pytest_modelviz import short_train


def adam(params):  # noqa: ANN001, ANN201
    return torch.optim.Adam(params, lr=0.05)


def test_healthy_run_passes_every_check() -> None:
    result = short_train(bn_mlp(), blobs(), loss_fn=ce, optimizer=adam, steps=30, device="cpu")
    result.assert_finite()
    result.assert_loss_decreased()
    result.assert_all_params_receive_grad()
    result.assert_params_updated()
    result.assert_resume_equivalent()


def test_loss_not_decreasing_names_the_windows() -> None:
    result = short_train(mlp(), blobs(), loss_fn=ce, optimizer=lambda p: torch.optim.SGD(p, lr=0.0), steps=10,
                         device="cpu")
    with pytest.raises(AssertionError, match=r"did not decrease: mean of steps 0-1 = .*mean of steps 8-9"):
        result.assert_loss_decreased()
    with pytest.raises(AssertionError, match=r"window=6 needs at least 12 steps"):
        result.assert_loss_decreased(window=6)


def test_unused_layer_is_named() -> None:
    result = short_train(WithUnusedLayer(), blobs(), loss_fn=ce, optimizer=sgd, steps=3, device="cpu")
    with pytest.raises(AssertionError) as info:
        result.assert_all_params_receive_grad()
    message = str(info.value)
    assert "never received a non-zero gradient" in message
    assert "spare.weight, spare.bias" in message and "module(s) spare" in message
    assert "fc1" not in message and "fc2" not in message
    with pytest.raises(AssertionError, match=r"did not change: spare.weight, spare.bias"):
        result.assert_params_updated()


def test_trainable_param_missing_from_optimizer_is_named() -> None:
    model = mlp()
    opt = torch.optim.SGD(model[0].parameters(), lr=0.1)  # the head was forgotten
    result = short_train(model, blobs(), loss_fn=ce, optimizer=opt, steps=3, device="cpu")
    with pytest.raises(AssertionError, match=r"2 trainable parameter\(s\) are not in the optimizer.*2.weight, 2.bias"):
        result.assert_all_params_receive_grad()


def test_frozen_param_in_optimizer_is_named() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model[0].requires_grad_(False)  # frozen after the optimizer was built over it
    result = short_train(model, blobs(), loss_fn=ce, optimizer=opt, steps=3, device="cpu")
    message = r"frozen parameter\(s\) \(requires_grad=False\) are in the optimizer: 0.weight, 0.bias"
    with pytest.raises(AssertionError, match=message):
        result.assert_all_params_receive_grad()
    result.assert_all_params_receive_grad(allow_frozen_in_optimizer=True)
    result.assert_params_updated()  # the frozen layer did not move, the head did


def test_frozen_param_written_in_place_is_named() -> None:
    class Drifting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = mlp()
            self.body[0].requires_grad_(False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                self.body[0].bias.add_(1e-3)  # a "frozen" parameter that still moves
            return self.body(x)

    result = short_train(Drifting(), blobs(), loss_fn=ce, optimizer=sgd, steps=2, device="cpu")
    with pytest.raises(AssertionError, match=r"frozen parameter\(s\) \(requires_grad=False\) changed: body.0.bias"):
        result.assert_params_updated()


def test_frozen_batchnorm_left_in_train_mode_is_named() -> None:
    model = SmallCNN()
    model.bn.requires_grad_(False)  # frozen, but still in train mode: running stats move
    result = short_train(model, images(), loss_fn=ce, optimizer=sgd, steps=2, device="cpu")
    message = r"buffer\(s\) of frozen or eval-mode module\(s\) changed: bn.running_mean, bn.running_var"
    with pytest.raises(AssertionError, match=message):
        result.assert_params_updated()
    model = SmallCNN()
    model.bn.requires_grad_(False)
    model.bn.eval()
    fixed = short_train(model, images(), loss_fn=ce, optimizer=sgd, steps=2, device="cpu")
    fixed.assert_params_updated()


@pytest.mark.parametrize("bad_step", [0, 3])
def test_nan_gradient_at_step_k_fails_at_k_naming_the_parameter(bad_step: int) -> None:
    model = mlp()
    calls = {"n": 0}

    def poison(grad: torch.Tensor) -> torch.Tensor:
        step = calls["n"]
        calls["n"] += 1
        return grad * float("nan") if step == bad_step else grad

    model[2].weight.register_hook(poison)
    result = short_train(model, blobs(), loss_fn=ce, optimizer=sgd, steps=10, device="cpu", raise_on_nonfinite=False)
    assert result.steps_run == bad_step + 1  # stopped right there, before the poisoned update
    assert all(torch.isfinite(p).all() for p in model.parameters())
    message = (
        rf"step {bad_step}: the gradient of 2.weight is non-finite.*"
        r"non-finite gradients at that step: 2.weight\. "
    )
    with pytest.raises(AssertionError, match=message):
        result.assert_finite()


def test_nan_input_names_the_output() -> None:
    x, y = blobs(16)
    bad = x.clone()
    bad[0, 0] = float("nan")
    result = short_train(mlp(), [(x, y), (x, y), (bad, y)], loss_fn=ce, optimizer=sgd, steps=6, device="cpu",
                         raise_on_nonfinite=False)
    assert result.steps_run == 3
    with pytest.raises(AssertionError, match=r"step 2: the model's output has NaN/Inf values"):
        result.assert_finite()
    with pytest.raises(AssertionError, match=r"Training stopped early at step 2"):
        result.assert_loss_decreased(window=1)


def test_by_default_a_nan_fails_short_train_itself_at_that_step() -> None:
    x, y = blobs(16)
    bad = x.clone()
    bad[0, 0] = float("nan")
    model = mlp()
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(1))
    with pytest.raises(AssertionError, match=r"step 2: the model's output has NaN/Inf values"):
        short_train(model, [(x, y), (x, y), (bad, y)], loss_fn=ce, optimizer=sgd, steps=20, device="cpu")
    assert len(seen) == 3, "training stopped at the non-finite step, not at the end"
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_keep_going_past_nonfinite_when_asked() -> None:
    x, y = blobs(16)
    bad = x.clone()
    bad[0, 0] = float("inf")
    result = short_train(mlp(), [(x, y), (bad, y)], loss_fn=ce, optimizer=sgd, steps=4, device="cpu",
                         stop_on_nonfinite=False, raise_on_nonfinite=False)
    assert result.steps_run == 4
    with pytest.raises(AssertionError, match=r"step 1: the model's output"):
        result.assert_finite()


def test_resume_equivalent_with_adam_batchnorm_and_scheduler(tmp_path) -> None:  # noqa: ANN001
    result = short_train(
        SmallCNN(), images(32), loss_fn=ce, optimizer=lambda p: torch.optim.AdamW(p, lr=0.01), steps=5, device="cpu",
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5),
    )
    result.assert_resume_equivalent(fresh_model=SmallCNN, path=tmp_path / "ckpt.pt")
    loaded = torch.load(tmp_path / "ckpt.pt", weights_only=True, map_location="cpu")
    assert set(loaded) == {"model", "optimizer", "scheduler"}


def test_state_outside_the_state_dict_breaks_resume() -> None:
    class Counting(nn.Module):
        """Keeps a step counter in a non-persistent buffer: a checkpoint loses it."""

        def __init__(self) -> None:
            super().__init__()
            self.body = mlp()
            self.register_buffer("calls", torch.zeros(()), persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return self.body(x) * (1 + self.calls / 10)

    result = short_train(Counting(), blobs(), loss_fn=ce, optimizer=adam, steps=3, device="cpu")
    with pytest.raises(AssertionError, match=r"buffer calls \(not in state_dict: registered with persistent=False\)"):
        result.assert_resume_equivalent(fresh_model=Counting)


def test_optimizer_state_lost_on_load_is_named() -> None:
    class ForgetfulAdam(torch.optim.Adam):
        def state_dict(self) -> dict[str, Any]:
            state = super().state_dict()
            state["state"] = {}
            return state

    result = short_train(mlp(), blobs(), loss_fn=ce, optimizer=lambda p: ForgetfulAdam(p, lr=0.01), steps=2,
                         device="cpu")
    with pytest.raises(AssertionError, match=r"optimizer state 'exp_avg' of 0.weight"):
        result.assert_resume_equivalent()
