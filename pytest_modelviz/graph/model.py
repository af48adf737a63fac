"""The architecture graph: plain, immutable records produced by capture and read by everything else.

Nothing here imports torch: a graph parsed back from a snapshot file is the same object as one
captured from a live model, so diffing and rendering never need the model again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pytest_modelviz.graph.diff import GraphDiff

NodeKind = Literal["input", "module", "function", "method", "operator", "output"]


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of one tensor that flowed along an edge (``dtype`` like ``"float32"``)."""

    shape: tuple[int, ...]
    dtype: str

    def __str__(self) -> str:
        return f"[{', '.join(str(d) for d in self.shape)}] {self.dtype}"


@dataclass(frozen=True)
class ParamSpec:
    """One parameter or buffer owned directly by a module.

    ``shared_with`` is the qualified name of the first owner when the tensor is tied (counted once
    in totals).
    """

    name: str  # qualified, e.g. "features.0.weight"
    shape: tuple[int, ...]
    dtype: str
    trainable: bool
    shared_with: str | None = None

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Node:
    """One call in execution order: an input, a leaf-module call, a functional op, or the output.

    ``name`` is unique within a graph and stable across runs: a module's qualified name (with
    ``#2``, ``#3`` for repeated calls), an op's Python-level name with a counter, ``input.<arg>``
    or ``output``. ``target`` is the Python-level callable (``torch.nn.Conv2d``,
    ``torch.nn.functional.relu``, ``Tensor.view``, ``operator.add``), never an ATen op name.
    ``scope`` is the qualified name of the module whose forward ran the call ("" for the root).
    ``args`` are the module's constructor arguments or an op's non-tensor arguments as
    ``(key, value-text)`` pairs (positional ones keyed ``"0"``, ``"1"`` ...).
    ``parents`` are the indices of the nodes whose outputs this node consumed (the data edges).
    """

    index: int
    name: str
    kind: NodeKind
    target: str
    scope: str = ""
    args: tuple[tuple[str, str], ...] = ()
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    params: tuple[ParamSpec, ...] = ()
    buffers: tuple[ParamSpec, ...] = ()
    macs: int = 0
    parents: tuple[int, ...] = ()

    @property
    def num_params(self) -> int:
        """Parameters owned by this node, tied ones included (totals count them once)."""
        return sum(p.numel for p in self.params)

    @property
    def trainable_params(self) -> int:
        return sum(p.numel for p in self.params if p.trainable)

    @property
    def short_type(self) -> str:
        """``Conv2d`` for ``torch.nn.Conv2d``, ``relu`` for ``torch.nn.functional.relu``."""
        return self.target.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class UnusedModule:
    """A module that exists in the model but never ran during capture."""

    name: str
    target: str
    args: tuple[tuple[str, str], ...] = ()
    params: tuple[ParamSpec, ...] = ()


@dataclass(frozen=True)
class Totals:
    params: int  # tied parameters counted once
    trainable: int
    frozen: int
    buffers: int
    macs: int


@dataclass(frozen=True)
class ArchitectureGraph:
    """A captured architecture: the one record snapshots, diffs, renders and reports read."""

    model_name: str  # the root module's class name
    training: bool  # mode at capture time
    nodes: tuple[Node, ...]
    totals: Totals
    unused: tuple[UnusedModule, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """Data edges as ``(producer index, consumer index)``, in consumer order."""
        return tuple((p, n.index) for n in self.nodes for p in n.parents)

    @property
    def module_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.kind == "module")

    def node(self, name: str) -> Node:
        """The node called ``name`` (``KeyError`` listing the names when there is none)."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} in {self.model_name}; nodes: {[n.name for n in self.nodes]}")

    def to_text(self) -> str:
        """The snapshot body: deterministic text, one node per line."""
        from pytest_modelviz.graph.text import to_text

        return to_text(self)

    @classmethod
    def from_text(cls, text: str) -> ArchitectureGraph:
        """Parse a snapshot body (``SnapshotFormatError`` naming the line when it is corrupt)."""
        from pytest_modelviz.graph.text import from_text

        return from_text(text)

    def diff(self, other: ArchitectureGraph) -> GraphDiff:
        """The semantic diff from this graph (the stored one) to ``other`` (the new one)."""
        from pytest_modelviz.graph.diff import diff_graphs

        return diff_graphs(self, other)
