"""The report in a real headless Chromium: scripts run without errors, sections render, images load."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_report_run import HOSTILE, make_run
from headless_chromium import IMAGE_PROBE, dump_dom, find_chromium, screenshot

from pytest_modelviz.artifacts import ArtifactDir
from pytest_modelviz.report.html import write_report


def test_report_renders_in_chromium(tmp_path: Path, modelviz_artifacts: ArtifactDir) -> None:
    chromium = find_chromium()
    run = make_run(tmp_path)
    report = write_report(run)
    probed = report.with_name("probed.html")
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", IMAGE_PROBE + "</body>"), encoding="utf-8")

    dom = dump_dom(chromium, probed, tmp_path / "profile")
    assert 'data-ready="yes"' in dom, "the report's script did not run"
    assert '<div id="js-errors" hidden=""></div>' in dom, "a script error was written into the page"
    assert 'data-images="3"' in dom and 'data-broken=""' in dom, "every image loads from the relative links"
    assert HOSTILE not in dom, "a user string became live HTML"
    for text in ("pytest-modelviz report", "Training loss", "Snapshot difference", "Layer", "loss decreases"):
        assert text in dom
    assert dom.count('class="chart"') == 5
    # Big pictures: the script offers their actual size (the button is hidden without scripts).
    assert '<button type="button" class="zoom">actual size</button>' in dom

    png = modelviz_artifacts.path("report.png")
    screenshot(chromium, report, tmp_path / "profile-shot", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_missing_chromium_fails_with_install_hint(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.syspathinsert(Path(__file__).parent)
    pytester.makepyfile("from headless_chromium import find_chromium\ndef test_it():\n    find_chromium()\n")
    monkeypatch.setenv("PATH", str(pytester.path))
    monkeypatch.delenv("MODELVIZ_SKIP_BROWSER", raising=False)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*apt-get install -y chromium*MODELVIZ_SKIP_BROWSER=1*"])
    monkeypatch.setenv("MODELVIZ_SKIP_BROWSER", "1")
    pytester.runpytest_inprocess().assert_outcomes(skipped=1)


def test_the_error_box_catches_console_errors_and_broken_resources(tmp_path: Path) -> None:
    chromium = find_chromium()
    report = write_report(make_run(tmp_path))
    broken = report.with_name("broken.html")
    injected = '<img src="no-such-picture.png"><script>console.error("boom from a script");</script>'
    broken.write_text(report.read_text(encoding="utf-8").replace("</body>", injected + "</body>"), encoding="utf-8")
    dom = dump_dom(chromium, broken, tmp_path / "profile")
    assert '<div id="js-errors" hidden=""></div>' not in dom, "the page's own error detector saw nothing"
    assert "boom from a script" in dom
    assert "failed to load" in dom and "no-such-picture.png" in dom


def test_an_interrupted_run_reads_as_interrupted_in_chromium(tmp_path: Path) -> None:
    import json

    chromium = find_chromium()
    run = make_run(tmp_path)
    outcomes = json.loads((run / "outcomes.json").read_text(encoding="utf-8"))
    outcomes["tests"][0]["outcome"] = "interrupted"
    outcomes.update(interrupted="interrupted by Ctrl-C (KeyboardInterrupt)", not_run=[f"t::later[{HOSTILE}]"])
    (run / "outcomes.json").write_text(json.dumps(outcomes), encoding="utf-8")
    dom = dump_dom(chromium, write_report(run), tmp_path / "profile")
    assert '<div id="js-errors" hidden=""></div>' in dom
    assert "This run did not finish: interrupted by Ctrl-C (KeyboardInterrupt)" in dom
    assert "Did not finish (1)" in dom and "Did not run (1)" in dom
    assert HOSTILE not in dom
