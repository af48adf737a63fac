"""DOT text from our capture: deterministic bytes, escaped labels, data edges, nested clusters."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from render_graphs import AWKWARD_NAMES, awkward_graph, conv_net_graph

from pytest_modelviz.render.dot import node_label, quote, to_dot

if TYPE_CHECKING:
    from pytest_modelviz.graph.model import ArchitectureGraph

HERE = Path(__file__).parent


def test_same_graph_gives_the_same_bytes() -> None:
    assert to_dot(conv_net_graph()) == to_dot(conv_net_graph())
    assert to_dot(awkward_graph()) == to_dot(awkward_graph())


def test_bytes_do_not_depend_on_process_or_hash_seed() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from render_graphs import awkward_graph, conv_net_graph;"
        "from pytest_modelviz.render.dot import to_dot;"
        "sys.stdout.buffer.write((to_dot(conv_net_graph()) + to_dot(awkward_graph())).encode())"
    )
    outs = []
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", code, str(HERE)], capture_output=True, env=env, timeout=60,
                              check=True)
        outs.append(proc.stdout)
    assert outs[0] == outs[1]
    assert outs[0].decode() == to_dot(conv_net_graph()) + to_dot(awkward_graph())


def test_nodes_edges_and_shapes() -> None:
    graph = conv_net_graph()
    text = to_dot(graph)
    for node in graph.nodes:
        assert f"n{node.index} [label=" in text
    for src, dst in graph.edges:
        assert f"  n{src} -> n{dst};" in text
    assert text.count("->") == len(graph.edges)
    # name, type, output shape and parameter count of a module
    assert quote("features.0\nConv2d\n[2, 8, 8, 8] float32\n224 params") in text
    # an op named after its type shows the type once
    assert node_label(graph.nodes[7]) == "relu\n[2, 10] float32"
    assert node_label(graph.nodes[8]) == "output\n[2, 10] float32"
    # inputs and outputs have shapes of their own
    assert re.search(r"n0 \[label=[^\n]*shape=invhouse", text)
    assert re.search(r"n8 \[label=[^\n]*shape=house", text)
    assert re.search(r"n1 \[label=[^\n]*shape=box", text)
    assert 'label="ConvNet (eval), 5,370 params"' in text


def test_calls_are_grouped_by_scope() -> None:
    text = to_dot(conv_net_graph())
    cluster = text[text.index("subgraph cluster_0 {"):]
    cluster = cluster[: cluster.index("\n  }")]
    assert 'label="features"' in cluster
    assert all(f"n{i} [" in cluster for i in (1, 2, 3, 4))
    assert "n5 [" not in cluster and "n0 [" not in cluster
    flat = to_dot(conv_net_graph(), clusters=False)
    assert "subgraph" not in flat
    assert flat.count(" [label=") == text.count(" [label=") == len(conv_net_graph().nodes)


def test_quote_escapes_everything_dot_would_interpret() -> None:
    assert quote('say "hi"') == '"say \\"hi\\""'
    assert quote("back\\slash") == '"back\\\\slash"'
    assert quote("a\nb") == '"a\\nb"'
    assert quote("a<b>&c") == '"a<b>&c"'  # plain (not HTML) labels: <>& are literal
    assert quote("naïve.模块") == '"naïve.模块"'


def test_awkward_names_stay_inside_their_labels() -> None:
    text = to_dot(awkward_graph())
    # Every statement is on one line: an unescaped quote or newline would break this.
    for line in text.splitlines()[1:-1]:
        assert re.fullmatch(r'\s*(graph|node|edge|n\d+|subgraph cluster_\d+ \{|\}|n\d+ -> n\d+;).*', line), line
        assert line.count('"') - line.count('\\"') == 2 * (line.count('="')), line
    for name in AWKWARD_NAMES:
        assert quote(name)[1:-1] in text
    assert 'label="Model \\"<ü>\\" (train), 0 params"' in text


def _stack_graph(widths: list[int]) -> ArchitectureGraph:
    """A transformer-like stack: ``layers.<i>`` blocks of Linear > ReLU > add, as capture records them."""
    from pytest_modelviz.graph.model import ArchitectureGraph, Node, TensorSpec, Totals

    spec = (TensorSpec((1, 8), "float32"),)
    nodes = [Node(0, "input.x", "input", "input", outputs=spec)]
    prev = 0
    for i, width in enumerate(widths):
        out = (TensorSpec((1, width), "float32"),)
        base = len(nodes)
        nodes += [
            Node(base, f"layers.{i}.fc", "module", "torch.nn.Linear", scope=f"layers.{i}", outputs=out,
                 parents=(prev,)),
            Node(base + 1, f"layers.{i}.relu", "module", "torch.nn.ReLU", scope=f"layers.{i}", outputs=out,
                 parents=(base,)),
            Node(base + 2, f"layers.{i}.add", "operator", "operator.add", scope=f"layers.{i}", outputs=out,
                 parents=(base + 1, 0)),
        ]
        prev = base + 2
    nodes.append(Node(len(nodes), "output", "output", "output", inputs=nodes[prev].outputs, parents=(prev,)))
    return ArchitectureGraph("Stack", False, tuple(nodes), Totals(0, 0, 0, 0, 0))


def test_a_run_of_identical_blocks_is_drawn_once_and_one_box() -> None:
    from pytest_modelviz.render.dot import find_folds

    graph = _stack_graph([8, 8, 8, 8, 8])
    [fold] = find_folds(graph.nodes)
    assert (fold.scope, fold.first) == ("layers", "layers.0")
    assert fold.names == ("layers.1", "layers.2", "layers.3", "layers.4")
    dot = to_dot(graph)
    assert "layers.0.fc" in dot and "layers.1.fc" not in dot and "layers.4.add" not in dot
    assert quote("layers.1 ... layers.4\n4 more blocks like layers.0\n0 params") in dot
    # layers.0 feeds the folded box, the box feeds the output; the input's skip edges go to it once
    assert "  n3 -> f0;" in dot and "  f0 -> n16;" in dot and dot.count("n0 -> f0;") == 1
    assert to_dot(graph, fold=False).count("layers.4.add") == 1
    proc = subprocess.run([str(Path(sys.executable).parent / "graphviz-pure"), "-Tsvg"], input=dot.encode(),
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0 and b"<svg" in proc.stdout


def test_blocks_that_differ_are_not_folded() -> None:
    from pytest_modelviz.render.dot import find_folds

    assert find_folds(_stack_graph([8, 8, 16, 8]).nodes) == []  # layers.2 differs: no run of 3
    assert [f.names for f in find_folds(_stack_graph([16, 8, 8, 8]).nodes)] == [("layers.2", "layers.3")]
