"""The one walker over what models take and return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from model_outputs import ModelOutputLike

from pytest_modelviz.nested import iter_tensors, map_tensors, tensors


@dataclass(frozen=True)
class Frozen:
    logits: torch.Tensor
    label: str = "x"


class Pair(NamedTuple):
    a: torch.Tensor
    b: int


def test_paths_follow_positions_keys_and_fields_in_order() -> None:
    t = torch.zeros(1)
    value = (t, [Pair(t, 3)], {"k": Frozen(t), 2: ModelOutputLike(logits=t)}, "text", 4)
    assert [p for p, _ in iter_tensors(value)] == ["0", "1.0.0", "2.k.logits", "2.2.logits"]
    assert list(iter_tensors(t)) == [("", t)]
    assert tensors(ModelOutputLike()) == []  # no field set: nothing in it


def test_map_rebuilds_each_container_as_its_own_type() -> None:
    t = torch.arange(4.0)
    value = {"pair": Pair(t, 3), "frozen": Frozen(t), "out": ModelOutputLike(logits=t), "list": [t, 1]}
    halved = map_tensors(value, lambda x: x / 2)
    assert isinstance(halved["pair"], Pair) and halved["pair"].b == 3
    assert isinstance(halved["frozen"], Frozen) and halved["frozen"].label == "x"
    out = halved["out"]
    assert isinstance(out, ModelOutputLike) and out.loss is None
    assert torch.equal(out["logits"], t / 2) and torch.equal(out.logits, t / 2)  # item and attribute agree
    assert all(torch.equal(x, t / 2) for x in tensors(halved))
    assert torch.equal(value["frozen"].logits, t), "the original is left as it was"


def test_map_returns_a_container_without_tensors_as_the_same_object() -> None:
    size = torch.Size([2, 3])
    value = (size, {"a": 1})
    assert map_tensors(value, lambda x: x) is value


def test_a_container_that_holds_itself_is_walked_once() -> None:
    @dataclass
    class Node:
        value: torch.Tensor
        parent: object = None
        children: list = None  # type: ignore[assignment]

    t = torch.ones(1)
    root = Node(t, children=[])
    root.children.append(Node(t * 2, parent=root))
    assert [p for p, _ in iter_tensors(root)] == ["value", "children.0.value"]
    doubled = map_tensors(root, lambda x: x * 2)
    assert torch.equal(doubled.value, t * 2) and torch.equal(doubled.children[0].value, t * 4)
