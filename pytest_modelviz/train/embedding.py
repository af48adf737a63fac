"""The embedding projector: features of one fixed batch, read from inside the model, for the sinks.

The batch is the run's first one (at most ``EMBEDDING_ROWS`` rows of it), so every projection of a
run shows the same examples and only the model changes between them. The features are the input of
the last layer the forward calls (the penultimate features), or the output of a module the caller
names; they are taken in eval mode, without gradients and with the run's RNG state left untouched,
so logging them never changes what training does.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_modelviz.errors import TrainingError
from pytest_modelviz.model_state import kept_model_state
from pytest_modelviz.nested import map_tensors, tensors
from pytest_modelviz.train.data import Batch, call_model, describe, to_device

if TYPE_CHECKING:
    import torch

    from pytest_modelviz.sink import MetricSink

EMBEDDING_ROWS = 1024  # rows of the first batch projected
THUMBNAIL_MAX = 64  # pixels a side of a label image: 1024 of them stay within TensorBoard's sprite limit
TAG_PREFIX = "embedding/"
LAST_LAYER_INPUT = ".input"  # tag suffix when the features are the input of the last layer


@dataclass(frozen=True)
class EmbeddingSpec:
    module: str | None  # None: the input of the last layer with parameters the forward calls
    every: int | None  # None: after the last step only


def embedding_spec(model: torch.nn.Module, embedding: bool | str, every: int | None) -> EmbeddingSpec | None:
    """What ``short_train(embedding=..., embedding_every=...)`` asks for; None when it asks for nothing."""
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
        raise TrainingError(f"embedding_every must be a positive int, got {every!r}")
    if embedding is False and every is None:
        return None
    if embedding is True or embedding is False:
        return EmbeddingSpec(module=None, every=every)
    if not isinstance(embedding, str):
        raise TrainingError(f"embedding must be True, False or a module name, got {type(embedding).__name__}")
    names = [n for n, _ in model.named_modules() if n]
    if embedding not in names:
        shown = ", ".join(names[:20]) + (f", ... and {len(names) - 20} more" if len(names) > 20 else "")
        raise TrainingError(
            f"embedding={embedding!r}: {type(model).__name__} has no module of that name. "
            f"Name one of its modules (model.named_modules()): {shown or 'it has none'}"
        )
    return EmbeddingSpec(module=embedding, every=every)


class EmbeddingProbe:
    """Keeps the fixed batch and, when due, logs its features through every sink's ``embedding``."""

    def __init__(self, spec: EmbeddingSpec, model: torch.nn.Module, device: torch.device,
                 autocast: Callable[[], AbstractContextManager[Any]], steps: int) -> None:
        self.spec, self.model, self.device, self.autocast, self.steps = spec, model, device, autocast, steps
        self.inputs: Any = None
        self.labels: list[int] | None = None
        self.images: torch.Tensor | None = None

    def keep(self, batch: Batch) -> None:
        """Remember (the head of) the first batch, its class labels and its images."""
        rows = _rows(batch.inputs)
        n = min(rows, EMBEDDING_ROWS) if rows else EMBEDDING_ROWS
        self.inputs = to_device(_head(batch.inputs, n), self.device)
        self.labels = _labels(batch.targets, n)
        self.images = _thumbnails(batch.inputs, n)

    def due(self, step: int) -> bool:
        every = self.spec.every
        return step == self.steps - 1 or (every is not None and (step + 1) % every == 0)

    def log(self, step: int, sinks: list[MetricSink]) -> None:
        tag, features = self.features(step)
        for sink in sinks:
            sink.embedding(step, tag, features, self.labels, self.images)

    def features(self, step: int) -> tuple[str, torch.Tensor]:
        """The tag and the ``(rows, features)`` float matrix on the CPU."""
        import torch

        captured: dict[str, Any] = {}
        handles = self._hooks(captured)
        try:
            with kept_model_state(self.model):
                self.model.eval()
                with torch.no_grad(), self.autocast():
                    call_model(self.model, self.inputs)
        finally:
            for handle in handles:
                handle.remove()
        name, value = captured.get("name"), captured.get("value")
        if name is None:
            what = f"module {self.spec.module!r} was not" if self.spec.module else "no layer with parameters was"
            raise TrainingError(
                f"step {step}: embedding: {what} called in {type(self.model).__name__}'s forward, so "
                "there are no features to project. Pass embedding='<module name>' naming a module the "
                "forward calls."
            )
        tag = TAG_PREFIX + (name if self.spec.module else name + LAST_LAYER_INPUT)
        return tag, _matrix(value, _rows(self.inputs), tag, step)

    def _hooks(self, captured: dict[str, Any]) -> list[Any]:
        if self.spec.module is not None:
            name = self.spec.module

            def keep_output(module: Any, args: Any, output: Any) -> None:
                captured["name"], captured["value"] = name, output

            return [self.model.get_submodule(name).register_forward_hook(keep_output)]

        def keep_input(name: str) -> Callable[..., None]:
            def hook(module: Any, args: Any, kwargs: Any) -> None:
                captured["name"], captured["value"] = name, (args, kwargs)  # the last call wins

            return hook

        return [
            module.register_forward_pre_hook(keep_input(name), with_kwargs=True)
            for name, module in self.model.named_modules()
            if not any(True for _ in module.children()) and any(True for _ in module.parameters(recurse=False))
        ]


def _matrix(value: Any, rows: int | None, tag: str, step: int) -> torch.Tensor:
    import torch

    tensor = _first_float_tensor(value)
    if tensor is None or tensor.dim() == 0 or (rows is not None and tensor.shape[0] != rows):
        raise TrainingError(
            f"step {step}: {tag}: the features are {describe(value)}, not a float tensor with one row per "
            f"example of the batch ({rows} rows). Name a module whose output is (batch, features...) "
            "with embedding='<module name>'."
        )
    return tensor.detach().reshape(tensor.shape[0], -1).to("cpu", torch.float32)


def _first_float_tensor(value: Any) -> torch.Tensor | None:
    return next((t for t in tensors(value) if t.is_floating_point()), None)


def _rows(obj: Any) -> int | None:
    """The batch size: the first dimension of the first tensor in ``obj`` that has one."""
    return next((t.shape[0] for t in tensors(obj) if t.dim()), None)


def _head(obj: Any, n: int) -> Any:
    return map_tensors(obj, lambda t: t[:n] if t.dim() else t)


def _labels(targets: Any, n: int) -> list[int] | None:
    """Class ids when the targets are one integer per example; anything else has no colours."""
    import torch

    if isinstance(targets, torch.Tensor) and targets.dim() == 1 and not targets.is_floating_point() \
            and not targets.is_complex():
        return [int(v) for v in targets[:n].tolist()]
    return None


def _thumbnails(inputs: Any, n: int) -> torch.Tensor | None:
    """Square 1- or 3-channel float images scaled into [0, 1] (as ``make_grid(normalize=True)``),
    shrunk to at most ``THUMBNAIL_MAX`` pixels a side; None for other inputs (TensorBoard's sprite
    needs square images)."""
    import torch
    from torch.nn import functional as F

    if not (isinstance(inputs, torch.Tensor) and inputs.dim() == 4 and inputs.is_floating_point()
            and inputs.shape[1] in (1, 3) and inputs.shape[2] == inputs.shape[3]):
        return None
    images = inputs[:n].detach().to("cpu", torch.float32)
    if images.shape[2] > THUMBNAIL_MAX:
        images = F.adaptive_avg_pool2d(images, THUMBNAIL_MAX)
    lo, hi = images.min(), images.max()
    return (images - lo) / (hi - lo) if hi > lo else torch.zeros_like(images)
