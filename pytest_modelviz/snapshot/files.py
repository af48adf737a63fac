"""Snapshot files on disk: their names, reading them back, writing them whole, and old names.

Standard library only: the collection guard imports this on every pytest run.

Names. syrupy names a file after the snapshot (``test_net[encoder]``) with the characters that
file systems refuse removed and the name cut at 255 characters, so ``enc/1`` and ``enc1`` (or
two long names with one prefix) share a file and overwrite each other. Here a name that needs no
cleaning keeps its file name; any other gets ``~`` and ten hex digits of its SHA-256, so distinct
names always get distinct files. Lengths are counted in UTF-8 bytes, which is what file systems
limit.

Extensions. Files end in ``.architecture`` and ``.params``: pytest's default ``--doctest-glob``
(``test*.txt``) collected the ``.txt`` names used before, and a snapshot holding ``>>>`` (a merge
conflict marker) then broke collection. A file under its old name is renamed on first use.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path

from pytest_modelviz.errors import SnapshotRenamedWarning

ARCHITECTURE_EXTENSION = "architecture"
PARAMS_EXTENSION = "params"
TRAINING_EXTENSION = "training"
ARCHITECTURE_HEADER = "# modelviz architecture v1"
PARAMS_HEADER = "# pytest-modelviz parameter statistics"
TRAINING_HEADER = "# pytest-modelviz training dynamics v1"
# What older releases named files: ``<name>.txt`` and ``<name>.params.txt``.
LEGACY_SUFFIXES = {ARCHITECTURE_EXTENSION: ".txt", PARAMS_EXTENSION: ".params.txt"}
_HEADERS = {ARCHITECTURE_EXTENSION: ARCHITECTURE_HEADER, PARAMS_EXTENSION: PARAMS_HEADER}
_MAX_NAME_BYTES = 255
_REFUSED = frozenset('\\/?*:|"<>')  # what syrupy removes: unsafe on some file system
_HASHED = re.compile(r"~[0-9a-f]{10}$")
_CONFLICT = re.compile(r"^(<{7}|>{7}|\|{7})(?: |$)")


# ---------------------------------------------------------------- names


def _clean(name: str) -> str:
    return "".join(c for c in name if c not in _REFUSED and not unicodedata.category(c).startswith("C"))


def _cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that is at most ``limit`` bytes in UTF-8."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def file_stem(name: str, extension: str) -> str:
    """The file name (without ``.extension``) of the snapshot called ``name``.

    The name itself when it is safe and short enough (and does not end like a hashed name, so
    that no name can collide with another's hashed form); else its cleaned, shortened form plus
    ``~`` and ten hex digits of its hash.
    """
    budget = _MAX_NAME_BYTES - len(extension.encode("utf-8")) - 1
    cleaned = _clean(name)
    if cleaned == name and len(name.encode("utf-8")) <= budget and not _HASHED.search(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", errors="surrogatepass")).hexdigest()[:10]
    return f"{_cut_utf8(cleaned, budget - 11)}~{digest}"


def legacy_location(location: Path, extension: str) -> Path | None:
    """Where an older release stored the snapshot now at ``location``, when that can be told.

    A hashed name was cleaned the same way before; only one cut for length cannot be traced back.
    """
    if extension not in LEGACY_SUFFIXES:
        return None  # a kind newer than the old names
    stem = location.name[: -len(extension) - 1]
    if _HASHED.search(stem):
        stem = stem[:-11]
        if len(stem.encode("utf-8")) >= _MAX_NAME_BYTES - len(extension.encode("utf-8")) - 12:
            return None  # the name was cut for length: its old file name is not known
    return location.with_name(stem + LEGACY_SUFFIXES[extension])


def is_snapshot_file(path: Path, snapshot_dirname: str) -> bool:
    """Whether ``path`` is one of our snapshot files (under either name), not a test file.

    ``__snapshots__/<test module>/<file>``; an old ``.txt`` name only when its text says it is ours.
    """
    if path.parent.parent.name != snapshot_dirname:
        return False
    if path.suffix in (f".{ARCHITECTURE_EXTENSION}", f".{PARAMS_EXTENSION}", f".{TRAINING_EXTENSION}"):
        return True
    return path.suffix == ".txt" and _owner(path) is not None


def _owner(path: Path) -> str | None:
    """The extension whose header the file carries (anywhere: a conflict may come first)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(64 * 1024)
    except OSError:
        return None
    for extension, header in _HEADERS.items():
        if head.startswith(header) or f"\n{header}" in head:
            return extension
    return None


# ---------------------------------------------------------------- reading


class StoredText(str):
    """The text of a stored snapshot, with where it was read from and what is wrong with it.

    ``problem`` is None for a readable file; otherwise it says why the file cannot be compared
    (not UTF-8, an unresolved merge conflict, unreadable), and the text is what could be read.
    """

    location: str
    problem: str | None

    def __new__(cls, text: str, location: str, problem: str | None = None) -> StoredText:
        self = super().__new__(cls, text)
        self.location = location
        self.problem = problem
        return self


def read_stored(path: Path) -> StoredText | None:
    """The snapshot at ``path`` (None when there is none); never raises for bad content."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return StoredText("", str(path), f"cannot be read ({exc.strerror or exc})")
    problem = None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        problem = (
            f"not UTF-8 text ({exc.reason} at byte {exc.start}); the file is corrupt, "
            "regenerate it with `pytest --snapshot-update`"
        )
    # Universal newlines, as syrupy's text mode read them: a file checked out with CRLF still matches.
    text = text.replace("\r\n", "\n")
    if problem is None:
        problem = _conflict(text)
    return StoredText(text, str(path), problem)


def _conflict(text: str) -> str | None:
    for lineno, line in enumerate(text.split("\n"), start=1):
        if _CONFLICT.match(line):
            return (
                f"unresolved merge conflict (line {lineno}: {line!r}). Resolve it: keep one side and "
                "delete the conflict markers, or delete the file and run `pytest --snapshot-update` "
                "to write it from the model"
            )
    return None


# ---------------------------------------------------------------- writing


def write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so no half-written snapshot is left.

    Always ``\\n`` line ends: the bytes are the same on every platform.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".modelviz-{secrets.token_hex(4)}.tmp")  # dot files are not snapshots
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- old names


@dataclass(frozen=True)
class Renamed:
    old: Path
    new: Path


def adopt_legacy(location: Path, extension: str) -> Renamed | None:
    """Rename the file an older release wrote for this snapshot to ``location``, if there is one.

    Only a file whose text is ours is taken; nothing is overwritten. Warns with both names.
    """
    if location.exists():
        return None
    old = legacy_location(location, extension)
    if old is None or not old.is_file() or _owner(old) != extension:
        return None
    try:
        os.rename(old, location)
    except FileNotFoundError:  # another process took it first
        return None
    warnings.warn(
        SnapshotRenamedWarning(
            f"pytest-modelviz renamed the snapshot {_shown(old)} to {location.name}: snapshot files no longer end "
            "in .txt, which pytest collects as doctests. Commit the rename."
        ),
        stacklevel=2,
    )
    return Renamed(old, location)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, for messages."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if relative.startswith("..") else relative
