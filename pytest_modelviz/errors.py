"""Every error pytest-modelviz raises. Each message names what is at fault and how to fix it."""

from __future__ import annotations


class ModelvizError(Exception):
    """Base class: bad input or a broken environment, with an actionable message."""


class ModelvizUsageError(ModelvizError, ValueError):
    """An option, argument or ini value that cannot be used as given."""


class CaptureError(ModelvizError):
    """Capturing a model's architecture failed (bad model, bad inputs, or the forward raised)."""


class SnapshotFormatError(ModelvizError):
    """A stored snapshot could not be read back (corrupt or hand-edited)."""


class TrainingError(ModelvizError):
    """``short_train`` could not run: bad data, loss, optimizer or device."""


class DeviceUnavailableError(ModelvizError):
    """A CUDA device was asked for where none is available."""


class SinkError(ModelvizError):
    """A TensorBoard or visdom sink could not be set up."""


class RenderError(ModelvizError):
    """A picture of a model (Graphviz, hiddenlayer, torchviz, TensorBoard graph) could not be made."""


class RenderSkipped(RenderError):
    """A render does not apply to this model or input (meta tensors, no autograd graph)."""


class RenderWarning(UserWarning):
    """A picture could not be made; the checks are unaffected and the other pictures were kept."""
