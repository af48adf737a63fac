"""Hand-built architecture graphs for the render tests (no torch, no capture).

A helper module rather than ``conftest.py``: other test folders import the top-level
``conftest`` by name, which a second ``conftest.py`` here would shadow during collection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_modelviz.graph.model import ArchitectureGraph, Node, ParamSpec, TensorSpec, Totals


def spec(*shape: int) -> TensorSpec:
    return TensorSpec(tuple(shape), "float32")


def param(name: str, *shape: int) -> ParamSpec:
    return ParamSpec(name, tuple(shape), "float32", trainable=True)


def conv_net_graph() -> ArchitectureGraph:
    """input -> features.{Conv2d, BatchNorm2d, ReLU, Dropout} -> flatten -> fc -> relu -> output."""
    x, feat, flat, logits = spec(2, 3, 8, 8), spec(2, 8, 8, 8), spec(2, 512), spec(2, 10)
    nodes = (
        Node(0, "input.x", "input", "input", outputs=(x,)),
        Node(1, "features.0", "module", "torch.nn.Conv2d", scope="features",
             args=(("0", "3"), ("1", "8"), ("kernel_size", "(3, 3)"), ("stride", "(1, 1)")),
             inputs=(x,), outputs=(feat,),
             params=(param("features.0.weight", 8, 3, 3, 3), param("features.0.bias", 8)), parents=(0,)),
        Node(2, "features.1", "module", "torch.nn.BatchNorm2d", scope="features", inputs=(feat,),
             outputs=(feat,), params=(param("features.1.weight", 8), param("features.1.bias", 8)),
             parents=(1,)),
        Node(3, "features.2", "module", "torch.nn.ReLU", scope="features", inputs=(feat,), outputs=(feat,),
             parents=(2,)),
        Node(4, "features.3", "module", "torch.nn.Dropout", scope="features", inputs=(feat,), outputs=(feat,),
             parents=(3,)),
        Node(5, "flatten", "function", "torch.flatten", args=(("0", "1"),), inputs=(feat,), outputs=(flat,),
             parents=(4,)),
        Node(6, "fc", "module", "torch.nn.Linear", inputs=(flat,), outputs=(logits,),
             params=(param("fc.weight", 10, 512), param("fc.bias", 10)), parents=(5,)),
        Node(7, "relu", "function", "torch.nn.functional.relu", inputs=(logits,), outputs=(logits,), parents=(6,)),
        Node(8, "output", "output", "output", inputs=(logits,), parents=(7,)),
    )
    return ArchitectureGraph("ConvNet", False, nodes, Totals(params=5370, trainable=5370, frozen=0, buffers=17, macs=0))


AWKWARD_NAMES = ('say "hi"', "a<b>&c", "naïve.模块", "back\\slash", "two\nlines")


def awkward_graph() -> ArchitectureGraph:
    """Module and model names with quotes, ``<>&``, non-ASCII text, a backslash and a newline."""
    t = spec(1, 4)
    nodes = [Node(0, "input.x", "input", "input", outputs=(t,))]
    for i, name in enumerate(AWKWARD_NAMES, start=1):
        nodes.append(Node(i, name, "module", f"my.pkg.Weird{i}", scope=name.rsplit(".", 1)[0] if "." in name else "",
                          inputs=(t,), outputs=(t,), parents=(i - 1,)))
    nodes.append(Node(len(nodes), "output", "output", "output", inputs=(t,), parents=(len(nodes) - 1,)))
    return ArchitectureGraph('Model "<ü>"', True, tuple(nodes), Totals(0, 0, 0, 0, 0))


def read_graph(path: Path) -> Any:  # -> TensorBoard's GraphDef
    """The Graphs-tab event under ``path`` (a logdir or one event file), read back with TensorBoard's
    own ``EventAccumulator``."""
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(path))
    acc.Reload()
    return acc.Graph()
