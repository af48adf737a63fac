"""Batches: where they come from, what they hold, and how they reach the device and the model."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from pytest_modelviz.errors import TrainingError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Batch:
    inputs: Any  # a tensor (model(x)), a tuple/list (model(*x)) or a dict (model(**x))
    targets: Any


def is_single_batch(data: Any) -> bool:
    """``(inputs, targets)`` given directly, rather than an iterable of such pairs."""
    import torch

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

    def __init__(self, data: Iterable[Any], *, overfit: bool = False):
        self._single = is_single_batch(data)
        self._data = data
        self._overfit = overfit
        self._one_shot = not self._single and iter(data) is data
        self._cache: list[Any] = []
        self._it: Iterator[Any] | None = None
        self._first: Any = None
        self._cycle = 0

    def next(self, step: int) -> Batch:
        raw = self._next_raw(step)
        return split_batch(raw, step)

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
            if step == 0 or (self._one_shot and not self._cache):
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
            return raw
        if self._one_shot and self._cycle == 0:
            self._cache.append(raw)
        return raw


def split_batch(raw: Any, step: int) -> Batch:
    if isinstance(raw, dict) or not isinstance(raw, (tuple, list)) or len(raw) < 2:
        raise TrainingError(
            f"step {step}: a batch must be (inputs, targets) or (inputs, targets, ...), "
            f"got {describe(raw)}. Make the dataset return (inputs, targets) pairs."
        )
    return Batch(inputs=raw[0], targets=raw[1])


def to_device(obj: Any, device: torch.device) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def call_model(model: torch.nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def describe(obj: Any) -> str:
    """Shapes and dtypes, never values: ``Tensor[8, 3, 8, 8] float32``, ``(Tensor[8], ...)``."""
    import torch

    if isinstance(obj, torch.Tensor):
        return f"Tensor{list(obj.shape)} {str(obj.dtype).replace('torch.', '')}"
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in obj.items()) + "}"
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
