"""The semantic diff of two architectures: which layers were added, removed or changed, and how.

Nodes are matched by name: module nodes carry their qualified name, functional ops their scope,
short name and a per-scope counter, so an inserted layer does not shift every name after it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from pytest_modelviz.graph.model import ArchitectureGraph, Node, UnusedModule
from pytest_modelviz.graph.text import format_call, format_specs

MAX_LAYER_LINES = 60
MAX_RAW_LINES = 200


@dataclass(frozen=True)
class GraphDiff:
    """What changed from ``old`` to ``new``: one line per fact, model-level facts first."""

    model: tuple[str, ...]
    layers: tuple[str, ...]
    totals: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.model or self.layers or self.totals)

    def lines(self, limit: int | None = MAX_LAYER_LINES) -> list[str]:
        layers = list(self.layers)
        if limit is not None and len(layers) > limit:
            layers = layers[:limit] + [f"... {len(self.layers) - limit} more changed layers"]
        return [*self.model, *layers, *self.totals]

    def __str__(self) -> str:
        return "\n".join(self.lines(limit=None))


def _signed(n: int) -> str:
    return f"{n:+,}"


def _call(node: Node | UnusedModule) -> str:
    return format_call(node.short_type if isinstance(node, Node) else node.target.rsplit(".", 1)[-1], node.args)


def _node_changes(old: Node, new: Node) -> list[str]:
    changes: list[str] = []
    positional_changed = [(k, v) for k, v in old.args if k.isdigit()] != [(k, v) for k, v in new.args if k.isdigit()]
    if old.target != new.target or positional_changed:
        changes.append(f"{_call(old)} -> {_call(new)}")
    else:
        old_kw, new_kw = dict(old.args), dict(new.args)
        for key in dict.fromkeys([*old_kw, *new_kw]):
            if old_kw.get(key) != new_kw.get(key):
                changes.append(f"{key} {old_kw.get(key, '(unset)')} -> {new_kw.get(key, '(unset)')}")
    if old.inputs != new.inputs:
        changes.append(f"input {format_specs(old.inputs)} -> {format_specs(new.inputs)}")
    if old.outputs != new.outputs:
        changes.append(f"output {format_specs(old.outputs)} -> {format_specs(new.outputs)}")
    if old.num_params != new.num_params:
        changes.append(f"params {_signed(new.num_params - old.num_params)} ({old.num_params:,} -> {new.num_params:,})")
    elif old.trainable_params != new.trainable_params:
        changes.append(f"trainable {old.trainable_params:,} -> {new.trainable_params:,}")
    elif old.params != new.params:
        changes.append("parameters changed: " + ", ".join(p.name for p in new.params if p not in old.params))
    if old.buffers != new.buffers:
        changes.append("buffers changed")
    if old.scope != new.scope:
        changes.append(f"called from {old.scope or '(root)'} -> {new.scope or '(root)'}")
    return changes


def _parents_text(graph: ArchitectureGraph, node: Node) -> list[str]:
    return [graph.nodes[p].name for p in node.parents]


def diff_graphs(old: ArchitectureGraph, new: ArchitectureGraph) -> GraphDiff:
    model: list[str] = []
    if old.model_name != new.model_name:
        model.append(f"model {old.model_name} -> {new.model_name}")
    if old.training != new.training:
        model.append(f"mode {'train' if old.training else 'eval'} -> {'train' if new.training else 'eval'}")

    old_by_name = {n.name: n for n in old.nodes}
    new_by_name = {n.name: n for n in new.nodes}
    layers: list[str] = []
    reshaped: list[str] = []
    for node in new.nodes:
        before = old_by_name.get(node.name)
        if before is None:
            where = f" after {new.nodes[node.index - 1].name}" if node.index else ""
            layers.append(f"added {node.name}: {_call(node)} {format_specs(node.outputs)}{where}")
            continue
        changes = _node_changes(before, node)
        if _parents_text(old, before) != _parents_text(new, node):
            changes.append(
                f"inputs from {', '.join(_parents_text(old, before)) or '(none)'} -> "
                f"{', '.join(_parents_text(new, node)) or '(none)'}"
            )
        if changes and node.kind != "input" and all(c.startswith(("input [", "output [")) for c in changes):
            reshaped.append(node.name)  # follows from a change upstream: one summary line
            # (an input's shape is not downstream of anything: it is the change, on its own line)
        elif changes:
            layers.append(f"{node.name}: {'; '.join(changes)}")
    for node in old.nodes:
        if node.name not in new_by_name:
            layers.append(f"removed {node.name}: {_call(node)} {format_specs(node.outputs)}")
    if reshaped:
        shown = ", ".join(reshaped[:12]) + (f" and {len(reshaped) - 12} more" if len(reshaped) > 12 else "")
        layers.append(f"shapes changed downstream: {shown}")
    old_unused = {u.name for u in old.unused}
    new_unused = {u.name for u in new.unused}
    layers += [f"now unused: {name}" for name in sorted(new_unused - old_unused)]
    layers += [f"now used: {name}" for name in sorted(old_unused - new_unused) if name in new_by_name]

    totals: list[str] = []
    for label, a, b in (
        ("total params", old.totals.params, new.totals.params),
        ("trainable params", old.totals.trainable, new.totals.trainable),
        ("frozen params", old.totals.frozen, new.totals.frozen),
        ("buffers", old.totals.buffers, new.totals.buffers),
        ("mult-adds", old.totals.macs, new.totals.macs),
    ):
        if a != b:
            totals.append(f"{label} {a:,} -> {b:,} ({_signed(b - a)})")
    return GraphDiff(model=tuple(model), layers=tuple(layers), totals=tuple(totals))


def raw_diff(old_text: str, new_text: str, *, limit: int | None = MAX_RAW_LINES) -> list[str]:
    """The unified text diff of two snapshot bodies, cut to ``limit`` lines (``None``: all)."""
    lines = list(
        difflib.unified_diff(
            old_text.splitlines(), new_text.splitlines(), "snapshot", "captured", lineterm="", n=1
        )
    )
    if limit is not None and len(lines) > limit:
        hidden = len(lines) - limit
        lines = lines[:limit] + [f"... {hidden} more diff lines (--modelviz-full-diff shows all)"]
    return lines
