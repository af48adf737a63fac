"""Capture a model's architecture by running one forward pass, eagerly, and recording what ran.

Leaf modules are seen through forward hooks; the functional ops between them (``F.relu``,
``view``, ``+``, ``cat``) through a ``TorchFunctionMode``, so models torch.fx cannot trace work
too. The result is a plain ``ArchitectureGraph``: nothing in it refers to a live tensor, and
nothing in it depends on the device, memory addresses or ATen op names.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_modelviz.errors import CaptureError
from pytest_modelviz.graph.flops import function_macs, module_macs
from pytest_modelviz.graph.model import (
    ArchitectureGraph,
    Node,
    ParamSpec,
    TensorSpec,
    Totals,
    UnusedModule,
)
from pytest_modelviz.graph.naming import (
    call_args,
    layer_class,
    module_args,
    module_target,
    op_name,
    tensor_spec,
)
from pytest_modelviz.model_state import kept_model_state
from pytest_modelviz.module_tree import FIX_HINT, module_cycle
from pytest_modelviz.nested import iter_tensors, tensor_class, tensors
from pytest_modelviz.unwrap import refuse_transformed, unwrap_model

if TYPE_CHECKING:
    from torch import nn

EAGER_NOTE = (
    "captured by running forward once: data-dependent branches show the path these inputs took"
)
DATA_READ_NOTE = "forward read tensor values ({ops} in {where}): another input may take another path"

# Calls that turn tensor values into Python values: control flow may depend on them.
_DATA_READS = frozenset(
    {
        "Tensor.__bool__", "Tensor.item", "Tensor.tolist", "Tensor.__int__", "Tensor.__float__",
        "Tensor.__index__", "Tensor.__complex__", "Tensor.numpy", "torch.is_nonzero",
    }
)
# Tensor-returning calls that are bookkeeping, not data flow.
_SKIP = frozenset({"Tensor.data", "Tensor.grad", "Tensor.detach", "Tensor.requires_grad_"})


def _leaf_container_types() -> tuple[type[nn.Module], ...]:
    """Modules with children that are captured as one node (their children run fused)."""
    from torch import nn

    return (nn.MultiheadAttention,)




# ---------------------------------------------------------------- the recorder


@dataclass
class _Frame:
    """A module whose forward is running; the deepest one is blamed when forward raises."""

    name: str
    type_name: str
    call: tuple[Any, Any]  # (args, kwargs); shapes are read only if forward raises

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(tensor_spec(t) for _, t in iter_tensors(self.call))


@dataclass(frozen=True)
class _LeafCall:
    """A leaf module's call, recorded while forward runs; made a ``Node`` after it (``finish``)."""

    index: int
    module: Any
    name: str
    scope: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    first: bool  # its first call: the node that lists the module's own parameters
    parents: tuple[int, ...]


class _Recorder:
    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.model_name = type(model).__name__
        self.names: dict[int, str] = {}
        self.leaves: dict[int, nn.Module] = {}
        self.childless: set[int] = set()  # leaves without children: their own tensors are all they own
        self.modules: list[nn.Module] = []  # every module once, in order: the tree is walked once
        self._index_modules()
        self.owners: dict[int, tuple[str, bool, Any]] = {}  # id -> (qualified name, is_param, tensor)
        self.tied: dict[str, str] = {}  # qualified name -> first owner
        # Each module's own tensors by its qualified name: a childless module's are looked up,
        # not walked for, at every call.
        self.direct: dict[str, tuple[list[tuple[str, Any]], list[tuple[str, Any]]]] = {}
        self.buffers: dict[int, Any] = {}  # every buffer once, as ``model.buffers()`` lists them
        self._index_tensors()
        self.nodes: list[Node | _LeafCall] = []
        self.producers: dict[int, tuple[weakref.ref[Any], int]] = {}
        self.used_names: dict[str, int] = {}
        self.calls: dict[int, int] = {}
        self.stack: list[_Frame] = []
        self.leaf_depth = 0
        self.busy = False  # inside a hook: the hook's own tensor reads are not the model's
        self.data_reads: dict[str, set[str]] = {}
        self.mode: Any = None  # the TorchFunctionMode that sees the ops between leaves
        self.mode_paused = False  # popped while a leaf runs (see ``_pause_mode``)
        self.innermost_mode = _innermost_mode_getter()

    def _index_modules(self) -> None:
        containers = _leaf_container_types()
        fused_prefixes: list[str] = []
        named = list(self.model.named_modules())
        self.modules = [module for _, module in named]
        for name, module in named:
            if any(name.startswith(p) for p in fused_prefixes):
                continue  # runs inside a leaf container
            self.names[id(module)] = name
            if isinstance(module, containers):
                fused_prefixes.append(f"{name}." if name else "")
                self.leaves[id(module)] = module
            elif next(iter(module.children()), None) is None:
                self.leaves[id(module)] = module
                self.childless.add(id(module))

    def _index_tensors(self) -> None:
        for name, p in self.model.named_parameters(remove_duplicate=False):
            first = self.owners.setdefault(id(p), (name, True, p))[0]
            if first != name:
                self.tied[name] = first
            self.direct.setdefault(name.rpartition(".")[0], ([], []))[0].append((name, p))
        for name, b in self.model.named_buffers(remove_duplicate=False):
            first = self.owners.setdefault(id(b), (name, False, b))[0]
            if first != name:
                self.tied[name] = first
            self.direct.setdefault(name.rpartition(".")[0], ([], []))[1].append((name, b))
            self.buffers.setdefault(id(b), b)

    # ------------------------------------------------------------ bookkeeping helpers

    def unique(self, base: str) -> str:
        count = self.used_names.get(base, 0) + 1
        self.used_names[base] = count
        return base if count == 1 else f"{base}#{count}"

    def parents_of(self, tensors: list[Any]) -> tuple[int, ...]:
        out: list[int] = []
        for t in tensors:
            entry = self.producers.get(id(t))
            # The weak reference guards against a freed tensor's id being reused.
            if entry is not None and entry[0]() is t and entry[1] not in out:
                out.append(entry[1])
        return tuple(out)

    def produce(self, tensors: list[Any], index: int) -> None:
        for t in tensors:
            self.producers[id(t)] = (weakref.ref(t), index)

    def add(self, **fields: Any) -> Node:
        node = Node(index=len(self.nodes), **fields)
        self.nodes.append(node)
        return node

    def param_spec(self, name: str, tensor: Any, is_param: bool) -> ParamSpec:
        spec = tensor_spec(tensor)
        return ParamSpec(
            name=name,
            shape=spec.shape,
            dtype=spec.dtype,
            trainable=bool(is_param and tensor.requires_grad),
            shared_with=self.tied.get(name),
        )

    def owned(self, module: nn.Module, prefix: str) -> tuple[tuple[ParamSpec, ...], tuple[ParamSpec, ...]]:
        if id(module) in self.childless:
            params_, buffers_ = self.direct.get(prefix, ((), ()))
            return (tuple(self.param_spec(n, p, True) for n, p in params_),
                    tuple(self.param_spec(n, b, False) for n, b in buffers_))
        dot = f"{prefix}." if prefix else ""
        params = tuple(
            self.param_spec(dot + n, p, True) for n, p in module.named_parameters(remove_duplicate=False)
        )
        buffers = tuple(
            self.param_spec(dot + n, b, False) for n, b in module.named_buffers(remove_duplicate=False)
        )
        return params, buffers

    # ------------------------------------------------------------ hooks

    def pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.busy = True
        try:
            self._enter(module, args, kwargs)
        finally:
            self.busy = False

    def post_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        self.busy = True
        try:
            self._leave(module, args, kwargs, output)
        finally:
            self.busy = False
            if self.mode_paused and not self.leaf_depth:
                self.mode.__enter__()
                self.mode_paused = False

    def _enter(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.stack.append(_Frame(self.names[id(module)], type(module).__name__, (args, kwargs)))
        if id(module) in self.leaves:
            self.leaf_depth += 1
            if self.leaf_depth == 1:
                self._pause_mode()

    def _pause_mode(self) -> None:
        """Pop the mode while a leaf runs: a leaf is one node, so its ops are not recorded, and
        every op the mode sees costs a round trip through Python (most of a capture's overhead
        over a forward pass). Only when the mode is the innermost one, so another mode entered
        by the model is never popped in its place."""
        if self.mode is not None and self.innermost_mode() is self.mode:
            self.mode.__exit__(None, None, None)
            self.mode_paused = True

    def stop_mode(self) -> None:
        """Pop the mode after forward, unless a leaf that raised left it popped."""
        if self.mode is not None and not self.mode_paused:
            self.mode.__exit__(None, None, None)
        self.mode, self.mode_paused = None, False

    def _leave(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        self.stack.pop()
        if id(module) not in self.leaves:
            return
        self.leaf_depth -= 1
        if self.leaf_depth:
            return
        # Only what must be read now (shapes, data edges, order) is read between two layers;
        # describing the layer waits for ``finish``, after forward, so the Python work between
        # the model's kernels stays small.
        calls = self.calls[id(module)] = self.calls.get(id(module), 0) + 1
        in_tensors = _call_tensors(args, kwargs)
        out_tensors = _tensors(output)
        call = _LeafCall(
            index=len(self.nodes),
            module=module,
            name=self.unique(self.names[id(module)] or self.model_name),
            scope=self.stack[-1].name if self.stack else "",
            inputs=tuple(tensor_spec(t) for t in in_tensors),
            outputs=tuple(tensor_spec(t) for t in out_tensors),
            first=calls == 1,
            parents=self.parents_of(in_tensors),
        )
        self.nodes.append(call)
        self.produce(out_tensors, call.index)

    def finish(self) -> tuple[Node, ...]:
        """Every node, the leaf calls described."""
        return tuple(n if isinstance(n, Node) else self._leaf_node(n) for n in self.nodes)

    def _leaf_node(self, call: _LeafCall) -> Node:
        module = call.module
        params, buffers = self.owned(module, self.names[id(module)]) if call.first else ((), ())
        return Node(
            index=call.index,
            name=call.name,
            kind="module",
            target=module_target(layer_class(module)),
            scope=call.scope,
            args=module_args(module),
            inputs=call.inputs,
            outputs=call.outputs,
            params=params,
            buffers=buffers,
            macs=module_macs(module, call.inputs, call.outputs),
            parents=call.parents,
        )

    def on_op(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        target = op_name(func)
        scope = self.stack[-1].name if self.stack else ""
        if target in _DATA_READS:
            self.data_reads.setdefault(target, set()).add(scope or self.model_name)
            return
        out_tensors = _tensors(result)
        if target == "operator.setitem":
            out_tensors = [args[0]]  # writes into its first argument
        if not out_tensors or target in _SKIP:
            return
        in_tensors = _call_tensors(args, kwargs)
        params: list[ParamSpec] = []
        buffers: list[ParamSpec] = []
        for t in in_tensors:
            owner = self.owners.get(id(t))
            if owner is not None and owner[2] is t:
                (params if owner[1] else buffers).append(self.param_spec(owner[0], t, owner[1]))
        inputs = tuple(tensor_spec(t) for t in in_tensors)
        outputs = tuple(tensor_spec(t) for t in out_tensors)
        short = target.rsplit(".", 1)[-1]
        kind = (
            "method" if target.startswith("Tensor.") else "operator" if target.startswith("operator.") else "function"
        )
        node = self.add(
            name=self.unique(f"{scope}.{short}" if scope else short),
            kind=kind,
            target=target,
            scope=scope,
            args=call_args(func, args, kwargs),
            inputs=inputs,
            outputs=outputs,
            params=tuple(params),
            buffers=tuple(buffers),
            macs=function_macs(target, inputs, outputs),
            parents=self.parents_of(in_tensors),
        )
        self.produce(out_tensors, node.index)

    # ------------------------------------------------------------ the run

    def add_inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        for path, tensor in _named_inputs(self.model, args, kwargs):
            node = self.add(name=f"input.{path}", kind="input", target="input", outputs=(tensor_spec(tensor),))
            if id(tensor) not in self.producers:
                self.produce([tensor], node.index)

    def add_output(self, output: Any) -> None:
        pairs = list(iter_tensors(output))
        paths = tuple((str(i), repr(p)) for i, (p, _) in enumerate(pairs) if p)
        tensors = [t for _, t in pairs]
        self.add(
            name="output",
            kind="output",
            target="output",
            args=paths,
            inputs=tuple(tensor_spec(t) for t in tensors),
            parents=self.parents_of(tensors),
        )

    def unused(self) -> tuple[UnusedModule, ...]:
        out = []
        for key, module in self.leaves.items():
            if key in self.calls or module is self.model:
                continue
            name = self.names[key]
            params, _ = self.owned(module, name)
            target = module_target(layer_class(module))
            out.append(UnusedModule(name=name, target=target, args=module_args(module), params=params))
        return tuple(out)

    def totals(self, nodes: tuple[Node, ...]) -> Totals:
        # Each tensor once, as ``model.parameters()`` and ``model.buffers()`` count them: indexed
        # parameters first, a tensor that is a parameter anywhere is one.
        params = [t for _, is_param, t in self.owners.values() if is_param]
        total = sum(p.numel() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        return Totals(
            params=total,
            trainable=trainable,
            frozen=total - trainable,
            buffers=sum(b.numel() for b in self.buffers.values()),
            macs=sum(n.macs for n in nodes),
        )

    def notes(self) -> tuple[str, ...]:
        notes = [EAGER_NOTE]
        for op in sorted(self.data_reads):
            where = ", ".join(sorted(self.data_reads[op]))
            notes.append(DATA_READ_NOTE.format(ops=op, where=where))
        return tuple(notes)

    def failure(self, exc: BaseException) -> CaptureError:
        frame = self.stack[-1] if self.stack else None
        if frame is None:
            where = f"model {self.model_name}"
            shapes = ""
        else:
            label = f"'{frame.name}'" if frame.name else "(the root module)"
            where = f"module {label} ({frame.type_name}) of {self.model_name}"
            shapes = ", ".join(str(s) for s in frame.inputs) or "no tensors"
            shapes = f" with inputs {shapes}"
        return CaptureError(
            f"capturing {self.model_name} failed: forward raised {type(exc).__name__} in {where}"
            f"{shapes}: {exc}\nFix the model or the example inputs so that "
            f"model(*example_args, **example_kwargs) runs; the original error is chained above."
        )


def _tensors(value: Any) -> list[Any]:
    """The tensors ``iter_tensors`` finds in ``value``, in its order; a tensor and a flat tuple of
    tensors, what nearly every call takes and returns, without its generators."""
    Tensor = tensor_class()
    if isinstance(value, Tensor):
        return [value]
    if type(value) is tuple and all(isinstance(v, Tensor) for v in value):
        return list(value)
    return tensors(value)


def _call_tensors(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    return _tensors(args) if not kwargs else tensors((args, kwargs))


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while forward runs and its records are made. A
    capture keeps thousands of small records (nodes, specs), and that many new survivors sets off
    full collections of the whole process: with torch loaded, each walks some 350,000 objects and
    took 300-400 ms, more than the capture itself. Nothing a capture makes is cyclic garbage; tensors are still freed
    by reference counting."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _innermost_mode_getter() -> Callable[[], Any]:
    """A function returning the torch-function mode on top of the stack; it returns None where
    this torch release cannot say, and then the mode is never paused."""
    from torch import overrides

    return getattr(overrides, "_get_current_function_mode", lambda: None)


def _named_inputs(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
    """Example inputs named after ``forward``'s parameters (``x``, ``batch.image``)."""
    try:
        bound = inspect.signature(model.forward).bind(*args, **kwargs)
        items = list(bound.arguments.items())
    except (TypeError, ValueError):
        items = [(str(i), a) for i, a in enumerate(args)] + list(kwargs.items())
    out: list[tuple[str, Any]] = []
    for name, value in items:
        out.extend((f"{name}.{p}" if p else name, t) for p, t in iter_tensors(value))
    return out


def _check_inputs(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    from torch import nn

    if not isinstance(model, nn.Module):
        raise CaptureError(
            f"capture needs a torch.nn.Module, got {type(model).__name__}; pass the model "
            "instance itself (not its class, state_dict or output)"
        )
    name = type(model).__name__
    if not args and not kwargs:
        raise CaptureError(
            f"capture({name}) needs example inputs to run forward once, e.g. "
            f"capture(model, torch.randn(1, 3, 32, 32)); got none"
        )
    for key, value in [*enumerate(args), *kwargs.items()]:
        if type(value).__module__ == "numpy":
            raise CaptureError(
                f"example input {key!r} of {name} is a numpy {type(value).__name__}; convert it "
                "with torch.from_numpy(...) or torch.tensor(...)"
            )
    if not any(True for _ in iter_tensors((args, kwargs))):
        kinds = ", ".join(type(v).__name__ for v in [*args, *kwargs.values()])
        raise CaptureError(
            f"no example input of {name} is a tensor (got {kinds}); pass torch tensors, e.g. "
            "torch.randn(1, 3, 32, 32), possibly inside tuples, lists, dicts or dataclasses"
        )


def _check_tree(model: nn.Module) -> None:
    cycle = module_cycle(model)
    if cycle is not None:
        name = type(model).__name__
        raise CaptureError(f"cannot capture {name}: {cycle.describe(name)}. {FIX_HINT}.")


def capture(model: nn.Module, *example_args: Any, **example_kwargs: Any) -> ArchitectureGraph:
    """Run ``model(*example_args, **example_kwargs)`` once and record its architecture.

    Runs under ``torch.no_grad()``; the model's mode, buffers (BatchNorm statistics) and the RNG
    are as before afterwards. Works on the meta device without allocating weights. A model
    wrapped by ``torch.compile`` or ``DataParallel`` is captured as the model inside, eagerly.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    model = unwrap_model(model)  # torch.compile, DataParallel: the model they run, never the wrapper
    refuse_transformed(model, "capture")
    _check_inputs(model, example_args, example_kwargs)
    _check_tree(model)
    rec = _Recorder(model)
    tensor_iter = torch.Tensor.__iter__

    class _Ops(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if func is tensor_iter and not rec.leaf_depth and not rec.busy:
                # ``for row in x`` unbinds lazily, out of the mode's sight: unbind here so the
                # rows get a producer, and hand the same rows to the loop.
                func, result = torch.Tensor.unbind, torch.Tensor.unbind(args[0], 0)
                rec.busy = True
                try:
                    rec.on_op(func, args, {}, result)
                finally:
                    rec.busy = False
                return iter(result)
            result = func(*args, **kwargs)
            if not rec.leaf_depth and not rec.busy:  # calls inside a leaf belong to the leaf
                rec.busy = True
                try:
                    rec.on_op(func, args, kwargs, result)
                finally:
                    rec.busy = False
            return result

    handles = []
    for module in rec.modules:
        if id(module) in rec.names:
            handles.append(module.register_forward_pre_hook(rec.pre_hook, with_kwargs=True))
            handles.append(module.register_forward_hook(rec.post_hook, with_kwargs=True))
    try:
        with kept_model_state(model), _collector_paused():
            rec.add_inputs(example_args, example_kwargs)
            with torch.no_grad():
                # Held as Any: torch leaves ``TorchFunctionMode.__enter__`` (which returns the mode) unannotated.
                mode: Any = _Ops()
                rec.mode = mode.__enter__()
                try:
                    output = model(*example_args, **example_kwargs)
                finally:
                    rec.stop_mode()
            rec.add_output(output)
            nodes = rec.finish()
    except CaptureError:
        raise
    except Exception as exc:
        raise rec.failure(exc) from exc
    finally:
        for handle in handles:
            handle.remove()
    return ArchitectureGraph(
        model_name=rec.model_name,
        training=model.training,
        nodes=nodes,
        totals=rec.totals(nodes),
        unused=rec.unused(),
        notes=rec.notes(),
    )
