"""The snapshot body: its layout, the round trip, and clear errors for corrupt files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torchvision
from graph_models import ConvNet, DictModel, Repeated, TiedLM, WithFusedLeaf

from pytest_modelviz import ArchitectureGraph, capture
from pytest_modelviz.errors import SnapshotFormatError


@pytest.fixture(scope="module")
def convnet_text() -> str:
    return capture(ConvNet(), torch.randn(1, 1, 28, 28)).to_text()


def test_layout_header_and_one_node_per_line(convnet_text: str) -> None:
    lines = convnet_text.splitlines()
    assert lines[:3] == ["# modelviz architecture v1", "model: ConvNet", "mode: train"]
    assert "inputs: x [1, 1, 28, 28] float32" in lines
    assert "totals: params=20,490  trainable=20,490  frozen=0  buffers=0  macs=1,031,744" in lines
    assert (
        "4  conv2  torch.nn.Conv2d(16, 32, kernel_size=(3, 3), padding=(1, 1))  "
        "[1, 16, 14, 14] float32 -> [1, 32, 14, 14] float32  params=4,640  macs=903,168  <- 3"
    ) in lines
    assert "    param conv2.weight [32, 16, 3, 3] float32" in lines
    assert lines[-1] == "9  output  output  [1, 10] float32 -> ()  <- 8"
    assert convnet_text.endswith("\n") and "0x" not in convnet_text and "cpu" not in convnet_text


@pytest.mark.parametrize(
    ("factory", "args", "kwargs"),
    [
        (ConvNet, (torch.randn(1, 1, 28, 28),), {}),
        (DictModel, ({"tokens": torch.randint(0, 50, (2, 5))},), {"scale": 0.5}),
        (TiedLM, (torch.randint(0, 20, (1, 4)),), {}),
        (Repeated, (torch.randn(2, 4),), {}),
        (WithFusedLeaf, (torch.randn(2, 4),), {}),
        (lambda: torchvision.models.resnet18(weights=None).eval(), (torch.randn(1, 3, 32, 32),), {}),
    ],
)
def test_round_trip_gives_back_the_same_graph(
    factory: Callable[[], torch.nn.Module], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    model = factory()
    for p in list(model.parameters())[:1]:
        p.requires_grad_(False)  # a frozen parameter survives the round trip too
    graph = capture(model, *args, **kwargs)
    parsed = ArchitectureGraph.from_text(graph.to_text())
    assert parsed == graph
    assert parsed.to_text() == graph.to_text()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: "", "line 1: expected '# modelviz architecture v1'"),
        (lambda t: t.replace("# modelviz architecture v1", "# modelviz architecture v9"), "line 1"),
        (lambda t: t.replace("mode: train", "mode: sideways"), "mode must be 'train' or 'eval'"),
        (lambda t: t.replace("4  conv2", "7  conv2"), "line 14: expected node 4"),
        (
            lambda t: t.replace("[1, 16, 14, 14] float32 -> [1, 32", "[1, 16, 14 float32 -> [1, 32"),
            "line 14: bad tensor list",
        ),
        (lambda t: t.replace("<- 3", "<- 12"), "line 14: a node can only consume earlier nodes"),
        (lambda t: t.replace("macs=903,168", "flops=903,168"), "line 14: unknown field 'flops=903,168'"),
        (lambda t: t.replace("    param conv2.weight", "    param conv2.weight ???"), "line 15: bad parameter line"),
        (lambda t: t.replace("totals: params=20,490", "totals: params=lots"), "expected a number, got 'lots'"),
    ],
)
def test_corrupt_text_names_the_line_and_the_fix(
    convnet_text: str, edit: Callable[[str], str], expected: str
) -> None:
    with pytest.raises(SnapshotFormatError) as info:
        ArchitectureGraph.from_text(edit(convnet_text))
    assert expected in str(info.value)
    assert "pytest --snapshot-update" in str(info.value)


# Every module name torch accepts: ModuleDict keys may hold spaces, line breaks, tabs, quotes,
# unicode, control characters, and the format's own separators.
ODD_NAMES = [
    "head 1", "a\rb", "a\nb", "tab\there", "ünï", "emoji😀", "quo'te\"s", "x  y", "trail ", " lead",
    '"q', "sep\u2028x", "nel\x85x", "nul\x00x", "zero\u200bwidth", "eq=1", "<- 3", "back\\slash",
]


class OddNames(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.heads = torch.nn.ModuleDict({name: torch.nn.Linear(3, 3) for name in ODD_NAMES})
        self.spare = torch.nn.ModuleDict({"never run\r\n": torch.nn.Linear(2, 2)})
        self.heads["tied copy"] = torch.nn.Linear(3, 3)
        self.heads["tied copy"].weight = self.heads["head 1"].weight

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for name in [*ODD_NAMES, "tied copy"]:
            x = self.heads[name](x)
        return {"out put\n": x}


def test_every_module_name_round_trips_and_each_node_stays_one_line() -> None:
    model = type("Odd class (v2)\n", (OddNames,), {})()
    model.heads["a\nb"].weight.requires_grad_(False)
    graph = capture(model, torch.randn(1, 3))
    text = graph.to_text()
    assert ArchitectureGraph.from_text(text) == graph
    assert ArchitectureGraph.from_text(text).to_text() == text
    lines = text.split("\n")
    assert text.splitlines() == lines[:-1]  # no character that any reader takes for a line break
    assert '1  "heads.head 1"  torch.nn.Linear(3, 3)  ' in text
    assert '    param "heads.a\\nb.weight" [3, 3] float32 frozen' in lines
    assert '    param "heads.tied copy.weight" [3, 3] float32 shared_with="heads.head 1.weight"' in lines
    assert 'model: "Odd class (v2)\\n"' in lines
    assert '"spare.never run\\r\\n"  torch.nn.Linear(2, 2)  params=6' in lines
    assert '  "heads.x \\u0020y"  ' in text  # never two spaces inside a field
    assert "  heads.ünï  " in text and "  heads.quo'te\"s  " in text  # plain words stay as they are


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('1  "heads.a  torch.nn.Linear(3, 3)  [1, 3] float32 -> [1, 3] float32  <- 0', "bad quoted name"),
        ('1  heads  "Odd(3)  [1, 3] float32 -> [1, 3] float32  <- 0', "bad quoted layer name"),
        ('1  heads  "Odd"3  [1, 3] float32 -> [1, 3] float32  <- 0', "must be followed by its arguments"),
        ('    param "a.weight [3, 3] float32', "bad parameter line"),
    ],
)
def test_a_broken_quoted_name_names_the_line(convnet_text: str, line: str, expected: str) -> None:
    lines = convnet_text.splitlines()
    if line.startswith("    "):
        lines[8] = line
    else:
        lines[8:10] = [line]
    with pytest.raises(SnapshotFormatError) as info:
        ArchitectureGraph.from_text("\n".join(lines) + "\n")
    assert expected in str(info.value) and "line 9" in str(info.value)
