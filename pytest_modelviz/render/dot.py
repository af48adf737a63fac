"""DOT text for an ``ArchitectureGraph``: one box per call, one arrow per data edge.

A pure function of the graph (no torch, no Graphviz): the same graph always gives the same bytes,
so the ``.dot`` file can be diffed between runs. Node ids are ``n<index>``; everything shown to
people goes through ``quote`` so names with quotes, backslashes or ``<>`` cannot break the file.
"""

from __future__ import annotations

from pytest_modelviz.graph.model import ArchitectureGraph, Node

# Up to this many output shapes are listed in a node's label; the rest are counted.
_MAX_SHAPES = 3

_GRAPH_ATTRS = 'rankdir=TB, fontname="Helvetica", fontsize=11, labelloc=t, nodesep=0.25, ranksep=0.3'
_NODE_ATTRS = 'fontname="Helvetica", fontsize=10, margin="0.12,0.04"'
_EDGE_ATTRS = 'color="#5A6B80", arrowsize=0.7'
_CLUSTER_ATTRS = 'style="rounded,dashed", color="#9AA7B8", fontsize=9, fontcolor="#5A6B80"'

# Inputs and outputs get shapes of their own so the ends of the graph stand out.
_STYLE = {
    "input": 'shape=invhouse, style=filled, fillcolor="#D8F0D8", color="#4F8A4F"',
    "output": 'shape=house, style=filled, fillcolor="#F8E0C8", color="#B07030"',
    "module": 'shape=box, style="rounded,filled", fillcolor="#BCD6FC", color="#7C96BC"',
    "function": 'shape=box, style=filled, fillcolor="#EEEEEE", color="#999999"',
    "method": 'shape=box, style=filled, fillcolor="#EEEEEE", color="#999999"',
    "operator": 'shape=ellipse, style=filled, fillcolor="#EEEEEE", color="#999999"',
}


def quote(text: str) -> str:
    """``text`` as a DOT double-quoted string, shown literally.

    Backslash starts an escape in DOT labels (``\\n``, ``\\N``, ``\\G``...), so it is doubled;
    quotes are escaped; line breaks become ``\\n``. Non-ASCII text is kept (the file is UTF-8).
    """
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return f'"{escaped}"'


def node_id(node: Node) -> str:
    return f"n{node.index}"


def format_count(n: int) -> str:
    return f"{n:,}"


def node_label(node: Node) -> str:
    """The lines shown in a node's box: name, type, output shapes, parameter count."""
    lines = [node.name]
    if node.kind == "module" or (node.kind not in ("input", "output") and not _named_after_type(node)):
        lines.append(node.short_type)
    shapes = node.outputs if node.kind != "output" else (node.inputs or node.outputs)
    lines.extend(str(spec) for spec in shapes[:_MAX_SHAPES])
    if len(shapes) > _MAX_SHAPES:
        lines.append(f"... {len(shapes) - _MAX_SHAPES} more outputs")
    if node.params:
        lines.append(f"{format_count(node.num_params)} params")
    return "\n".join(lines)


def _named_after_type(node: Node) -> bool:
    """True for ops whose name already says the type (``add``, ``layer1.relu_2``)."""
    return node.name.rsplit(".", 1)[-1].startswith(node.short_type)


def graph_label(graph: ArchitectureGraph, title: str | None = None) -> str:
    mode = "train" if graph.training else "eval"
    head = graph.model_name if not title or title == graph.model_name else f"{title}: {graph.model_name}"
    return f"{head} ({mode}), {format_count(graph.totals.params)} params"


def to_dot(graph: ArchitectureGraph, *, title: str | None = None, clusters: bool = True) -> str:
    """The graph as DOT text; with ``clusters``, calls are boxed by the module that ran them."""
    lines = [
        "digraph architecture {",
        f"  graph [{_GRAPH_ATTRS}, label={quote(graph_label(graph, title))}];",
        f"  node [{_NODE_ATTRS}];",
        f"  edge [{_EDGE_ATTRS}];",
    ]
    if clusters:
        lines.extend(_clustered_nodes(graph.nodes))
    else:
        lines.extend(_node_line(n, "  ") for n in graph.nodes)
    lines.extend(f"  n{src} -> n{dst};" for src, dst in graph.edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_line(node: Node, indent: str) -> str:
    style = _STYLE.get(node.kind, _STYLE["function"])
    return f"{indent}{node_id(node)} [label={quote(node_label(node))}, {style}];"


def _clustered_nodes(nodes: tuple[Node, ...]) -> list[str]:
    """Node statements nested in one ``subgraph cluster_<k>`` per scope, ``k`` in order of first use.

    Scopes nest by qualified name (``encoder.layers.0`` sits in ``encoder.layers`` in ``encoder``),
    so the picture has the module tree's shape. Inputs and outputs stay at the top level.
    """
    tree: dict[str, list[str]] = {"": []}  # scope -> child scopes, in order of first use
    members: dict[str, list[Node]] = {"": []}
    for node in nodes:
        scope = "" if node.kind in ("input", "output") else node.scope
        _add_scope(tree, scope)
        members.setdefault(scope, []).append(node)
    numbers = {scope: k for k, scope in enumerate(s for s in tree if s)}
    out: list[str] = []

    def emit(scope: str, depth: int) -> None:
        indent = "  " * (depth + 1)
        if scope:
            out.append(f"{indent[:-2]}subgraph cluster_{numbers[scope]} {{")
            out.append(f"{indent}graph [{_CLUSTER_ATTRS}, label={quote(scope)}];")
        out.extend(_node_line(n, indent) for n in members.get(scope, ()))
        for child in tree[scope]:
            emit(child, depth + 1)
        if scope:
            out.append(f"{indent[:-2]}}}")

    emit("", 0)
    return out


def _add_scope(tree: dict[str, list[str]], scope: str) -> None:
    if scope in tree:
        return
    parent = scope.rsplit(".", 1)[0] if "." in scope else ""
    _add_scope(tree, parent)
    tree[parent].append(scope)
    tree[scope] = []
