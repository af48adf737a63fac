"""Run-level state: settings, the run folder, per-test outcomes, and resources closed at the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_modelviz.artifacts import ArtifactDir, RunLock, new_run_dir, safe_dirname, write_atomic
from pytest_modelviz.records import OUTCOMES_FILE, RunOutcomes, TestOutcome, outcomes_text
from pytest_modelviz.settings import Settings

__all__ = ["OUTCOMES_FILE", "SESSION_KEY", "ModelvizSession", "TestOutcome", "get_session"]

WORKER_RUN_DIR = "modelviz_run_dir"  # key in xdist's workerinput
_FINAL = ("failed", "error")  # outcomes an interruption in teardown does not overwrite


@dataclass
class _Progress:
    """What the reports of one test said so far."""

    outcome: str = "passed"  # until a report says otherwise
    duration: float = 0.0
    message: str = ""
    finished: bool = False  # its last report is in (pytest_runtest_logfinish)


@dataclass
class ModelvizSession:
    """One per pytest process (controller and each xdist worker)."""

    settings: Settings
    run_dir: Path | None  # set only with --modelviz
    is_worker: bool
    scratch_dir: Path | None = None  # temporary root for artifacts without --modelviz
    started: float = field(default_factory=time.time)
    _progress: dict[str, _Progress] = field(default_factory=dict)
    _finalizers: list[Callable[[], None]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # run-level facts for the report
    resources: dict[str, Any] = field(default_factory=dict)  # session-wide objects, e.g. a server
    notes: list[str] = field(default_factory=list)  # what was done to the folder of runs
    not_written: list[str] = field(default_factory=list)  # run files that could not be written
    lock: RunLock | None = None  # held by the process that made the run folder

    @classmethod
    def create(cls, config: pytest.Config, settings: Settings) -> ModelvizSession:
        workerinput = getattr(config, "workerinput", None)
        if not settings.enabled:
            return cls(settings=settings, run_dir=None, is_worker=workerinput is not None)
        if workerinput is not None and workerinput.get(WORKER_RUN_DIR):
            # The controller made the folder; every worker writes into the same one.
            return cls(settings=settings, run_dir=Path(workerinput[WORKER_RUN_DIR]), is_worker=True)
        try:
            run = new_run_dir(settings.base_dir, keep=settings.keep_runs)
        except OSError as exc:
            raise pytest.UsageError(_unusable_dir_message(settings.base_dir, exc)) from None
        return cls(settings=settings, run_dir=run.path, is_worker=workerinput is not None,
                   notes=run.notes, lock=run.lock)

    def artifact_dir(self, nodeid: str, tmp_factory: pytest.TempPathFactory) -> ArtifactDir:
        name = safe_dirname(nodeid)
        if self.run_dir is not None:
            return ArtifactDir(nodeid=nodeid, root=self.run_dir / name, persist=True,
                               on_write_error=self.write_failed)
        if self.scratch_dir is None:
            self.scratch_dir = tmp_factory.mktemp("modelviz", numbered=True)
        return ArtifactDir(nodeid=nodeid, root=self.scratch_dir / name, persist=False)

    def test_dir(self, nodeid: str) -> Path | None:
        return None if self.run_dir is None else self.run_dir / safe_dirname(nodeid)

    def add_finalizer(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` at session end (last added, first run), e.g. to stop a server."""
        self._finalizers.append(fn)

    def close(self) -> list[BaseException]:
        errors: list[BaseException] = []
        while self._finalizers:
            fn = self._finalizers.pop()
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - collected and reported by the caller
                errors.append(exc)
        return errors

    # ------------------------------------------------------------ files that could not be written

    def write_failed(self, path: Path, exc: OSError) -> None:
        where = path
        if self.run_dir is not None and path.is_relative_to(self.run_dir):
            where = path.relative_to(self.run_dir)
        self.not_written.append(f"{where.as_posix()} ({exc.strerror or exc})")

    def take_not_written(self) -> list[str]:
        taken, self.not_written = self.not_written, []
        return taken

    # ------------------------------------------------------------ outcomes

    def test_started(self, nodeid: str) -> None:
        self._progress.setdefault(nodeid, _Progress())

    def test_reported(self, nodeid: str, outcome: str | None, duration: float, message: str) -> None:
        """A report of one phase: ``outcome`` is what it decides (None: it decides nothing)."""
        progress = self._progress.setdefault(nodeid, _Progress())
        progress.duration += duration
        if outcome is not None:
            progress.outcome = outcome
        if message:
            progress.message = message

    def test_finished(self, nodeid: str) -> None:
        self._progress.setdefault(nodeid, _Progress()).finished = True

    def outcomes(self, interrupted: str = "") -> list[TestOutcome]:
        """Every test that started, in the order it started. One that did not finish is
        ``interrupted`` (a failure found before the interruption is kept), never ``passed``."""
        out = []
        for nodeid, p in self._progress.items():
            outcome, message = p.outcome, p.message
            if not p.finished:
                why = f"did not finish: {interrupted or 'the session ended first'}"
                if outcome in _FINAL:
                    message = f"{message}\n({why})".strip()
                else:
                    outcome, message = "interrupted", why
            out.append(TestOutcome(nodeid, outcome, p.duration, safe_dirname(nodeid), message))
        return out

    def started_ids(self) -> set[str]:
        return set(self._progress)

    def write_outcomes(self, outcomes: RunOutcomes) -> Path | None:
        """Write ``outcomes.json`` whole or not at all (raises ``OSError``)."""
        if self.run_dir is None:
            return None
        return write_atomic(self.run_dir / OUTCOMES_FILE, outcomes_text(outcomes))

    def release_run(self) -> None:
        """Mark the run folder finished, so a later session may prune it."""
        if self.lock is not None:
            problem = self.lock.release()
            if problem:
                self.not_written.append(f"removing the in-progress marker: {problem}")
            self.lock = None


def _unusable_dir_message(base: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != base else ""
    return (
        f"--modelviz-dir {base}: cannot create a run folder there: {reason}{where}. "
        "Point --modelviz-dir (ini: modelviz_dir) at a writable folder, or free space there."
    )


SESSION_KEY = pytest.StashKey[ModelvizSession]()


def get_session(config: pytest.Config) -> ModelvizSession:
    return config.stash[SESSION_KEY]
