"""The semantic diff: what a reviewer reads first when an architecture snapshot changes."""

from __future__ import annotations

import torch
from graph_models import ConvNet, Repeated
from torch import nn

from pytest_modelviz import capture
from pytest_modelviz.graph.diff import raw_diff

X = torch.randn(1, 1, 28, 28)


def test_widening_conv2_names_the_layer_the_params_and_the_knock_on_linear() -> None:
    old = capture(ConvNet(32), X)
    new = capture(ConvNet(64), X)
    diff = old.diff(new)
    assert diff
    text = str(diff)
    assert (
        "conv2: Conv2d(16, 32, kernel_size=(3, 3), padding=(1, 1)) -> "
        "Conv2d(16, 64, kernel_size=(3, 3), padding=(1, 1))"
    ) in text
    assert "params +4,640 (4,640 -> 9,280)" in text
    assert "fc.0: Linear(1568, 10) -> Linear(3136, 10); input [1, 1568] float32 -> [1, 3136] float32" in text
    assert "shapes changed downstream: relu#2, max_pool2d#2, flatten" in text
    assert "total params 20,490 -> 40,810 (+20,320)" in text
    assert "trainable params 20,490 -> 40,810 (+20,320)" in text
    assert text.index("conv2:") < text.index("fc.0:") < text.index("total params")


def test_identical_graphs_have_an_empty_diff() -> None:
    assert not capture(ConvNet(), X).diff(capture(ConvNet(), X))
    assert str(capture(ConvNet(), X).diff(capture(ConvNet(), X))) == ""


def test_added_removed_frozen_mode_and_unused_changes() -> None:
    class Deeper(ConvNet):
        def __init__(self) -> None:
            super().__init__()
            self.extra = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.extra(super().forward(x))

    old = capture(ConvNet(), X)
    deeper = Deeper()
    deeper.conv1.requires_grad_(False)
    new = capture(deeper.eval(), X)
    lines = old.diff(new).lines()
    assert "model ConvNet -> Deeper" in lines
    assert "mode train -> eval" in lines
    assert "added extra: ReLU [1, 10] float32 after fc.0" in lines
    assert "conv1: trainable 160 -> 0" in lines
    assert "frozen params 0 -> 160 (+160)" in lines
    back = new.diff(old).lines()
    assert "removed extra: ReLU [1, 10] float32" in back

    class Rewired(Repeated):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.unused_head(self.block(x))

    lines = capture(Repeated(), torch.randn(2, 4)).diff(capture(Rewired(), torch.randn(2, 4))).lines()
    assert "now used: unused_head" in lines
    assert "removed tanh: tanh [2, 4] float32" in lines


def test_layer_lines_are_capped_unless_asked_for_all() -> None:
    class Wide(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.layers = nn.Sequential(*[nn.Linear(width, width) for _ in range(80)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layers(x)

    diff = capture(Wide(4), torch.randn(1, 4)).diff(capture(Wide(5), torch.randn(1, 5)))
    assert len(diff.lines(limit=None)) > 80
    capped = diff.lines(limit=10)
    assert "... 72 more changed layers" in capped  # input.x, 80 layers and the downstream line
    assert len(capped) == 10 + 1 + len(diff.model) + len(diff.totals)


def test_raw_diff_is_a_capped_unified_diff() -> None:
    old = capture(ConvNet(32), X).to_text()
    new = capture(ConvNet(64), X).to_text()
    full = raw_diff(old, new, limit=None)
    assert full[:2] == ["--- snapshot", "+++ captured"]
    assert any(line.startswith("-4  conv2") for line in full)
    assert any(line.startswith("+4  conv2") for line in full)
    capped = raw_diff(old, new, limit=5)
    assert len(capped) == 6 and capped[-1].startswith(f"... {len(full) - 5} more diff lines")


def test_a_new_input_shape_is_its_own_line_not_downstream() -> None:
    old = capture(ConvNet(), X)
    new = capture(ConvNet(), torch.randn(2, 1, 28, 28))
    lines = old.diff(new).lines()
    assert "input.x: output [1, 1, 28, 28] float32 -> [2, 1, 28, 28] float32" in lines
    [downstream] = [line for line in lines if line.startswith("shapes changed downstream:")]
    assert "input" not in downstream
    assert downstream.startswith("shapes changed downstream: conv1, relu, max_pool2d, conv2")
