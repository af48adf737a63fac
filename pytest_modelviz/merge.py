"""Merge the run folders of several CI jobs into one run folder with one report.

Each job of a sharded or multi-runner suite (a matrix of CPU shards, a ``-m gpu`` job) leaves its
own run folder. ``python -m pytest_modelviz merge RUN_DIR... -o OUT`` puts them together: every
test once per job, its folder renamed ``<job>--<test folder>`` (records hold paths relative to
their test folder, so every link keeps working, and ``tensorboard --logdir OUT`` shows every
job's runs), one ``outcomes.json`` whose tests name their job, and one ``report.html``.

Merging is a pure function of its inputs: merging again, or merging the output into itself,
gives the same folder. A missing or half-written input is merged as far as it can be read and
named in the notes; nothing is ever dropped: a test that two inputs report differently for the
same job is kept under a second job name.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pytest_modelviz.artifacts import (
    IN_PROGRESS,
    LATEST_LINK,
    LATEST_TEXT,
    RUN_NAME,
    TestFolder,
    in_progress,
    write_atomic,
)
from pytest_modelviz.errors import MergeError
from pytest_modelviz.records import (
    OUTCOMES_FILE,
    PICTURES_FILE,
    RECORDS_FILE,
    RunOutcomes,
    TestOutcome,
    outcomes_text,
    read_outcomes,
    read_record_file,
)
from pytest_modelviz.report.html import REPORT_FILE, write_report
from pytest_modelviz.settings import job_name

__all__ = ["MergeResult", "merge_runs", "job_dirname"]

JOB_SEPARATOR = "--"  # between the job and the test folder name: the job is the name's first part
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE_DIRNAME = re.compile(r"^[A-Za-z0-9._-]+$")
_SUCCESS = (0, 5)  # pytest's OK and "no tests collected": not a failure of the suite


@dataclass
class MergeResult:
    """What a merge did: the folder it wrote and what the user should know about it."""

    out: Path
    tests: int = 0
    jobs: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)  # also in the report: inputs missing or incomplete
    info: list[str] = field(default_factory=list)  # printed only: results already merged, skipped
    report: Path | None = None


@dataclass(frozen=True)
class _Entry:
    """One test of one job, and the folder its artifacts are in (None: it left none)."""

    outcome: TestOutcome
    folder: Path | None
    source: str


@dataclass
class _Shard:
    source: str  # the input as the user named it
    run_dir: Path
    outcomes: RunOutcomes | None
    job: str  # for tests that name none (a single job's run)


def job_dirname(job: str, dirname: str) -> str:
    """A test folder's name in a merged run: unique per job, safe on any filesystem."""
    return f"{job}{JOB_SEPARATOR}{dirname}" if job else dirname


def merge_runs(inputs: Sequence[Path], out: Path) -> MergeResult:
    """Merge the run folders ``inputs`` into ``out``; raises ``MergeError`` for input that cannot be
    merged as asked, ``OSError`` when the output cannot be written.

    An input may be a run folder (``.modelviz/run-...``), a folder of runs (``.modelviz``, its
    newest run is taken), or a folder merged before. ``out`` is replaced whole, and may be one of
    the inputs (merge into an existing merge).
    """
    out = Path(out).absolute()
    result = MergeResult(out)
    shards: list[_Shard] = []
    for given in inputs:
        path = Path(given)
        if not path.exists():
            result.warnings.append(f"{given}: not found, so nothing of this job is in the report "
                                   "(its upload may have failed, or the job did not run)")
            continue
        run_dir = find_run(path)
        shards.append(_read_shard(str(given), run_dir, result.warnings))
    _check_output(out, [(Path(s.source), s.run_dir) for s in shards])
    if not shards:
        raise MergeError("nothing to merge: none of the inputs exists (" + ", ".join(map(str, inputs)) + ")")
    entries = _collect(shards, result)
    merged = _merged_outcomes(shards, entries, result.warnings)
    folders = _write(out, entries, merged)
    result.tests = len(entries)
    result.jobs = merged.jobs
    result.report = write_report(out, outcomes=merged, folders=folders)
    return result


# ---------------------------------------------------------------- reading the inputs


def find_run(path: Path) -> Path:
    """The run folder ``path`` names: itself, or the newest run of a folder of runs."""
    if not path.is_dir():
        raise MergeError(f"{path} is not a folder: pass the run folders of the jobs (.modelviz/run-...) "
                         "or their .modelviz folders")
    if _is_run(path):
        return path
    newest = _newest_run(path)
    if newest is None:
        raise MergeError(f"{path} is not a pytest-modelviz run folder: it holds no {OUTCOMES_FILE}, no "
                         f"{REPORT_FILE} and no test folders, nor any run-* folder. Pass the folder a "
                         "`pytest --modelviz` run wrote (.modelviz/run-..., or .modelviz itself).")
    return newest


def _is_run(path: Path) -> bool:
    if any((path / name).exists() for name in (OUTCOMES_FILE, REPORT_FILE, IN_PROGRESS)):
        return True
    return any((child / RECORDS_FILE).is_file() for child in _test_dirs(path))


def _newest_run(base: Path) -> Path | None:
    pointer = base / LATEST_LINK
    if pointer.is_dir() and _is_run(pointer):
        return pointer.resolve()
    text = base / LATEST_TEXT
    if text.is_file():
        name = text.read_text(encoding="utf-8", errors="replace").strip()
        if RUN_NAME.match(name) and (base / name).is_dir():
            return base / name
    runs = sorted(p for p in base.iterdir() if RUN_NAME.match(p.name) and p.is_dir())
    return runs[-1] if runs else None


def _test_dirs(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and _SAFE_DIRNAME.match(p.name))


def _read_shard(source: str, run_dir: Path, warnings: list[str]) -> _Shard:
    outcomes = read_outcomes(run_dir / OUTCOMES_FILE)
    job = (_safe_job(outcomes.job) if outcomes is not None else "") or fallback_job(Path(source))
    if outcomes is None:
        warnings.append(f"{source}: {OUTCOMES_FILE} is missing (the job did not finish, or its upload was "
                        "cut short): its test folders are merged with the outcome 'unknown'")
    elif outcomes.problems:
        warnings.append(f"{source}: {OUTCOMES_FILE} could not be read whole ({'; '.join(outcomes.problems)}): "
                        "what could be read is merged, other test folders with the outcome 'unknown'")
    if (run_dir / IN_PROGRESS).exists():
        state = "is still being written" if in_progress(run_dir) else "was never finished (its session was killed)"
        warnings.append(f"{source}: the run {state}; merged as it is now")
    return _Shard(source, run_dir, outcomes, job)


def _safe_job(name: str) -> str:
    """A job name read from an input, made safe for a folder name: it becomes part of one."""
    return job_name(name, {})


def fallback_job(source: Path) -> str:
    """A job name from where an input lies, for a run that recorded none: the first folder above
    the run folder that is not ``.modelviz``, ``latest`` or a run (a CI artifact's folder)."""
    path = source.absolute()
    while path.name and (RUN_NAME.match(path.name) or path.name in (".modelviz", LATEST_LINK)):
        path = path.parent
    return _SAFE.sub("_", path.name).strip("._-") or "job"


def _check_output(out: Path, inputs: Iterable[tuple[Path, Path]]) -> None:
    real_out = out.resolve()
    for given, run_dir in inputs:
        real = run_dir.resolve()
        if real == real_out:
            continue  # merging into an earlier merge: read whole before it is replaced
        if real_out.is_relative_to(real) or real_out.is_relative_to(given.resolve()):
            raise MergeError(f"the output {out} is inside the input {given}: choose an output folder "
                             "outside every input")
        if real.is_relative_to(real_out):
            raise MergeError(f"the input {run_dir} is inside the output {out}, which the merge replaces: "
                             "choose another output folder")
    if out.exists() and not out.is_dir():
        raise MergeError(f"the output {out} is a file: choose a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_run(out):
        raise MergeError(f"the output {out} is a folder with other files in it, and a merge replaces its "
                         "folder whole: choose a new folder, or an earlier merge's")


# ---------------------------------------------------------------- one entry per test and job


def _collect(shards: list[_Shard], result: MergeResult) -> dict[tuple[str, str], _Entry]:
    entries: dict[tuple[str, str], _Entry] = {}
    dirnames: set[str] = set()
    for shard in shards:
        for entry in _shard_entries(shard):
            key = (entry.outcome.job, entry.outcome.nodeid)
            if key in entries:
                if _same(entries[key], entry):
                    result.info.append(f"{shard.source}: {entry.outcome.nodeid} ({entry.outcome.job}) is "
                                       f"already merged from {entries[key].source}; kept once")
                    continue
                job = _free_job(entry.outcome.job, entry.outcome.nodeid, entries)
                result.warnings.append(
                    f"{entry.outcome.nodeid} ran in job {entry.outcome.job} in two inputs with different "
                    f"results ({entries[key].source}, {shard.source}): the second is shown as job {job}")
                entry = replace(entry, outcome=replace(entry.outcome, job=job))
                key = (job, entry.outcome.nodeid)
            name = _unique(_target_name(entry), dirnames)
            dirnames.add(name)
            entries[key] = replace(entry, outcome=replace(entry.outcome, dirname=name if entry.folder else ""))
    return dict(sorted(entries.items(), key=lambda kv: (kv[0][1], kv[0][0])))


def _shard_entries(shard: _Shard) -> list[_Entry]:
    """Every test of one input with its job; test folders no outcome names become 'unknown' tests."""
    folders = {p.name: p for p in _test_dirs(shard.run_dir)}
    tests = shard.outcomes.tests if shard.outcomes is not None else ()
    out: list[_Entry] = []
    named: set[str] = set()
    for t in tests:
        folder = folders.get(t.dirname) if _SAFE_DIRNAME.match(t.dirname) else None
        named.add(t.dirname)
        out.append(_Entry(replace(t, job=_safe_job(t.job) or shard.job), folder, shard.source))
    for name, folder in folders.items():
        if name not in named:
            why = ("no outcome was recorded for this test: its job did not finish" if shard.outcomes is None
                   or not shard.outcomes.tests else "no outcome was recorded for this test folder")
            unknown = TestOutcome(_nodeid_of(name, shard.job), "unknown", 0.0, name, why, shard.job)
            out.append(_Entry(unknown, folder, shard.source))
    return out


def _nodeid_of(dirname: str, job: str) -> str:
    """A folder with no outcome is listed under its own name (the job part taken off)."""
    prefix = job + JOB_SEPARATOR
    return dirname[len(prefix):] if job and dirname.startswith(prefix) else dirname


def _target_name(entry: _Entry) -> str:
    folder = entry.folder
    if folder is None:
        return ""
    job = entry.outcome.job
    # A folder of an earlier merge already carries its job.
    return folder.name if folder.name.startswith(job + JOB_SEPARATOR) else job_dirname(job, folder.name)


def _unique(name: str, taken: set[str]) -> str:
    if not name or name not in taken:
        return name
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"


def _free_job(job: str, nodeid: str, entries: dict[tuple[str, str], _Entry]) -> str:
    n = 2
    while (f"{job}-{n}", nodeid) in entries:
        n += 1
    return f"{job}-{n}"


def _same(a: _Entry, b: _Entry) -> bool:
    keys = ("outcome", "duration", "message")
    if any(getattr(a.outcome, k) != getattr(b.outcome, k) for k in keys):
        return False
    return _fingerprint(a.folder) == _fingerprint(b.folder)


def _fingerprint(folder: Path | None) -> tuple[object, ...]:
    """What tells two copies of a test folder apart: every file's path and size, and the records."""
    if folder is None:
        return ()
    files = sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    records = folder / RECORDS_FILE
    digest = hashlib.sha1(records.read_bytes()).hexdigest() if records.is_file() else ""
    return (tuple(files), digest)


# ---------------------------------------------------------------- the merged outcomes


def _merged_outcomes(shards: list[_Shard], entries: dict[tuple[str, str], _Entry],
                     warnings: list[str]) -> RunOutcomes:
    read = [(s, s.outcomes) for s in shards if s.outcomes is not None]

    def tagged(shard: _Shard, items: Iterable[str]) -> list[str]:
        # A single job's lines are tagged with the job; an earlier merge's are tagged already.
        return list(items) if _is_merge(shard) else [f"{shard.job}: {x}" for x in items]

    started = [o.started for _, o in read if o.started is not None]
    finished = [o.finished for _, o in read if o.finished is not None]
    statuses = [o.exit_status for _, o in read if o.exit_status is not None]
    failing = [s for s in statuses if s not in _SUCCESS]
    interrupted = [x for s, o in read if o.interrupted for x in tagged(s, [o.interrupted])]
    return RunOutcomes(
        tests=tuple(e.outcome for e in entries.values()),
        started=min(started) if started else None,
        finished=max(finished) if finished else None,
        exit_status=(failing[0] if failing else max(statuses)) if statuses else None,
        interrupted="; ".join(dict.fromkeys(interrupted)),
        not_run=_unique_items(f"{n} ({s.job})" if not _is_merge(s) else n for s, o in read for n in o.not_run),
        notes=_unique_items([*(x for s, o in read for x in tagged(s, o.notes)), *warnings]),
        not_written=_unique_items(x for s, o in read for x in tagged(s, o.not_written)),
        snapshot_changes=sum(o.snapshot_changes for _, o in read),
        extras=_merged_extras([o.extras for _, o in read]),
    )


def _is_merge(shard: _Shard) -> bool:
    o = shard.outcomes
    return o is not None and not o.job and any(t.job for t in o.tests)


def _unique_items(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _merged_extras(extras: list[dict[str, object]]) -> dict[str, object]:
    """Run-level facts of every job: one value where all agree, else the distinct values."""
    merged: dict[str, object] = {}
    for key in sorted({k for e in extras for k in e}):
        values: list[object] = []
        for e in extras:
            value = e.get(key)
            for v in value if isinstance(value, list) else [value]:
                if v is not None and v not in values:
                    values.append(v)
        merged[key] = values[0] if len(values) == 1 else values
    return merged


# ---------------------------------------------------------------- writing


def _write(out: Path, entries: dict[tuple[str, str], _Entry], outcomes: RunOutcomes) -> tuple[TestFolder, ...]:
    """Build the merged folder beside ``out`` and swap it in, so ``out`` is never half-merged and an
    input that is ``out`` is read whole before it is replaced. Returns the merged run's test folders
    (what the report reads), gathered while copying, so the merged folder is not walked again."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.merging-{secrets.token_hex(4)}"
    folders = []
    try:
        staging.mkdir()
        for entry in entries.values():
            if entry.folder is not None:
                name = entry.outcome.dirname
                files = _copy_folder(entry.folder, staging / name, out / name)
                records = entry.folder / RECORDS_FILE
                folders.append(TestFolder(name, read_record_file(records), files, records.is_file()))
        write_atomic(staging / OUTCOMES_FILE, outcomes_text(outcomes))
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # only what this merge made; the error is raised
        raise
    return tuple(sorted(folders, key=lambda f: f.name))


def _copy_folder(source: Path, target: Path, final: Path) -> tuple[Path, ...]:
    """Copy a test folder; the files the report lists, as paths under ``final`` (where ``target``
    is about to be moved).

    Files are hard-linked where the filesystem allows (a finished run's files are never written
    again: every write is a new file renamed into place), else copied. Links are copied as links:
    a link to a file outside the run is not followed.
    """
    listed = []
    src_root, dst_root, final_root = str(source), str(target), str(final)
    # os.path on strings, not pathlib: this loop runs once per file of every job.
    for root, dirs, names in os.walk(src_root):
        rel = os.path.relpath(root, src_root)
        into = dst_root if rel == "." else os.path.join(dst_root, rel)
        os.makedirs(into, exist_ok=True)
        for name in dirs:
            if os.path.islink(os.path.join(root, name)):
                os.symlink(os.readlink(os.path.join(root, name)), os.path.join(into, name))
        for name in names:
            src, dst = os.path.join(root, name), os.path.join(into, name)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
                continue
            _link_or_copy(src, dst)
            if name not in (RECORDS_FILE, PICTURES_FILE):
                listed.append(os.path.join(final_root, rel, name) if rel != "." else os.path.join(final_root, name))
    return tuple(sorted(Path(f) for f in listed))  # in the order the run's own walk lists them


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(src, dst)


def _swap_in(staging: Path, out: Path) -> None:
    if not out.exists():
        os.rename(staging, out)
        return
    old = out.parent / f".{out.name}.replaced-{secrets.token_hex(4)}"
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except OSError:
        os.rename(old, out)  # put the earlier merge back: never leave nothing
        raise
    shutil.rmtree(old)
