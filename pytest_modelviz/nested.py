"""The tensors inside what models take and return: nested tuples, lists, dicts and dataclasses.

One walker for every place that looks into a model's inputs or outputs (capture, the autograd
picture, the training loop's finiteness check, the embedding probe), so they all see the same
tensors in the same order. Containers it opens:

- tuples (named tuples too) and lists, by position (``0``, ``1``);
- mappings (dicts, ``OrderedDict``), by key, in insertion order;
- dataclass instances, by field name, in field order.

A Hugging Face ``ModelOutput`` is a dict subclass that is also a dataclass; it is read as a
mapping, which holds exactly its fields that are set. Anything else is a leaf and is not opened.
Nothing here imports torch at module level.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def iter_tensors(value: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in ``value`` with its path (``0.logits``), depth first, in container order."""
    return _walk(value, path, set())


def _walk(value: Any, path: str, open_: set[int]) -> Iterator[tuple[str, torch.Tensor]]:
    # ``open_``: the containers being walked; one that holds itself (a dataclass with a back
    # reference) is not entered again, so the walk ends.
    Tensor = tensor_class()
    if isinstance(value, Tensor):
        yield path, value
        return
    children = _children(value)
    if children is _NONE or id(value) in open_:
        return
    open_.add(id(value))
    try:
        for key, item in children:
            # Tensors and scalars, most items, are settled here: a nested walk costs a generator.
            if isinstance(item, Tensor):
                yield (f"{path}.{key}" if path else key), item
            elif type(item) not in _SCALARS:
                yield from _walk(item, f"{path}.{key}" if path else key, open_)
    finally:
        open_.discard(id(value))


def tensors(value: Any) -> list[torch.Tensor]:
    """The tensors ``iter_tensors`` finds, without their paths."""
    if isinstance(value, tensor_class()):
        return [value]  # a model's usual output, every step: no walk
    return [t for _, t in iter_tensors(value)]


def map_tensors(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``value`` with every tensor replaced by ``fn(tensor)``, containers rebuilt as their own type.

    A container without a tensor in it comes back as the same object, and so does one met again
    inside itself.
    """
    return _map(value, fn, set())


def _map(value: Any, fn: Callable[[torch.Tensor], Any], open_: set[int]) -> Any:
    Tensor = tensor_class()
    if isinstance(value, Tensor):
        return fn(value)
    if id(value) in open_:
        return value
    children = list(value.items()) if isinstance(value, Mapping) else list(_children(value))
    if not children:
        return value
    open_.add(id(value))
    try:
        mapped = [(key, item, _map(item, fn, open_)) for key, item in children]
    finally:
        open_.discard(id(value))
    if all(new is old for _, old, new in mapped):
        return value
    if isinstance(value, (tuple, list)):
        items = [new for _, _, new in mapped]
        if isinstance(value, list):
            return type(value)(items) if type(value) is not list else items
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    out = copy.copy(value)  # keeps the mapping's or dataclass's own type and its other attributes
    if isinstance(value, Mapping):
        names = _field_names(value)
        for key, old, new in mapped:
            if new is not old:
                out[key] = new
                if key in names:  # a ModelOutput-like mapping: its attribute is the same field
                    object.__setattr__(out, key, new)
    else:
        for key, old, new in mapped:
            if new is not old:
                object.__setattr__(out, key, new)  # frozen dataclasses too
    return out


def _children(value: Any) -> Iterator[tuple[str, Any]]:
    """``(key, item)`` of a container's items; nothing for a leaf."""
    if type(value) in _SCALARS:  # most of what ops take and return besides tensors: skip the checks below
        return _NONE
    if isinstance(value, (tuple, list)):
        return ((str(i), item) for i, item in enumerate(value))
    if isinstance(value, dict) or isinstance(value, Mapping):  # dict first: the ABC check costs more
        return ((str(key), item) for key, item in value.items())
    if _is_dataclass_instance(type(value)):
        return ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
    return _NONE


_NONE: Iterator[tuple[str, Any]] = iter(())  # a leaf's children: always empty, shared
_SCALARS = frozenset({int, float, bool, str, bytes, complex, type(None), type(Ellipsis), slice})


def _field_names(value: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(value)} if _is_dataclass_instance(type(value)) else set()


_DATACLASSES: dict[type, bool] = {}


def _is_dataclass_instance(cls: type) -> bool:
    """Whether instances of ``cls`` are dataclass instances; asked once per class."""
    known = _DATACLASSES.get(cls)
    if known is None:
        known = _DATACLASSES[cls] = dataclasses.is_dataclass(cls)
    return known


@functools.lru_cache(maxsize=1)
def tensor_class() -> type[torch.Tensor]:
    import torch

    return torch.Tensor  # looked up once: an import statement per call costs more than the call
