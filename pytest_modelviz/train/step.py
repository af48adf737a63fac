"""One training step's forward pass and loss, with the errors that name what went wrong.

Shared by the loop and the resume check, so both feed a batch to the model the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_modelviz.errors import TrainingError
from pytest_modelviz.nested import iter_tensors, tensors
from pytest_modelviz.train.data import Batch, call_model, describe, failing_module, module_label, to_device
from pytest_modelviz.unwrap import unwrap_model

if TYPE_CHECKING:
    import torch


def autocast_context(autocast: Any, device: torch.device) -> Callable[[], AbstractContextManager[Any]]:
    """``False``/``None``: none; ``True``: bfloat16; a dtype: that dtype. float16 is taken on CUDA
    only, where ``grad_scaler`` pairs it with a ``GradScaler``."""
    import torch

    if autocast is None or autocast is False:
        return contextlib.nullcontext
    dtype = torch.bfloat16 if autocast is True else autocast
    if not isinstance(dtype, torch.dtype):
        raise TrainingError(f"autocast must be a bool or a torch dtype, got {autocast!r}")
    if dtype == torch.float16 and device.type != "cuda":
        raise TrainingError(
            "autocast=torch.float16 needs gradient scaling (small float16 gradients underflow to "
            f"zero without it), which short_train does with torch.amp.GradScaler on CUDA only, and "
            f"this run is on {device}. Train on CUDA (the gpu marker or device='cuda'), or use "
            "autocast=torch.bfloat16 (or True), which needs no scaling."
        )
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(autocast: Any, device: torch.device) -> Any:
    """A ``torch.amp.GradScaler`` for float16 autocast (which ``autocast_context`` allows on CUDA
    only); None otherwise."""
    import torch

    if autocast is not torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


@dataclass(frozen=True)
class LossSpec:
    """Where a step's loss comes from: ``loss_fn(output, target)``, ``loss_fn(output, batch)``
    (``takes_batch``), or the model's own output (``output.loss`` / ``output["loss"]``) when
    ``loss_fn`` is None."""

    loss_fn: Callable[..., Any] | None
    takes_batch: bool = False


def forward_loss(
    model: torch.nn.Module,
    batch: Batch,
    loss: LossSpec,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
    step: int,
) -> tuple[torch.Tensor, Any]:
    """The batch moved to ``device``, the model's output and the scalar loss."""
    import torch

    memo: dict[int, torch.Tensor] = {}  # a tensor both in the inputs and the raw batch moves once
    inputs = to_device(batch.inputs, device, memo)
    targets = to_device(batch.targets, device, memo)
    with autocast():
        try:
            output = call_model(model, inputs)
        except TrainingError:
            raise
        except Exception as exc:
            bare = unwrap_model(model)  # named as the model itself, not as its compiled/parallel wrapper
            where = failing_module(bare, exc)
            raised_by = f"module {module_label(bare, where)}" if where else type(bare).__name__
            raise TrainingError(
                f"step {step}: model {type(bare).__name__} could not take the batch "
                f"(inputs {describe(inputs)}, targets {describe(targets)}): {raised_by} raised "
                f"{type(exc).__name__}: {exc}{_keywords_hint(batch, exc)}"
            ) from exc
        value = _loss(model, output, batch, loss, device, memo, inputs, targets, step)
    if not isinstance(value, torch.Tensor):
        source = "loss_fn" if loss.loss_fn is not None else "the model's output.loss"
        raise TrainingError(
            f"step {step}: {source} must be a scalar tensor, got {type(value).__name__} "
            f"({_shapes(output, targets)})"
        )
    if value.numel() != 1:
        raise TrainingError(
            f"step {step}: the loss must be a scalar, got a tensor of shape {list(value.shape)} "
            f"({_shapes(output, targets)}). Reduce it, e.g. reduction='mean' in the loss or `.mean()`."
        )
    if not value.requires_grad:
        raise TrainingError(
            f"step {step}: the loss does not require grad, so nothing can train: is every parameter "
            "frozen, or is the forward run under torch.no_grad()?"
        )
    return (value if value.dim() == 0 else value.reshape(())), output


def _shapes(output: Any, targets: Any) -> str:
    """For an error message only: describing a batch every step would cost more than the check."""
    return f"model output {describe(output)}, targets {describe(targets)}"


def _loss(model: torch.nn.Module, output: Any, batch: Batch, loss: LossSpec, device: torch.device,
          memo: dict[int, torch.Tensor], inputs: Any, targets: Any, step: int) -> Any:
    if loss.loss_fn is None:
        return model_loss(model, output, inputs, step)
    if loss.takes_batch:
        against, named = to_device(batch.raw, device, memo), "batch"
    elif targets is None:
        raise TrainingError(
            f"step {step}: the batch {describe(batch.raw)} has no target for loss_fn(output, target). "
            "Name it with target='<key>', pass loss_takes_batch=True for a loss_fn(output, batch), or "
            "leave loss_fn out when the model returns its own loss (output.loss)."
        )
    else:
        against, named = targets, "targets"
    try:
        return loss.loss_fn(output, against)
    except Exception as exc:
        raise TrainingError(
            f"step {step}: loss_fn raised {type(exc).__name__}: {exc} "
            f"(model output {describe(output)}, {named} {describe(against)})"
        ) from exc


def _keywords_hint(batch: Batch, exc: Exception) -> str:
    """A model that cannot take a mapping batch as keywords is usually one that takes a tensor."""
    if not isinstance(exc, TypeError) or not isinstance(batch.inputs, Mapping) or batch.inputs is batch.raw:
        return ""
    return (
        f". A dict or dataclass batch goes to the model as keyword arguments, every key but the target "
        f"(model(**{{{', '.join(map(repr, batch.inputs))}}})): name the model's input with inputs='<key>' "
        "and the target with target='<key>', or pass batch_fn=lambda batch: (inputs, target)"
    )


def model_loss(model: torch.nn.Module, output: Any, inputs: Any, step: int) -> Any:
    """The loss a model computed itself: ``output["loss"]`` or ``output.loss`` (Hugging Face
    models return one when they are given ``labels``)."""
    found = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    if found is None:
        name = type(unwrap_model(model)).__name__
        raise TrainingError(
            f"step {step}: no loss_fn was given and the output of {name} has no loss "
            f"(output {describe(output)}, inputs {describe(inputs)}). Pass loss_fn=..., or give the "
            "model what it needs to compute one (a Hugging Face model returns output.loss when the "
            "batch holds 'labels')."
        )
    return found


def accumulated_backward(
    model: torch.nn.Module,
    batches: Sequence[Batch],
    loss: LossSpec,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
    scaler: Any,
    step: int,
) -> tuple[torch.Tensor, Any, list[torch.Tensor]]:
    """Forward and backward over one optimizer step's micro-batches, gradients summed.

    Each micro-batch's loss is divided by their number, so the gradients are those of the mean
    loss over the step's batches, and the returned loss (detached) is that mean. Also returns the
    last micro-batch's output and the ``output_extremes`` of every micro-batch's output (device
    scalars: no sync), all finite exactly when every output was.
    """
    total: torch.Tensor | None = None
    extremes: list[torch.Tensor] = []
    output: Any = None
    for batch in batches:
        value, output = forward_loss(model, batch, loss, device, autocast, step)
        if len(batches) > 1:
            value = value / len(batches)
        (scaler.scale(value) if scaler is not None else value).backward()
        total = value.detach() if total is None else total + value.detach()
        extremes += output_extremes(output)
    assert total is not None  # at least one batch per step
    return total, output, extremes


def output_extremes(output: Any) -> list[torch.Tensor]:
    """The smallest and largest value of each of ``output``'s floating-point tensors, as 0-d
    device tensors: NaN propagates through both, an infinity shows in one of them.

    ``aminmax`` is one pass that allocates nothing per element, where ``isfinite(t).all()``
    writes a mask as large as the output (20x slower on a language model's logits).
    """
    import torch

    found: list[torch.Tensor] = []
    for t in output_tensors(output):
        if t.numel():
            found += torch.aminmax(t.detach())
    return found


def output_tensors(output: Any) -> list[torch.Tensor]:
    """The floating-point tensors of a model's output (nested containers and dataclasses too)."""
    return [t for t in tensors(output) if t.is_floating_point()]


def nonfinite_output(output: Any) -> str | None:
    """Where the first NaN/Inf of the output is (``logits``, ``1.hidden``; ``""`` for a bare
    tensor); None when all is finite. Only called once a step has gone non-finite."""
    import torch

    for path, t in iter_tensors(output):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return path
    return None
