"""How captured things are named and printed: Python-level op names, layer targets, argument text.

Everything here is chosen so the architecture text is the same across torch 2.x releases,
devices and processes: no ATen names, no memory addresses, no devices, no import paths of user
classes.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
# C functions that torch re-exports under a public namespace without their prefix
# (``torch._C._linalg.linalg_qr`` is ``torch.linalg.qr``); checked by identity, never by string.
_PUBLIC_NAMESPACES = (
    ("torch.linalg", "linalg_"), ("torch.fft", "fft_"), ("torch.special", "special_"),
    ("torch", ""), ("torch.nn.functional", ""),
)
_ADDRESS = re.compile(r"\s*at 0x[0-9a-fA-F]+")
_DROPPED_KEYS = frozenset({"device", "dtype", "out", "layout", "pin_memory"})
# Constructor parameters a layer keeps under another attribute (or not at all): how to read them.
_STORED_AS: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("MultiheadAttention", "bias"): lambda m: m.in_proj_bias is not None,
    ("MultiheadAttention", "add_bias_kv"): lambda m: m.bias_k is not None,
}
# Constructor parameters the class name already says (``RNNBase(mode="LSTM")`` is ``nn.LSTM``).
_IMPLIED_BY_CLASS = frozenset({("RNNBase", "mode")})
# Parameters torch takes through ``*args``/``**kwargs``, so no signature shows them: (name, default).
_HIDDEN_PARAMS = {"RNN": (("nonlinearity", "tanh"),)}
# ``None`` defaults that mean "the same as another argument": equal to it, they are left out.
_SAME_AS = {"kdim": "embed_dim", "vdim": "embed_dim"}
# Geometry is always written by name (``kernel_size=(3, 3)``), so a reader of the text (and the
# renderers' ``Conv3x3/s2`` titles) need not know each layer's argument order.
_ALWAYS_NAMED = frozenset({"kernel_size", "stride", "padding", "dilation", "output_size"})
_EMPTY = inspect.Parameter.empty


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
    public = _public_name(func, name)
    if public is not None:
        return public
    module = _MODULE_ALIASES.get(module or "", module or "torch")
    return f"{module}.{name}"


def _public_name(func: Any, name: str) -> str | None:
    """Where torch exports ``func`` publicly, found by identity (``torch.linalg.qr``)."""
    import sys

    for namespace, prefix in _PUBLIC_NAMESPACES:
        if not name.startswith(prefix):
            continue
        short = name[len(prefix) :]
        home = sys.modules.get(namespace)
        if home is not None and getattr(home, short, None) is func:
            return f"{namespace}.{short}"
    return None


def layer_class(module: nn.Module) -> type:
    """``type(module)``, typed as a plain ``type`` so it can key the caches below: torch's stubs
    declare ``Module.__hash__`` in a way that hides from type checkers that a class is hashable."""
    return type(module)


@functools.cache
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


def call_args(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """An op's non-tensor arguments as the call spelled them; tensors are its inputs (edges).

    torch's Python wrappers (``F.interpolate``, ``F.max_pool2d``) pass every parameter on, filled
    with their defaults, and which ops are Python wrappers changes between releases; so where
    ``func`` has a signature, arguments at their default are left out, required ones are
    positional and the rest are keywords. Devices, dtypes and private parameters never appear.
    """
    bound = _bind(func, args, kwargs)
    pairs = bound if bound is not None else [(None, v, _EMPTY) for v in args] + [
        (k, v, _EMPTY) for k, v in kwargs.items()
    ]
    out: list[tuple[str, str]] = []
    for key, value, default in pairs:
        if key is not None and (key in _DROPPED_KEYS or key.startswith("_")):
            continue
        if _is_all_tensors(value) or _is_default(value, default):
            continue
        text = format_value(value)
        if text is not None:
            out.append((str(len(out)) if key is None else key, _clean(text)))
    return tuple(out)


_SIGNATURES: dict[Any, inspect.Signature | None] = {}


def _signature(func: Any) -> inspect.Signature | None:
    try:
        if func not in _SIGNATURES:
            _SIGNATURES[func] = _find_signature(func)
        return _SIGNATURES[func]
    except TypeError:  # unhashable callable: look it up every time
        return _find_signature(func)


def _find_signature(func: Any) -> inspect.Signature | None:
    from torch._jit_internal import boolean_dispatched

    # ``F.max_pool2d`` and friends are ``fn(*args, **kwargs)`` dispatchers over two real functions
    # that share one signature.
    target = boolean_dispatched.get(func, {}).get("if_false", func) if inspect.isfunction(func) else func
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):  # C functions have none
        return None
    return sig if sig.parameters else None


def _bind(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[str | None, Any, Any]] | None:
    """``(keyword or None for positional, value, default)`` per argument, in signature order."""
    sig = _signature(func)
    if sig is None:
        return None
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:  # the call does not fit the signature we found: keep it as passed
        return None
    out: list[tuple[str | None, Any, Any]] = []
    for name, value in bound.arguments.items():
        param = sig.parameters[name]
        if param.kind is param.VAR_POSITIONAL:
            out.extend((None, v, _EMPTY) for v in value)
        elif param.kind is param.VAR_KEYWORD:
            out.extend((k, v, _EMPTY) for k, v in value.items())
        elif param.default is _EMPTY and param.kind is not param.KEYWORD_ONLY:
            out.append((None, value, _EMPTY))
        else:
            out.append((name, value, param.default))
    return out


def _is_default(value: Any, default: Any) -> bool:
    """Whether ``value`` says nothing ``default`` does not (``(1, 1)`` for a default of ``1``)."""
    import torch

    if default is _EMPTY or isinstance(value, torch.Tensor):
        return False
    if value is default:
        return True
    if isinstance(value, tuple) and value and not isinstance(default, tuple):
        return all(_is_default(v, default) for v in value)
    if isinstance(value, bool) or isinstance(default, bool):
        return isinstance(value, bool) and isinstance(default, bool) and value == default
    if isinstance(value, (int, float)) and isinstance(default, (int, float)):
        return value == default
    return type(value) is type(default) and value == default


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
    """A layer's constructor arguments that differ from their defaults, read from the layer.

    torch's layers are described from their attributes and their class's constructor
    signature, never from ``extra_repr()``, whose wording changes between torch releases.
    A user's layer with its own ``extra_repr`` is described by it; one without, by its
    simple ``__constants__``.
    """
    torch_cls = _torch_layer_class(layer_class(module))
    own_repr = _extra_repr_owner(layer_class(module))
    if torch_cls is not None and (own_repr is None or own_repr.__module__.startswith("torch.")):
        return _args_from_attributes(module)
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
    return tuple((k, v) for k, v in args if k not in _DROPPED_KEYS)


@functools.cache
def _torch_layer_class(cls: type) -> type | None:
    """The nearest class in ``cls``'s MRO that torch defines (``nn.Conv2d`` for ``MyConv``)."""
    from torch import nn

    for klass in cls.__mro__:
        if klass is nn.Module:
            return None
        if klass.__module__.startswith("torch."):
            return klass
    return None


@functools.cache
def _extra_repr_owner(cls: type) -> type | None:
    from torch import nn

    for klass in cls.__mro__:
        if klass is nn.Module:
            return None
        if "extra_repr" in klass.__dict__:
            return klass
    return None


_INIT_PARAMS: dict[type, list[tuple[str, Any, bool, str]]] = {}


def _init_params(cls: type) -> list[tuple[str, Any, bool, str]]:
    """``(name, default, positional, owner class)`` of the torch constructor that takes named parameters.

    Skips ``__init__(self, *args, **kwargs)`` shims (``nn.LSTM``) for the class they forward to.
    """
    params = _INIT_PARAMS.get(cls)
    if params is None:
        params = _INIT_PARAMS[cls] = _find_init_params(cls)
    return params


def _find_init_params(cls: type) -> list[tuple[str, Any, bool, str]]:
    from torch import nn

    out: list[tuple[str, Any, bool, str]] = []
    for klass in cls.__mro__:
        if klass is nn.Module:
            break
        if "__init__" not in klass.__dict__:
            continue
        out.extend((n, d, False, klass.__name__) for n, d in _HIDDEN_PARAMS.get(klass.__name__, ()))
        try:
            params = list(inspect.signature(klass.__dict__["__init__"]).parameters.values())[1:]
        except (TypeError, ValueError):
            continue
        named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if named:
            front = [
                (p.name, p.default, p.default is _EMPTY and p.kind is not p.KEYWORD_ONLY, klass.__name__)
                for p in named
            ]
            return front + out
    return out


def _args_from_attributes(module: nn.Module) -> tuple[tuple[str, str], ...]:
    """``module``'s arguments, described once per distinct set of values and class: a model has
    many layers alike (every ``Conv2d(64, 64, 3, padding=1)``), and describing one costs more
    than reading its values."""
    plan = _attribute_plan(layer_class(module))
    values = _read_values(module, plan)
    try:
        key = (type(module), *map(_exact, values))
        args = _ARGS.get(key)
    except TypeError:  # a value that cannot be hashed (a dict): described afresh
        return _describe(plan, values)
    if args is None:
        if len(_ARGS) >= _MAX_ARGS:
            _ARGS.clear()
        args = _ARGS[key] = _describe(plan, values)
    return args


_ARGS: dict[tuple[Any, ...], tuple[tuple[str, str], ...]] = {}
_MAX_ARGS = 4096
_ABSENT = object()  # a constructor parameter the layer does not keep, or a tensor listed as a buffer
_AFFINE = "affine"  # the extra value read for a ``bias`` parameter (see ``_redundant``)


@functools.cache
def _attribute_plan(cls: type) -> tuple[tuple[str, Any, bool, Callable[[Any], Any] | None], ...]:
    """``(name, default, positional, reader)`` per constructor parameter that describes a ``cls``
    layer, then ``(attribute, _ABSENT, False, None)`` per other attribute ``_redundant`` reads."""
    plan = []
    for name, default, positional, owner in _init_params(cls):
        if name in _DROPPED_KEYS or name.startswith("_") or (owner, name) in _IMPLIED_BY_CLASS:
            continue
        plan.append((name, default, positional, _STORED_AS.get((owner, name))))
    names = {name for name, *_ in plan}
    extras = sorted({_SAME_AS[n] for n in names if n in _SAME_AS} | ({_AFFINE} if "bias" in names else set()))
    return (*plan, *((name, _ABSENT, False, None) for name in extras))


def _read_values(module: nn.Module, plan: tuple[tuple[str, Any, bool, Any], ...]) -> tuple[Any, ...]:
    import torch

    values: list[Any] = []
    for name, default, _, reader in plan:
        if default is _ABSENT:  # an extra
            value = _extra(module, name, plan, values)
        elif reader is not None:
            value = reader(module)
        else:
            value = getattr(module, name, _ABSENT)  # absent: not kept on the layer (``min_value``)
        if isinstance(default, bool) and (value is None or isinstance(value, torch.Tensor)):
            value = value is not None  # ``bias=True`` is kept as the bias parameter itself
        elif isinstance(value, torch.Tensor):
            value = _ABSENT  # a tensor argument (a loss's class weights) is a buffer, listed as such
        values.append(value)
    return tuple(values)


def _extra(module: nn.Module, name: str, plan: tuple[tuple[str, Any, bool, Any], ...], values: list[Any]) -> Any:
    """An attribute ``_redundant`` reads; ``affine`` only where the bias is not at its default,
    the one case it is read (a lookup that fails costs an exception inside ``Module.__getattr__``)."""
    if name != _AFFINE:
        return getattr(module, name, _ABSENT)
    # ``values`` holds what is read so far, so it is shorter than ``plan``: the bias comes before its extras.
    read_so_far = zip(plan, values, strict=False)
    bias = next(((default, value) for (n, default, _, _), value in read_so_far if n == "bias"), None)
    if bias is None or bias[1] is _ABSENT or _is_default(bias[1], bias[0]):
        return None
    return getattr(module, "affine", getattr(module, "elementwise_affine", True))


def _exact(value: Any) -> Any:
    """A hashable key that two values share only when ``format_value`` writes them alike
    (``1``, ``1.0`` and ``True`` compare equal but are written differently, so are ``0.0`` and
    ``-0.0``). Plain values only: anything else raises ``TypeError`` and is described afresh,
    so the cache never keeps a user's object alive."""
    kind = type(value)
    if kind is float:
        return kind, repr(value)
    if kind in _PLAIN or value is _ABSENT:
        return kind, value
    if kind is tuple or kind is list:
        return kind, tuple(map(_exact, value))
    raise TypeError(f"not a plain value: {kind.__name__}")


_PLAIN = frozenset({bool, int, str, type(None)})


def _describe(plan: tuple[tuple[str, Any, bool, Any], ...], values: tuple[Any, ...]) -> tuple[tuple[str, str], ...]:
    # ``values`` is read by ``_read_values`` from this plan: one value per entry.
    extras = {name: value for (name, default, _, _), value in zip(plan, values, strict=True) if default is _ABSENT}
    out: list[tuple[str, str]] = []
    named = False  # once one argument is written by name, so are all after it
    for (name, default, positional, _), value in zip(plan, values, strict=True):
        if value is _ABSENT or default is _ABSENT:
            continue
        if _is_default(value, default) or _redundant(name, value, default, extras):
            continue
        text = format_value(value)
        if text is None:
            continue
        named = named or not positional or name in _ALWAYS_NAMED
        out.append((name if named else str(len(out)), _clean(text)))
    return tuple(out)


def _redundant(name: str, value: Any, default: Any, extras: dict[str, Any]) -> bool:
    """Arguments that another argument already implies (``extras``: the other attributes read)."""
    same = _SAME_AS.get(name)
    if default is None and same is not None and value == extras.get(same, object()):
        return True
    # A norm layer without affine weights has no bias either; releases that take ``bias=`` say so
    # twice, older ones once.
    return name == "bias" and extras.get(_AFFINE) is False


# Specs are immutable and a model's tensors come in few shapes: one spec per (shape, dtype) is
# built once and shared, since building a record costs more than looking one up.
_SPECS: dict[tuple[Any, Any], TensorSpec] = {}
_MAX_SPECS = 4096


def tensor_spec(t: torch.Tensor) -> TensorSpec:
    key = (t.shape, t.dtype)
    try:
        spec = _SPECS.get(key)
    except TypeError:  # a symbolic size cannot be hashed
        return TensorSpec(tuple(t.shape), _dtype_name(t.dtype))
    if spec is None:
        if len(_SPECS) >= _MAX_SPECS:
            _SPECS.clear()
        spec = _SPECS[key] = TensorSpec(tuple(t.shape), _dtype_name(t.dtype))
    return spec


@functools.cache
def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")
