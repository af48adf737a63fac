"""syrupy extensions for our snapshot kinds, built on syrupy's public extension API.

Each kind is a ``SingleFileSnapshotExtension``: ``serialize`` turns the captured record into its
text, ``matches`` decides whether it agrees with the stored text, ``diff_lines`` says how it
differs (the message syrupy prints under a failed ``assert``), and the storage methods keep one
readable file per snapshot: ``__snapshots__/<test module>/<test>[<name>].architecture``.

So syrupy users can write::

    assert capture(model, x) == snapshot(extension_class=ArchitectureExtension)

and ``graph_snapshot`` is a thin fixture over the same classes (``check_snapshot`` below).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from syrupy.exceptions import SnapshotDoesNotExist
from syrupy.extensions.base import AbstractSyrupyExtension
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from pytest_modelviz.errors import ModelvizUsageError, SnapshotFormatError, SnapshotStoreError
from pytest_modelviz.graph.model import ArchitectureGraph
from pytest_modelviz.snapshot.files import (
    ARCHITECTURE_EXTENSION,
    StoredText,
    adopt_legacy,
    file_stem,
    read_stored,
    write_whole,
)

if TYPE_CHECKING:
    from syrupy.assertion import SnapshotAssertion
    from syrupy.data import SnapshotCollection
    from syrupy.location import PyTestLocation
    from syrupy.types import SerializableData, SerializedData, SnapshotIndex

Status = Literal["matched", "created", "updated", "changed"]


class TextSnapshotExtension(SingleFileSnapshotExtension):
    """What our kinds share: collision-free file names, tolerant reads, whole-file writes.

    Subclasses set ``file_extension`` and implement ``serialize``, ``matches`` and ``diff_lines``.
    """

    _write_mode = WriteMode.TEXT

    @classmethod
    def get_snapshot_name(cls, *, test_location: PyTestLocation, index: SnapshotIndex = 0) -> str:
        name = AbstractSyrupyExtension.get_snapshot_name(test_location=test_location, index=index)
        return file_stem(name, cls.file_extension)

    def read_snapshot_data_from_location(
        self, *, snapshot_location: str, snapshot_name: str, session_id: str
    ) -> StoredText | None:
        """The stored text; a file that cannot be compared comes back with its ``problem`` set
        (so ``--snapshot-update`` rewrites it and a plain run names it) instead of raising."""
        path = Path(snapshot_location)
        adopt_legacy(path, self.file_extension)
        return read_stored(path)

    @classmethod
    def write_snapshot_collection(cls, *, snapshot_collection: SnapshotCollection, **_: Any) -> None:
        snapshot = next(iter(snapshot_collection))
        if not isinstance(snapshot.data, str):
            raise TypeError(f"{cls.__name__} writes text, got {type(snapshot.data).__name__}")
        write_whole(Path(snapshot_collection.location), str(snapshot.data))

    def matches(self, *, serialized_data: SerializableData, snapshot_data: SerializableData) -> bool:
        if isinstance(snapshot_data, StoredText) and snapshot_data.problem:
            return False
        return self.agree(serialized_data, snapshot_data)  # not str(): subclasses carry more

    def agree(self, new: Any, stored: Any) -> bool:
        return str(new) == str(stored)

    @classmethod
    def text_of(cls, data: SerializedData) -> str:
        """``data`` as the text it is: these kinds serialize to and read back ``str``, though
        syrupy's type allows ``bytes`` too."""
        if not isinstance(data, str):
            raise TypeError(f"{cls.__name__} compares text, got {type(data).__name__}")
        return data


class ArchitectureExtension(TextSnapshotExtension):
    """Architecture snapshots: ``ArchitectureGraph.to_text()`` compared exactly, diffed by layer.

    ``full_diff = True`` (in a subclass) lifts the caps on the message's layer and text diffs.
    """

    file_extension = ARCHITECTURE_EXTENSION
    full_diff: ClassVar[bool] = False

    def serialize(self, data: SerializableData, **_: Any) -> SerializedData:
        if isinstance(data, ArchitectureGraph):
            return data.to_text()
        if isinstance(data, str):
            return data
        raise ModelvizUsageError(
            f"ArchitectureExtension snapshots an ArchitectureGraph, got {type(data).__name__}: "
            "compare `pytest_modelviz.capture(model, *inputs)` with the snapshot"
        )

    def diff_lines(self, serialized_data: SerializedData, snapshot_data: SerializedData) -> Iterator[str]:
        if not isinstance(snapshot_data, StoredText) and not snapshot_data:
            yield "Run `pytest --snapshot-update` to create it."
            return
        name = Path(snapshot_data.location).stem if isinstance(snapshot_data, StoredText) else "snapshot"
        try:
            stored = self.text_of(snapshot_data)
            yield from architecture_diff(stored, str(serialized_data), name=name, full=self.full_diff)
        except SnapshotFormatError as exc:
            yield str(exc)
            return
        yield ""
        yield "Run `pytest --snapshot-update` to accept the new architecture."


def architecture_diff(stored: str, text: str, *, name: str, full: bool, verb: str = "changed") -> list[str]:
    """The semantic diff (layer by layer) then the text diff; ``SnapshotFormatError`` naming the
    file when the stored text cannot be read."""
    from pytest_modelviz.graph.diff import raw_diff

    try:
        if isinstance(stored, StoredText) and stored.problem:
            raise SnapshotFormatError(stored.problem)
        old = ArchitectureGraph.from_text(stored)
    except SnapshotFormatError as exc:
        where = stored.location if isinstance(stored, StoredText) else "the stored snapshot"
        raise SnapshotFormatError(f"{where}: {exc}") from None
    new = ArchitectureGraph.from_text(text)
    semantic = old.diff(new).lines(limit=None if full else 60) or ["(only the text layout differs)"]
    return (
        [f"architecture snapshot '{name}' {verb} ({old.model_name}):"]
        + [f"  {line}" for line in semantic]
        + ["", "text diff (- snapshot, + captured):"]
        + raw_diff(stored, text, limit=None if full else 200)
    )


# ---------------------------------------------------------------- the fixtures' route


@dataclass(frozen=True)
class Comparison:
    """What one snapshot assertion found."""

    status: Status
    snapshot_name: str
    location: str
    stored: StoredText | None  # None when there was no snapshot


def check_snapshot(assertion: SnapshotAssertion, label: str, data: Any) -> Comparison:
    """Assert ``data`` against the snapshot ``label`` through syrupy, and say what happened.

    syrupy decides and records the outcome (so its report, unused-snapshot bookkeeping and
    ``--snapshot-update`` writes all apply); the stored text is read first so the caller can
    describe a difference, and the status follows from syrupy's answer and ``matches``.
    """
    extension = assertion.extension
    location = extension.get_location(test_location=assertion.test_location, index=label)
    snapshot_name = extension.get_snapshot_name(test_location=assertion.test_location, index=label)
    stored = _recall(assertion, label)
    new = extension.serialize(data)
    agrees = stored is not None and extension.matches(serialized_data=new, snapshot_data=stored)
    passed = assertion(name=label) == data
    status: Status
    if passed:
        status = "matched" if agrees else ("created" if stored is None else "updated")
    elif agrees or assertion.update_snapshots or (stored is None and _writes_new(assertion)):
        # syrupy would have matched or written it: something else went wrong on the way.
        raise SnapshotStoreError(
            f"syrupy could not check the snapshot {location}:\n" + "\n".join(map(str, assertion.get_assert_diff()))
        )
    else:
        status = "changed"
    return Comparison(status, snapshot_name, location, stored)


def _recall(assertion: SnapshotAssertion, label: str) -> StoredText | None:
    try:
        data = assertion.session.recall_snapshot(assertion.extension, assertion.test_location, label)
    except SnapshotDoesNotExist:
        return None
    if data is None or isinstance(data, StoredText):
        return data
    # A write queued earlier in this session (syrupy hands back the serialized text).
    location = assertion.extension.get_location(test_location=assertion.test_location, index=label)
    return StoredText(str(data), location)


def _writes_new(assertion: SnapshotAssertion) -> bool:
    return bool(getattr(assertion, "update_new_snapshots_only", False))


def display_path(location: str, root: Path) -> str:
    """``location`` relative to ``root`` when it is inside it, for messages."""
    try:
        return Path(os.path.relpath(location, root)).as_posix()
    except ValueError:  # another drive on Windows
        return location
