"""assert_deterministic: a second run from the same initial state repeats the first bit for bit,
or the check names the first step and parameter that differ."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import torch
from modelviz_testing import run_dir_of
from tensorboard.backend.event_processing import event_accumulator as ea
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from train_models import batches, blobs, bn_mlp, ce, mlp, sgd
from user_runs import USER_PRELUDE, folder_of, read_records

from pytest_modelviz import short_train
from pytest_modelviz.errors import TrainingError
from pytest_modelviz.train.state import fingerprints


class OwnGenerator(nn.Module):
    """Drops hidden units with a mask from a generator of its own, which no seed resets."""

    def __init__(self) -> None:
        super().__init__()
        self.body = mlp()
        self.g = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.body[1](self.body[0](x))
        mask = (torch.rand(hidden.shape, generator=self.g) > 0.5).float()
        return self.body[2](hidden * mask * 2)


class _ScaledGrad(torch.autograd.Function):
    """The identity forward; the gradient scaled by ``scale`` backward."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (scale,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * scale, None


class NoiseOnTheHead(nn.Module):
    """Unseeded noise that reaches only the head weight's gradient: every loss and the body agree."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(4, 16)
        self.head = nn.Linear(16, 2)
        self.g = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = _ScaledGrad.apply(self.head.weight, 1 + torch.rand((), generator=self.g))
        return nn.functional.linear(torch.relu(self.body(x)), weight, self.head.bias)


def test_healthy_runs_pass() -> None:
    short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=8, device="cpu").assert_deterministic()
    # nn.Dropout draws from torch's global RNG, which the seed resets; BatchNorm's buffers are restored.
    result = short_train(bn_mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=8, device="cpu")
    result.assert_deterministic()


def test_optimizer_instance_and_scheduler_start_from_their_initial_state() -> None:
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    result = short_train(model, batches(), loss_fn=ce, optimizer=opt, steps=9, device="cpu",
                         scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.5))
    result.assert_deterministic()
    assert result.lrs[0] != result.lrs[-1]  # the schedule moved, and the second run followed it from the start


@pytest.mark.parametrize("options", [
    {"eval_fn": lambda model, step: {"first": float(next(model.parameters()).sum())}, "eval_every": 2},
    {"accumulate": 2, "grad_clip": 0.1},
    {"overfit_batch": True},
    {"autocast": True},
    {"optimizer": torch.optim.Adam, "optimizer_kwargs": {"lr": 0.01}},
    {"scheduler": lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0)},
    {"optimizer": lambda params: torch.optim.SGD(params, lr=1e8), "raise_on_nonfinite": False},
], ids=["eval", "accumulate-clip", "overfit", "bfloat16", "class-kwargs", "plateau", "nonfinite"])
def test_options_are_repeated_by_the_second_run(options: dict[str, object]) -> None:
    kwargs = {"loss_fn": ce, "optimizer": sgd, "steps": 6, "device": "cpu", **options}
    result = short_train(bn_mlp(), batches(), **kwargs)
    result.assert_deterministic()  # a run that went NaN goes NaN at the same step again


class GrowingBuffer(nn.Module):
    """A buffer that grows by one entry per forward, and feeds back into the output."""

    def __init__(self) -> None:
        super().__init__()
        self.body = mlp()
        self.register_buffer("seen", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = torch.cat([self.seen, x.mean().reshape(1)])
        return self.body(x) + self.seen.mean()


def test_buffers_get_their_initial_shape_and_values_back() -> None:
    result = short_train(GrowingBuffer(), blobs(), loss_fn=ce, optimizer=sgd, steps=4, device="cpu")
    assert result.model.seen.shape == (5,)
    result.assert_deterministic()  # the second run starts again from one entry
    assert result.model.seen.shape == (5,)


def test_the_check_leaves_the_trained_model_and_the_callers_rng_alone() -> None:
    result = short_train(bn_mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=5, device="cpu")
    tensors = {**dict(result.model.named_parameters()), **dict(result.model.named_buffers())}
    before = fingerprints(tensors)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    result.assert_deterministic()
    assert torch.equal(torch.rand(3), expected)
    assert fingerprints(tensors) == before
    assert result.final == {f"param:{k}" if k in dict(result.model.named_parameters()) else f"buffer:{k}": v
                            for k, v in before.items()}


def test_model_with_its_own_generator_fails_naming_step_and_parameter() -> None:
    result = short_train(OwnGenerator(), blobs(), loss_fn=ce, optimizer=sgd, steps=6, device="cpu")
    with pytest.raises(AssertionError) as info:
        result.assert_deterministic()
    message = str(info.value)
    assert message.startswith("OwnGenerator: two runs from the same initial state with seed 0 are not bit-identical")
    assert re.search(r"first step whose loss differs: 0 \([0-9.e-]+ vs [0-9.e-]+\)", message)
    assert "first parameter whose gradient differs: body.0.weight at step 0" in message
    assert "first parameter that differs after training: body.0.weight" in message
    assert "torch.Generator the model, dataset or sampler owns" in message
    assert "The data does not replay" not in message  # the data is not at fault


def test_a_difference_in_a_gradient_only_is_named_even_when_the_losses_agree() -> None:
    result = short_train(NoiseOnTheHead(), blobs(), loss_fn=ce, optimizer=sgd, steps=1, device="cpu")
    with pytest.raises(AssertionError) as info:
        result.assert_deterministic()
    message = str(info.value)
    assert "first step whose loss differs" not in message  # one step: the loss is computed before any update
    assert "first parameter whose gradient differs: head.weight at step 0" in message
    assert "first parameter that differs after training: head.weight; all that differ (1): head.weight" in message
    assert "body" not in message


def test_shuffled_dataloader_replays_under_the_seed() -> None:
    loader = DataLoader(TensorDataset(*blobs()), batch_size=8, shuffle=True)
    result = short_train(mlp(), loader, loss_fn=ce, optimizer=sgd, steps=20, device="cpu")  # 2.5 epochs
    result.assert_deterministic()


def test_dataloader_with_its_own_generator_replays_from_where_training_found_it() -> None:
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(TensorDataset(*blobs()), batch_size=8, shuffle=True, generator=generator)
    result = short_train(mlp(), loader, loss_fn=ce, optimizer=sgd, steps=12, device="cpu")
    after_training = generator.get_state()
    result.assert_deterministic()
    assert torch.equal(generator.get_state(), after_training)  # the loader is left where training left it


class NoisyDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Augments with noise from a generator of its own, which no seed resets."""

    def __init__(self) -> None:
        self.x, self.y = blobs()
        self.g = torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i] + 0.1 * torch.randn(4, generator=self.g), self.y[i]


def test_data_that_does_not_replay_is_named_as_the_cause() -> None:
    result = short_train(mlp(), DataLoader(NoisyDataset(), batch_size=8), loss_fn=ce, optimizer=sgd, steps=4,
                         device="cpu")
    with pytest.raises(AssertionError) as info:
        result.assert_deterministic()
    message = str(info.value)
    assert "first step whose loss differs: 0" in message
    assert "The data does not replay: two passes over it from the start give different batches at step 0" in message


def test_one_shot_iterator_is_replayed_from_what_it_yielded() -> None:
    def stream() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from batches(3)

    result = short_train(mlp(), stream(), loss_fn=ce, optimizer=sgd, steps=7, device="cpu")  # cycles the cache
    result.assert_deterministic()


def test_without_the_initial_state_the_check_says_how_to_keep_it() -> None:
    result = short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=2, device="cpu", keep_initial_state=False)
    assert result.rerun is None
    with pytest.raises(TrainingError, match=r"keep_initial_state=False.*Leave keep_initial_state at its default"):
        result.assert_deterministic()


def test_a_run_that_failed_part_way_is_refused() -> None:
    kept: list[object] = []
    calls = iter(range(100))

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if next(calls) == 2:
            raise RuntimeError("boom")
        return ce(out, target)

    with pytest.raises(TrainingError, match="boom"):
        short_train(mlp(), blobs(), loss_fn=loss, optimizer=sgd, steps=5, device="cpu", on_end=kept.append)
    [partial] = kept
    with pytest.raises(TrainingError, match=r"training failed part way \(TrainingError: step 2: loss_fn raised"):
        partial.assert_deterministic()  # type: ignore[attr-defined]


def test_check_outcome_reaches_the_reporter() -> None:
    seen: list[tuple[str, bool]] = []
    result = short_train(OwnGenerator(), blobs(), loss_fn=ce, optimizer=sgd, steps=2, device="cpu",
                         on_check=lambda check, passed, _message: seen.append((check, passed)))
    with pytest.raises(AssertionError):
        result.assert_deterministic()
    assert seen == [("assert_deterministic", False)]  # reported once: the second run reports nothing


USER_TESTS = "\nimport pytest\n" + USER_PRELUDE + """

class OwnGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = make_model()
        self.g = torch.Generator().manual_seed(0)

    def forward(self, x):
        return self.body(x * (torch.rand(x.shape, generator=self.g) > 0.5))


def test_healthy(short_train):
    result = short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=12)
    result.assert_deterministic()


def test_own_generator(short_train):
    result = short_train(OwnGenerator(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=12)
    result.assert_deterministic()
"""


def test_as_a_user_runs_it_with_modelviz_nothing_is_logged_twice(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("--modelviz", "--modelviz-device=cpu", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*OwnGenerator: two runs from the same initial state with seed 0 are not bit-identical*",
        "*first step whose loss differs: 0 (*",
        "*first parameter whose gradient differs: body.0.weight at step 0 (norm *",
    ])
    run_dir = run_dir_of(pytester)
    for test, passed in (("test_healthy", True), ("test_own_generator", False)):
        folder = folder_of(run_dir, test)
        records = read_records(folder)
        assert [(r["name"], r["passed"]) for r in records if r["kind"] == "check"] == [("assert_deterministic", passed)]
        assert len([r for r in records if r["kind"] == "train"]) == 1  # the second run is not a run of its own
        acc = ea.EventAccumulator(str(folder / "tensorboard"), size_guidance={ea.SCALARS: 0})
        acc.Reload()
        assert [e.step for e in acc.Scalars("train/loss")] == list(range(12))  # logged once
