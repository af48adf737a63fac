"""The folder of runs as users meet it: full and unwritable disks, a `latest` restored from a cache,
.gitignore, keeping the last N runs, and runs that share the folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from modelviz_testing import run_dir_of

RUN_PREFIX = "run-"


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    """A real 256 KiB file system, to fill up for real."""
    yield from _mounted("size=256k")


@pytest.fixture
def read_only_fs() -> Iterator[Path]:
    yield from _mounted("ro,size=64k")


def _mounted(options: str) -> Iterator[Path]:
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    mount_point = Path(tempfile.mkdtemp(prefix="modelviz-fs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
        mount_point.rmdir()


def _runs(base: Path) -> list[Path]:
    return sorted(p for p in base.iterdir() if p.name.startswith(RUN_PREFIX))


# ---------------------------------------------------------------- a disk that fills up


FILLS_THE_DISK = """
import os
from pathlib import Path

def fill_disk(folder):
    fd = os.open(Path(folder) / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass  # full, as intended
    finally:
        os.close(fd)

def test_writes_then_the_disk_fills(modelviz_artifacts):
    assert modelviz_artifacts.record("note", text="written while there was room")
    fill_disk(os.environ["FILL_DIR"])
    filler = Path(os.environ["FILL_DIR"]) / "filler"
    os.truncate(filler, os.path.getsize(filler) - 16384)
    # 64 KiB where 16 KiB are free: not raised into the test, and no half line left behind.
    assert not modelviz_artifacts.record("note", text="x" * 65536)
    fill_disk(os.environ["FILL_DIR"])

def test_fails():
    assert 1 == 2, "a real failure that must be reported"
"""


@pytest.mark.parametrize("workers", [[], pytest.param(["-n", "2"], marks=pytest.mark.slow)],
                         ids=["single", "xdist"])
def test_a_full_disk_keeps_the_results_and_leaves_nothing_half_written(
    pytester: pytest.Pytester, small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    pytester.makepyfile(test_full=FILLS_THE_DISK)
    monkeypatch.setenv("FILL_DIR", str(small_tmpfs))
    base = small_tmpfs / "runs"
    result = pytester.runpytest_subprocess("--modelviz", f"--modelviz-dir={base}", "-p", "no:cacheprovider",
                                           *workers)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: a real failure that must be reported*",
                                 "FAILED test_full.py::test_fails*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    warnings = [line for line in result.stdout.lines if "could not be written" in line]
    assert len(warnings) == 1, result.stdout.str()
    assert "outcomes.json (No space left on device)" in warnings[0]
    assert "report.html (No space left on device)" in warnings[0]
    assert "modelviz.jsonl (No space left on device)" in warnings[0]

    (run,) = _runs(base)
    assert not (run / "outcomes.json").exists(), "not written is right; half-written is not"
    assert not (run / "report.html").exists()
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")], "no temporary file is left behind"
    (records,) = run.rglob("modelviz.jsonl")
    texts = [json.loads(line)["text"] for line in records.read_text().splitlines()]
    assert texts == ["written while there was room"]
    assert not (run / ".in-progress").exists(), "the run is marked finished"

    # With room again, the report of the folder as it is can be made: the results were not lost.
    (small_tmpfs / "filler").unlink()
    from pytest_modelviz.report.html import write_report

    page = write_report(run).read_text(encoding="utf-8")
    assert "outcomes.json is missing" in page and "written while there was room" in page


TENSORBOARD_FILLS_THE_DISK = """
import numpy as np
from tensorboard.backend.event_processing import event_accumulator as ea

def test_logs_more_than_fits(tb_writer, modelviz_artifacts):
    rng = np.random.default_rng(0)
    for step in range(8):  # about 200 KiB of PNG each: the disk fills part way
        tb_writer.add_image("noise", rng.random((3, 256, 256)), step)
        tb_writer.add_scalar("step", float(step), step)
    tb_writer.flush()
    acc = ea.EventAccumulator(str(modelviz_artifacts.tensorboard_dir), size_guidance={ea.IMAGES: 0})
    acc.Reload()
    kept = [e.step for e in acc.Images("noise")]
    assert 0 < len(kept) < 8 and kept == list(range(len(kept))), kept

def test_fails():
    assert 1 == 2, "a real failure that must be reported"
"""


def test_a_full_disk_under_tensorboard_events_keeps_what_fit_and_names_the_file(
    pytester: pytest.Pytester, small_tmpfs: Path
) -> None:
    """The test's writer writes where the test logs: a full disk is neither an error inside the
    test nor lost in a writer thread; it is named with the run's other unwritten files."""
    pytester.makepyfile(test_full=TENSORBOARD_FILLS_THE_DISK)
    base = small_tmpfs / "runs"
    result = pytester.runpytest_subprocess("--modelviz", f"--modelviz-dir={base}", "-p", "no:cacheprovider",
                                           "-W", "error::pytest.PytestUnhandledThreadExceptionWarning")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: a real failure that must be reported*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    (warning,) = [line for line in result.stdout.lines if "could not be written" in line]
    assert "/tensorboard/events.out.tfevents." in warning and "(No space left on device)" in warning, warning


# ---------------------------------------------------------------- a folder that cannot be made


def test_modelviz_dir_that_is_a_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    (pytester.path / "taken").write_text("a file, not a folder")
    result = pytester.runpytest_subprocess("--modelviz", "--modelviz-dir=taken")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--modelviz-dir */taken: cannot create a run folder there: File exists*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert (pytester.path / "taken").read_text() == "a file, not a folder"


def test_modelviz_dir_on_a_read_only_file_system_is_a_usage_error(
    pytester: pytest.Pytester, read_only_fs: Path
) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest_subprocess("--modelviz", f"--modelviz-dir={read_only_fs / 'runs'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot create a run folder there: Read-only file system*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_modelviz_dir_without_permission_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """A folder the user may not write to. Root ignores permissions, so as root the session runs
    without the capabilities that let it (``setpriv``), like an ordinary user."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root ignores folder permissions, and setpriv is not here to drop that")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    pytester.makepyfile("def test_ok():\n    pass\n")
    locked = pytester.path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "pytest", "--modelviz", "--modelviz-dir=locked/runs",
             "-p", "no:cacheprovider"],
            cwd=pytester.path, capture_output=True, text=True,
        )
    finally:
        locked.chmod(0o755)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "--modelviz-dir" in done.stderr
    assert "cannot create a run folder there: Permission denied" in done.stderr
    assert "INTERNALERROR" not in done.stdout + done.stderr
    assert list(locked.iterdir()) == []


# ---------------------------------------------------------------- latest


def _restored_run(folder: Path) -> None:
    """What a CI cache makes of ``latest``: a plain copy of a run folder."""
    (folder / "tests_test_a.py--test_x-0123456789").mkdir(parents=True)
    (folder / "tests_test_a.py--test_x-0123456789" / "modelviz.jsonl").write_text('{"kind": "note"}\n')
    (folder / "outcomes.json").write_text('{"tests": []}')
    (folder / "report.html").write_text("<html>an old run</html>")


def test_a_latest_folder_restored_from_a_cache_is_moved_aside(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    latest = pytester.path / ".modelviz" / "latest"
    _restored_run(latest)
    result = pytester.runpytest("--modelviz")
    result.assert_outcomes(passed=1)
    run = run_dir_of(pytester)  # latest is a link again, to this run
    assert (run / "outcomes.json").is_file() and "test_ok" in (run / "outcomes.json").read_text()
    (moved,) = [p for p in _runs(pytester.path / ".modelviz") if p.name.endswith("-restored")]
    assert (moved / "report.html").read_text() == "<html>an old run</html>", "the old run is kept"
    result.stdout.fnmatch_lines(
        [f"modelviz: *latest was a folder holding an earlier run*moved to {moved.name}*"])
    assert not (pytester.path / ".modelviz" / "latest.txt").exists()


@pytest.mark.parametrize("what", ["folder", "file"])
def test_a_latest_that_is_not_ours_is_left_alone_and_said_so(pytester: pytest.Pytester, what: str) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    latest = pytester.path / ".modelviz" / "latest"
    if what == "folder":
        latest.mkdir(parents=True)
        (latest / "my-notes.txt").write_text("mine")
    else:
        latest.parent.mkdir()
        latest.write_text("mine")
    result = pytester.runpytest("--modelviz")
    result.assert_outcomes(passed=1)
    mine = latest / "my-notes.txt" if what == "folder" else latest
    assert mine.read_text() == "mine"
    (run,) = _runs(pytester.path / ".modelviz")
    assert (pytester.path / ".modelviz" / "latest.txt").read_text().strip() == run.name
    result.stdout.fnmatch_lines(
        [f"modelviz: *latest is a {what} that is not*left alone*latest.txt names the newest run*"])


# ---------------------------------------------------------------- .gitignore


def test_the_runs_folder_is_ignored_by_git(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "def test_ok(modelviz_artifacts):\n    modelviz_artifacts.path('a.txt').write_text('a')\n")
    subprocess.run(["git", "init", "-q"], cwd=pytester.path, check=True)
    pytester.runpytest("--modelviz").assert_outcomes(passed=1)
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=pytester.path,
                            capture_output=True, text=True, check=True).stdout
    assert ".modelviz" not in status and "test_the_runs_folder_is_ignored_by_git.py" in status
    assert (pytester.path / ".modelviz" / ".gitignore").read_text().splitlines()[-1] == "*"


def test_no_gitignore_in_a_folder_with_other_files(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    (pytester.path / "out").mkdir()
    (pytester.path / "out" / "notes.txt").write_text("the user's")
    pytester.runpytest("--modelviz", "--modelviz-dir=out").assert_outcomes(passed=1)
    assert not (pytester.path / "out" / ".gitignore").exists()
    (pytester.path / ".modelviz").mkdir()
    (pytester.path / ".modelviz" / ".gitignore").write_text("# the user's own\n")
    pytester.runpytest("--modelviz").assert_outcomes(passed=1)
    assert (pytester.path / ".modelviz" / ".gitignore").read_text() == "# the user's own\n"


# ---------------------------------------------------------------- keeping the last N runs


def test_only_the_newest_runs_are_kept(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    pytester.makeini("[pytest]\nmodelviz_keep_runs = 2\n")
    base = pytester.path / ".modelviz"
    base.mkdir()
    (base / "run-notes").mkdir()  # not named like a run: never ours to delete
    seen = []
    for _ in range(4):
        pytester.runpytest("--modelviz").assert_outcomes(passed=1)
        seen.append(run_dir_of(pytester).name)
    assert [p.name for p in _runs(base) if p.name != "run-notes"] == seen[-2:]
    assert (base / "run-notes").is_dir()


def test_the_default_keeps_five_and_zero_keeps_all(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    for _ in range(7):
        pytester.runpytest("--modelviz").assert_outcomes(passed=1)
    assert len(_runs(pytester.path / ".modelviz")) == 5
    pytester.makeini("[pytest]\nmodelviz_keep_runs = 0\n")
    for _ in range(2):
        pytester.runpytest("--modelviz").assert_outcomes(passed=1)
    assert len(_runs(pytester.path / ".modelviz")) == 7


def test_keep_runs_must_be_a_count(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    pass\n")
    pytester.makeini("[pytest]\nmodelviz_keep_runs = many\n")
    result = pytester.runpytest("--modelviz")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*modelviz_keep_runs*"])


BLOCKS_UNTIL_RELEASED = """
import os, time
from pathlib import Path
import pytest

@pytest.mark.parametrize("i", range(4))
def test_slow(modelviz_artifacts, i):
    modelviz_artifacts.path("before.txt").write_text("written before the other runs")
    Path(os.environ["GATE_DIR"], f"started-{i}").write_text("")
    deadline = time.monotonic() + 120
    while not Path(os.environ["GATE_DIR"], "go").exists():
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.05)
    modelviz_artifacts.path("after.txt").write_text("written after the other runs")
"""


def _wait_for(predicate: Callable[[], object], what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + 120
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stdout.read() if proc.stdout else ''}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["single", "xdist"])
def test_a_run_in_progress_is_never_pruned(
    pytester: pytest.Pytester, tmp_path: Path, workers: list[str]
) -> None:
    """Another session (and its xdist workers) still writing keeps its run, whatever keep_runs says."""
    pytester.makepyfile(test_slow=BLOCKS_UNTIL_RELEASED)
    pytester.makeini("[pytest]\nmodelviz_keep_runs = 1\n")
    gate = tmp_path / "gate"
    gate.mkdir()
    slow = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--modelviz", "-p", "no:cacheprovider", "-q", *workers],
        cwd=pytester.path, env={**os.environ, "GATE_DIR": str(gate)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        started = 2 if workers else 1
        _wait_for(lambda: len(list(gate.glob("started-*"))) >= started, "the slow run's tests started", slow)
        (slow_run,) = _runs(pytester.path / ".modelviz")
        pytester.makepyfile(test_slow="def test_quick():\n    pass\n")  # the next runs are quick ones
        for _ in range(2):
            pytester.runpytest("--modelviz").assert_outcomes(passed=1)
        assert slow_run.is_dir(), "the run in progress was kept"
        assert len(_runs(pytester.path / ".modelviz")) == 2, "the run in progress was kept"
        (gate / "go").write_text("")
        out, _ = slow.communicate(timeout=300)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    assert slow.returncode == 0, out
    assert len(list(slow_run.glob("*/after.txt"))) == 4, "every worker wrote into the kept run"
    outcomes = json.loads((slow_run / "outcomes.json").read_text())
    assert [t["outcome"] for t in outcomes["tests"]] == ["passed"] * 4
    assert (slow_run / "report.html").is_file()
    pytester.runpytest("--modelviz").assert_outcomes(passed=1)
    assert not slow_run.exists(), "once finished, it is an old run like any other"


def test_a_run_whose_session_was_killed_is_pruned(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(test_slow=BLOCKS_UNTIL_RELEASED)
    pytester.makeini("[pytest]\nmodelviz_keep_runs = 1\n")
    gate = tmp_path / "gate"
    gate.mkdir()
    slow = subprocess.Popen([sys.executable, "-m", "pytest", "--modelviz", "-p", "no:cacheprovider", "-q"],
                            cwd=pytester.path, env={**os.environ, "GATE_DIR": str(gate)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: list(gate.glob("started-*")), "the run's first test started", slow)
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait()
    (killed,) = _runs(pytester.path / ".modelviz")
    assert (killed / ".in-progress").exists(), "a killed session leaves its marker, but not its lock"
    pytester.makepyfile(test_slow="def test_quick():\n    pass\n")
    pytester.runpytest("--modelviz").assert_outcomes(passed=1)
    assert not killed.exists()
