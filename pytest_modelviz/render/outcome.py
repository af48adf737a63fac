"""Pictures are for people: one that cannot be made becomes a note and a warning, never a failure.

Every picture the plugin draws (graph renders, training curves, parameter histograms) runs through
``RenderOutcome.attempt``. The caller writes its record with ``note`` first and calls ``warn``
after, so a warnings filter set to "error" can fail the test but never lose the record.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_modelviz.errors import RenderError, RenderSkipped, RenderWarning, missing_extra


@dataclass
class RenderOutcome:
    """What the renders produced, gathered as they run."""

    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attempt(self, what: str, step: Callable[[], Any]) -> Any:
        """Run one render; a failure becomes an error line (warned by ``warn``), never an exception.

        Any exception is caught on purpose: a bug in a third-party renderer, or user text and
        values it cannot draw, must not cost the test its result or its other pictures. Nothing
        is lost: the message is recorded and warned. A missing extra is a note, not an error.
        """
        try:
            return step()
        except RenderSkipped as exc:
            self.notes.append(f"{what}: skipped: {exc}")
        except ImportError as exc:
            self.notes.append(f"{what}: skipped: {missing_extra(exc.name or what, 'render', cause=exc)}")
        except Exception as exc:  # noqa: BLE001 - recorded and warned, see docstring
            message = str(exc) if isinstance(exc, RenderError) else f"{type(exc).__name__}: {exc}"
            self.errors.append(f"{what}: {message}")
        return None

    @property
    def note(self) -> str | None:
        """Every note and error, one per line, for the record's ``note``."""
        return "\n".join([*self.notes, *self.errors]) or None

    def warn(self, subject: str) -> None:
        """One ``RenderWarning`` per failed picture of ``subject``; call after writing the record."""
        for error in self.errors:
            warnings.warn(f"modelviz: a picture of {subject} could not be made: {error}", RenderWarning, stacklevel=3)
