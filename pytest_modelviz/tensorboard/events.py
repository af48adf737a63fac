"""TensorBoard event files written by the caller's thread, for the per-test ``SummaryWriter``.

tensorboardX's ``FileWriter`` hands every event to a writer thread through a
``multiprocessing.Queue`` (each event pickled and read back) and fsyncs its file at every flush
and close. For one writer per test that is a queue and a thread started and joined per test, and
a ``flush()`` that does not wait for the queue. Here an event is serialized and appended to a
buffered file where it is logged; ``flush`` hands the buffer to the operating system, so every
event logged so far is readable at once, and kept if the process dies after. There is no fsync:
it guards against losing the machine, not the process, and cost more than the writing itself.

The files are what tensorboardX writes (TFRecord framing, masked CRC32C, a ``brain.Event:2``
first record), named as it names them, but never over an existing file: two writers opened in
the same second in one folder would otherwise share a name and the second would erase the first.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tensorboardX.proto.event_pb2 import Event

    from pytest_modelviz.artifacts import WriteErrorHandler


class EventFile:
    """One event file in ``directory``, opened here and written by ``write``; once closed,
    ``write``, ``flush`` and ``close`` do nothing.

    A write that fails (a full disk) is handed to ``on_error`` with the file's path, once, and the
    file takes no more events: what it holds stays readable up to its last whole record. Without
    ``on_error`` the error is raised, naming the file.
    """

    def __init__(self, directory: str, suffix: str = "", on_error: WriteErrorHandler | None = None) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.record_writer import masked_crc32c

        self._crc = masked_crc32c  # tensorboardX's: native crc32c where that package is installed
        self._on_error = on_error
        self._lock = threading.Lock()  # a test may log from a data-loading or callback thread too
        now = time.time()
        self.path = os.path.join(directory, f"events.out.tfevents.{int(now)}.{socket.gethostname()}{suffix}")
        self._file: IO[bytes] | None = None
        try:
            os.makedirs(directory, exist_ok=True)
            self.path, self._file = _create(self.path)
        except OSError as exc:
            self._fail(exc)
            return
        self.write(Event(wall_time=now, file_version="brain.Event:2"))

    def write(self, event: Event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        record = b"".join((header, struct.pack("<I", self._crc(header)), data, struct.pack("<I", self._crc(data))))
        with self._lock:
            if self._file is not None:
                try:
                    self._file.write(record)
                except OSError as exc:
                    self._fail(exc)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.flush()
                except OSError as exc:
                    self._fail(exc)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                file, self._file = self._file, None
                try:
                    file.close()
                except OSError as exc:
                    self._fail(exc)

    @property
    def closed(self) -> bool:
        return self._file is None

    def _fail(self, exc: OSError) -> None:
        file, self._file = self._file, None
        if file is not None:
            # Closing flushes the buffer again, which fails for the same reason: that is the error
            # being reported below, once. The descriptor is closed either way.
            with contextlib.suppress(OSError):
                file.close()
        if self._on_error is None:
            raise OSError(exc.errno, exc.strerror, self.path) from exc
        self._on_error(Path(self.path), exc)


def _create(path: str) -> tuple[str, IO[bytes]]:
    """``path`` created (never opened over an existing file), or ``path.1``, ``path.2``, ...
    where it exists."""
    candidate, count = path, 0
    while True:
        try:
            return candidate, open(candidate, "xb")  # noqa: SIM115  # the caller's writer owns and closes it
        except FileExistsError:
            count += 1
            candidate = f"{path}.{count}"


class CallerEventWriter:
    """What tensorboardX's ``EventFileWriter`` offers its ``FileWriter``, on an ``EventFile``:
    events after ``close`` are dropped, as there (the closed ``EventFile`` drops them); ``reopen``
    starts a new file."""

    def __init__(self, logdir: str, suffix: str = "", on_error: WriteErrorHandler | None = None) -> None:
        self._logdir = logdir
        self._suffix = suffix
        self._on_error = on_error
        self._file = EventFile(logdir, suffix, on_error)

    def get_logdir(self) -> str:
        return self._logdir

    def add_event(self, event: Event) -> None:
        self._file.write(event)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def reopen(self) -> None:
        if self._file.closed:
            self._file = EventFile(self._logdir, self._suffix, self._on_error)


def caller_file_writer(logdir: str, suffix: str = "", on_error: WriteErrorHandler | None = None) -> Any:
    """A tensorboardX ``FileWriter`` (``add_event``, ``add_summary``, ``add_graph``,
    ``use_metadata``, ...) whose events go through a ``CallerEventWriter``."""
    return _file_writer_class()(logdir, suffix, on_error)


@functools.lru_cache(maxsize=1)
def _file_writer_class() -> type:
    from tensorboardX.writer import FileWriter

    class CallerFileWriter(FileWriter):  # type: ignore[misc]  # tensorboardX has no type information
        def __init__(self, logdir: str, suffix: str = "", on_error: WriteErrorHandler | None = None) -> None:
            # Not FileWriter.__init__: it would start the queue and thread this replaces, and
            # register an exit handler that keeps every test's writer alive to the end.
            self.event_writer = CallerEventWriter(str(logdir), suffix, on_error)
            self._default_metadata: dict[str, Any] = {}

    return CallerFileWriter


def is_caller_file_writer(writer: object) -> bool:
    return isinstance(writer, _file_writer_class())
