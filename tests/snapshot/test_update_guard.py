"""``--snapshot-update`` deletes unused snapshots only after a run that completed.

A run that was interrupted (a real SIGINT to a real pytest process), stopped early by ``-x``,
failed to collect, or had tests that did not pass would otherwise delete the snapshots of every
test that never got to assert them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch  # noqa: F401 - imported once here, so in-process pytester runs do not re-import it

import pytest_modelviz.snapshot.params  # noqa: F401

TESTS = """
import os
import signal
from pathlib import Path

import torch
from torch import nn


def test_a_first(graph_snapshot):
    if os.environ.get("MODELVIZ_TEST_BLOCK"):
        Path(os.environ["MODELVIZ_TEST_BLOCK"]).write_text("running")
        while True:  # until the SIGINT the outer test sends
            signal.pause()
    if os.environ.get("MODELVIZ_TEST_FAIL"):
        raise AssertionError("fails before its snapshot")
    graph_snapshot(nn.Linear(3, 1), torch.zeros(1, 3))


def test_b(graph_snapshot):
    torch.manual_seed(0)
    graph_snapshot(nn.Linear(3, 2), torch.zeros(1, 3))
    graph_snapshot.parameters(nn.Linear(3, 2), name="init")


def test_c(graph_snapshot):
    graph_snapshot(nn.Linear(3, 3), torch.zeros(1, 3))


def test_d(graph_snapshot):
    graph_snapshot(nn.Linear(3, 4), torch.zeros(1, 3))
"""
KEPT = "pytest-modelviz: --snapshot-update deleted no unused snapshot, because the run did not complete"
_DEADLINE_S = 120


def _syrupy_deleted(out: str) -> bool:
    return "unused snapshot deleted" in out or "unused snapshots deleted" in out or "Deleted " in out


def _snapshots(root: Path) -> dict[str, bytes]:
    files = [p for p in sorted(root.glob("__snapshots__/**/*")) if p.is_file()]
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


@pytest.fixture
def project(pytester: pytest.Pytester) -> dict[str, bytes]:
    """Five committed snapshots of four tests, and a pytest.ini so subprocess runs find their root."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_models=TESTS)
    pytester.runpytest("--snapshot-update").assert_outcomes(passed=4)
    stored = _snapshots(pytester.path)
    assert len(stored) == 5
    return stored


@pytest.mark.skipif(not hasattr(signal, "pause"), reason="needs POSIX signals to interrupt a child pytest")
def test_ctrl_c_during_an_update_deletes_no_snapshot(pytester: pytest.Pytester, project: dict[str, bytes]) -> None:
    marker = pytester.path / "running.txt"
    env = {**os.environ, "MODELVIZ_TEST_BLOCK": str(marker), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--snapshot-update", "-p", "no:cacheprovider", "test_models.py"],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + _DEADLINE_S
        while not marker.exists():
            assert proc.poll() is None, f"pytest ended before the test started:\n{proc.communicate()[0]}"
            assert time.monotonic() < deadline, "the first test never started"
            time.sleep(0.05)  # polling a file with a deadline, not waiting a fixed time
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=_DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "KeyboardInterrupt" in out
    assert f"{KEPT} (it was interrupted)" in out
    assert not _syrupy_deleted(out)
    assert _snapshots(pytester.path) == project


def test_an_update_stopped_by_x_deletes_no_snapshot(
    pytester: pytest.Pytester, project: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELVIZ_TEST_FAIL", "1")
    result = pytester.runpytest("--snapshot-update", "-x")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert f"{KEPT} (it stopped early: stopping after 1 failures)" in out
    assert "test_b[Linear].architecture" in out and not _syrupy_deleted(out)  # syrupy names them, keeps them
    assert _snapshots(pytester.path) == project


def test_an_update_with_a_failing_test_deletes_no_snapshot(
    pytester: pytest.Pytester, project: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELVIZ_TEST_FAIL", "1")
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(passed=3, failed=1)
    assert f"{KEPT} (1 test did not pass)" in result.stdout.str()
    assert _snapshots(pytester.path) == project


def test_an_update_with_a_collection_error_deletes_no_snapshot(
    pytester: pytest.Pytester, project: dict[str, bytes]
) -> None:
    pytester.makepyfile(test_broken="def test_broken(:\n    pass\n")
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(errors=1)
    assert f"{KEPT} (1 error during collection)" in result.stdout.str()
    assert _snapshots(pytester.path) == project
    # --continue-on-collection-errors runs the tests, but still cannot see the broken module's.
    result = pytester.runpytest("--snapshot-update", "--continue-on-collection-errors")
    result.assert_outcomes(passed=4, errors=1)
    assert f"{KEPT} (1 error during collection)" in result.stdout.str()
    assert _snapshots(pytester.path) == project


def test_a_complete_update_still_deletes_snapshots_no_test_uses(
    pytester: pytest.Pytester, project: dict[str, bytes]
) -> None:
    pytester.makepyfile(test_models=TESTS.replace("def test_d(", "def _not_a_test_d("))
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    assert "1 unused snapshot deleted" in out and KEPT not in out
    assert set(_snapshots(pytester.path)) == set(project) - {"__snapshots__/test_models/test_d[Linear].architecture"}


def test_a_keyword_selection_keeps_the_snapshots_of_tests_it_did_not_select(
    pytester: pytest.Pytester, project: dict[str, bytes]
) -> None:
    result = pytester.runpytest("--snapshot-update", "-k", "test_b")
    result.assert_outcomes(passed=1, deselected=3)
    assert not _syrupy_deleted(result.stdout.str()) and KEPT not in result.stdout.str()
    assert _snapshots(pytester.path) == project
