"""End to end: ``pytest --modelviz`` on a tiny project writes report.html listing every test."""

from __future__ import annotations

import pytest
from modelviz_testing import run_dir_of

PROJECT = """
import json
import pytest

def test_records(modelviz_artifacts):
    modelviz_artifacts.path("curves.png").write_bytes(b"not really a png")
    modelviz_artifacts.record(
        "train", name="tiny", model="Tiny", device="cpu", torch_version="x", steps=3,
        losses=[1.0, 0.5, 0.25], eval={}, curves="curves.png",
    )
    modelviz_artifacts.record("check", name="loss decreases", passed=True, message="1.0 -> 0.25")

def test_fails_midway(modelviz_artifacts):
    modelviz_artifacts.record("architecture", name="<b>net</b>", model="Net")
    assert 1 == 2, "broke <here>"

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass
"""


@pytest.mark.parametrize("workers", [None, "2"])
def test_report_lists_the_tests(pytester: pytest.Pytester, workers: str | None) -> None:
    pytester.makepyfile(test_tiny=PROJECT)
    args = ["--modelviz", *(["-n", workers] if workers else [])]
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    report = run_dir_of(pytester) / "report.html"
    result.stdout.fnmatch_lines([f"modelviz: report {report}"])
    page = report.read_text(encoding="utf-8")
    for name in ("test_tiny.py::test_records", "test_tiny.py::test_fails_midway", "test_tiny.py::test_skipped"):
        assert name in page
    assert "loss decreases" in page and "Training loss" in page
    assert "broke &lt;here&gt;" in page and "&lt;b&gt;net&lt;/b&gt;" in page
    assert "not today" in page
    assert '<span class="value">1</span><span class="label">failed</span>' in page


def test_no_report_without_modelviz(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_tiny=PROJECT)
    pytester.runpytest().assert_outcomes(passed=1, failed=1, skipped=1)
    assert not list(pytester.path.rglob("report.html"))
