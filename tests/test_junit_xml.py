"""JUnit XML attachment lines through pytest's public API, for every junit_logging and family."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_modelviz.junit import PROPERTY, move_to_system_out

TESTS = """
import pytest

def test_writes(modelviz_artifacts, record_property):
    record_property("owner", "vision-team")
    modelviz_artifacts.path("curves.png").write_bytes(b"png")
    modelviz_artifacts.path("graph", "model.dot").write_text("digraph { a -> b }")
    print("user output")

def test_fails(modelviz_artifacts):
    modelviz_artifacts.path("loss.txt").write_text("nan")
    print("before the failure")
    assert False, "the loss was nan"

def test_nothing():
    pass
"""


def _cases(path: Path) -> dict[str, ET.Element]:
    return {tc.get("name", ""): tc for tc in ET.parse(path).getroot().iter("testcase")}


def _attached(case: ET.Element) -> list[str]:
    outs = case.findall("system-out")
    assert len(outs) == 1, "exactly one <system-out> per test case"
    return sorted(Path(p).name for p in re.findall(r"\[\[ATTACHMENT\|(.+?)\]\]", outs[0].text or ""))


@pytest.mark.parametrize(
    "ini",
    [
        "",
        "junit_logging = system-out",
        "junit_logging = system-err",
        "junit_logging = out-err",
        "junit_logging = all",
        "junit_logging = log",
        "junit_logging = system-out\njunit_log_passing_tests = false",
        "junit_family = xunit1",
    ],
)
def test_attachment_lines_land_in_system_out(pytester: pytest.Pytester, ini: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("--modelviz", "--junitxml=junit.xml", "-W", "ignore::pytest.PytestWarning")
    result.assert_outcomes(passed=2, failed=1)
    text = (pytester.path / "junit.xml").read_text(encoding="utf-8")
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    assert PROPERTY not in text, "the carrier property is gone once the lines are in <system-out>"
    cases = _cases(pytester.path / "junit.xml")
    assert _attached(cases["test_writes"]) == ["curves.png", "model.dot"]
    assert _attached(cases["test_fails"]) == ["loss.txt"]
    assert cases["test_fails"].find("failure") is not None
    assert "[[ATTACHMENT" not in ET.tostring(cases["test_nothing"], encoding="unicode")
    # The project's own properties are untouched.
    props = {p.get("name"): p.get("value") for p in cases["test_writes"].iter("property")}
    assert props == {"owner": "vision-team"}
    if "system-out" in ini and "passing" not in ini or "out-err" in ini or "all" in ini:
        assert "user output" in cases["test_writes"].find("system-out").text
    children = [child.tag for child in cases["test_fails"]]
    if "system-err" in children:
        assert children.index("system-out") < children.index("system-err")


@pytest.mark.slow
def test_attachment_lines_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_subprocess("--modelviz", "-n", "2", "--junitxml=junit.xml")
    result.assert_outcomes(passed=2, failed=1)
    cases = _cases(pytester.path / "junit.xml")
    assert _attached(cases["test_writes"]) == ["curves.png", "model.dot"]
    assert _attached(cases["test_fails"]) == ["loss.txt"]


def test_an_unreadable_xml_is_left_alone_with_a_warning(pytester: pytest.Pytester) -> None:
    """If the written XML cannot be read back, the file is not touched and the run says so."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_sessionfinish(session):
            # runs after pytest wrote the file, before pytest-modelviz reads it back
            with open("junit.xml", "a") as fh:
                fh.write("<not-closed>")
        """
    )
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("--modelviz", "--junitxml=junit.xml")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*attachment lines could not be moved into <system-out>*"])
    assert (pytester.path / "junit.xml").read_text().endswith("<not-closed>")


def test_move_keeps_everything_else() -> None:
    xml = (
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="s">'
        '<testcase name="a"><properties>'
        '<property name="modelviz_attachments" value="[[ATTACHMENT|/x/a.png]]&#10;"/>'
        '</properties><system-err>err</system-err></testcase>'
        '<testcase name="b"><properties><property name="k" value="v"/>'
        '<property name="modelviz_attachments" value="[[ATTACHMENT|/x/b.png]]&#10;"/></properties>'
        "<system-out>captured</system-out></testcase>"
        '<testcase name="c"/></testsuite></testsuites>'
    )
    out = move_to_system_out(xml)
    assert out is not None
    cases = {c.get("name"): c for c in ET.fromstring(out).iter("testcase")}
    assert [child.tag for child in cases["a"]] == ["system-out", "system-err"]
    assert cases["a"].find("system-out").text == "[[ATTACHMENT|/x/a.png]]\n"
    assert [(p.get("name"), p.get("value")) for p in cases["b"].iter("property")] == [("k", "v")]
    assert cases["b"].find("system-out").text == "captured\n[[ATTACHMENT|/x/b.png]]\n"
    assert len(cases["c"]) == 0
    no_attachments = '<testsuites><testsuite name="s"><testcase name="c"/></testsuite></testsuites>'
    assert move_to_system_out(no_attachments) is None
