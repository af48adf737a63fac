"""Batches and losses as real training code has them: dicts, dataclasses and named tuples, a loss
that reads the batch, and a model that computes its own loss (as Hugging Face models do)."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from train_models import TwoInputs, blobs, ce, mlp, sgd

from pytest_modelviz import TrainingError, short_train

XY = namedtuple("XY", ["features", "label"])


@dataclass
class Example:
    features: torch.Tensor
    label: torch.Tensor


def tuple_losses(steps: int = 4) -> list[float]:
    return short_train(mlp(), blobs(32), loss_fn=ce, optimizer=sgd, steps=steps, device="cpu").losses


def test_dict_batch_with_a_named_target_trains_like_the_tuple() -> None:
    x, y = blobs(32)
    result = short_train(mlp(), [{"x": x, "y": y}], loss_fn=ce, optimizer=sgd, steps=4, device="cpu",
                         inputs="x", target="y")
    assert result.losses == tuple_losses()


def test_dict_batch_default_passes_every_other_key_as_keywords() -> None:
    left, right, y = torch.randn(8, 4), torch.randn(8, 3), torch.randint(0, 2, (8,))
    as_tuple = short_train(TwoInputs(), [((left, right), y)], loss_fn=ce, optimizer=sgd, steps=3,
                           device="cpu")
    as_dict = short_train(TwoInputs(), [{"left": left, "right": right, "labels": y}], loss_fn=ce,
                          optimizer=sgd, steps=3, device="cpu", target="labels")
    assert as_dict.losses == as_tuple.losses


def test_dataclass_and_namedtuple_batches_by_field_name() -> None:
    x, y = blobs(32)
    expected = tuple_losses()
    by_dataclass = short_train(mlp(), [Example(x, y)], loss_fn=ce, optimizer=sgd, steps=4, device="cpu",
                               inputs="features", target="label")
    by_namedtuple_name = short_train(mlp(), [XY(x, y)], loss_fn=ce, optimizer=sgd, steps=4, device="cpu",
                                     inputs="features", target="label")
    by_namedtuple_position = short_train(mlp(), [XY(x, y)], loss_fn=ce, optimizer=sgd, steps=4, device="cpu")
    assert by_dataclass.losses == by_namedtuple_name.losses == by_namedtuple_position.losses == expected


def test_one_dict_batch_given_directly() -> None:
    x, y = blobs(32)
    result = short_train(mlp(), {"x": x, "y": y}, loss_fn=ce, optimizer=sgd, steps=4, device="cpu",
                         inputs="x", target="y")
    assert result.losses == tuple_losses()


def test_inputs_as_a_list_of_names_become_keyword_arguments() -> None:
    left, right, y = torch.randn(8, 4), torch.randn(8, 3), torch.randint(0, 2, (8,))
    seen = []

    class Probe(TwoInputs):
        def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
            seen.append((left.shape[1], right.shape[1]))
            return super().forward(left, right)

    short_train(Probe(), [{"right": right, "left": left, "y": y, "id": torch.arange(8)}], loss_fn=ce,
                optimizer=sgd, steps=1, device="cpu", inputs=["left", "right"], target="y")
    assert seen == [(4, 3)]


def test_batch_fn_splits_any_batch() -> None:
    x, y = blobs(32)
    result = short_train(mlp(), [[("ignored", x, y)]], loss_fn=ce, optimizer=sgd, steps=4, device="cpu",
                         batch_fn=lambda batch: (batch[0][1], batch[0][2]))
    assert result.losses == tuple_losses()


def test_a_key_that_is_not_in_the_batch_names_the_keys_it_has() -> None:
    x, y = blobs(8)
    pattern = r"step 0: target='label' is not in the batch .*keys \['x', 'y'\]"
    with pytest.raises(TrainingError, match=pattern):
        short_train(mlp(), [{"x": x, "y": y}], loss_fn=ce, optimizer=sgd, steps=1, device="cpu", inputs="x",
                    target="label")


def test_a_dict_batch_without_target_and_a_plain_loss_says_how_to_choose() -> None:
    x, y = blobs(8)
    pattern = r"has no target for loss_fn\(output, target\)\. Name it with targ"
    with pytest.raises(TrainingError, match=pattern):
        short_train(mlp(), [{"x": x, "y": y}], loss_fn=ce, optimizer=sgd, steps=1, device="cpu", inputs="x")


def test_a_dict_batch_a_tensor_model_cannot_take_says_how_to_name_the_input() -> None:
    x, y = blobs(8)
    pattern = (r"step 0: model Sequential could not take the batch .*keyword arguments.*"
               r"model\(\*\*\{'x', 'y'\}\)\): name the model's input with inputs=")
    with pytest.raises(TrainingError, match=pattern):
        short_train(mlp(), [{"x": x, "y": y}], loss_fn=ce, optimizer=sgd, steps=1, device="cpu")


def test_batch_fn_and_inputs_together_are_refused() -> None:
    with pytest.raises(TrainingError, match="batch_fn replaces inputs= and target="):
        short_train(mlp(), blobs(8), loss_fn=ce, optimizer=sgd, steps=1, device="cpu",
                    batch_fn=lambda b: b, target=1)


# ------------------------------------------------------------------ losses


def test_loss_takes_batch_gets_the_whole_batch_on_the_device() -> None:
    x, y = blobs(32)
    weights = torch.ones(32)
    got = []

    def weighted(output: torch.Tensor, batch: dict) -> torch.Tensor:
        got.append(sorted(batch))
        return (F.cross_entropy(output, batch["y"], reduction="none") * batch["w"]).mean()

    result = short_train(mlp(), [{"x": x, "y": y, "w": weights}], loss_fn=weighted, loss_takes_batch=True,
                         optimizer=sgd, steps=4, device="cpu", inputs="x")
    assert got[0] == ["w", "x", "y"]
    assert result.losses == pytest.approx(tuple_losses(), rel=1e-6)


@dataclass
class CausalOutput:
    """Shaped like a Hugging Face ``ModelOutput`` as a dataclass with attributes."""

    loss: torch.Tensor | None
    logits: torch.Tensor


class OwnLoss(nn.Module):
    """Takes ``x`` and optional ``labels`` as keywords; returns its own loss when given labels."""

    def __init__(self, as_dict: bool = False) -> None:
        super().__init__()
        self.body = mlp()
        self.as_dict = as_dict

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> object:
        logits = self.body(x)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits} if self.as_dict else CausalOutput(loss=loss, logits=logits)


@pytest.mark.parametrize("as_dict", [False, True], ids=["attribute", "key"])
def test_a_model_that_computes_its_own_loss_needs_no_loss_fn(as_dict: bool) -> None:
    x, y = blobs(32)
    result = short_train(OwnLoss(as_dict), [{"x": x, "labels": y}], optimizer=sgd, steps=4, device="cpu")
    assert result.losses == tuple_losses()
    result.assert_params_updated()
    result.assert_resume_equivalent()


def test_no_loss_fn_and_no_loss_in_the_output_is_a_clear_error() -> None:
    x, y = blobs(8)
    pattern = r"step 0: no loss_fn was given and the output of OwnLoss has no lo"
    with pytest.raises(TrainingError, match=pattern):
        short_train(OwnLoss(), [{"x": x}], optimizer=sgd, steps=1, device="cpu")


# ------------------------------------------------------------------ wrapped models


def test_a_data_parallel_model_is_named_and_resumed_as_the_bare_model() -> None:
    bare = short_train(mlp(), blobs(32), loss_fn=ce, optimizer=sgd, steps=3, device="cpu")
    wrapped = short_train(nn.DataParallel(mlp()), blobs(32), loss_fn=ce, optimizer=sgd, steps=3, device="cpu")
    assert wrapped.name == "Sequential"
    names = ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert list(wrapped.param_grad_norms) == list(bare.param_grad_norms) == names
    assert wrapped.losses == bare.losses
    wrapped.assert_params_updated()
    wrapped.assert_resume_equivalent(fresh_model=mlp)  # the bare model's state_dict keys


@pytest.mark.slow
def test_a_compiled_model_is_named_and_resumed_as_the_bare_model() -> None:
    compiled = torch.compile(mlp(), backend="eager")  # the wrapper, without a C++ toolchain
    result = short_train(compiled, blobs(32), loss_fn=ce, optimizer=sgd, steps=3, device="cpu")
    assert result.name == "Sequential" and type(result.model).__name__ == "Sequential"
    assert list(result.param_grad_norms) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert result.losses == tuple_losses(3)
    result.assert_resume_equivalent(fresh_model=mlp)
