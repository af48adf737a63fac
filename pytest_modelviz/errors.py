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


class DistributedError(TrainingError):
    """``short_train(world_size=N)`` failed: a rank raised or died, or what it needs cannot reach the ranks."""


class DistributedTimeoutError(DistributedError, TimeoutError):
    """No rank of ``short_train(world_size=N)`` made progress within ``ddp_timeout`` seconds."""


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


class SnapshotRenamedWarning(UserWarning):
    """A snapshot file written by an older release was renamed to its current name; commit the rename."""


class MissingExtraError(ModelvizError, ImportError):
    """A feature needs an optional dependency (an extra of pytest-modelviz) that is not installed."""


def install_hint(extra: str) -> str:
    """The pip command that brings ``extra`` (``render``, ``visdom``)."""
    return f"pip install 'pytest-modelviz[{extra}]'"


def missing_extra(module: str, extra: str, needed_by: str | None = None,
                  cause: ImportError | None = None) -> MissingExtraError:
    """The one error (and one-line message) for an extra that is not installed.

    ``module`` is what was imported, ``needed_by`` the feature that needs it; ``cause``, the
    ImportError caught, names the module that is really missing when it is another one (a
    dependency of ``module``).
    """
    missing = (cause.name if cause is not None else None) or module
    state = "is not installed" if missing == module else f"cannot be imported ({missing} is not installed)"
    what = f"{needed_by} needs {module}, which" if needed_by else module
    return MissingExtraError(f"{what} {state}: {install_hint(extra)}", name=missing)


class MergeError(ModelvizUsageError):
    """Run folders that cannot be merged as asked (not a run folder, the output inside an input)."""


class SnapshotStoreError(ModelvizError):
    """syrupy could not read or write a snapshot for a reason other than a difference (a full disk)."""


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)`` on every supported Python: 3.10 has no ``add_note``, but pytest and
    the ``exceptiongroup`` backport show a ``__notes__`` list there too (PEP 678)."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:
        # Python 3.11's typeshed declares __notes__, 3.10's does not.
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined, unused-ignore]


def capped(lines: list[str], limit: int) -> list[str]:
    """The first ``limit`` of ``lines`` and, when there are more, ``... and N more``: a message
    lists enough to act on and says how much it left out."""
    if len(lines) <= limit:
        return list(lines)
    return [*lines[:limit], f"... and {len(lines) - limit} more"]
