"""short_train's loop: data forms, optimizer forms, determinism, RNG hygiene, what it records."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from train_models import SmallCNN, TwoInputs, batches, blobs, bn_mlp, ce, images, mlp, sgd

from pytest_modelviz import TrainResult, short_train


def test_same_seed_gives_bit_identical_losses() -> None:
    data = DataLoader(TensorDataset(*blobs(64)), batch_size=8, shuffle=True)
    runs = [
        short_train(bn_mlp(), data, loss_fn=ce, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), steps=12,
                    device="cpu", seed=3)
        for _ in range(2)
    ]
    assert runs[0].losses == runs[1].losses
    assert runs[0].grad_norms == runs[1].grad_norms
    other = short_train(bn_mlp(), data, loss_fn=ce, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), steps=12,
                        device="cpu", seed=4)
    assert other.losses != runs[0].losses  # the seed drives shuffling and dropout


def test_callers_rng_state_is_restored() -> None:
    model, data = bn_mlp(), blobs()  # built first: they seed torch themselves
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    short_train(model, data, loss_fn=ce, optimizer=sgd, steps=3, device="cpu")
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


def test_records_per_step_values() -> None:
    result = short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=5, device="cpu")
    assert isinstance(result, TrainResult)
    assert result.steps_run == 5 and len(result.lrs) == 5 and len(result.step_times) == 5
    assert all(isinstance(v, float) for v in result.losses)
    assert result.lrs == [pytest.approx(0.1)] * 5
    assert set(result.param_grad_norms) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    # The global norm is the L2 norm of the per-parameter norms.
    for step in range(5):
        per = [result.param_grad_norms[n][step] for n in result.trainable]
        assert result.grad_norms[step] == pytest.approx(float(np.linalg.norm(per)), rel=1e-5)
    assert result.device == "cpu" and result.torch_version == torch.__version__


def test_matches_a_hand_written_loop_bit_for_bit() -> None:
    data = batches(3)
    model_a, model_b = mlp(), mlp()
    result = short_train(model_a, data, loss_fn=ce, optimizer=sgd, steps=6, device="cpu", seed=0)
    torch.manual_seed(0)
    opt = torch.optim.SGD(model_b.parameters(), lr=0.1)
    losses = []
    for step in range(6):
        x, y = data[step % 3]
        opt.zero_grad()
        loss = ce(model_b(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert result.losses == losses
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b)


def test_short_iterable_is_cycled_and_generator_replayed() -> None:
    data = batches(2)
    listed = short_train(mlp(), data, loss_fn=ce, optimizer=sgd, steps=5, device="cpu")
    generated = short_train(mlp(), (b for b in data), loss_fn=ce, optimizer=sgd, steps=5, device="cpu")
    assert listed.losses == generated.losses


def test_overfit_batch_repeats_the_first_batch_and_loss_falls() -> None:
    result = short_train(mlp(), batches(4), loss_fn=ce, optimizer=lambda p: torch.optim.Adam(p, lr=0.05),
                         steps=40, device="cpu", overfit_batch=True)
    single = short_train(mlp(), batches(4)[0], loss_fn=ce, optimizer=lambda p: torch.optim.Adam(p, lr=0.05),
                         steps=40, device="cpu")
    assert result.losses == single.losses
    result.assert_loss_decreased(factor=0.2)


def test_tuple_and_dict_inputs_and_extra_batch_fields() -> None:
    left, right, y = torch.randn(8, 4), torch.randn(8, 3), torch.randint(0, 2, (8,))
    as_tuple = short_train(TwoInputs(), [((left, right), y, "extra")], loss_fn=ce, optimizer=sgd, steps=3,
                           device="cpu")
    as_dict = short_train(TwoInputs(), [({"left": left, "right": right}, y)], loss_fn=ce, optimizer=sgd, steps=3,
                          device="cpu")
    assert as_tuple.losses == as_dict.losses


def test_optimizer_class_with_kwargs_and_instance() -> None:
    by_class = short_train(mlp(), blobs(), loss_fn=ce, optimizer=torch.optim.SGD, optimizer_kwargs={"lr": 0.1}, steps=4,
                           device="cpu")
    model = mlp()
    by_instance = short_train(model, blobs(), loss_fn=ce, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                              steps=4, device="cpu")
    by_factory = short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=4, device="cpu")
    assert by_class.losses == by_instance.losses == by_factory.losses


def test_scheduler_lrs_and_grad_clip() -> None:
    result = short_train(
        mlp(), blobs(), loss_fn=ce, optimizer=lambda p: torch.optim.SGD(p, lr=1.0), steps=4, device="cpu",
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5), grad_clip=1e-3,
    )
    assert result.lrs == [1.0, 0.5, 0.25, 0.125]
    unclipped = short_train(mlp(), blobs(), loss_fn=ce, optimizer=lambda p: torch.optim.SGD(p, lr=1.0),
                            scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
                            steps=4, device="cpu")
    # Recorded norms are before clipping; clipping to 1e-3 makes the steps tiny, so the loss barely moves.
    assert result.grad_norms[0] == unclipped.grad_norms[0]
    assert abs(result.losses[-1] - result.losses[0]) < abs(unclipped.losses[-1] - unclipped.losses[0])


def test_eval_fn_every_n_steps_and_model_mode_restored() -> None:
    x, y = blobs(64)
    seen_modes = []

    def accuracy(model: torch.nn.Module, step: int) -> dict[str, float]:
        model.eval()  # forgetting model.train() afterwards must not leak into training
        seen_modes.append(torch.is_grad_enabled())
        return {"accuracy": (model(x).argmax(1) == y).float().mean().item()}

    model = bn_mlp()
    result = short_train(model, (x, y), loss_fn=ce, optimizer=lambda p: torch.optim.Adam(p, lr=0.05),
                         steps=25, device="cpu", eval_fn=accuracy, eval_every=10)
    assert [s for s, _ in result.eval["accuracy"]] == [9, 19, 24]
    assert result.eval["accuracy"][-1][1] > 0.8
    assert model.training and seen_modes == [False, False, False]


def test_bf16_autocast_on_cpu() -> None:
    result = short_train(SmallCNN(), images(), loss_fn=ce, optimizer=sgd, steps=3, device="cpu", autocast=True)
    assert result.steps_run == 3
    result.assert_finite()
