"""One training step's forward pass and loss, with the errors that name what went wrong.

Shared by the loop and the resume check, so both feed a batch to the model the same way.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, ContextManager

from pytest_modelviz.errors import TrainingError
from pytest_modelviz.train.data import Batch, call_model, describe, failing_module, module_label, to_device

if TYPE_CHECKING:
    import torch


def autocast_context(autocast: Any, device: torch.device) -> Callable[[], ContextManager[Any]]:
    """``False``/``None``: none; ``True``: bfloat16; a dtype: that dtype (float16 is refused, since it
    needs loss scaling this loop does not do)."""
    import torch

    if autocast is None or autocast is False:
        return contextlib.nullcontext
    dtype = torch.bfloat16 if autocast is True else autocast
    if not isinstance(dtype, torch.dtype):
        raise TrainingError(f"autocast must be a bool or a torch dtype, got {autocast!r}")
    if dtype == torch.float16:
        raise TrainingError(
            "autocast=torch.float16 needs gradient scaling, which short_train does not do; "
            "use autocast=torch.bfloat16 (or True)"
        )
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def forward_loss(
    model: torch.nn.Module,
    batch: Batch,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    device: torch.device,
    autocast: Callable[[], ContextManager[Any]],
    step: int,
) -> tuple[torch.Tensor, Any]:
    """The batch moved to ``device``, the model's output and the scalar loss."""
    import torch

    inputs = to_device(batch.inputs, device)
    targets = to_device(batch.targets, device)
    with autocast():
        try:
            output = call_model(model, inputs)
        except TrainingError:
            raise
        except Exception as exc:
            where = failing_module(model, exc)
            raised_by = f"module {module_label(model, where)}" if where else type(model).__name__
            raise TrainingError(
                f"step {step}: model {type(model).__name__} could not take the batch "
                f"(inputs {describe(inputs)}, targets {describe(targets)}): {raised_by} raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        try:
            loss = loss_fn(output, targets)
        except Exception as exc:
            raise TrainingError(
                f"step {step}: loss_fn raised {type(exc).__name__}: {exc} "
                f"(model output {describe(output)}, targets {describe(targets)})"
            ) from exc
    if not isinstance(loss, torch.Tensor):
        raise TrainingError(f"step {step}: loss_fn must return a scalar tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise TrainingError(
            f"step {step}: the loss must be a scalar, got a tensor of shape {list(loss.shape)} "
            f"(model output {describe(output)}, targets {describe(targets)}). Reduce it, e.g. "
            "reduction='mean' in the loss or `.mean()`."
        )
    if not loss.requires_grad:
        raise TrainingError(
            f"step {step}: the loss does not require grad, so nothing can train: is every parameter "
            "frozen, or is the forward run under torch.no_grad()?"
        )
    return loss.reshape(()), output


def output_tensors(output: Any) -> list[torch.Tensor]:
    import torch

    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, dict):
        return [t for v in output.values() for t in output_tensors(v)]
    if isinstance(output, (tuple, list)):
        return [t for v in output for t in output_tensors(v)]
    return []
