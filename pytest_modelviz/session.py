"""Run-level state: settings, the run folder, per-test outcomes, and resources closed at the end."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_modelviz.artifacts import ArtifactDir, count_snapshot_changes, new_run_dir, safe_dirname
from pytest_modelviz.settings import Settings

WORKER_RUN_DIR = "modelviz_run_dir"  # key in xdist's workerinput
OUTCOMES_FILE = "outcomes.json"


@dataclass
class TestOutcome:
    nodeid: str
    outcome: str  # passed | failed | skipped | error | xfailed | xpassed
    duration: float
    dirname: str  # the test's artifact folder, relative to the run folder
    message: str = ""  # short failure/skip reason


@dataclass
class ModelvizSession:
    """One per pytest process (controller and each xdist worker)."""

    settings: Settings
    run_dir: Path | None  # set only with --modelviz
    is_worker: bool
    scratch_dir: Path | None = None  # temporary root for artifacts without --modelviz
    started: float = field(default_factory=time.time)
    outcomes: dict[str, TestOutcome] = field(default_factory=dict)
    _finalizers: list[Callable[[], None]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # run-level facts for the report
    resources: dict[str, Any] = field(default_factory=dict)  # session-wide objects, e.g. a server

    @classmethod
    def create(cls, config: pytest.Config, settings: Settings) -> ModelvizSession:
        workerinput = getattr(config, "workerinput", None)
        run_dir: Path | None = None
        if settings.enabled:
            if workerinput is not None and workerinput.get(WORKER_RUN_DIR):
                # The controller made the folder; every worker writes into the same one.
                run_dir = Path(workerinput[WORKER_RUN_DIR])
            else:
                run_dir = new_run_dir(settings.base_dir)
        return cls(settings=settings, run_dir=run_dir, is_worker=workerinput is not None)

    def artifact_dir(self, nodeid: str, tmp_factory: pytest.TempPathFactory) -> ArtifactDir:
        name = safe_dirname(nodeid)
        if self.run_dir is not None:
            return ArtifactDir(nodeid=nodeid, root=self.run_dir / name, persist=True)
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

    def record_outcome(self, outcome: TestOutcome) -> None:
        self.outcomes[outcome.nodeid] = outcome

    def write_outcomes(self) -> Path | None:
        if self.run_dir is None:
            return None
        path = self.run_dir / OUTCOMES_FILE
        data = {
            "started": self.started,
            "finished": time.time(),
            "snapshot_changes": count_snapshot_changes(self.run_dir),
            "extras": self.extras,
            "tests": [vars(o) for o in self.outcomes.values()],
        }
        path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str), encoding="utf-8")
        return path


SESSION_KEY = pytest.StashKey[ModelvizSession]()


def get_session(config: pytest.Config) -> ModelvizSession:
    return config.stash[SESSION_KEY]
