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
