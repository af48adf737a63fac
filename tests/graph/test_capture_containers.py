"""capture() sees tensors inside every container a model returns or takes: dataclasses, named
tuples, dicts and Hugging Face style ``ModelOutput`` (an ordered dict that is also a dataclass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from model_outputs import ModelOutputLike
from torch import nn

from pytest_modelviz import capture


@dataclass
class Output:
    logits: torch.Tensor
    hidden: torch.Tensor
    note: str = "not a tensor"


class Pair(NamedTuple):
    logits: torch.Tensor
    hidden: torch.Tensor


class Encoder(nn.Module):
    def __init__(self, wrap) -> None:  # noqa: ANN001
        super().__init__()
        self.enc = nn.Linear(4, 8)
        self.head = nn.Linear(8, 2)
        self.wrap = wrap

    def forward(self, x: torch.Tensor):  # noqa: ANN201
        hidden = self.enc(x)
        return self.wrap(self.head(hidden), hidden)


def test_a_dataclass_output_is_captured_field_by_field_with_its_edges() -> None:
    g = capture(Encoder(lambda logits, hidden: Output(logits, hidden)), torch.randn(3, 4))
    out = g.node("output")
    assert [str(s) for s in out.inputs] == ["[3, 2] float32", "[3, 8] float32"]
    assert [v for _, v in out.args] == ["'logits'", "'hidden'"]  # named by field
    assert [g.nodes[p].name for p in out.parents] == ["head", "enc"]
    assert "output('logits', 'hidden')  [3, 2] float32, [3, 8] float32 -> ()  <- 2, 1" in g.to_text()


def test_a_model_output_like_ordered_dict_is_read_as_its_set_fields() -> None:
    model = Encoder(lambda logits, hidden: ModelOutputLike(logits=logits, hidden=hidden))
    g = capture(model, torch.randn(3, 4))
    out = g.node("output")
    assert [v for _, v in out.args] == ["'logits'", "'hidden'"]  # loss is None: not a field that is set
    assert [g.nodes[p].name for p in out.parents] == ["head", "enc"]


def test_a_dataclass_between_layers_keeps_the_edges() -> None:
    class Inner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> Output:
            return Output(self.lin(x), x)

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()
            self.lin = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.inner(x)
            return self.lin(out.logits)

    g = capture(Outer(), torch.randn(2, 4))
    assert [g.nodes[p].name for p in g.node("lin").parents] == ["inner.lin"]


def test_a_dataclass_input_is_named_by_its_fields() -> None:
    class TakesBatch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, batch: Output) -> torch.Tensor:
            return self.lin(batch.logits) + batch.hidden

    g = capture(TakesBatch(), Output(torch.randn(2, 4), torch.randn(2, 2)))
    assert [n.name for n in g.nodes if n.kind == "input"] == ["input.batch.logits", "input.batch.hidden"]


def test_named_tuples_keep_their_positional_names() -> None:
    # Positions, as before dataclasses were read: existing snapshots of such models do not change.
    g = capture(Encoder(lambda logits, hidden: Pair(logits, hidden)), torch.randn(3, 4))
    assert [v for _, v in g.node("output").args] == ["'0'", "'1'"]
