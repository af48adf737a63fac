"""Ctrl-C as users press it: a real SIGINT to a real pytest. Tests that never finished are never
recorded as passed; outcomes.json and report.html say the run was interrupted and list them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

IDS = [f"test_ctrl_c.py::test_a[{i}]" for i in range(6)]

BLOCKS_AT_2 = """
import os, time
from pathlib import Path
import pytest

@pytest.mark.parametrize("i", range(6))
def test_a(modelviz_artifacts, i):
    modelviz_artifacts.record("check", name=f"check {i}", passed=True)
    if i == 2:
        Path(os.environ["STARTED"]).write_text("")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until Ctrl-C
            time.sleep(0.05)
        raise AssertionError("no Ctrl-C came")
"""


def _interrupt(project: Path, args: list[str], *, group: bool) -> tuple[subprocess.CompletedProcess, Path]:
    started = project / "started"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--modelviz", "-p", "no:cacheprovider", *args],
        cwd=project, env={**os.environ, "STARTED": str(started)}, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the blocking test never started"
            time.sleep(0.05)
        if group:  # a terminal's Ctrl-C reaches every process of the foreground group
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out), (project / ".modelviz" / "latest").resolve()


def _check_interrupted_run(done: subprocess.CompletedProcess, run: Path) -> dict[str, str]:
    assert done.returncode == pytest.ExitCode.INTERRUPTED, done.stdout
    outcomes = json.loads((run / "outcomes.json").read_text(encoding="utf-8"))
    by_id = {t["nodeid"]: t["outcome"] for t in outcomes["tests"]}
    assert "Ctrl-C" in outcomes["interrupted"] or "keyboard" in outcomes["interrupted"].lower()
    assert by_id.get(IDS[2]) != "passed", "the test Ctrl-C stopped is not a pass"
    assert set(by_id) | set(outcomes["not_run"]) == set(IDS), "every collected test is accounted for"
    assert not set(by_id) & set(outcomes["not_run"])
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "This run did not finish" in page
    for nodeid in [n for n, o in by_id.items() if o == "interrupted"] + outcomes["not_run"]:
        assert f"<li>{nodeid}</li>" in page
    assert IDS[2] in outcomes["not_run"] or by_id[IDS[2]] == "interrupted"
    assert "modelviz: the run stopped early" in done.stdout
    return by_id


def test_ctrl_c_in_one_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ctrl_c=BLOCKS_AT_2)
    done, run = _interrupt(pytester.path, ["-q"], group=False)
    by_id = _check_interrupted_run(done, run)
    assert by_id == {IDS[0]: "passed", IDS[1]: "passed", IDS[2]: "interrupted"}
    outcomes = json.loads((run / "outcomes.json").read_text(encoding="utf-8"))
    assert outcomes["not_run"] == IDS[3:] and outcomes["exit_status"] == 2
    page = (run / "report.html").read_text(encoding="utf-8")
    assert '<span class="value">1</span><span class="label">interrupted</span>' in page
    assert '<span class="value">2</span><span class="label">passed</span>' in page
    assert "check 2" in page, "what the interrupted test recorded is still shown"


@pytest.mark.slow
@pytest.mark.parametrize("group", [True, False], ids=["terminal-ctrl-c", "sigint-to-controller"])
def test_ctrl_c_with_xdist(pytester: pytest.Pytester, group: bool) -> None:
    pytester.makepyfile(test_ctrl_c=BLOCKS_AT_2)
    done, run = _interrupt(pytester.path, ["-q", "-n", "2"], group=group)
    _check_interrupted_run(done, run)


def test_a_stop_after_the_first_failure_lists_what_did_not_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="import pytest\n@pytest.mark.parametrize('i', range(4))\n"
                               "def test_a(i):\n    assert i != 1\n")
    pytester.runpytest("--modelviz", "-x").assert_outcomes(passed=1, failed=1)
    run = (pytester.path / ".modelviz" / "latest").resolve()
    outcomes = json.loads((run / "outcomes.json").read_text(encoding="utf-8"))
    assert outcomes["interrupted"] == "stopping after 1 failures"
    assert outcomes["not_run"] == ["test_x.py::test_a[2]", "test_x.py::test_a[3]"]
    assert [t["outcome"] for t in outcomes["tests"]] == ["passed", "failed"]
