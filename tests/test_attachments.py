"""Artifacts attached to reports: JUnit XML lines, pytest-html extras, the terminal summary."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from modelviz_testing import run_dir_of

WRITES = """
import base64
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
def test_writes(modelviz_artifacts):
    modelviz_artifacts.path("curves.png").write_bytes(PNG)
    modelviz_artifacts.path("graph", "model.dot").write_text("digraph { a -> b }")
    modelviz_artifacts.path("events.bin").write_bytes(b"\\0" * 10)
    print("user output")

def test_nothing():
    pass
"""


def _testcases(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()
    return {tc.get("name"): tc for tc in root.iter("testcase")}


@pytest.mark.parametrize("logging", ["no", "system-out", "all"])
def test_junit_xml_has_attachment_lines(pytester: pytest.Pytester, logging: str) -> None:
    pytester.makepyfile(WRITES)
    pytester.makeini(f"[pytest]\njunit_logging = {logging}\n")
    pytester.runpytest("--modelviz", "--junitxml=junit.xml").assert_outcomes(passed=2)
    cases = _testcases(pytester.path / "junit.xml")
    outs = cases["test_writes"].findall("system-out")
    assert len(outs) == 1, "exactly one <system-out> per test case"
    paths = re.findall(r"\[\[ATTACHMENT\|(.+?)\]\]", outs[0].text or "")
    assert sorted(Path(p).name for p in paths) == ["curves.png", "events.bin", "model.dot"]
    # Relative to the folder pytest ran in, as GitLab resolves them (--modelviz-junit-paths=absolute: absolute).
    assert all(not Path(p).is_absolute() and (pytester.path / p).is_file() for p in paths)
    if logging != "no":
        assert "user output" in outs[0].text
    assert "[[ATTACHMENT" not in ET.tostring(cases["test_nothing"], encoding="unicode")


def test_no_attachments_without_modelviz(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(WRITES)
    pytester.runpytest("--junitxml=junit.xml").assert_outcomes(passed=2)
    assert "ATTACHMENT" not in (pytester.path / "junit.xml").read_text()


def test_pytest_html_extras(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(WRITES)
    result = pytester.runpytest("--modelviz", "--html=html/report.html")
    result.assert_outcomes(passed=2)
    page = (pytester.path / "html" / "report.html").read_text(encoding="utf-8")
    run = run_dir_of(pytester)
    # pytest-html keeps extras as JSON in a data attribute, HTML-escaped.
    assert "curves.png" in page and "graph/model.dot" in page
    # pytest-html writes text extras to files next to the report (data: URIs when self-contained).
    texts = [p.read_text(encoding="utf-8") for p in (pytester.path / "html" / "assets").glob("*.txt")]
    assert "digraph { a -> b }" in texts
    events = next(run.rglob("events.bin"))
    rel = Path("..") / events.relative_to(pytester.path)
    assert rel.as_posix() in page, "non-inline files are linked relative to the report"


def test_terminal_summary_names_run_folder_and_tensorboard(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(WRITES)
    result = pytester.runpytest("--modelviz")
    run = run_dir_of(pytester)
    result.stdout.fnmatch_lines(
        [
            "*- modelviz -*",
            f"modelviz: run folder {run} (3 artifacts)",
            f"modelviz: report {run / 'report.html'}",
            f"modelviz: open in TensorBoard: tensorboard --logdir {run}",
        ]
    )
