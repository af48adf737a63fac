"""Snapshot kinds compared within a tolerance (parameter statistics, training curves).

A value within ``rtol``/``atol`` of the stored one matches, so syrupy neither fails nor rewrites
the file (no churn from last-digit noise, even under ``--snapshot-update``); beyond it syrupy
fails the assertion, or writes the new text under ``--snapshot-update``. ``diff_lines`` lists
every number out of tolerance. A kind names its value type (which reads itself back with
``from_text``) and how two values compare; the rest is here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast

from pytest_modelviz.errors import ModelvizUsageError, SnapshotFormatError, capped
from pytest_modelviz.params.stats import Tolerance, ToleranceSpec
from pytest_modelviz.snapshot.extension import TextSnapshotExtension, display_path
from pytest_modelviz.snapshot.files import StoredText

if TYPE_CHECKING:
    from syrupy.types import SerializableData, SerializedData
    from typing_extensions import Self  # typing.Self is 3.11+

_SHOWN = 60  # mismatches listed before "... and N more"


class Snapshotted(Protocol):
    @property
    def model(self) -> str: ...

    def to_text(self) -> str: ...

    @classmethod
    def from_text(cls, text: str, source: str = ...) -> Self: ...


_V = TypeVar("_V", bound=Snapshotted)


def read_text(text: str, source: str, value_type: type[_V]) -> _V:
    """The value of a snapshot's text; ``SnapshotFormatError`` naming ``source`` for a file that
    cannot be read or parsed."""
    if isinstance(text, StoredText) and text.problem:
        raise SnapshotFormatError(f"{source}: {text.problem}")
    return value_type.from_text(text, source)


class TolerantText(str):
    """Serialized text that carries the tolerance to compare it with."""

    tolerance: Tolerance | None

    def __new__(cls, text: str, tolerance: Tolerance | None = None) -> TolerantText:
        self = super().__new__(cls, text)
        self.tolerance = tolerance
        return self


@dataclass(frozen=True)
class Tolerant(Generic[_V]):
    """A value together with the tolerance it is to be compared with."""

    value: _V
    tolerance: Tolerance


class TolerantExtension(TextSnapshotExtension, Generic[_V]):
    """One text file per snapshot, compared within ``rtol``/``atol`` (numbers, or dicts of glob
    pattern -> number); subclass a kind to change them."""

    rtol: ClassVar[ToleranceSpec]
    atol: ClassVar[ToleranceSpec]
    defaults: ClassVar[tuple[float, float]]  # (rtol, atol) where a subclass sets None
    value_type: ClassVar[type[Snapshotted]]
    what: ClassVar[tuple[str, str]]  # the heading's subject and verb: ("training of", "differs")
    hint: ClassVar[str]  # how to get a value to compare, for a wrong type

    def compare(self, stored: _V, actual: _V, tolerance: Tolerance) -> list[str]:
        raise NotImplementedError

    def serialize(self, data: SerializableData, **_: Any) -> SerializedData:
        if isinstance(data, Tolerant):
            return TolerantText(data.value.to_text(), data.tolerance)
        if isinstance(data, self.value_type):
            return TolerantText(data.to_text())
        if isinstance(data, str):
            return data
        raise ModelvizUsageError(
            f"{type(self).__name__} snapshots {self.value_type.__name__}, got {type(data).__name__}: {self.hint}"
        )

    def tolerance_for(self, serialized: Any) -> Tolerance:
        given = getattr(serialized, "tolerance", None)
        return given if given is not None else Tolerance.resolve(self.rtol, self.atol, *self.defaults)

    def read(self, text: str) -> _V:
        """The value of a snapshot's text; ``SnapshotFormatError`` naming the file."""
        source = text.location if isinstance(text, StoredText) else "snapshot"
        return cast("_V", read_text(text, source, self.value_type))

    def agree(self, new: Any, stored: Any) -> bool:
        try:
            return not self.compare(self.read(stored), self.read(new), self.tolerance_for(new))
        except SnapshotFormatError:
            return False

    def diff_lines(self, serialized_data: SerializedData, snapshot_data: SerializedData) -> Iterator[str]:
        if not isinstance(snapshot_data, StoredText) and not snapshot_data:
            yield "Run `pytest --snapshot-update` to create it."
            return
        try:
            stored = self.read(self.text_of(snapshot_data))
            actual = self.read(self.text_of(serialized_data))
        except SnapshotFormatError as exc:
            yield str(exc)
            return
        shown = (
            display_path(snapshot_data.location, Path.cwd()) if isinstance(snapshot_data, StoredText) else "snapshot"
        )
        mismatches = self.compare(stored, actual, self.tolerance_for(serialized_data))
        subject, verb = self.what
        yield from mismatch_lines(f"{subject} {actual.model}", verb, Path(shown).stem, shown, mismatches)
        yield "If the change is intended, accept it with `pytest --snapshot-update` (or loosen rtol/atol)."


def mismatch_lines(subject: str, verb: str, label: str, shown: str, mismatches: list[str]) -> list[str]:
    """``<subject> (<label>) <verb> from the snapshot <shown>:`` and the mismatches, capped."""
    return [f"{subject} ({label!r}) {verb} from the snapshot {shown}:", *(f"  {m}" for m in capped(mismatches, _SHOWN))]
