"""short_train's finiteness check looks inside whatever the model returns, and names the field."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn
from train_models import blobs, sgd

from pytest_modelviz import short_train
from pytest_modelviz.train import step


@dataclass
class Output:
    logits: torch.Tensor
    aux: torch.Tensor


class NaNAux(nn.Module):
    """Healthy logits; an auxiliary field that is all NaN (the loss never reads it)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> Output:
        logits = self.lin(x)
        return Output(logits=logits, aux=logits * float("nan"))


def logits_ce(output: Output, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(output.logits, target)


def test_a_nan_field_of_a_dataclass_output_fails_naming_the_field() -> None:
    result = short_train(NaNAux(), blobs(16), loss_fn=logits_ce, optimizer=sgd, steps=4, device="cpu",
                         raise_on_nonfinite=False)
    assert result.steps_run == 1
    with pytest.raises(AssertionError, match=r"step 0: the model's output 'aux' has NaN/Inf values"):
        result.assert_finite()


def test_the_walker_reads_nested_dataclasses_and_names_the_path() -> None:
    good, bad = torch.ones(2), torch.tensor([1.0, float("inf")])
    output = (good, {"heads": Output(logits=good, aux=bad)}, torch.tensor([1]))
    assert len(step.output_tensors(output)) == 3  # the int tensor is not checked
    assert step.nonfinite_output(output) == "1.heads.aux"
    assert step.nonfinite_output(bad) == ""
    assert step.nonfinite_output(output[:1]) is None


def test_users_see_the_field_when_short_train_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from dataclasses import dataclass

        import torch
        from torch import nn


        @dataclass
        class Output:
            logits: torch.Tensor
            aux: torch.Tensor


        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(4, 2)

            def forward(self, x):
                logits = self.lin(x)
                return Output(logits, logits * float("nan"))


        def test_trains(short_train):
            torch.manual_seed(0)
            x = torch.randn(16, 4)
            short_train(Model(), (x, (x[:, 0] > 0).long()),
                        loss_fn=lambda out, y: nn.functional.cross_entropy(out.logits, y),
                        optimizer=lambda p: torch.optim.SGD(p, lr=0.1), steps=3)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*step 0: the model's output 'aux' has NaN/Inf values*"])


class Scaled(nn.Module):
    """Logits times ``scale`` plus an extra output field ``extra`` the loss never reads."""

    def __init__(self, scale: float, extra: torch.Tensor) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin, self.scale, self.extra = nn.Linear(4, 2), scale, extra

    def forward(self, x: torch.Tensor) -> Output:
        logits = self.lin(x)
        return Output(logits=logits, aux=(logits.detach() * self.scale).to(self.extra.dtype) + self.extra)


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        (torch.tensor([0.0, float("-inf")]), "a -inf alone"),
        (torch.tensor([float("inf"), 1.0], dtype=torch.float16), "a float16 inf"),
        (torch.tensor([1.0, float("nan")], dtype=torch.bfloat16), "a bfloat16 NaN"),
    ],
)
def test_any_nonfinite_output_value_stops_training(extra: torch.Tensor, where: str) -> None:
    result = short_train(Scaled(1.0, extra[None, :]), blobs(16), loss_fn=logits_ce, optimizer=sgd, steps=4,
                         device="cpu", raise_on_nonfinite=False)
    assert result.steps_run == 1, where
    with pytest.raises(AssertionError, match=r"step 0: the model's output 'aux' has NaN/Inf values"):
        result.assert_finite()


def test_large_finite_outputs_and_empty_ones_are_finite() -> None:
    # max - min of these would overflow float32: the check must not mistake them for infinities.
    big = torch.tensor([3e38, -3e38])
    extremes = step.output_extremes((big, torch.empty(0), torch.tensor([1])))
    assert [float(v) for v in extremes] == pytest.approx([-3e38, 3e38])
    result = short_train(Scaled(1.0, big[None, :]), blobs(16), loss_fn=logits_ce, optimizer=sgd, steps=3,
                         device="cpu")
    assert result.steps_run == 3 and result.nonfinite is None


class FourScalars(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.ParameterList([nn.Parameter(torch.zeros(1)) for _ in range(4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(self.w, torch.zeros(1)) * x.new_ones(len(x))


def test_a_global_gradient_norm_beyond_float32_is_finite_when_every_gradient_is() -> None:
    # Each gradient is 1e19, finite in float32, and so is each norm; the sum of their squares is
    # not. The global norm is taken in double precision on the host, so the step is finite.
    result = short_train(FourScalars(), blobs(16), loss_fn=lambda out, y: out.mean() * 1e19,
                         optimizer=lambda p: torch.optim.SGD(p, lr=0.0), steps=2, device="cpu")
    assert result.steps_run == 2 and result.nonfinite is None
    assert [result.param_grad_norms[n][0] for n in result.trainable] == [pytest.approx(1e19, rel=1e-6)] * 4
    assert result.grad_norms[0] == pytest.approx(2e19, rel=1e-6)
