"""Keeps pytest and syrupy away from snapshots they must not touch.

- Collection: snapshot files are never test files. Their ``.architecture``/``.params`` names match
  no default glob, and files still under an older ``.txt`` name (renamed on first use) are kept
  out of ``--doctest-glob`` here, so a ``>>>`` inside one cannot break collection.
- Cleanup: ``--snapshot-update`` deletes the snapshots no test used. syrupy decides that from the
  tests that ran, so a run that was interrupted, stopped early, failed to collect, or had tests
  that did not pass would delete the snapshots of tests that never got to assert them. Such a
  run deletes nothing (syrupy's ``--snapshot-no-cleanup``), and the summary says why.
- Shards: a run that selected part of the suite (``-k``, ``-m``, pytest-split or any plugin that
  deselects) cannot know which snapshots the tests it did not run use. syrupy matches a ``-k``
  expression against snapshot names, not against the tests that own them, so ``-k "not slow"``
  (a marker) or ``-k "not test_gpu_models"`` (a module) would delete the snapshots of every test
  another shard runs. Such a run deletes nothing either.

Registered by the plugin on every run, so it imports only pytest and the standard library.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from pytest_modelviz.snapshot.files import is_snapshot_file

GUARD_NAME = "modelviz-snapshot-guard"


class SnapshotGuard:
    """A pytest plugin object: one per pytest run."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._selected: set[str] | None = None  # None on an xdist controller, which collects nothing
        self._finished: set[str] = set()
        self._failed: set[str] = set()
        self._collection_errors = 0
        self._deselected = 0
        self.kept_because: str | None = None
        self.partial = False  # kept because the run selected part of the suite

    # ------------------------------------------------------------ collection

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        dirname = str(getattr(config.option, "snapshot_dirname", None) or "__snapshots__")
        if collection_path.parent.parent.name == dirname and is_snapshot_file(collection_path, dirname):
            return True
        return None  # no opinion: other plugins and pytest decide

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._collection_errors += 1

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self._deselected += len(items)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._selected = {item.nodeid for item in session.items}

    # ------------------------------------------------------------ running

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self._failed.add(report.nodeid)
        if report.when == "teardown":
            self._finished.add(report.nodeid)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
        """Before syrupy's own ``pytest_sessionfinish`` (which deletes): turn cleanup off if needed."""
        option = self._config.option
        cleaning = (
            getattr(option, "update_snapshots", False)
            and not getattr(option, "no_cleanup", False)
            and not getattr(option, "disable_unused_snapshots", False)
        )
        if cleaning:
            reason = self.incomplete_because(session, int(exitstatus))
            if reason is None:
                reason = self.partial_because()
                self.partial = reason is not None
            if reason is not None:
                option.no_cleanup = True
                self.kept_because = reason
        yield

    def incomplete_because(self, session: pytest.Session, exitstatus: int) -> str | None:
        """Why this run cannot tell which snapshots are unused, or None when it can."""
        if self._collection_errors:
            return f"{_count(self._collection_errors, 'error')} during collection"
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            return "it was interrupted"
        if session.shouldstop or session.shouldfail:
            return f"it stopped early: {session.shouldfail or session.shouldstop}"
        if self._failed:
            return f"{_count(len(self._failed), 'test')} did not pass"
        if self._selected is not None:
            unfinished = len(self._selected - self._finished)
            if unfinished:
                return f"{unfinished} of {_count(len(self._selected), 'selected test')} did not finish"
        if exitstatus != pytest.ExitCode.OK:
            return f"pytest ended with exit code {exitstatus}"
        return None

    def partial_because(self) -> str | None:
        """Why this run selected only part of the suite, or None when it ran all it collected."""
        if self._deselected:
            return f"{_count(self._deselected, 'test')} deselected"
        option = self._config.option
        if self._selected is None and (getattr(option, "keyword", None) or getattr(option, "markexpr", None)):
            # An xdist controller: its workers deselect, so -k and -m are all it can see.
            return "-k or -m selected the tests to run"
        return None

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.kept_because is None:
            return
        if self.partial:
            terminalreporter.write_line(
                f"pytest-modelviz: --snapshot-update deleted no unused snapshot, because the run selected part "
                f"of the suite ({self.kept_because}): one shard cannot tell which snapshots the tests of the "
                "others use. Run `pytest --snapshot-update` on the whole suite to delete the ones that are unused.",
                yellow=True,
                bold=True,
            )
            return
        terminalreporter.write_line(
            f"pytest-modelviz: --snapshot-update deleted no unused snapshot, because the run did not "
            f"complete ({self.kept_because}): the snapshots of tests that did not get to assert them "
            "are kept. Run `pytest --snapshot-update` to completion to delete the ones that are unused.",
            yellow=True,
            bold=True,
        )


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
