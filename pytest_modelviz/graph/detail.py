"""Levels of detail of an architecture graph: what a snapshot commits to.

``full`` (the default) is every call capture saw: leaf modules and the functional ops between
them. ``modules`` keeps the inputs, the leaf-module calls and the output, and leaves the
functional ops out; each module's edges go to the modules (or inputs) whose outputs reached it
through those ops. A change of how a block computes between its layers (attention through
``F.scaled_dot_product_attention`` or through ``matmul`` and ``softmax``, an activation written
as ``F.gelu`` or ``x * sigmoid(x)``) then leaves the snapshot alone, while a change of its
layers, their arguments, shapes or parameters still shows. Mult-adds count the modules only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from pytest_modelviz.errors import ModelvizUsageError
from pytest_modelviz.graph.model import ArchitectureGraph

DETAILS = ("full", "modules")
MODULES_NOTE = "detail=modules: functional ops between modules are left out; edges pass through them"
_KEPT = frozenset({"input", "module", "output"})


def check_detail(detail: object) -> str:
    """``detail`` when it is a level this module knows; a ``ModelvizUsageError`` naming them otherwise."""
    if not isinstance(detail, str) or detail not in DETAILS:
        raise ModelvizUsageError(f"detail must be one of {', '.join(map(repr, DETAILS))}, got {detail!r}")
    return detail


def with_detail(graph: ArchitectureGraph, detail: str) -> ArchitectureGraph:
    """``graph`` at the level of ``detail``; ``full`` returns it as it is."""
    if check_detail(detail) == "full":
        return graph
    kept = [n for n in graph.nodes if n.kind in _KEPT]
    new_index = {n.index: i for i, n in enumerate(kept)}
    # The kept nodes each node's value came from; parents always precede a node, so one pass.
    sources: list[tuple[int, ...]] = []
    for node in graph.nodes:
        if node.index in new_index:
            sources.append((new_index[node.index],))
        else:
            sources.append(_ordered_union(sources[p] for p in node.parents))
    nodes = tuple(
        dataclasses.replace(n, index=i, parents=_ordered_union(sources[p] for p in n.parents))
        for i, n in enumerate(kept)
    )
    totals = dataclasses.replace(graph.totals, macs=sum(n.macs for n in nodes))
    return dataclasses.replace(graph, nodes=nodes, totals=totals, notes=(*graph.notes, MODULES_NOTE))


def _ordered_union(groups: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
    out: dict[int, None] = {}
    for group in groups:
        out.update(dict.fromkeys(group))
    return tuple(out)
