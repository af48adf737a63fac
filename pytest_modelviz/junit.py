"""JUnit XML attachments: a ``[[ATTACHMENT|path]]`` line per artifact in the test case's
``<system-out>``, where Jenkins' junit-attachments plugin and GitLab read them.

pytest's public API reaches ``<system-out>`` only with captured output, and only when the project
sets ``junit_logging``. So the lines go into the XML through a test case property (the public
``TestReport.user_properties``, which pytest writes under every ``junit_family``), and once pytest
has written the file they are moved from that property into the case's ``<system-out>``: added to
the captured output pytest put there, or as a ``<system-out>`` of their own.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_modelviz.artifacts import write_atomic
from pytest_modelviz.attachments import junit_lines

PROPERTY = "modelviz_attachments"  # carries the lines from the report to the written XML only
_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'


def xml_path(config: pytest.Config) -> Path | None:
    """The file ``--junitxml`` writes (resolved as pytest resolves it), or None."""
    value = config.getoption("xmlpath", None)
    if not value:
        return None
    return Path(os.path.normpath(os.path.abspath(os.path.expanduser(os.path.expandvars(value)))))


class JUnitAttachments:
    """Registered on the controller (the process that writes the XML) with ``--modelviz``."""

    def __init__(self, path: Path, warn: Callable[[str], None], relative_to: Path | None = None) -> None:
        self.path = path
        self.warn = warn
        self.relative_to = relative_to  # the folder attachment paths are relative to (GitLab); None: absolute
        self.attached = 0

    @pytest.hookimpl(tryfirst=True)  # before pytest's junitxml reads the report's properties
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        files = getattr(report, "modelviz_artifacts", None)
        if report.when == "teardown" and files:
            report.user_properties.append((PROPERTY, junit_lines([Path(p) for p in files], self.relative_to)))
            self.attached += 1

    @pytest.hookimpl(trylast=True)  # after pytest's junitxml has written the file
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.attached:
            return
        try:
            text = move_to_system_out(self.path.read_text(encoding="utf-8"))
            if text is not None:
                write_atomic(self.path, text)
        except (OSError, ET.ParseError) as exc:
            self.warn(
                f"modelviz: the attachment lines could not be moved into <system-out> of {self.path} "
                f"({exc}); they are in each test case's '{PROPERTY}' property instead"
            )


def move_to_system_out(xml_text: str) -> str | None:
    """``xml_text`` with every ``PROPERTY`` moved into its test case's ``<system-out>``; None
    when there is none to move."""
    root = ET.fromstring(xml_text)
    moved = False
    for case in root.iter("testcase"):
        lines = _take_property(case)
        if lines:
            _append_system_out(case, lines)
            moved = True
    if not moved:
        return None
    return _DECLARATION + ET.tostring(root, encoding="unicode")


def _take_property(case: ET.Element) -> str:
    """Remove ``PROPERTY`` from the case (and ``<properties>`` when it is left empty); its text."""
    properties = case.find("properties")
    if properties is None:
        return ""
    ours = [p for p in properties.findall("property") if p.get("name") == PROPERTY]
    for prop in ours:
        properties.remove(prop)
    if len(properties) == 0:
        case.remove(properties)
    return "".join(p.get("value", "") for p in ours)


def _append_system_out(case: ET.Element, lines: str) -> None:
    out = case.find("system-out")
    if out is not None:  # pytest's captured output: one <system-out> holds both
        text = out.text or ""
        out.text = text + ("" if not text or text.endswith("\n") else "\n") + lines
        return
    out = ET.Element("system-out")
    out.text = lines
    # The JUnit schema orders <system-out> before <system-err>.
    children = list(case)
    err = next((i for i, child in enumerate(children) if child.tag == "system-err"), len(children))
    case.insert(err, out)
