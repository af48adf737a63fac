"""The Graphs-tab event, read back with TensorBoard's own ``EventAccumulator``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "render"))
from render_graphs import awkward_graph, conv_net_graph, read_graph  # noqa: E402

from pytest_modelviz.tensorboard.graph import tb_names, to_graph_def, write_graph_event  # noqa: E402

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")



def test_graph_event_reads_back_with_names_ops_inputs_and_shapes(tmp_path: Path) -> None:
    graph = conv_net_graph()
    path = write_graph_event(to_graph_def(graph), tmp_path / "tensorboard")
    assert path.parent == tmp_path / "tensorboard" and "tfevents" in path.name
    read = read_graph(tmp_path / "tensorboard")
    nodes = {n.name: n for n in read.node}
    assert list(nodes) == [
        "ConvNet/input.x", "ConvNet/features/0", "ConvNet/features/1", "ConvNet/features/2",
        "ConvNet/features/3", "ConvNet/flatten", "ConvNet/fc", "ConvNet/relu", "ConvNet/output",
    ]
    conv = nodes["ConvNet/features/0"]
    assert conv.op == "Conv2d"
    assert list(conv.input) == ["ConvNet/input.x"]
    assert [d.size for d in conv.attr["_output_shapes"].list.shape[0].dim] == [2, 8, 8, 8]
    assert conv.attr["num_params"].i == 224
    assert conv.attr["parameters"].s.decode() == (
        "features.0.weight [8, 3, 3, 3] float32; features.0.bias [8] float32")
    assert "kernel_size=(3, 3)" in conv.attr["attr"].s.decode()
    assert nodes["ConvNet/input.x"].op == "Input" and nodes["ConvNet/output"].op == "Output"
    assert list(nodes["ConvNet/output"].input) == ["ConvNet/relu"]
    assert read.versions.producer == 22


def test_names_are_unique_and_use_the_node_name_alphabet() -> None:
    names = tb_names(awkward_graph())
    assert len(set(names)) == len(names)
    for name in names:
        assert all(c.isascii() and (c.isalnum() or c in "_.-/>") for c in name), name


def test_repeated_calls_and_scoped_ops_get_module_paths() -> None:
    from pytest_modelviz.graph.model import ArchitectureGraph, Node, Totals

    nodes = (
        Node(0, "input.x", "input", "input"),
        Node(1, "blocks.0.act", "module", "torch.nn.ReLU", scope="blocks.0", parents=(0,)),
        Node(2, "blocks.0.act#2", "module", "torch.nn.ReLU", scope="blocks.0", parents=(1,)),
        Node(3, "blocks.0.add", "operator", "operator.add", scope="blocks.0", parents=(2, 0)),
        Node(4, "mul", "operator", "operator.mul", scope="head", parents=(3,)),
        Node(5, "output", "output", "output", parents=(4,)),
    )
    names = tb_names(ArchitectureGraph("Net", True, nodes, Totals(0, 0, 0, 0, 0)))
    assert names == ["Net/input.x", "Net/blocks/0/act", "Net/blocks/0/act_2", "Net/blocks/0/add",
                     "Net/head/mul", "Net/output"]


def test_graphs_do_not_overwrite_each_other_or_a_summary_writer(tmp_path: Path) -> None:
    from tensorboardX import SummaryWriter

    logdir = tmp_path / "tb"
    writer = SummaryWriter(logdir=str(logdir))
    writer.add_scalar("loss", 1.5, 0)
    first = write_graph_event(to_graph_def(conv_net_graph()), logdir)
    second = write_graph_event(to_graph_def(awkward_graph()), logdir)
    writer.close()
    assert first != second and first.is_file() and second.is_file()
    acc = event_accumulator.EventAccumulator(str(logdir))
    acc.Reload()
    assert [e.value for e in acc.Scalars("loss")] == [1.5]
    # the run's graph is the last one written; the first is still in its own file
    assert acc.Graph().node[0].name.startswith("Model")
    assert read_graph(first).node[0].name == "ConvNet/input.x"

