"""The architecture in TensorBoard's Graphs tab, written from our capture.

``SummaryWriter.add_graph`` re-runs the model under ``torch.jit.trace``, which fails on models
such as torchvision's ``vit_b_16`` ("Tracing failed sanity checks!"). The capture already holds
every call, shape and edge, so the ``GraphDef`` is built from it directly: node names are module
paths joined by ``/`` (TensorBoard folds each path prefix into an expandable group), ops are
types, inputs are data edges, and shapes/parameters are node attributes.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_modelviz.graph.model import ArchitectureGraph, Node, ParamSpec

if TYPE_CHECKING:
    from tensorboardX.proto.graph_pb2 import GraphDef

# TensorFlow's node-name alphabet; anything else (``#`` of repeated calls, spaces) becomes "_".
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-/>]")
# The GraphDef version TensorBoard's graph plugin expects (as tensorboardX writes it).
GRAPH_PRODUCER = 22
GRAPH_FILE_SUFFIX = ".modelviz-graph"

_IO_OPS = {"input": "Input", "output": "Output"}


def tb_names(graph: ArchitectureGraph) -> list[str]:
    """One unique TensorBoard node name per node, index-aligned with ``graph.nodes``."""
    root = _NAME_UNSAFE.sub("_", graph.model_name) or "model"
    names: list[str] = []
    used: set[str] = set()
    for node in graph.nodes:
        name = f"{root}/{_path(node)}"
        unique, k = name, 2
        while unique in used:
            unique, k = f"{name}_{k}", k + 1
        used.add(unique)
        names.append(unique)
    return names


def _path(node: Node) -> str:
    """``features.0`` -> ``features/0``; an op in scope ``layer1.0`` named ``add`` -> ``layer1/0/add``."""
    if node.kind in _IO_OPS:
        return _NAME_UNSAFE.sub("_", node.name)
    if node.kind == "module":
        qualified = node.name
    elif node.scope and not node.name.startswith(node.scope + "."):
        qualified = f"{node.scope}.{node.name}"
    else:
        qualified = node.name
    parts = [_NAME_UNSAFE.sub("_", part) for part in qualified.split(".") if part]
    return "/".join(parts) or "_"


def to_graph_def(graph: ArchitectureGraph) -> GraphDef:
    """A TensorBoard ``GraphDef`` with one ``NodeDef`` per captured call."""
    from tensorboardX.proto.attr_value_pb2 import AttrValue
    from tensorboardX.proto.graph_pb2 import GraphDef
    from tensorboardX.proto.node_def_pb2 import NodeDef
    from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboardX.proto.versions_pb2 import VersionDef

    names = tb_names(graph)
    node_defs = []
    for node in graph.nodes:
        shapes = [TensorShapeProto(dim=[TensorShapeProto.Dim(size=d) for d in spec.shape])
                  for spec in node.outputs]
        attr = {
            "_output_shapes": AttrValue(list=AttrValue.ListValue(shape=shapes)),
            "dtype": AttrValue(s=", ".join(spec.dtype for spec in node.outputs).encode()),
            "target": AttrValue(s=node.target.encode()),
        }
        if node.args:
            attr["attr"] = AttrValue(s=", ".join(f"{k}={v}" for k, v in node.args).encode())
        if node.params:
            attr["parameters"] = AttrValue(s="; ".join(_param_text(p) for p in node.params).encode())
            attr["num_params"] = AttrValue(i=node.num_params)
        node_defs.append(NodeDef(
            name=names[node.index],
            op=_IO_OPS.get(node.kind, node.short_type),
            input=[names[p] for p in node.parents],
            attr=attr,
        ))
    return GraphDef(node=node_defs, versions=VersionDef(producer=GRAPH_PRODUCER))


def _param_text(param: ParamSpec) -> str:
    frozen = "" if param.trainable else " frozen"
    tied = f" tied to {param.shared_with}" if param.shared_with else ""
    return f"{param.name} [{', '.join(map(str, param.shape))}] {param.dtype}{frozen}{tied}"


def write_graph_event(graph_def: GraphDef, logdir: Path) -> Path:
    """Write ``graph_def`` as a graph event into a new event file in ``logdir``; return the file.

    Each graph gets a file of its own, ``events.out.tfevents.<seconds>.<host>.modelviz-graph``
    (``.1``, ``.2``, ... after it when that name is taken), never written over another: a test
    may draw several models, or have a ``SummaryWriter`` open on the same run. TensorBoard reads
    every event file of a run. A file that cannot be written raises ``OSError`` naming it.
    """
    from tensorboardX.proto.event_pb2 import Event

    from pytest_modelviz.tensorboard.events import EventFile

    events = EventFile(str(logdir), suffix=GRAPH_FILE_SUFFIX)
    try:
        events.write(Event(wall_time=time.time(), graph_def=graph_def.SerializeToString()))
    finally:
        events.close()
    return Path(events.path)
