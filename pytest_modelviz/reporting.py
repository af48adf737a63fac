"""Run-level reporting hooks, registered only with ``--modelviz``: attach each test's artifacts,
record outcomes, write the run report and print where everything is."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Generator

import pytest

from pytest_modelviz import attachments
from pytest_modelviz.artifacts import iter_files, safe_dirname
from pytest_modelviz.session import ModelvizSession, TestOutcome


class RunReporter:
    def __init__(self, config: pytest.Config, session: ModelvizSession) -> None:
        self.config = config
        self.session = session
        self.report_path: Path | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if report.when != "teardown":
            return report
        # At teardown every writer is closed, so every file is final. This runs in the process
        # that has the files (an xdist worker too); the list travels with the report.
        test_dir = self.session.test_dir(item.nodeid)
        files = list(iter_files(test_dir)) if test_dir is not None else []
        if files:
            report.modelviz_artifacts = [str(p) for p in files]
            if self.config.pluginmanager.hasplugin("html"):
                extras = attachments.html_extras(files, test_dir, _html_report_dir(self.config))
                report.extras = [*getattr(report, "extras", []), *extras]
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # On the controller: the one process that writes JUnit XML and the run report.
        if self.session.is_worker:
            return
        self._remember_outcome(report)
        files = [Path(p) for p in getattr(report, "modelviz_artifacts", [])]
        if report.when == "teardown" and files:
            _add_junit_attachments(self.config, report, attachments.junit_lines(files))

    def _remember_outcome(self, report: pytest.TestReport) -> None:
        prev = self.session.outcomes.get(report.nodeid)
        duration = (prev.duration if prev else 0.0) + float(getattr(report, "duration", 0.0) or 0.0)
        outcome = prev.outcome if prev else "passed"
        message = prev.message if prev else ""
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "xpassed"
            elif report.failed:
                outcome = "failed" if report.when == "call" else "error"
            elif report.skipped:
                outcome = "skipped"
            if not report.passed:
                message = _short_message(report)
        elif report.when == "teardown" and report.failed:
            outcome, message = "error", _short_message(report)
        self.session.record_outcome(
            TestOutcome(report.nodeid, outcome, duration, safe_dirname(report.nodeid), message)
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.session.is_worker or self.session.run_dir is None:
            return
        self.session.write_outcomes()
        from pytest_modelviz.report.html import write_report

        self.report_path = write_report(self.session.run_dir)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        run_dir = self.session.run_dir
        if run_dir is None or self.session.is_worker:
            return
        n_files = sum(len(list(iter_files(d))) for d in run_dir.iterdir() if d.is_dir())
        terminalreporter.write_sep("-", "modelviz")
        for line in attachments.summary_lines(run_dir, n_files, self.report_path):
            terminalreporter.write_line(line)


def _html_report_dir(config: pytest.Config) -> Path | None:
    htmlpath = getattr(config.option, "htmlpath", None)
    return Path(htmlpath).resolve().parent if htmlpath else None


def _short_message(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    text = getattr(report, "longreprtext", "") or ""
    return text[-4000:]


def _add_junit_attachments(config: pytest.Config, report: pytest.TestReport, lines: str) -> None:
    """Put attachment lines in the test case's ``<system-out>``.

    When pytest already writes captured stdout there (``junit_logging`` system-out, out-err or
    all), add them as a captured section so the one ``<system-out>`` holds both; otherwise add a
    ``<system-out>`` element of our own, since Jenkins and GitLab read attachments only there.
    """
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - pytest moved its JUnit internals
        warn(config, "modelviz: this pytest's JUnit XML writer is not supported; no attachment lines")
        return
    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    if getattr(xml, "logging", "no") in ("system-out", "out-err", "all"):
        report.sections.append(("Captured stdout modelviz", lines))
        return
    import xml.etree.ElementTree as ET

    node = ET.Element("system-out")
    node.text = lines
    xml.node_reporter(report).append(node)


def warn(config: pytest.Config, message: str) -> None:
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(message, yellow=True)
