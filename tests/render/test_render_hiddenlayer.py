"""hiddenlayer's folded, themed picture built from our capture."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from render_graphs import awkward_graph, conv_net_graph, spec

from pytest_modelviz.graph.model import ArchitectureGraph, Node, Totals
from pytest_modelviz.render import graphviz as gv
from pytest_modelviz.render import hiddenlayer_graph as hlg

hl = pytest.importorskip("hiddenlayer")


def _labels(dot: str) -> dict[str, str]:
    """Node id -> the text inside its HTML-like label's first cell."""
    return dict(re.findall(r"\t(n\d+) \[label=<<table[^>]*><tr><td cellpadding='6'>(.*?)</td>", dot))


def _edges(dot: str) -> list[tuple[str, str]]:
    return re.findall(r"\t(n\d+) -> (n\d+)", dot)


def test_conv_bn_relu_is_folded_and_dropout_bridged() -> None:
    dot = hlg.to_dot(conv_net_graph())
    labels = _labels(dot)
    assert list(labels.values()) == [
        "Input", "Conv3x3 &gt; BatchNorm &gt; Relu", "Flatten", "Linear &gt; Relu", "Output",
    ]
    assert list(labels) == ["n0", "n1", "n2", "n3", "n4"]  # renumbered in capture order
    # a chain: Dropout (between Relu and Flatten) is gone, but the edge across it is not
    assert sorted(_edges(dot)) == [("n0", "n1"), ("n1", "n2"), ("n2", "n3"), ("n3", "n4")]
    assert 'n1 -> n2 [label="2x8x8x8"]' in dot


def test_blue_theme_is_applied() -> None:
    dot = hlg.to_dot(conv_net_graph())
    theme = hl.graph.THEMES["blue"]
    assert f'fillcolor="{theme["fill_color"]}"' in dot
    assert "fontname=Verdana" in dot
    assert "rankdir=LR" in dot


def test_repeated_ops_fold_into_one_box_with_a_count() -> None:
    t = spec(1, 4)
    nodes = [Node(0, "input.x", "input", "input", outputs=(t,))]
    for i in range(1, 4):
        nodes.append(Node(i, f"act{i}", "module", "torch.nn.Sigmoid", inputs=(t,), outputs=(t,), parents=(i - 1,)))
    nodes.append(Node(4, "output", "output", "output", inputs=(t,), parents=(3,)))
    dot = hlg.to_dot(ArchitectureGraph("Stack", False, tuple(nodes), Totals(0, 0, 0, 0, 0)))
    assert list(_labels(dot).values()) == ["Input", "Sigmoid", "Output"]
    assert "x3</td>" in dot


def test_constants_are_pruned() -> None:
    """A node that reads no data (``expand`` of a parameter) is a constant, as hiddenlayer prunes them."""
    t = spec(1, 4)
    nodes = (
        Node(0, "input.x", "input", "input", outputs=(t,)),
        Node(1, "expand", "method", "Tensor.expand", outputs=(t,)),
        Node(2, "cat", "function", "torch.cat", inputs=(t, t), outputs=(spec(2, 4),), parents=(1, 0)),
        Node(3, "output", "output", "output", inputs=(spec(2, 4),), parents=(2,)),
    )
    dot = hlg.to_dot(ArchitectureGraph("Cat", False, nodes, Totals(0, 0, 0, 0, 0)))
    assert list(_labels(dot).values()) == ["Input", "Concat", "Output"]
    assert sorted(_edges(dot)) == [("n0", "n1"), ("n1", "n2")]


def test_titles_are_html_escaped() -> None:
    t = spec(1, 4)
    nodes = (
        Node(0, "input.x", "input", "input", outputs=(t,)),
        Node(1, "lambda", "function", "mymodel.<lambda>", inputs=(t,), outputs=(t,), parents=(0,)),
        Node(2, "output", "output", "output", inputs=(t,), parents=(1,)),
    )
    dot = hlg.to_dot(ArchitectureGraph("Lambda", False, nodes, Totals(0, 0, 0, 0, 0)))
    assert list(_labels(dot).values()) == ["Input", "&lt;lambda&gt;", "Output"]
    assert "<lambda>" not in dot
    assert hlg.to_dot(awkward_graph()).count("<table") == len(awkward_graph().nodes)


def test_same_graph_same_dot() -> None:
    assert hlg.to_dot(conv_net_graph()) == hlg.to_dot(conv_net_graph())


def test_drawn_by_our_renderer(tmp_path: Path) -> None:
    dot = tmp_path / "hiddenlayer.dot"
    dot.write_text(hlg.to_dot(conv_net_graph()), encoding="utf-8")
    pure = gv.Renderer(Path(sys.executable).parent / gv.PURE_NAME, "graphviz-pure")
    svg = gv.render_file(pure, dot, "svg").read_text(encoding="utf-8")
    assert "Conv3x3 &gt; BatchNorm &gt; Relu" in svg
