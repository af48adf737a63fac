"""Where every file goes: the run folder, one folder per test, and the record of what was written.

This is the only module that builds artifact paths. Everything else asks an ``ArtifactDir`` for a
path and, when the file is something the run report should show, appends a record describing it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_modelviz.records import (
    PICTURES_FILE,
    RECORDS_FILE,
    AnyRecord,
    ToJson,
    read_json_lines,
    read_record_file,
    to_line,
)

try:  # advisory locks mark a run in progress; Windows has none, and there a marked run is always kept
    import fcntl
except ImportError:  # pragma: no cover - not on Linux or macOS
    fcntl = None  # type: ignore[assignment]

__all__ = ["RECORDS_FILE", "ArtifactDir", "safe_dirname", "write_atomic", "walk_run", "new_run_dir"]

LATEST_LINK = "latest"
LATEST_TEXT = "latest.txt"
GITIGNORE = ".gitignore"
IN_PROGRESS = ".in-progress"  # in a run folder while its session runs; locked by that session
TENSORBOARD_DIR = "tensorboard"
VISDOM_DIR = "visdom"
_MAX_STEM = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
RUN_NAME = re.compile(r"^run-\d{8}-\d{6}-[0-9a-f]{6}(-restored)?$")
_TEST_DIR_NAME = re.compile(r"^[A-Za-z0-9._-]*-[0-9a-f]{10}$")
_GITIGNORE_TEXT = "# Created by pytest-modelviz: run folders are test output, not sources.\n*\n"
WriteErrorHandler = Callable[[Path, OSError], None]


def safe_dirname(nodeid: str) -> str:
    """A folder name for a test that is safe on any filesystem and never collides.

    Readable part: the node id reduced to ASCII letters, digits, ``.``, ``_`` and ``-``, cut to
    80 characters. Unique part: 10 hex digits of the node id's SHA-1, since two ids can reduce to
    the same readable part (``test[a/b]`` and ``test[a_b]``).
    """
    ascii_id = unicodedata.normalize("NFKD", nodeid).encode("ascii", "ignore").decode()
    stem = _UNSAFE.sub("_", ascii_id.replace("::", "--")).strip("._-")[:_MAX_STEM].rstrip("._-")
    digest = hashlib.sha1(nodeid.encode("utf-8")).hexdigest()[:10]
    return f"{stem or 'test'}-{digest}"


# ---------------------------------------------------------------- writing files


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``path`` whole or not at all: a full disk or a kill never leaves it half-written.

    The data goes to a hidden temporary file in the same folder, which is then renamed over
    ``path`` (atomic on one filesystem). On failure the temporary file is removed and the error
    raised; an older ``path`` is left as it was.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # the original error is what the caller needs to see
            tmp.unlink(missing_ok=True)
        raise
    return path


def append_line(path: Path, line: str) -> None:
    """Append one line; if the write fails part-way, cut the file back so no half line is left
    for the next record to be glued onto."""
    payload = memoryview((line + "\n").encode("utf-8"))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        start = os.fstat(fd).st_size
        try:
            while payload:
                payload = payload[os.write(fd, payload):]
        except OSError:
            with contextlib.suppress(OSError):  # best effort; the reader skips a cut line anyway
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


# ---------------------------------------------------------------- the run folder


@dataclass
class RunLock:
    """The marker of a run in progress, held locked by the session that writes the run.

    A kernel lock (``flock``) ends with its process, however it ends, so a marker whose lock can be
    taken belongs to a session that is gone. xdist workers write into the controller's run folder;
    the controller holds the lock until the last worker is done.
    """

    path: Path
    fd: int | None

    @classmethod
    def acquire(cls, path: Path) -> RunLock:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise
        return cls(path, fd)

    def release(self) -> str | None:
        """Unlock and remove the marker; the reason when the marker could not be removed."""
        if self.fd is None:
            return None
        fd, self.fd = self.fd, None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass  # the run folder was removed by hand during the run
        except OSError as exc:
            return f"{self.path}: {exc.strerror or exc}"
        finally:
            os.close(fd)
        return None


def in_progress(run_dir: Path) -> bool:
    """True while a session is writing ``run_dir`` (or, where locks are not available, might be)."""
    marker = run_dir / IN_PROGRESS
    try:
        fd = os.open(marker, os.O_RDWR)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: keep it
    try:
        if fcntl is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False  # its session ended without finishing (killed): an old run like any other
    finally:
        os.close(fd)


@dataclass
class NewRun:
    path: Path
    lock: RunLock
    notes: list[str] = field(default_factory=list)  # what was done to the folder of runs, for the user


def new_run_dir(base: Path, *, keep: int = 0) -> NewRun:
    """Create ``base/run-<time>-<random>``, point ``base/latest`` at it and keep ``keep`` runs.

    The folder appears under its final name with its in-progress marker already locked (it is
    made under a hidden name first), so a concurrent session pruning old runs never takes it for
    an abandoned one. Raises ``OSError`` when the folder cannot be made; everything after that
    (the pointer, ``.gitignore``, pruning) only adds notes.
    """
    created = not base.exists()
    base.mkdir(parents=True, exist_ok=True)
    for attempt in range(100):
        name = _run_name()
        staging = base / f".{name}.new"
        try:
            staging.mkdir()
            break
        except FileExistsError:
            if attempt == 99:
                raise
    lock: RunLock | None = None
    try:
        lock = RunLock.acquire(staging / IN_PROGRESS)
        run_dir = base / name
        os.rename(staging, run_dir)
    except BaseException:
        if lock is not None:
            lock.release()
        shutil.rmtree(staging, ignore_errors=True)  # only what this call just made; the error is raised
        raise
    lock.path = run_dir / IN_PROGRESS
    run = NewRun(run_dir, lock)
    run.notes += _attempt("write .gitignore", lambda: ensure_gitignore(base, created))
    run.notes += _attempt("point latest at the new run", lambda: point_latest(base, name))
    if keep > 0:
        run.notes += _attempt("remove old runs", lambda: prune_runs(base, keep, current=run_dir))
    return run


def _run_name() -> str:
    """``run-<date>-<time>-<6 hex>``: the hex starts with the milliseconds, so names sort in the
    order the runs started (the pruning of old runs relies on it), and ends with 12 random bits."""
    now = time.time()
    millis = int(now * 1000) % 1000
    stamp = time.strftime("run-%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}-{millis:03x}{secrets.randbelow(4096):03x}"


def _attempt(what: str, step: Callable[[], list[str]]) -> list[str]:
    try:
        return step()
    except OSError as exc:
        return [f"could not {what}: {exc.strerror or exc} ({exc.filename or ''})".replace(" ()", "")]


def ensure_gitignore(base: Path, created: bool) -> list[str]:
    """Keep git from picking up runs, as ``.pytest_cache`` does: only in a folder that is ours
    alone (made now, or holding nothing but runs), never in a user's folder with other files."""
    if (base / GITIGNORE).exists():
        return []
    if not created and not all(_is_ours(p) for p in base.iterdir()):
        return []
    write_atomic(base / GITIGNORE, _GITIGNORE_TEXT)
    return []


def _is_ours(path: Path) -> bool:
    name = path.name
    return bool(
        RUN_NAME.match(name)
        or name in (LATEST_LINK, LATEST_TEXT, GITIGNORE)
        or (name.startswith(".run-") and name.endswith(".new"))
        or (name.startswith(".") and name.endswith(".tmp"))
        or name.startswith(f".{LATEST_LINK}-")
    )


def point_latest(base: Path, name: str) -> list[str]:
    """Point ``base/latest`` at run ``name``; the notes say what had to be done to get there.

    A ``latest`` that is a real folder (a CI cache restores symlinks as copies) is moved aside
    when it holds a run, so it is kept and pruned like any old run; anything else at that name is
    not ours and is left alone, and ``latest.txt`` names the newest run instead.
    """
    link = base / LATEST_LINK
    notes: list[str] = []
    if link.is_dir() and not link.is_symlink():
        moved = _move_stale_latest(base, link)
        if moved is None:
            notes.append(f"{link} is a folder that is not a modelviz run, so it was left alone; "
                         f"{base / LATEST_TEXT} names the newest run instead")
            return notes + _write_latest_text(base, name)
        notes.append(moved)
    elif link.exists() and not link.is_symlink():
        notes.append(f"{link} is a file that is not ours, so it was left alone; "
                     f"{base / LATEST_TEXT} names the newest run instead")
        return notes + _write_latest_text(base, name)
    tmp = base / f".{LATEST_LINK}-{secrets.token_hex(4)}"
    try:
        tmp.symlink_to(name, target_is_directory=True)
        os.replace(tmp, link)  # atomic: a concurrent run never sees a missing pointer
    except OSError:
        # Filesystems without symlinks (some Windows setups, some CI caches): a text pointer.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return notes + _write_latest_text(base, name)
    stale_text = base / LATEST_TEXT
    if stale_text.is_file() and RUN_NAME.match(
            stale_text.read_text(encoding="utf-8", errors="replace").strip()):
        stale_text.unlink()  # ours, and it would name an older run than the link
    return notes


def _write_latest_text(base: Path, name: str) -> list[str]:
    write_atomic(base / LATEST_TEXT, name + "\n")
    return []


def _move_stale_latest(base: Path, folder: Path) -> str | None:
    """Move a ``latest`` folder that holds a run to a run name of its own; ``None`` if not a run."""
    entries = list(folder.iterdir())
    if not entries:
        folder.rmdir()
        return f"{folder} was an empty folder; it is now a link to the newest run"
    if not _looks_like_a_run(entries):
        return None
    when = time.strftime("run-%Y%m%d-%H%M%S", time.localtime(folder.stat().st_mtime))
    target = base / f"{when}-{secrets.token_hex(3)}-restored"
    try:
        os.rename(folder, target)
    except FileNotFoundError:
        return None if folder.exists() else f"{folder} was a folder; another session moved it"
    return (f"{folder} was a folder holding an earlier run (a copy, e.g. restored from a CI cache); "
            f"it was moved to {target.name} and latest now points at this run")


def _looks_like_a_run(entries: list[Path]) -> bool:
    known = {"outcomes.json", "report.html", IN_PROGRESS}
    has_run_file = any(p.name in known for p in entries)
    return has_run_file and all(
        p.name in known
        or (p.is_dir() and _TEST_DIR_NAME.match(p.name))
        or (p.name.startswith(".") and p.name.endswith(".tmp"))
        for p in entries
    )


def prune_runs(base: Path, keep: int, *, current: Path) -> list[str]:
    """Remove all but the ``keep`` newest runs; never ``current`` nor a run still being written.

    Only folders named like runs are candidates, so nothing a user put in ``base`` is touched.
    """
    runs = sorted(p for p in base.iterdir() if RUN_NAME.match(p.name) and p.is_dir() and not p.is_symlink())
    notes = []
    for run in runs[: max(0, len(runs) - keep)]:
        if run == current or in_progress(run):
            continue
        try:
            shutil.rmtree(run)
        except OSError as exc:
            # Another session pruning the same run at the same moment is fine; a run still there is not.
            shutil.rmtree(run, ignore_errors=True)
            if run.exists():
                notes.append(f"could not remove the old run {run.name}: {exc.strerror or exc}")
    return notes


# ---------------------------------------------------------------- one test's folder


@dataclass(frozen=True)
class ArtifactDir:
    """The artifact folder of one test.

    ``persist`` is False without ``--modelviz``: files then go to pytest's temporary folder,
    nothing is rendered, attached or reported, but every check still runs.
    """

    nodeid: str
    root: Path
    persist: bool
    # Called instead of raising when a file cannot be written (a full disk): an artifact is
    # for people, and must never turn a passing test into an error. None: raise.
    on_write_error: WriteErrorHandler | None = field(default=None, compare=False, repr=False)

    @property
    def tensorboard_dir(self) -> Path:
        """This test's TensorBoard run: the run folder is one log dir with one run per test."""
        return self.root / TENSORBOARD_DIR

    @property
    def visdom_dir(self) -> Path:
        return self.root / VISDOM_DIR

    def path(self, *parts: str) -> Path:
        """A path inside this test's folder; parent folders are created."""
        rel = Path(*parts)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"artifact path must stay inside the test folder, got {rel}")
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def unique_dir(self, stem: str) -> Path:
        """A new sub-folder ``stem``, ``stem-2``, ``stem-3``... (one per call, e.g. per model)."""
        stem = _UNSAFE.sub("_", stem).strip("._-") or "artifact"
        self.root.mkdir(parents=True, exist_ok=True)
        for i in range(1, 10_000):
            candidate = self.root / (stem if i == 1 else f"{stem}-{i}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
        raise RuntimeError(f"too many artifact folders named {stem!r} in {self.root}")

    def write(self, target: Path, data: str | bytes) -> Path | None:
        """Write a file of this test's folder whole or not at all; ``None`` when it could not be
        written (the session warns once at the end, and the report shows the file as missing)."""
        target = Path(target)
        if not target.resolve().is_relative_to(self.root.resolve()):
            raise ValueError(f"artifact path must stay inside the test folder, got {target}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            return write_atomic(target, data)
        except OSError as exc:
            self._write_failed(target, exc)
            return None

    def record(self, kind: str | ToJson, **data: Any) -> bool:
        """Append one record for the run report: a record object from ``records``, or a ``kind``
        (like ``"graph"``, ``"train"``) with its fields.

        Paths in ``data`` should be relative to ``root`` (use ``relative``) so the run folder can
        be moved. Appending keeps records written before a failure. Returns False when the record
        could not be written.
        """
        line = to_line({"kind": kind, **data} if isinstance(kind, str) else kind)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            append_line(self.root / RECORDS_FILE, line)
        except OSError as exc:
            self._write_failed(self.root / RECORDS_FILE, exc)
            return False
        return True

    def _write_failed(self, path: Path, exc: OSError) -> None:
        if self.on_write_error is None:
            raise exc
        self.on_write_error(path, exc)

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def records(self) -> list[dict[str, Any]]:
        """This test's records as written (plain JSON objects)."""
        return read_records(self.root)

    def files(self) -> list[Path]:
        return list(iter_files(self.root))


def iter_files(root: Path) -> Iterator[Path]:
    """Every file below ``root``, sorted, but the bookkeeping: the records and the pictures queue."""
    if not root.is_dir():
        return
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name not in (RECORDS_FILE, PICTURES_FILE):
            yield path


@dataclass(frozen=True)
class TestFolder:
    """One test's folder in a run: its records and the files it wrote."""

    __test__ = False  # not a test class

    name: str
    records: tuple[AnyRecord, ...]
    files: tuple[Path, ...]  # every file but the records file, sorted
    has_records: bool


def walk_run(run_dir: Path) -> tuple[TestFolder, ...]:
    """The one walk of a run folder: each test folder's records and files, by folder name."""
    folders = []
    for path in sorted(p for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        records_file = path / RECORDS_FILE
        folders.append(TestFolder(path.name, read_record_file(records_file), tuple(iter_files(path)),
                                  records_file.is_file()))
    return tuple(folders)


def read_records(test_dir: Path) -> list[dict[str, Any]]:
    """A test folder's records as written (plain JSON objects); see ``records`` for typed ones."""
    return read_json_lines(test_dir / RECORDS_FILE)[0]
