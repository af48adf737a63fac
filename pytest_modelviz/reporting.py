"""Run-level reporting hooks, registered only with ``--modelviz``: attach each test's artifacts,
record outcomes, write the run report and print where everything is.

Nothing here may cost a test result: a run folder that cannot be written (a full disk) or a report
that cannot be made ends in one warning naming what is missing, after pytest's own summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_modelviz import attachments
from pytest_modelviz.artifacts import TestFolder, iter_files, walk_run
from pytest_modelviz.records import OUTCOMES_FILE, RunOutcomes, snapshot_changes
from pytest_modelviz.session import ModelvizSession

_SHOWN_NOT_WRITTEN = 8  # files named in the warning; the rest are counted


WORKER_PICTURES_FAILED = "modelviz_pictures_failed"  # key in xdist's workeroutput


class WorkerPictures:
    """On an xdist worker: draw the pictures of the tests this worker ran once it has no more
    tests. The workers then draw in parallel, a worker while the others still test, where the
    controller alone would draw them all one after the other once every worker is done (seconds
    of hiddenlayer and Graphviz per run). What a worker could not draw or record stays in its
    test's queue, and the controller draws what is still pending and names every failure."""

    def __init__(self, config: pytest.Config, session: ModelvizSession) -> None:
        self.config = config
        self.session = session
        self.test_dirs: dict[Path, None] = {}  # ordered, each once

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        test_dir = self.session.test_dir(nodeid)
        if test_dir is not None:
            self.test_dirs[test_dir] = None

    # xdist hands the worker's output to the controller after every pytest_sessionfinish.
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if int(exitstatus) == pytest.ExitCode.INTERRUPTED:
            return  # after Ctrl-C the session stops now; the report names what was not drawn
        from pytest_modelviz.render.pending import draw_pending

        try:
            draw_pending([d for d in self.test_dirs if d.is_dir()])
        except Exception as exc:  # noqa: BLE001 - the controller draws what is left, and warns with this
            output = getattr(self.config, "workeroutput", {})
            output[WORKER_PICTURES_FAILED] = f"drawing the pictures on a worker failed: {type(exc).__name__}: {exc}"


class RunReporter:
    def __init__(self, config: pytest.Config, session: ModelvizSession) -> None:
        self.config = config
        self.session = session
        self.report_path: Path | None = None
        self.n_files = 0
        self.collected: list[str] = []
        self.interruption = ""  # why the session stopped early, when it did
        self.final: RunOutcomes | None = None
        self.pictures_failed: list[str] = []  # pictures that could not be drawn at the end of the run

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if report.when != "teardown":
            return report
        # At teardown every writer is closed, so every file is final. This runs in the process
        # that has the files (an xdist worker too); the lists travel with the report.
        test_dir = self.session.test_dir(item.nodeid)
        files = list(iter_files(test_dir)) if test_dir is not None else []
        if files and test_dir is not None:
            # Pictures queued for the end of the run are not files yet: they are attached as
            # links (JUnit: paths) to where they will be when the run ends.
            later = _pending_outputs(test_dir)
            report.modelviz_artifacts = [str(p) for p in [*files, *later]]
            if self.config.pluginmanager.hasplugin("html"):
                report_dir = _html_report_dir(self.config)
                extras = attachments.html_extras(files, test_dir, report_dir)
                extras += attachments.link_extras(later, test_dir, report_dir,
                                                  note=" (drawn when the run ends)")
                report.extras = [*getattr(report, "extras", []), *extras]
        not_written = self.session.take_not_written()
        if not_written:
            report.modelviz_not_written = not_written
        return report

    # -------------------------------------------------------- on the controller: what ran, how

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collected = [item.nodeid for item in session.items]

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        if not self.collected:
            self.collected = list(ids)

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        if not self.session.is_worker:
            self.session.test_started(nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # On the controller: the one process that writes the run report.
        if self.session.is_worker:
            return
        outcome, message = _phase_outcome(report)
        self.session.test_reported(report.nodeid, outcome, float(getattr(report, "duration", 0.0) or 0.0), message)
        self.session.not_written += getattr(report, "modelviz_not_written", None) or []

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        if not self.session.is_worker:
            self.session.test_finished(nodeid)

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        self.interruption = _interruption(excinfo.value)

    # -------------------------------------------------------- the end of the run

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.session.is_worker or self.session.run_dir is None:
            return
        try:
            self._finish(session, int(exitstatus))
        finally:
            self.session.release_run()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.session.release_run()  # a session that ended before pytest_sessionfinish

    def _finish(self, session: pytest.Session, exitstatus: int) -> None:
        mv = self.session
        assert mv.run_dir is not None
        run_dir = mv.run_dir
        stopped = self.interruption or str(session.shouldfail or session.shouldstop or "")
        tests = mv.outcomes(stopped)
        started = mv.started_ids()
        not_run = tuple(n for n in self.collected if n not in started) if stopped else ()
        if not (self.interruption or not_run or any(t.outcome == "interrupted" for t in tests)):
            stopped = ""  # e.g. --maxfail reached on the last test: every test ran
        if not self.interruption:  # after Ctrl-C the session stops now; the report names what was not drawn
            self._draw_pictures(run_dir)
        folders = self._walk(run_dir)
        self.n_files = sum(len(f.files) for f in folders)
        outcomes = RunOutcomes(
            tests=tuple(tests),
            started=mv.started,
            finished=time.time(),
            exit_status=exitstatus,
            interrupted=stopped,
            not_run=not_run,
            notes=tuple(mv.notes),
            not_written=tuple(mv.not_written),
            snapshot_changes=sum(snapshot_changes(f.records) for f in folders),
            extras=mv.extras,
            job=mv.settings.job,
        )
        # When this cannot be written it is named in the warning; the report still shows every outcome.
        self._write(OUTCOMES_FILE, lambda: mv.write_outcomes(outcomes))
        from pytest_modelviz.report.html import write_report

        # The report says which files are missing, its own excepted: if it is not written, nobody reads it.
        self.final = outcomes = replace(outcomes, not_written=tuple(mv.not_written))
        self.report_path = self._write("report.html", lambda: write_report(run_dir, outcomes=outcomes, folders=folders))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: a worker is done; what went wrong drawing its pictures."""
        problem = getattr(node, "workeroutput", {}).get(WORKER_PICTURES_FAILED)
        if problem:
            self.pictures_failed.append(str(problem))

    def _draw_pictures(self, run_dir: Path) -> None:
        """Draw the pictures still pending (every one without xdist), once, here on the
        controller; those that could not be drawn, here or by a worker, are named in the report
        (per test) and after the summary."""
        from pytest_modelviz.render.pending import draw_pending

        try:
            test_dirs = [p for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
            drawn = draw_pending(test_dirs)
        except Exception as exc:  # noqa: BLE001 - a picture bug must not cost the report; warned below
            self.pictures_failed.append(f"drawing the pictures failed: {type(exc).__name__}: {exc}")
            return
        self.session.not_written += drawn.not_written
        self.pictures_failed += [f"{d.name}/{p.output}: {p.message}" for d, p in drawn.failed]

    def _walk(self, run_dir: Path) -> tuple[TestFolder, ...]:
        try:
            return walk_run(run_dir)
        except OSError as exc:
            self.session.not_written.append(f"the run folder could not be read ({exc.strerror or exc})")
            return ()

    def _write(self, name: str, write: Callable[[], Path | None]) -> Path | None:
        try:
            return write()
        except OSError as exc:
            self.session.not_written.append(f"{name} ({exc.strerror or exc})")
        except Exception as exc:  # noqa: BLE001 - a report bug must not cost the test results; warned below
            self.session.not_written.append(f"{name} ({type(exc).__name__}: {exc})")
        return None

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        run_dir = self.session.run_dir
        if run_dir is None or self.session.is_worker:
            return
        terminalreporter.write_sep("-", "modelviz")
        ci = config.pluginmanager.get_plugin("modelviz-ci")  # changed snapshots and failed checks first
        for line in ci.summary_lines() if ci is not None else []:
            terminalreporter.write_line(line, red=line.startswith(("changed", "failed")))
        for line in attachments.summary_lines(run_dir, self.n_files, self.report_path):
            terminalreporter.write_line(line)
        for note in self.session.notes:
            terminalreporter.write_line(f"modelviz: {note}", yellow=True)
        final = self.final
        if final is not None and final.interrupted:
            unfinished = [t.nodeid for t in final.tests if t.outcome == "interrupted"]
            terminalreporter.write_line(
                f"modelviz: the run stopped early ({final.interrupted}): {len(unfinished)} test(s) did not "
                f"finish, {len(final.not_run)} did not run; the report lists them", red=True)
        if self.pictures_failed:
            terminalreporter.write_line(_pictures_warning(self.pictures_failed), yellow=True)
        if self.session.not_written:
            terminalreporter.write_line(_not_written_warning(self.session.not_written), yellow=True, bold=True)


def _phase_outcome(report: pytest.TestReport) -> tuple[str | None, str]:
    """What one phase's report says about its test: an outcome word (None: nothing) and a message."""
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        elif report.failed:
            outcome = "failed" if report.when == "call" else "error"
        elif report.skipped:
            outcome = "skipped"
        else:
            outcome = "passed"
        return outcome, "" if report.passed else _short_message(report)
    if report.when == "teardown" and report.failed:
        return "error", _short_message(report)
    return None, ""


def _interruption(exc: BaseException) -> str:
    if type(exc) is KeyboardInterrupt:
        return "interrupted by Ctrl-C (KeyboardInterrupt)"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _not_written_warning(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN_NOT_WRITTEN])
    more = f" and {len(items) - _SHOWN_NOT_WRITTEN} more" if len(items) > _SHOWN_NOT_WRITTEN else ""
    return (f"modelviz: WARNING: {len(items)} file(s) of the run folder could not be written: {shown}{more}. "
            "The test results above are complete.")


def _pictures_warning(items: list[str]) -> str:
    shown = "; ".join(items[:_SHOWN_NOT_WRITTEN])
    more = f"; and {len(items) - _SHOWN_NOT_WRITTEN} more" if len(items) > _SHOWN_NOT_WRITTEN else ""
    return (f"modelviz: {len(items)} picture(s) could not be drawn (the report says which and why; "
            f"test results are not affected): {shown}{more}")


def _pending_outputs(test_dir: Path) -> list[Path]:
    from pytest_modelviz.render.pending import read_pictures

    return [test_dir / p.output for p in read_pictures(test_dir) if p.state == "pending"]


def _html_report_dir(config: pytest.Config) -> Path | None:
    htmlpath = getattr(config.option, "htmlpath", None)
    return Path(htmlpath).resolve().parent if htmlpath else None


def _short_message(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    text = getattr(report, "longreprtext", "") or ""
    return text[-4000:]


def warn(config: pytest.Config, message: str) -> None:
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(message, yellow=True)
