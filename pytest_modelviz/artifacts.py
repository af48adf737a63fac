"""Where every file goes: the run folder, one folder per test, and the record of what was written.

This is the only module that builds artifact paths. Everything else asks an ``ArtifactDir`` for a
path and, when the file is something the run report should show, appends a record describing it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

RECORDS_FILE = "modelviz.jsonl"
LATEST_LINK = "latest"
TENSORBOARD_DIR = "tensorboard"
VISDOM_DIR = "visdom"
_MAX_STEM = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


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


def new_run_dir(base: Path) -> Path:
    """Create ``base/<timestamp>-<random>`` and point ``base/latest`` at it."""
    base.mkdir(parents=True, exist_ok=True)
    name = time.strftime("run-%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
    run_dir = base / name
    run_dir.mkdir()
    _point_latest(base, name)
    return run_dir


def _point_latest(base: Path, name: str) -> None:
    link = base / LATEST_LINK
    tmp = base / f".{LATEST_LINK}-{secrets.token_hex(4)}"
    try:
        tmp.symlink_to(name, target_is_directory=True)
        os.replace(tmp, link)  # atomic: a concurrent run never sees a missing pointer
    except OSError:
        # Filesystems without symlinks (some Windows setups, some CI caches): a text pointer.
        tmp.unlink(missing_ok=True)
        (base / f"{LATEST_LINK}.txt").write_text(name + "\n", encoding="utf-8")


@dataclass(frozen=True)
class ArtifactDir:
    """The artifact folder of one test.

    ``persist`` is False without ``--modelviz``: files then go to pytest's temporary folder,
    nothing is rendered, attached or reported, but every check still runs.
    """

    nodeid: str
    root: Path
    persist: bool

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

    def record(self, kind: str, **data: Any) -> None:
        """Append one record for the run report (``kind`` like ``"graph"``, ``"train"``).

        Paths in ``data`` should be relative to ``root`` (use ``relative``) so the run folder can
        be moved. Appending keeps records written before a failure.
        """
        line = json.dumps({"kind": kind, **data}, sort_keys=True, default=str)
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / RECORDS_FILE).open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.root)

    def files(self) -> list[Path]:
        return list(iter_files(self.root))


def read_records(test_dir: Path) -> list[dict[str, Any]]:
    return read_record_lines(test_dir / RECORDS_FILE)[0]


def read_record_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The records in a ``modelviz.jsonl`` and how many lines could not be parsed."""
    if not path.is_file():
        return [], 0
    records, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1  # a line cut short when a worker was killed mid-write
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


def count_snapshot_changes(run_dir: Path) -> int:
    """Snapshots that differed (failed, or were rewritten by ``--snapshot-update``) in this run.

    Counted from the tests' records, so every xdist worker's snapshots are in it.
    """
    return sum(
        1
        for test_dir in run_dir.iterdir()
        if test_dir.is_dir()
        for record in read_records(test_dir)
        if record.get("kind") in ("architecture", "params") and record.get("snapshot") in ("changed", "updated")
    )


def iter_files(root: Path) -> Iterator[Path]:
    """Every file below ``root``, sorted, the records file excluded."""
    if not root.is_dir():
        return
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name != RECORDS_FILE:
            yield path
