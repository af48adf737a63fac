"""The syrupy extension for architecture snapshots: one readable ``.txt`` file per snapshot.

Files live in ``__snapshots__/<test module>/<test name>[<snapshot name>].txt``, so a changed
layer is a one-line diff in code review.
"""

from __future__ import annotations

from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode


class ArchitectureSnapshotExtension(SingleFileSnapshotExtension):
    """Stores the text of ``ArchitectureGraph.to_text()`` as is."""

    file_extension = "txt"
    _write_mode = WriteMode.TEXT
