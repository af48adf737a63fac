"""DOT text for an ``ArchitectureGraph``: one box per call, one arrow per data edge.

A pure function of the graph (no torch, no Graphviz): the same graph always gives the same bytes,
so the ``.dot`` file can be diffed between runs. Node ids are ``n<index>``; everything shown to
people goes through ``quote`` so names with quotes, backslashes or ``<>`` cannot break the file.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def to_dot(graph: ArchitectureGraph, *, title: str | None = None, clusters: bool = True,
           fold: bool = True) -> str:
    """The graph as DOT text; with ``clusters``, calls are boxed by the module that ran them; with
    ``fold``, a run of identical blocks (``layers.1`` ... ``layers.31`` like ``layers.0``) is drawn
    once, the rest as one box, so a GPT- or Llama-sized model stays a picture one can read."""
    folds = find_folds(graph.nodes) if fold else []
    folded = {i: k for k, f in enumerate(folds) for i in f.members}
    nodes = tuple(n for n in graph.nodes if n.index not in folded)
    lines = [
        "digraph architecture {",
        f"  graph [{_GRAPH_ATTRS}, label={quote(graph_label(graph, title))}];",
        f"  node [{_NODE_ATTRS}];",
        f"  edge [{_EDGE_ATTRS}];",
    ]
    fold_lines: dict[str, list[str]] = {f.scope: [] for f in folds}
    for k, f in enumerate(folds):
        fold_lines[f.scope].append(f"f{k} [label={quote(f.label)}, {_FOLD_STYLE}];")
    if clusters:
        lines.extend(_clustered_nodes(nodes, fold_lines))
    else:
        lines.extend(_node_line(n, "  ") for n in nodes)
        lines.extend(f"  {line}" for extra in fold_lines.values() for line in extra)

    def end(index: int) -> str:
        return f"f{folded[index]}" if index in folded else f"n{index}"

    edges = dict.fromkeys((end(a), end(b)) for a, b in graph.edges)  # ordered, without repeats
    lines.extend(f"  {a} -> {b};" for a, b in edges if a != b)
    lines.append("}")
    return "\n".join(lines) + "\n"


_FOLD_STYLE = 'shape=box3d, style=filled, fillcolor="#E4ECF7", color="#7C96BC"'
_MIN_FOLDED = 2  # identical blocks after the first before they are folded


@dataclass(frozen=True)
class Fold:
    """Blocks ``first+1 .. last`` of ``scope``, identical to block ``first``, drawn as one box."""

    scope: str  # the container, e.g. ``model.layers``
    first: str  # the block drawn in full, e.g. ``model.layers.0``
    names: tuple[str, ...]  # the blocks folded
    members: frozenset[int]  # node indices of the folded blocks
    params: int

    @property
    def label(self) -> str:
        span = self.names[0] if len(self.names) == 1 else f"{self.names[0]} ... {self.names[-1]}"
        return f"{span}\n{len(self.names)} more blocks like {self.first}\n{format_count(self.params)} params"


def find_folds(nodes: tuple[Node, ...]) -> list[Fold]:
    """Runs of numbered sibling blocks (``<scope>.<i>``) whose calls are the same as the first's:
    same relative names, types and output shapes, in the same order."""
    blocks: dict[str, list[Node]] = {}
    for node in nodes:
        block = _block_of(node) if node.kind not in ("input", "output") else None
        if block is not None:
            blocks.setdefault(block, []).append(node)
    by_scope: dict[str, list[str]] = {}
    for block in blocks:  # in order of first call
        by_scope.setdefault(block.rsplit(".", 1)[0], []).append(block)
    folds = []
    for scope, names in by_scope.items():
        i = 0
        while i < len(names):
            sig = _signature(names[i], blocks[names[i]])
            j = i + 1
            while j < len(names) and _signature(names[j], blocks[names[j]]) == sig:
                j += 1
            if j - i - 1 >= _MIN_FOLDED:
                rest = names[i + 1:j]
                members = frozenset(n.index for b in rest for n in blocks[b])
                params = sum(n.num_params for b in rest for n in blocks[b])
                folds.append(Fold(scope, names[i], tuple(rest), members, params))
            i = j
    return folds


def _block_of(node: Node) -> str | None:
    """The outermost ``<container>.<number>`` a call was made in (a module call: that it is)."""
    parts = (node.name if node.kind == "module" else node.scope).split(".")
    for end in range(2, len(parts) + 1):
        if parts[end - 1].isdigit():
            return ".".join(parts[:end])
    return None


def _signature(block: str, members: list[Node]) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    return tuple((n.name.removeprefix(block), n.short_type, tuple(str(o) for o in n.outputs))
                 for n in members)


def _node_line(node: Node, indent: str) -> str:
    style = _STYLE.get(node.kind, _STYLE["function"])
    return f"{indent}{node_id(node)} [label={quote(node_label(node))}, {style}];"


def _clustered_nodes(nodes: tuple[Node, ...], extra: dict[str, list[str]] | None = None) -> list[str]:
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
    extra = extra or {}
    for scope in extra:
        _add_scope(tree, scope)
    numbers = {scope: k for k, scope in enumerate(s for s in tree if s)}
    out: list[str] = []

    def emit(scope: str, depth: int) -> None:
        indent = "  " * (depth + 1)
        if scope:
            out.append(f"{indent[:-2]}subgraph cluster_{numbers[scope]} {{")
            out.append(f"{indent}graph [{_CLUSTER_ATTRS}, label={quote(scope)}];")
        out.extend(_node_line(n, indent) for n in members.get(scope, ()))
        out.extend(f"{indent}{line}" for line in extra.get(scope, ()))
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
