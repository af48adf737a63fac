"""What a run found, in the places CI services show: GitHub Actions annotations and step summary,
JUnit XML properties, and the ``modelviz`` section of pytest's terminal summary.

Each test's records are read once, at its teardown, in the process that ran it (an xdist worker
too), into a small ``TestFacts`` that travels with the report to the process that writes the
outputs. Registered with ``--modelviz`` (the fixtures keep records only then); imports only the
standard library, pytest and the records.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_modelviz.records import (
    RECORDS_FILE,
    ArchitectureRecord,
    CheckRecord,
    ParamsRecord,
    TrainRecord,
    read_record_file,
)
from pytest_modelviz.session import ModelvizSession

PLUGIN_NAME = "modelviz-ci"
FACTS_ATTR = "modelviz_facts"  # on the teardown report; plain JSON, so it crosses from xdist workers
PROPERTY_PREFIX = "modelviz."
ANNOTATION_LINES = 12  # lines of a semantic diff carried by one annotation
_FAILED = "failed"
_CELL = 200  # characters of a step summary's table cell; the report has the rest


# ---------------------------------------------------------------- what one test found


@dataclass(frozen=True)
class ModelFacts:
    """One model a test captured or trained."""

    name: str
    model: str = ""
    params: int | None = None
    macs: int | None = None
    final_loss: float | None = None
    snapshot: str = ""  # architecture snapshot state: matched, changed, created, updated
    param_snapshot: str = ""  # parameter-statistics snapshot state

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


@dataclass(frozen=True)
class Finding:
    """A failed check or a changed snapshot: one line in the terminal, one annotation on GitHub."""

    state: str  # changed | updated | created | failed
    what: str  # e.g. "architecture snapshot 'convnet' (ConvNet)", "check 'loss decreases' (mlp)"
    detail: str = ""  # the semantic diff or the check's message
    subject: str = ""  # the name of the model (capture or training run) it is about

    @property
    def fails(self) -> bool:
        return self.state in ("changed", _FAILED)

    @property
    def first_line(self) -> str:
        lines = [line.strip() for line in self.detail.splitlines() if line.strip()]
        # A diff starts with its own title ("architecture snapshot ... changed:"); the next line says what.
        useful = [line for line in lines if not line.endswith(":")] or lines
        return useful[0] if useful else ""

    def to_json(self) -> dict[str, str]:
        return {"state": self.state, "what": self.what, "detail": self.detail, "subject": self.subject}


@dataclass(frozen=True)
class TestFacts:
    __test__ = False  # not a test class

    models: tuple[ModelFacts, ...] = ()
    findings: tuple[Finding, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"models": [m.to_json() for m in self.models], "findings": [f.to_json() for f in self.findings]}

    @classmethod
    def from_json(cls, data: Any) -> TestFacts:
        if not isinstance(data, Mapping):
            return cls()
        models = tuple(ModelFacts(**{k: v for k, v in m.items() if k in ModelFacts.__dataclass_fields__})
                       for m in data.get("models", ()) if isinstance(m, Mapping) and isinstance(m.get("name"), str))
        findings = tuple(Finding(*(str(f.get(k, "")) for k in ("state", "what", "detail", "subject")))
                         for f in data.get("findings", ()) if isinstance(f, Mapping))
        return cls(models, findings)


def facts_of(test_dir: Path) -> TestFacts:
    """What a test's records say about its models, its snapshots and its checks."""
    models: dict[str, dict[str, Any]] = {}
    findings: list[Finding] = []
    for record in read_record_file(test_dir / RECORDS_FILE):
        if isinstance(record, ArchitectureRecord):
            models.setdefault(record.name, {}).update(
                model=record.model, params=record.totals.get("params"), macs=record.totals.get("macs"),
                snapshot=record.snapshot)
            if record.snapshot in ("changed", "updated", "created"):
                findings.append(Finding(record.snapshot, f"architecture snapshot {record.name!r} ({record.model})",
                                        record.diff, record.name))
        elif isinstance(record, ParamsRecord):
            models.setdefault(record.name, {}).update(param_snapshot=record.snapshot)
            models[record.name].setdefault("model", record.model)
            if record.snapshot in ("changed", "updated", "created"):
                findings.append(Finding(record.snapshot, f"parameter snapshot {record.name!r} ({record.model})",
                                        "\n".join(record.mismatches), record.name))
        elif isinstance(record, TrainRecord):
            facts = models.setdefault(record.name, {})
            facts.setdefault("model", record.model)
            if record.losses:
                facts["final_loss"] = record.losses[-1]
            if record.error:
                findings.append(Finding(_FAILED, f"training {record.name!r} ({record.model})", record.error,
                                        record.name))
        elif isinstance(record, CheckRecord) and not record.passed:
            where = f" ({record.train})" if record.train else ""
            findings.append(Finding(_FAILED, f"check {record.name!r}{where}", record.message, record.train or ""))
    return TestFacts(tuple(ModelFacts(name, **{k: v for k, v in f.items() if v is not None})
                           for name, f in models.items()), tuple(findings))


# ---------------------------------------------------------------- the plugin


@dataclass
class _Test:
    nodeid: str
    path: str  # the test's file, relative to the rootdir
    line: int  # 1-based line of the test function
    facts: TestFacts = field(default_factory=TestFacts)


class CiOutput:
    """Registered with ``--modelviz`` in every process; writes its outputs on the controller."""

    def __init__(self, config: pytest.Config, session: ModelvizSession, *, junit: bool) -> None:
        self.config = config
        self.session = session
        self.junit = junit
        self.tests: dict[str, _Test] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if report.when == "teardown":
            test_dir = self.session.test_dir(item.nodeid)
            if test_dir is not None and (test_dir / RECORDS_FILE).is_file():
                facts = facts_of(test_dir)
                if facts.models or facts.findings:
                    setattr(report, FACTS_ATTR, facts.to_json())
        return report

    @pytest.hookimpl(tryfirst=True)  # before pytest's junitxml reads the report's properties
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.session.is_worker:
            return
        path, line, _ = report.location
        test = self.tests.setdefault(report.nodeid, _Test(report.nodeid, path, (line or 0) + 1))
        data = getattr(report, FACTS_ATTR, None)
        if report.when == "teardown" and data is not None:
            test.facts = TestFacts.from_json(data)
            if self.junit:
                report.user_properties.extend(junit_properties(test.facts))

    def summary_lines(self) -> list[str]:
        """The terminal summary's lines: each changed snapshot and failed check, one line each."""
        return [terminal_line(t.nodeid, f) for t in self.tests.values() for f in t.facts.findings]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.session.is_worker or not github_actions():
            return
        root = self.config.rootpath
        for test in self.tests.values():
            for finding in test.facts.findings:
                if finding.fails:
                    terminalreporter.write_line(annotation(test, finding, root, os.environ.get("GITHUB_WORKSPACE")))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        target = os.environ.get("GITHUB_STEP_SUMMARY", "")
        if self.session.is_worker or not github_actions() or not target:
            return
        text = step_summary(list(self.tests.values()), self.session.settings.job)
        try:
            with open(target, "a", encoding="utf-8") as fh:  # appended: other steps write there too
                fh.write(text)
        except OSError as exc:
            self.session.not_written.append(f"the GitHub step summary {target} ({exc.strerror or exc})")


def github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


# ---------------------------------------------------------------- the formats


def terminal_line(nodeid: str, finding: Finding) -> str:
    first = finding.first_line
    return f"{finding.state:<8} {nodeid}: {finding.what}" + (f": {first}" if first else "")


def junit_properties(facts: TestFacts) -> list[tuple[str, object]]:
    """``modelviz.<fact>[<model>]`` properties: what a CI service shows beside the test case."""
    props: list[tuple[str, object]] = []
    for m in facts.models:
        for key, value in (("params", m.params), ("mult_adds", m.macs), ("final_loss", m.final_loss),
                           ("snapshot", m.snapshot), ("param_snapshot", m.param_snapshot)):
            if value is not None and value != "":
                props.append((f"{PROPERTY_PREFIX}{key}[{m.name}]", value))
    return props


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as the GitHub Actions runner unescapes it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: the message's escapes, and ``:`` and ``,`` too."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(test: _Test, finding: Finding, rootdir: Path, workspace: str | None) -> str:
    """``::error file=...,line=...,title=...::message``, at the test's line."""
    path = _repo_path(rootdir / test.path, workspace) if test.path else ""
    lines = [line for line in finding.detail.splitlines() if line.strip()]
    shown = lines[:ANNOTATION_LINES] + ([f"... ({len(lines) - ANNOTATION_LINES} more lines in the test's output)"]
                                        if len(lines) > ANNOTATION_LINES else [])
    title = f"{finding.what} {finding.state}"
    message = "\n".join([f"{test.nodeid}: {title}", *shown])
    props = [f"file={escape_property(path)}", f"line={test.line}", f"title={escape_property(title)}"]
    return f"::error {','.join(props)}::{escape_data(message)}"


def _repo_path(path: Path, workspace: str | None) -> str:
    """The path GitHub matches against the pull request's files: relative to the checkout."""
    absolute = Path(os.path.abspath(path))
    if workspace:
        base = Path(os.path.abspath(workspace))
        if absolute.is_relative_to(base):
            return absolute.relative_to(base).as_posix()
    return os.path.relpath(absolute).replace(os.sep, "/")


def step_summary(tests: list[_Test], job: str) -> str:
    """The Markdown appended to ``$GITHUB_STEP_SUMMARY``: per model, then totals."""
    rows = []
    for t in tests:
        for m in t.facts.models:
            mine = [f for f in t.facts.findings if f.subject == m.name]
            what = "; ".join(f"{f.what} {f.state}" + (f": {f.first_line}" if f.first_line else "") for f in mine)
            rows.append([t.nodeid, m.name + (f" ({m.model})" if m.model else ""), _count(m.params), _count(m.macs),
                         "" if m.final_loss is None else f"{m.final_loss:.4g}", what or "–"])
    models = sum(len(t.facts.models) for t in tests)
    failing = sum(f.fails for t in tests for f in t.facts.findings)
    snapshots = sum(f.state in ("changed", "updated", "created") and "snapshot" in f.what
                    for t in tests for f in t.facts.findings)
    params = sum(m.params or 0 for t in tests for m in t.facts.models)
    title = "pytest-modelviz" + (f" · {job}" if job else "")
    out = [f"## {_md(title)}", ""]
    if rows:
        out += ["| test | model | parameters | mult-adds | final loss | what changed |",
                "| --- | --- | ---: | ---: | ---: | --- |"]
        out += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
        out.append("")
    out.append(f"**Totals:** {len(tests)} tests, {models} models ({params:,} parameters), "
               f"{snapshots} snapshots changed, {failing} failing checks or snapshots.")
    return "\n".join(out) + "\n\n"


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _md(text: str) -> str:
    """A Markdown table cell: one line, no live HTML, no column break."""
    cell = " ".join(text.split())
    for char, entity in (("\\", "\\\\"), ("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"),
                         ("*", "\\*"), ("`", "\\`")):
        cell = cell.replace(char, entity)
    return cell if len(cell) <= _CELL else cell[:_CELL - 1] + "…"

