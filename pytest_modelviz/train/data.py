"""Batches: where they come from, what they hold, and how they reach the device and the model.

A batch is split into what the model takes (``inputs``) and what the loss compares the output
with (``targets``) by a ``BatchSpec``: tuples and lists by position (``(inputs, targets, ...)``),
named tuples by position or field name, mappings (``{"input_ids": ..., "labels": ...}``, a Hugging
Face ``BatchEncoding``) and dataclasses by key or field name, anything else by the caller's
``batch_fn``.
"""

from __future__ import annotations

import copy
import dataclasses
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_modelviz.errors import TrainingError
from pytest_modelviz.nested import map_tensors

if TYPE_CHECKING:
    import torch

    from pytest_modelviz.train.options import BatchKey, BatchPart


@dataclass(frozen=True)
class Batch:
    inputs: Any  # a tensor (model(x)), a tuple/list (model(*x)) or a mapping (model(**x))
    targets: Any  # None when the batch has no separate target (the model or loss_fn reads the batch)
    raw: Any = None  # the batch as the data gave it, for loss_fn(output, batch)


@dataclass(frozen=True)
class BatchSpec:
    """Which part of a batch the model takes and which the loss compares with.

    ``inputs``: None (tuples: element 0; mappings and dataclasses: every field but the target,
    as keyword arguments), a position or a name (that one part), or a list of names (those
    fields as keyword arguments). ``target``: None (tuples: element 1; mappings and dataclasses:
    none, the model or ``loss_fn(output, batch)`` reads the batch), a position or a name.
    ``batch_fn(batch) -> (inputs, target)`` replaces both.
    """

    inputs: BatchPart = None
    target: BatchKey | None = None
    batch_fn: Callable[[Any], Any] | None = None


def is_single_batch(data: Any) -> bool:
    """One batch given directly (``(inputs, targets)``, a mapping of tensors, a dataclass), rather
    than an iterable of batches."""
    import torch

    if isinstance(data, Mapping):
        return bool(data) and any(isinstance(v, torch.Tensor) for v in data.values())
    if _is_dataclass_instance(data):
        return True
    return (
        isinstance(data, (tuple, list))
        and len(data) >= 2
        and isinstance(data[1], torch.Tensor)
        and isinstance(data[0], (torch.Tensor, tuple, list, dict))
    )


class BatchStream:
    """An endless, deterministic stream of batches.

    An iterable that can be iterated again (a DataLoader, a list) is re-iterated when it runs out;
    a one-shot iterator (a generator) is cached as it goes, so cycling replays the same batches.
    With ``overfit`` the first batch is repeated.
    """

    def __init__(self, data: Iterable[Any], *, overfit: bool = False, spec: BatchSpec | None = None) -> None:
        self._single = is_single_batch(data)
        self._spec = spec or BatchSpec()
        self._pulled = 0
        self._data = data
        self._overfit = overfit
        self._one_shot = not self._single and iter(data) is data
        self._cache: list[Any] = []
        self._it: Iterator[Any] | None = None
        self._first: Any = None
        self._cycle = 0

    @property
    def source(self) -> Any:
        """The data as it was given."""
        return self._data

    def replay(self) -> BatchStream:
        """A new stream that yields this one's batches again, from the first.

        A re-iterable is iterated anew (a ``DataLoader(shuffle=True)`` draws the same order when
        torch's RNG is seeded the same); a one-shot iterator's batches come from the cache.
        """
        # Copied, not constructed: the constructor's iter(data) would draw a DataLoader's base seed
        # from the RNG the replay is to draw from as the first pass did.
        stream = copy.copy(self)
        stream._pulled, stream._cache, stream._it, stream._first, stream._cycle = 0, [], None, None, 0
        if self._one_shot:
            stream._data, stream._one_shot = tuple(self._cache), False
        return stream

    def next(self, step: int) -> Batch:
        raw = self._next_raw(step)
        return split_batch(raw, step, self._spec)

    def _next_raw(self, step: int) -> Any:
        if self._single:
            return self._data
        if self._overfit and self._first is not None:
            return self._first
        raw = self._pull(step)
        if self._first is None:
            self._first = raw
        return raw

    def _pull(self, step: int) -> Any:
        if self._it is None:
            self._it = iter(self._cache) if self._one_shot and self._cycle > 0 else iter(self._data)
        try:
            raw = next(self._it)
        except StopIteration:
            self._cycle += 1
            if self._pulled == 0 or (self._one_shot and not self._cache):
                raise TrainingError(
                    "short_train got empty data: the data iterable yielded no batch "
                    f"({type(self._data).__name__}). Pass a DataLoader or list with at least one "
                    "(inputs, targets) batch."
                ) from None
            self._it = iter(self._cache) if self._one_shot else iter(self._data)
            try:
                raw = next(self._it)
            except StopIteration:
                raise TrainingError(
                    f"short_train: the data iterable ({type(self._data).__name__}) yielded no batch "
                    f"when iterated again at step {step}; pass a re-iterable (a DataLoader or a list)."
                ) from None
            self._pulled += 1
            return raw
        if self._one_shot and self._cycle == 0:
            self._cache.append(raw)
        self._pulled += 1
        return raw


def split_batch(raw: Any, step: int, spec: BatchSpec | None = None) -> Batch:
    spec = spec or BatchSpec()
    plain = spec.inputs is None and spec.target is None and spec.batch_fn is None
    if plain and type(raw) in (tuple, list) and len(raw) >= 2:
        return Batch(inputs=raw[0], targets=raw[1], raw=raw)  # the common case, every step: no lookups
    if spec.batch_fn is not None:
        return _from_batch_fn(raw, step, spec.batch_fn)
    if isinstance(raw, Mapping) or _is_dataclass_instance(raw):
        return _split_keyed(raw, step, spec)
    if not isinstance(raw, (tuple, list)) or len(raw) < 2:
        raise TrainingError(
            f"step {step}: a batch must be (inputs, targets) or (inputs, targets, ...), a mapping or a "
            f"dataclass, got {describe(raw)}. Make the dataset return (inputs, targets) pairs, or pass "
            "batch_fn=lambda batch: (inputs, target) to say how to split it."
        )
    inputs = 0 if spec.inputs is None else spec.inputs
    target = 1 if spec.target is None else spec.target
    targets = _part(raw, target, step, "target")
    if isinstance(inputs, (list, tuple)):
        return Batch(inputs={k: _part(raw, k, step, "inputs") for k in inputs}, targets=targets, raw=raw)
    return Batch(inputs=_part(raw, inputs, step, "inputs"), targets=targets, raw=raw)


def _split_keyed(raw: Any, step: int, spec: BatchSpec) -> Batch:
    """A mapping or dataclass batch: keyword inputs by default, the target only when named."""
    target = None if spec.target is None else _part(raw, spec.target, step, "target")
    if spec.inputs is None:
        inputs = {k: v for k, v in (_fields(raw) or {}).items() if k != spec.target}
    elif isinstance(spec.inputs, (list, tuple)):
        inputs = {k: _part(raw, k, step, "inputs") for k in spec.inputs}
    else:
        inputs = _part(raw, spec.inputs, step, "inputs")
    return Batch(inputs=inputs, targets=target, raw=raw)


def _part(raw: Any, key: Any, step: int, option: str) -> Any:
    """``raw[key]`` (a position or a mapping key) or ``raw.key`` (a named tuple or dataclass field)."""
    fields = _fields(raw)
    if isinstance(key, str) and fields is not None:
        if key in fields:
            return fields[key]
    elif isinstance(key, int) and isinstance(raw, (tuple, list)) and -len(raw) <= key < len(raw):
        return raw[key]
    if fields is not None:
        has = f"keys {list(fields)}"
    else:
        has = f"{len(raw)} elements" if isinstance(raw, (tuple, list)) else "nothing to index"
    raise TrainingError(
        f"step {step}: {option}={key!r} is not in the batch {describe(raw)} (it has {has}). "
        f"Name one of them with {option}=..., or pass batch_fn=lambda batch: (inputs, target)."
    )


def _fields(raw: Any) -> dict[str, Any] | None:
    """A mapping's items, a named tuple's or dataclass's fields by name; None for a plain sequence."""
    if isinstance(raw, Mapping):
        return {str(k): v for k, v in raw.items()}
    if isinstance(raw, tuple) and hasattr(raw, "_fields"):
        return dict(zip(raw._fields, raw, strict=True))
    if _is_dataclass_instance(raw):
        return {f.name: getattr(raw, f.name) for f in dataclasses.fields(raw)}
    return None


def _from_batch_fn(raw: Any, step: int, batch_fn: Callable[[Any], Any]) -> Batch:
    try:
        out = batch_fn(raw)
    except Exception as exc:
        raise TrainingError(
            f"step {step}: batch_fn raised {type(exc).__name__}: {exc} (batch {describe(raw)})"
        ) from exc
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TrainingError(
            f"step {step}: batch_fn must return (inputs, target), got {describe(out)}; return "
            "(inputs, None) when the model or loss_fn(output, batch) needs no separate target"
        )
    return Batch(inputs=out[0], targets=out[1], raw=raw)


def _is_dataclass_instance(obj: Any) -> bool:
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def to_device(obj: Any, device: torch.device, memo: dict[int, torch.Tensor] | None = None) -> Any:
    """``obj`` with every tensor in it moved to ``device`` (containers and dataclasses rebuilt).

    ``memo`` (tensor id -> moved tensor), shared between calls, moves a tensor that two of the
    objects hold once; the caller keeps the originals alive meanwhile, so ids are not reused.
    """
    seen: dict[int, torch.Tensor] = {} if memo is None else memo

    def move(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in seen:
            seen[id(t)] = t.to(device, non_blocking=True)
        return seen[id(t)]

    return map_tensors(obj, move)


def call_model(model: torch.nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def describe(obj: Any) -> str:
    """Shapes and dtypes, never values: ``Tensor[8, 3, 8, 8] float32``, ``(Tensor[8], ...)``."""
    import torch

    if isinstance(obj, torch.Tensor):
        return f"Tensor{list(obj.shape)} {str(obj.dtype).replace('torch.', '')}"
    if obj is None:
        return "None"
    if isinstance(obj, Mapping):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in obj.items()) + "}"
    if _is_dataclass_instance(obj) or isinstance(obj, tuple) and hasattr(obj, "_fields"):
        inner = ", ".join(f"{k}={describe(v)}" for k, v in (_fields(obj) or {}).items())
        return f"{type(obj).__name__}({inner})"
    if isinstance(obj, (tuple, list)):
        inner = ", ".join(describe(v) for v in obj)
        return f"({inner},)" if isinstance(obj, tuple) and len(obj) == 1 else f"({inner})"
    return type(obj).__name__


def failing_module(model: torch.nn.Module, exc: BaseException) -> str | None:
    """The qualified name of the innermost module of ``model`` whose ``forward`` was on the stack.

    Read from the traceback, so the forward is not run a second time to find out.
    """
    names = {id(m): name for name, m in model.named_modules()}
    found: str | None = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        owner = frame.f_locals.get("self")
        if owner is not None and id(owner) in names:
            found = names[id(owner)]
    if found is None:
        return None
    return found or f"<root: {type(model).__name__}>"


def module_label(model: torch.nn.Module, name: str) -> str:
    if name.startswith("<root"):
        return name
    return f"{name} ({type(model.get_submodule(name)).__name__})"
