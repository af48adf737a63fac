"""What a run found, where CI services show it: GitHub Actions annotations and step summary, JUnit
XML properties, and the ``modelviz`` section of the terminal summary."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_modelviz.ci_output import escape_data, escape_property

TESTS = """
import os

import torch
from torch import nn

WIDE = os.environ.get("MODEL_CHANGED") == "1"


def _data():
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    return [(x, x.sum(1, keepdim=True))]


def test_ok(graph_snapshot, short_train):
    graph_snapshot(nn.Linear(4, 1), torch.zeros(1, 4))
    result = short_train(nn.Linear(4, 1), _data(), loss_fn=nn.MSELoss(),
                         optimizer=lambda p: torch.optim.SGD(p, lr=0.05), steps=6)
    result.assert_loss_decreased()


def test_arch_changed(graph_snapshot):
    graph_snapshot(nn.Sequential(nn.Linear(4, 8 if WIDE else 3), nn.ReLU()), torch.zeros(1, 4))


def test_params_changed(graph_snapshot):
    torch.manual_seed(1 if WIDE else 0)
    graph_snapshot.parameters(nn.Linear(4, 2), name="init")


def test_training_check_fails(short_train):
    result = short_train(nn.Linear(4, 1), _data(), loss_fn=nn.MSELoss(),
                         optimizer=lambda p: torch.optim.SGD(p, lr=0.05, maximize=True), steps=6)
    result.assert_loss_decreased()
"""
FAILING = ("test_arch_changed", "test_params_changed", "test_training_check_fails")


def _unescape(text: str) -> str:
    # The runner's own rules, in reverse order of escaping.
    return text.replace("%2C", ",").replace("%3A", ":").replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")


def _def_line(path: Path, name: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(f"def {name}("))


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_ci=TESTS)
    pytester.runpytest("--snapshot-update", "-k", "not training").assert_outcomes(passed=3, deselected=1)
    monkeypatch.setenv("MODEL_CHANGED", "1")
    return pytester.path


def test_github_annotations_point_at_each_failing_check(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_WORKSPACE", str(project.parent))
    result = pytester.runpytest("--modelviz", "--modelviz-job", "cpu-1", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=3)
    annotations = [line for line in result.outlines if line.startswith("::error ")]
    assert len(annotations) == 3, result.stdout.str()
    found = {}
    for line in annotations:
        match = re.fullmatch(r"::error (file=[^,:]*,line=\d+,title=[^,:]*)::(.*)", line)
        assert match, f"not a well-formed workflow command: {line}"
        props = dict(p.split("=", 1) for p in match.group(1).split(","))
        message = _unescape(match.group(2))
        test = message.split("::", 1)[1].split(":", 1)[0]
        found[test] = (props, message)
        assert props["file"] == f"{project.name}/test_ci.py"
        assert int(props["line"]) == _def_line(project / "test_ci.py", test)
    assert sorted(found) == sorted(FAILING)
    arch = found["test_arch_changed"][1]
    assert "architecture snapshot" in _unescape(found["test_arch_changed"][0]["title"])
    assert "\n" in arch and "params +25 (15 -> 40)" in arch, arch
    assert "parameter snapshot 'init'" in found["test_params_changed"][1]
    assert "loss" in found["test_training_check_fails"][1].lower()

    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n## pytest-modelviz · cpu-1\n"), "appended, never overwritten"
    rows = [r for r in text.splitlines() if r.startswith("| test_ci.py::")]
    assert any(r.startswith("| test_ci.py::test_ok | Linear") and "| 5 | 4 |" in r for r in rows), rows
    changed = next(r for r in rows if r.startswith("| test_ci.py::test_arch_changed"))
    assert "architecture snapshot 'Sequential' (Sequential) changed" in changed
    assert "**Totals:** 4 tests" in text and "3 failing checks or snapshots" in text


def test_no_annotations_outside_github_actions(pytester: pytest.Pytester, project: Path, tmp_path: Path) -> None:
    result = pytester.runpytest("--modelviz")
    result.assert_outcomes(passed=1, failed=3)
    assert not [line for line in result.outlines if line.startswith("::")]


def test_terminal_summary_lists_changed_snapshots_and_failed_checks(pytester: pytest.Pytester, project: Path) -> None:
    result = pytester.runpytest("--modelviz")
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"-+ modelviz -+", line))
    section = lines[start + 1:]
    listed = [line for line in section if line.startswith(("changed ", "failed "))]
    assert len(listed) == 3, "\n".join(section)
    assert any(line.startswith("changed  test_ci.py::test_arch_changed: architecture snapshot 'Sequential'")
               for line in listed)
    assert any(line.startswith("changed  test_ci.py::test_params_changed: parameter snapshot 'init'")
               for line in listed)
    assert any(line.startswith("failed   test_ci.py::test_training_check_fails: check ") for line in listed)


def test_junit_properties_per_test(pytester: pytest.Pytester, project: Path) -> None:
    result = pytester.runpytest("--modelviz", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1, failed=3)
    cases = {c.get("name"): c for c in ET.parse(project / "junit.xml").getroot().iter("testcase")}
    props = {name: {p.get("name"): p.get("value") for p in case.iter("property")} for name, case in cases.items()}
    ok = props["test_ok"]
    assert ok["modelviz.params[Linear]"] == "5" and ok["modelviz.mult_adds[Linear]"] == "4"
    assert ok["modelviz.snapshot[Linear]"] == "matched"
    assert float(ok["modelviz.final_loss[Linear]"]) < float("inf")
    assert props["test_arch_changed"]["modelviz.snapshot[Sequential]"] == "changed"
    assert props["test_params_changed"]["modelviz.param_snapshot[init]"] == "changed"
    # Attachment paths: relative to the working directory by default, as GitLab resolves them.
    out = cases["test_ok"].find("system-out")
    assert out is not None
    paths = re.findall(r"\[\[ATTACHMENT\|(.+?)\]\]", out.text or "")
    assert paths and all(p.startswith(".modelviz/run-") and (project / p).is_file() for p in paths), paths


def test_junit_attachment_paths_can_be_absolute(pytester: pytest.Pytester, project: Path) -> None:
    pytester.runpytest("--modelviz", "--junitxml=junit.xml", "--modelviz-junit-paths=absolute", "-k", "ok")
    case = next(ET.parse(project / "junit.xml").getroot().iter("testcase"))
    paths = re.findall(r"\[\[ATTACHMENT\|(.+?)\]\]", case.find("system-out").text or "")  # type: ignore[union-attr]
    assert paths and all(Path(p).is_absolute() and Path(p).is_file() for p in paths)


def test_workflow_command_escaping() -> None:
    assert escape_data("100% done\r\nnext: a,b") == "100%25 done%0D%0Anext: a,b"
    assert escape_property("tests/a,b.py: 50%\n") == "tests/a%2Cb.py%3A 50%25%0A"
    hostile = "x::error file=evil::%0A,:\n"
    assert _unescape(escape_property(hostile)) == hostile and "::" not in escape_property(hostile)


def test_step_summary_cells_cannot_break_the_table_or_inject_html() -> None:
    from pytest_modelviz.ci_output import Finding, ModelFacts, TestFacts, _Test, step_summary

    hostile = "a|b <img src=x onerror=alert(1)>\n**bold** `code`"
    facts = TestFacts((ModelFacts(hostile, params=1234567),), (Finding("changed", hostile, "x|y", hostile),))
    text = step_summary([_Test("t.py::test[|]", "t.py", 3, facts)], "cpu")
    row = next(line for line in text.splitlines() if line.startswith("| t.py"))
    assert row.count(" | ") == 5, "six cells, whatever the text holds"
    assert "<img" not in text and "&lt;img" in row and "\\*\\*bold\\*\\*" in row and "1,234,567" in row
