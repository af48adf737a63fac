"""capture() pops its torch-function mode while a leaf module runs: what it records is the same,
and no mode is ever left behind, also when forward fails or enters a mode of its own."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from pytest_modelviz import capture
from pytest_modelviz.errors import CaptureError


def mode_stack_depth() -> int:
    # torch has no public way to read the stack; what a leaked mode would change is this depth.
    return len(torch.overrides._get_current_function_mode_stack())


class Counting(TorchFunctionMode):
    """A model's own mode: counts the calls it sees and passes them on."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        self.calls += 1
        return func(*args, **(kwargs or {}))


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x)).sum(-1) + x.mean()


class OwnMode(Plain):
    """The same computation, with the first layer called inside a mode the model enters."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = Counting()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.mode:
            h = self.fc(x)
        return self.act(h).sum(-1) + x.mean()


class Recovers(Plain):
    """A leaf that raises inside forward, caught by the model, which then goes on."""

    def __init__(self) -> None:
        super().__init__()
        self.bad = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            self.bad(x)  # wrong width: raises inside the leaf
        except RuntimeError:
            pass
        return super().forward(x)


class Fails(Plain):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.reshape(2, 2, 2)[:, :, :1].expand(2, 2, 3))


def test_a_mode_the_model_enters_is_kept_and_sees_its_calls() -> None:
    x = torch.randn(2, 4)
    model = OwnMode()
    text = capture(model, x).to_text()
    assert model.mode.calls > 0  # the model's mode saw the layer's ops, under capture too
    assert mode_stack_depth() == 0
    assert [line.split("  ")[1] for line in text.splitlines() if line[:1].isdigit()] == \
        [line.split("  ")[1] for line in capture(Plain(), x).to_text().splitlines() if line[:1].isdigit()]


def test_a_leaf_that_raises_and_is_caught_leaves_no_mode_behind() -> None:
    before = mode_stack_depth()
    graph = capture(Recovers(), torch.randn(2, 4))
    assert graph.node("output") is not None
    assert mode_stack_depth() == before


def test_a_failed_capture_leaves_no_mode_behind_and_the_next_capture_is_whole() -> None:
    with pytest.raises(CaptureError, match="module 'fc'"):
        capture(Fails(), torch.randn(2, 4))
    assert mode_stack_depth() == 0
    again = capture(Plain(), torch.randn(2, 4))
    assert [n.name for n in again.nodes] == ["input.x", "fc", "act", "sum", "mean", "add", "output"]


def test_inside_a_callers_mode_the_capture_is_the_same() -> None:
    x = torch.randn(2, 4)
    alone = capture(Plain(), x).to_text()
    outer = Counting()
    with outer:
        inside = capture(Plain(), x).to_text()
    assert inside == alone
    assert mode_stack_depth() == 0
