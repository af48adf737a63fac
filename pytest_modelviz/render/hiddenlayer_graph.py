"""A hiddenlayer-style picture (Conv > BatchNorm > Relu folded into one box) built from our capture.

hiddenlayer 0.3 imports PyTorch models through a JIT/ONNX path that no longer works on torch 2.x,
but its graph, transforms and themes are framework-free. So the nodes come from our
``ArchitectureGraph`` with types renamed to hiddenlayer's op vocabulary, its transforms fold
them, and the DOT it builds is drawn by our renderer (``Graph.save`` would shell out to ``dot``).
"""

from __future__ import annotations

import html
import re
from typing import Any

from pytest_modelviz.graph.model import ArchitectureGraph, Node

# Our type names (class or function short names) -> the op names hiddenlayer's transforms match.
OP_NAMES: dict[str, str] = {
    "Conv1d": "Conv", "Conv2d": "Conv", "Conv3d": "Conv",
    "conv1d": "Conv", "conv2d": "Conv", "conv3d": "Conv",
    "ConvTranspose1d": "ConvTranspose", "ConvTranspose2d": "ConvTranspose", "ConvTranspose3d": "ConvTranspose",
    "BatchNorm1d": "BatchNorm", "BatchNorm2d": "BatchNorm", "BatchNorm3d": "BatchNorm", "batch_norm": "BatchNorm",
    "ReLU": "Relu", "relu": "Relu", "relu_": "Relu", "ReLU6": "Relu", "relu6": "Relu",
    "Linear": "Linear", "linear": "Linear",
    "MaxPool1d": "MaxPool", "MaxPool2d": "MaxPool", "MaxPool3d": "MaxPool", "max_pool2d": "MaxPool",
    "AvgPool1d": "AvgPool", "AvgPool2d": "AvgPool", "AvgPool3d": "AvgPool", "avg_pool2d": "AvgPool",
    "AdaptiveAvgPool1d": "GlobalAvgPool", "AdaptiveAvgPool2d": "GlobalAvgPool", "adaptive_avg_pool2d": "GlobalAvgPool",
    "GELU": "Gelu", "gelu": "Gelu", "SiLU": "Silu", "silu": "Silu",
    "Sigmoid": "Sigmoid", "sigmoid": "Sigmoid", "Tanh": "Tanh", "tanh": "Tanh",
    "Softmax": "Softmax", "softmax": "Softmax", "LayerNorm": "LayerNorm", "layer_norm": "LayerNorm",
    "Dropout": "Dropout", "dropout": "Dropout", "Identity": "Identity",
    "flatten": "Flatten", "Flatten": "Flatten", "view": "Reshape", "reshape": "Reshape",
    "permute": "Transpose", "transpose": "Transpose",
    "add": "Add", "iadd": "Add", "add_": "Add", "mul": "Mul", "matmul": "MatMul", "cat": "Concat",
    "MultiheadAttention": "Attention", "scaled_dot_product_attention": "Attention",
}

# Ops that pass their input through unchanged at inference; hiddenlayer's ``Prune`` would delete
# them together with their edges and cut the graph in two, so they are bridged over instead.
PASS_THROUGH = frozenset({"Dropout", "Identity"})

# A node that consumes no data (a parameter read, ``torch.zeros``...) is a constant to hiddenlayer,
# and ``Prune("Constant")`` is how its own PyTorch importer hid those.
CONSTANT_OP = "Constant"

THEME = "blue"


def hl_op(node: Node) -> str:
    """The hiddenlayer op name for a node (its own short type when hiddenlayer has no name for it)."""
    if node.kind == "input":
        return "Input"
    if node.kind == "output":
        return "Output"
    if not node.parents:
        return CONSTANT_OP
    return OP_NAMES.get(node.short_type, node.short_type)


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"-?\d+", text)]


def hl_params(node: Node) -> dict[str, Any]:
    """Kernel and stride in hiddenlayer's form, so titles read ``Conv3x3/s2`` like its own graphs."""
    args = dict(node.args)
    params: dict[str, Any] = {}
    kernel = _ints(args.get("kernel_size", ""))
    if kernel:
        spatial = _spatial_dims(node)
        params["kernel_shape"] = kernel * spatial if len(kernel) == 1 else kernel
    stride = _ints(args.get("stride", ""))
    if stride:
        params["stride"] = stride
    return params


def _spatial_dims(node: Node) -> int:
    match = re.search(r"(\d)d$", node.short_type)
    return int(match.group(1)) if match else 1


def build(graph: ArchitectureGraph) -> Any:
    """A ``hiddenlayer.Graph`` of the capture, transformed and themed, with ids ``n0``, ``n1``..."""
    import hiddenlayer as hl
    from hiddenlayer import transforms as ht

    # meaningful_ids: folded nodes get ids joined from their members instead of random bits.
    hl_graph = hl.Graph(meaningful_ids=True)
    keep = {n.index for n in graph.nodes if hl_op(n) not in PASS_THROUGH}
    for node in graph.nodes:
        if node.index not in keep:
            continue
        shape = list(node.outputs[0].shape) if node.outputs else None
        # Titles go into hiddenlayer's HTML-like labels unescaped, so escape them here.
        hl_graph.add_node(hl.graph.Node(
            uid=f"n{node.index}", name=None, op=html.escape(hl_op(node)),
            output_shape=shape, params=hl_params(node),
        ))
    for src, dst in keep_edges(graph, keep):
        label = list(graph.nodes[src].outputs[0].shape) if graph.nodes[src].outputs else None
        hl_graph.add_edge_by_id(f"n{src}", f"n{dst}", label)
    for transform in [ht.Prune(CONSTANT_OP), *ht.SIMPLICITY_TRANSFORMS]:
        hl_graph = transform.apply(hl_graph)
    out = _renumber(hl, hl_graph)
    out.theme = hl.graph.THEMES[THEME]
    return out


def keep_edges(graph: ArchitectureGraph, keep: set[int]) -> list[tuple[int, int]]:
    """Data edges between kept nodes, with dropped nodes bridged (a -> Dropout -> b becomes a -> b)."""

    def sources(index: int) -> list[int]:
        if index in keep:
            return [index]
        return [s for p in graph.nodes[index].parents for s in sources(p)]

    edges: dict[tuple[int, int], None] = {}  # ordered and without repeats
    for node in graph.nodes:
        if node.index not in keep:
            continue
        for parent in node.parents:
            for src in sources(parent):
                edges[(src, node.index)] = None
    return list(edges)


def _renumber(hl: Any, graph: Any) -> Any:
    """A copy with ids ``n0``, ``n1``... in capture order: short, and the same on every run.

    Folded nodes carry ids like ``n1><n2><n3`` (``meaningful_ids``); each sorts by its first member.
    """

    def first_index(uid: str) -> int:
        return min(int(part.removeprefix("n")) for part in uid.split("><"))

    ordered = sorted(graph.nodes, key=first_index)
    ids = {old: f"n{i}" for i, old in enumerate(ordered)}
    out = hl.Graph()
    for old in ordered:
        node = graph.nodes[old]
        node.id = ids[old]
        out.add_node(node)
    for src, dst, label in graph.edges:
        out.add_edge_by_id(ids[src], ids[dst], label)
    return out


def to_dot(graph: ArchitectureGraph) -> str:
    """hiddenlayer's DOT for the capture (HTML-like labels, its blue theme), drawn top to bottom.

    hiddenlayer lays graphs out left to right, which turns a deep model into a strip too wide to
    read in a report; a later graph attribute overrides its ``rankdir``.
    """
    dot = build(graph).build_dot()
    dot.attr("graph", rankdir="TB")
    source: str = dot.source
    return source
