"""How captured things are named and printed: Python-level op names, layer targets, argument text.

Everything here is chosen so the architecture text is the same across torch 2.x releases,
devices and processes: no ATen names, no memory addresses, no devices, no import paths of user
classes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterator

from pytest_modelviz.graph.model import TensorSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

# Python-level homes of torch's C functions, so names match across torch 2.x releases.
_MODULE_ALIASES = {
    "torch._C._nn": "torch.nn.functional",
    "torch._C._VariableFunctions": "torch",
    "torch.functional": "torch",
    "torch._C._linalg": "torch.linalg",
    "torch._C._fft": "torch.fft",
    "torch._C._special": "torch.special",
    "torch._C._nested": "torch.nested",
}
_TENSOR_CLASSES = ("TensorBase", "_TensorBase", "Tensor")
# Tensor dunders -> the ``operator`` function Python code spells them with; reflected and
# in-place forms keep their own names (``x += y`` is not ``x + y``).
_OPERATORS = {
    "__add__": "add", "__radd__": "add", "__sub__": "sub", "__rsub__": "sub",
    "__mul__": "mul", "__rmul__": "mul", "__matmul__": "matmul", "__rmatmul__": "matmul",
    "__truediv__": "truediv", "__rtruediv__": "truediv", "__div__": "truediv",
    "__floordiv__": "floordiv", "__rfloordiv__": "floordiv", "__mod__": "mod", "__rmod__": "mod",
    "__pow__": "pow", "__rpow__": "pow", "__neg__": "neg", "__pos__": "pos", "__abs__": "abs",
    "__invert__": "invert", "__and__": "and_", "__rand__": "and_", "__or__": "or_",
    "__ror__": "or_", "__xor__": "xor", "__rxor__": "xor", "__lshift__": "lshift",
    "__rshift__": "rshift", "__eq__": "eq", "__ne__": "ne", "__lt__": "lt", "__le__": "le",
    "__gt__": "gt", "__ge__": "ge", "__getitem__": "getitem", "__setitem__": "setitem",
    "__iadd__": "iadd", "__isub__": "isub", "__imul__": "imul", "__itruediv__": "itruediv",
    "__imatmul__": "imatmul", "__ipow__": "ipow", "__iand__": "iand", "__ior__": "ior",
}
# Some torch releases hand ``x + y`` to torch-function modes as ``Tensor.__add__``, others as
# ``Tensor.add``; both spell the same Python operator, so both get the operator's name.
_METHOD_OPERATORS = {
    "add": "add", "sub": "sub", "rsub": "sub", "mul": "mul", "matmul": "matmul", "div": "truediv",
    "true_divide": "truediv", "floor_divide": "floordiv", "remainder": "mod", "neg": "neg",
    "pow": "pow", "gt": "gt", "lt": "lt", "ge": "ge", "le": "le", "eq": "eq", "ne": "ne",
    "add_": "iadd", "sub_": "isub", "mul_": "imul", "div_": "itruediv", "pow_": "ipow",
    "bitwise_and": "and_", "bitwise_or": "or_", "bitwise_xor": "xor", "bitwise_not": "invert",
    "logical_not": "not_",
}
# Layer arguments some torch 2.x releases print and older ones do not: dropped at their default.
_LATE_DEFAULTS = {"bias": "True", "approximate": "'none'"}
_LATE_DEFAULT_TYPES = frozenset(
    {"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm1d",
     "InstanceNorm2d", "InstanceNorm3d", "GELU"}
)
_ADDRESS = re.compile(r"\s*at 0x[0-9a-fA-F]+")
_DROPPED_KEYS = frozenset({"device", "dtype", "out", "layout", "pin_memory"})


def op_name(func: Any) -> str:
    """The Python-level name of a torch callable, the same across torch 2.x releases."""
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "__get__":  # a Tensor property such as ``x.T``
        owner = getattr(func, "__self__", None)
        return f"Tensor.{getattr(owner, '__name__', 'property')}"
    qualname = getattr(func, "__qualname__", name) or name
    module = getattr(func, "__module__", None)
    cls = qualname.rsplit(".", 1)[0] if "." in qualname else ""
    if cls in _TENSOR_CLASSES or (module in (None, "torch._tensor") and cls):
        if name in _OPERATORS:
            return f"operator.{_OPERATORS[name]}"
        if name in _METHOD_OPERATORS:
            return f"operator.{_METHOD_OPERATORS[name]}"
        return f"Tensor.{name}"
    module = _MODULE_ALIASES.get(module or "", module or "torch")
    return f"{module}.{name}"


def module_target(cls: type) -> str:
    """``torch.nn.Conv2d`` for torch's layers, the bare class name for everything else.

    A user class's ``__module__`` depends on how it was imported (test rootdir, ``__main__``), so
    only its name is stable.
    """
    import torch.nn

    if getattr(torch.nn, cls.__name__, None) is cls:
        return f"torch.nn.{cls.__name__}"
    return cls.__name__


def format_value(value: Any) -> str | None:
    """Deterministic text of a non-tensor argument; ``None`` drops it (devices never appear)."""
    import torch

    if isinstance(value, torch.Tensor):
        return "T"
    if isinstance(value, torch.device):
        return None
    if isinstance(value, (bool, int)) or value is None:
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (torch.dtype, torch.layout, torch.memory_format)):
        return str(value).removeprefix("torch.")
    if isinstance(value, slice):
        parts = ["" if v is None else (format_value(v) or "") for v in (value.start, value.stop, value.step)]
        return ":".join(parts[:2]) if value.step is None else ":".join(parts)
    if value is Ellipsis:
        return "..."
    if isinstance(value, (tuple, list)):
        items = [format_value(v) or "?" for v in value]
        if isinstance(value, list):
            return f"[{', '.join(items)}]"
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {format_value(v) or '?'}" for k, v in value.items()) + "}"
    if callable(value):
        return getattr(value, "__qualname__", type(value).__name__)
    return f"<{type(value).__name__}>"


def _is_all_tensors(value: Any) -> bool:
    import torch

    if isinstance(value, torch.Tensor):
        return True
    return isinstance(value, (tuple, list)) and bool(value) and all(_is_all_tensors(v) for v in value)


def call_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """An op's non-tensor arguments; tensors are its inputs (edges), devices never appear."""
    out: list[tuple[str, str]] = []
    for value in args:
        if _is_all_tensors(value):
            continue
        text = format_value(value)
        if text is not None:
            out.append((str(len(out)), _clean(text)))
    for key, value in kwargs.items():
        if key in _DROPPED_KEYS or _is_all_tensors(value):
            continue
        text = format_value(value)
        if text is not None:
            out.append((key, _clean(text)))
    return tuple(out)


def _clean(text: str) -> str:
    return " ".join(_ADDRESS.sub("", text).split())


def split_top_level(text: str) -> list[str]:
    """Split ``a, b=(1, 2), c='x, y'`` at commas outside brackets and quotes."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return [p for p in parts if p]


def keyed_args(parts: list[str]) -> tuple[tuple[str, str], ...]:
    """``["16", "k=3"]`` -> ``(("0", "16"), ("k", "3"))``."""
    out: list[tuple[str, str]] = []
    for part in parts:
        key, sep, value = part.partition("=")
        if sep and key.strip().isidentifier() and "(" not in key:
            out.append((key.strip(), value.strip()))
        else:
            out.append((str(len(out)), part))
    return tuple(out)


def module_args(module: nn.Module) -> tuple[tuple[str, str], ...]:
    """Constructor arguments from ``extra_repr`` (or simple ``__constants__``), device-free."""
    from torch import nn

    if isinstance(module, nn.MultiheadAttention):
        args = (
            ("embed_dim", repr(module.embed_dim)),
            ("num_heads", repr(module.num_heads)),
            ("dropout", repr(module.dropout)),
            ("bias", repr(module.in_proj_bias is not None)),
            ("batch_first", repr(module.batch_first)),
        )
        return args
    text = _clean(module.extra_repr())
    if text:
        args = keyed_args(split_top_level(text))
    else:
        pairs = []
        for key in getattr(module, "__constants__", ()):
            value = getattr(module, key, None)
            if not key.startswith("_") and isinstance(value, (bool, int, float, str, tuple)):
                pairs.append((key, format_value(value) or "?"))
        args = tuple(pairs)
    late = _LATE_DEFAULTS if type(module).__name__ in _LATE_DEFAULT_TYPES else {}
    return tuple((k, v) for k, v in args if k not in _DROPPED_KEYS and late.get(k) != v)


_DTYPE_NAMES: dict[Any, str] = {}


def tensor_spec(t: torch.Tensor) -> TensorSpec:
    dtype = t.dtype
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return TensorSpec(tuple(t.shape), name)


def iter_tensors(value: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a nested tuple/list/dict/dataclass, with its path (``0.logits``)."""
    import torch

    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from iter_tensors(item, f"{path}.{i}" if path else str(i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from iter_tensors(item, f"{path}.{key}" if path else str(key))
