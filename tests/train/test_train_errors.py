"""Bad input to short_train: a clear error naming what is at fault and how to fix it."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from train_models import SmallCNN, blobs, ce, images, mlp, sgd

from pytest_modelviz import short_train
from pytest_modelviz.errors import DeviceUnavailableError, TrainingError


def test_non_scalar_loss_names_its_shape() -> None:
    per_sample = nn.CrossEntropyLoss(reduction="none")
    message = r"step 0: the loss must be a scalar, got a tensor of shape \[64\].*reduction='mean'"
    with pytest.raises(TrainingError, match=message):
        short_train(mlp(), blobs(), loss_fn=per_sample, optimizer=sgd, steps=2, device="cpu")


def test_wrong_input_shape_names_step_shapes_and_module() -> None:
    x, y = blobs(16)
    data = [(x, y), (torch.randn(16, 5), y)]  # the second batch has one feature too many
    with pytest.raises(TrainingError) as info:
        short_train(mlp(), data, loss_fn=ce, optimizer=sgd, steps=3, device="cpu")
    message = str(info.value)
    assert message.startswith("step 1: model Sequential could not take the batch")
    assert "inputs Tensor[16, 5] float32" in message and "targets Tensor[16] int64" in message
    assert "module 0 (Linear) raised RuntimeError" in message


def test_nested_module_that_raises_is_named() -> None:
    with pytest.raises(TrainingError, match=r"module conv \(Conv2d\) raised RuntimeError"):
        short_train(SmallCNN(channels=1), images(channels=3), loss_fn=ce, optimizer=sgd, steps=1, device="cpu")


def test_optimizer_over_foreign_params_is_named() -> None:
    other = mlp(hidden=7)
    message = r"holds 4 parameter\(s\) that are not in the model Sequential: group 0, index 0: shape \[7, 4\]"
    with pytest.raises(TrainingError, match=message):
        short_train(mlp(), blobs(), loss_fn=ce, optimizer=torch.optim.SGD(other.parameters(), lr=0.1), steps=1,
                    device="cpu")


@pytest.mark.parametrize(
    "data",
    [[], DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0)), batch_size=4), iter([])],
    ids=["list", "dataloader", "iterator"],
)
def test_empty_data(data) -> None:  # noqa: ANN001
    with pytest.raises(TrainingError, match=r"short_train got empty data"):
        short_train(mlp(), data, loss_fn=ce, optimizer=sgd, steps=2, device="cpu")


def test_batch_that_is_not_a_pair() -> None:
    with pytest.raises(TrainingError, match=r"step 0: a batch must be \(inputs, targets\).*got Tensor\[4, 4\] float32"):
        short_train(mlp(), [torch.zeros(4, 4)], loss_fn=ce, optimizer=sgd, steps=1, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without CUDA")
def test_cuda_without_cuda() -> None:
    with pytest.raises(DeviceUnavailableError, match=r"'cuda' was asked for but CUDA is not available"):
        short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=1, device="cuda")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, r"steps must be a positive int, got 0"),
        ({"grad_clip": -1.0}, r"grad_clip must be > 0"),
        ({"autocast": torch.float16}, r"autocast=torch.float16 needs gradient scaling"),
        ({"optimizer": "sgd"}, r"optimizer must be a torch.optim.Optimizer, an optimizer class or a factory"),
        ({"eval_fn": lambda model, step: {"acc": "high"}}, r"step 0: eval_fn returned 'acc' = 'high'"),
    ],
)
def test_bad_arguments(kwargs, match) -> None:  # noqa: ANN001
    args = {"loss_fn": ce, "optimizer": sgd, "steps": 1, "device": "cpu", "eval_every": 1, **kwargs}
    with pytest.raises(TrainingError, match=match):
        short_train(mlp(), blobs(), **args)


def test_not_a_module() -> None:
    with pytest.raises(TrainingError, match=r"needs a torch.nn.Module, got function"):
        short_train(lambda x: x, blobs(), loss_fn=ce, optimizer=sgd, steps=1, device="cpu")


def test_loss_fn_that_raises_names_shapes() -> None:
    message = r"step 0: loss_fn raised .*model output Tensor\[64, 2\] float32, targets Tensor\[64\] int64"
    with pytest.raises(TrainingError, match=message):
        short_train(mlp(), blobs(), loss_fn=lambda out, y: nn.functional.nll_loss(out, y.float()), optimizer=sgd,
                    steps=1, device="cpu")
