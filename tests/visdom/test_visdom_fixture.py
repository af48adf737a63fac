"""The ``visdom_client`` fixture as users run it: offline, a server URL, an unreachable URL,
and a server the plugin starts (loopback only, one per xdist worker)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("visdom")

from visdom_testing import *  # noqa: E402,F401,F403  (the test server and its fixtures)
from visdom_testing import ReadEnv  # noqa: E402

from pytest_modelviz.artifacts import read_records  # noqa: E402
from pytest_modelviz.visdom.client import env_name  # noqa: E402
from pytest_modelviz.visdom.sink import window_id  # noqa: E402

USER_TEST = """
import pytest
from pytest_modelviz.visdom.sink import VisdomSink

def test_logs(visdom_client):
    sink = VisdomSink(visdom_client)
    for step in range(3):
        sink.scalars(step, {"train/loss": 3.0 - step})
    sink.text("note", "hello")
    sink.close()
"""


def visdom_records(run_dir: Path) -> list[dict[str, Any]]:
    return [r for d in sorted(run_dir.iterdir()) if d.is_dir()
            for r in read_records(d) if r["kind"] == "visdom"]


def only_run_dir(pytester: pytest.Pytester) -> Path:
    latest = pytester.path / ".modelviz" / "latest"
    assert latest.is_symlink()
    return latest.resolve()


def saved_env(run_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    folder = next(d for d in run_dir.iterdir() if d.is_dir() and (d / record["json"]).is_file())
    return json.loads((folder / record["json"]).read_text(encoding="utf-8"))


def test_offline_by_default_keeps_the_log_and_a_rebuilt_env(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    no_fallback = "error::pytest_modelviz.visdom.client.VisdomFallbackWarning"
    pytester.runpytest("--modelviz", "-W", no_fallback).assert_outcomes(passed=1)
    run_dir = only_run_dir(pytester)
    [record] = visdom_records(run_dir)
    assert record["env"] == env_name("test_user.py::test_logs")
    assert record["server"] is None
    assert record["log"] == "visdom/events.log" and record["json"] == f"visdom/{record['env']}.json"
    assert record["replay"].endswith("visdom/events.log --server http://127.0.0.1:8097")
    env = saved_env(run_dir, record)
    loss = env["jsons"][window_id("line", "train/loss")]["content"]["data"][0]
    assert (loss["x"], loss["y"]) == ([0, 1, 2], [3.0, 2.0, 1.0])
    assert record["windows"] == 2


def test_without_modelviz_the_client_still_works_and_nothing_is_kept(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user=USER_TEST + """
def test_env_is_named_after_the_test(visdom_client, modelviz_artifacts):
    assert visdom_client.env == modelviz_artifacts.root.name
    assert visdom_client.offline
"""
    )
    pytester.runpytest().assert_outcomes(passed=2)
    assert not (pytester.path / ".modelviz").exists()


def test_a_url_sends_to_that_server_and_saves_the_env(
    pytester: pytest.Pytester, visdom_url: str, read_env: ReadEnv
) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    for _ in range(2):  # a second run starts the env afresh instead of appending to old curves
        pytester.runpytest("--modelviz", f"--modelviz-visdom={visdom_url}").assert_outcomes(passed=1)
    env = env_name("test_user.py::test_logs")
    served = read_env(env)
    assert served[window_id("line", "train/loss")]["content"]["data"][0]["y"] == [3.0, 2.0, 1.0]
    run_dir = only_run_dir(pytester)
    [record] = visdom_records(run_dir)
    assert record["server"] == visdom_url
    assert record["replay"].endswith(f"--server {visdom_url}")
    assert saved_env(run_dir, record)["jsons"] == served
    test_dir = next(d for d in run_dir.iterdir() if d.is_dir())
    assert (test_dir / record["log"]).stat().st_size > 0


def test_an_unreachable_server_warns_once_and_logs_offline(
    pytester: pytest.Pytester, closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest("--modelviz", f"--modelviz-visdom={url}", "-rw")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines([f"*VisdomFallbackWarning: visdom server {url} is unreachable*"])
    run_dir = only_run_dir(pytester)
    [record] = visdom_records(run_dir)
    assert record["server"] is None
    assert record["replay"].endswith(f"--server {url}")
    assert window_id("line", "train/loss") in saved_env(run_dir, record)["jsons"]


SERVER_MODE_TEST = """
import json, os
import psutil
from pytest_modelviz.visdom.sink import VisdomSink

def test_logs(visdom_client, modelviz_artifacts):
    sink = VisdomSink(visdom_client)
    sink.scalars(0, {"loss": 1.0})
    sink.close()
    served = json.loads(visdom_client.get_window_data(None, visdom_client.env))
    assert len(served) == 1
    listening = {c.laddr.ip for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == visdom_client.port}
    with open(os.environ["SERVERS_FILE"], "a") as fh:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        fh.write(f"{visdom_client.port} {worker} {','.join(sorted(listening))}\\n")
"""


@pytest.fixture
def servers_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[tuple[int, str, str]]]:
    """What each inner test saw: (server port, xdist worker, addresses the port listens on)."""
    pytest.importorskip("psutil")
    path = tmp_path / "servers.txt"
    monkeypatch.setenv("SERVERS_FILE", str(path))

    def read() -> list[tuple[int, str, str]]:
        rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
        return [(int(port), worker, addresses) for port, worker, addresses in rows]

    return read


def test_server_mode_starts_a_loopback_server_for_the_session(
    pytester: pytest.Pytester, servers_seen: Callable[[], list[tuple[int, str, str]]]
) -> None:
    pytester.makepyfile(test_user=SERVER_MODE_TEST)
    result = pytester.runpytest("--modelviz", "--modelviz-visdom=server")
    assert result.ret == 0, result.stdout.str()[-4000:]
    [(port, worker, addresses)] = servers_seen()
    assert (worker, addresses) == ("main", "127.0.0.1")  # loopback only
    with pytest.raises(OSError):  # stopped at session end
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    run_dir = only_run_dir(pytester)
    assert (run_dir / "visdom-server" / "main" / "server.log").is_file()
    [record] = visdom_records(run_dir)
    assert record["server"] == f"http://127.0.0.1:{port}"
    assert record["replay"].endswith("--server http://127.0.0.1:8097")  # that server is gone
    assert len(saved_env(run_dir, record)["jsons"]) == 1


@pytest.mark.slow
def test_server_mode_under_xdist_gives_each_worker_its_own_port(
    pytester: pytest.Pytester, servers_seen: Callable[[], list[tuple[int, str, str]]]
) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(
        test_a=SERVER_MODE_TEST, test_b=SERVER_MODE_TEST, test_c=SERVER_MODE_TEST, test_d=SERVER_MODE_TEST
    )
    result = pytester.runpytest_subprocess("--modelviz", "--modelviz-visdom=server", "-n", "2", "-p", "xdist")
    assert result.ret == 0, result.stdout.str()[-4000:]
    result.assert_outcomes(passed=4)
    seen = servers_seen()
    assert len(seen) == 4
    assert {addresses for _, _, addresses in seen} == {"127.0.0.1"}
    port_of = {worker: {port for port, w, _ in seen if w == worker} for _, worker, _ in seen}
    assert len(port_of) == 2  # xdist hands each of the two workers some of the four tests
    assert all(len(ports) == 1 for ports in port_of.values()), port_of  # one server per worker
    assert len({min(p) for p in port_of.values()}) == 2  # and no two workers share a port
    run_dir = only_run_dir(pytester)
    assert {d.name for d in (run_dir / "visdom-server").iterdir()} == set(port_of)
    assert len(visdom_records(run_dir)) == 4


def test_recorded_replay_command_works_from_the_run_folder(
    pytester: pytest.Pytester, visdom_url: str, read_env: ReadEnv
) -> None:
    import shlex
    import subprocess
    import sys

    pytester.makepyfile(test_user=USER_TEST)
    pytester.runpytest("--modelviz").assert_outcomes(passed=1)
    run_dir = only_run_dir(pytester)
    [record] = visdom_records(run_dir)
    argv = shlex.split(record["replay"])
    assert argv[:3] == ["python", "-m", "pytest_modelviz.visdom.replay"]
    assert not Path(argv[3]).is_absolute(), "the command must survive moving the run folder"
    # The user's shell finds their own python; here, this interpreter. Into the test server.
    argv = [sys.executable, *argv[1:argv.index("--server")], "--server", visdom_url]
    moved = pytester.path / "uploaded-artifact"
    run_dir.rename(moved)
    done = subprocess.run(argv, cwd=moved, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    served = read_env(record["env"])
    assert served[window_id("line", "train/loss")]["content"]["data"][0]["y"] == [3.0, 2.0, 1.0]


# ---------------------------------------------------------------- a server that never answers


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A loopback server that accepts every connection and never answers: its URL and the
    connections it accepted so far (held open, never read)."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)  # so the accept loop notices the stop event
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_forever() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            accepted.append(conn)

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(10)
        for conn in accepted:
            conn.close()
        listener.close()


def test_a_server_that_never_answers_is_given_up_once_for_the_whole_run(
    pytester: pytest.Pytester, silent_server: tuple[str, list[socket.socket]]
) -> None:
    url, accepted = silent_server
    pytester.makepyfile(test_a=USER_TEST, test_b=USER_TEST, test_c=USER_TEST)
    # The timeout only keeps a regression from hanging the suite; the connection count is the check.
    result = pytester.runpytest_subprocess("--modelviz", f"--modelviz-visdom={url}", "-rw", timeout=600)
    result.assert_outcomes(passed=3, warnings=1)
    result.stdout.fnmatch_lines([f"*VisdomFallbackWarning: visdom server {url} is unreachable*"])
    # The first test waited a short first-reply timeout; the others never contacted the server.
    assert len(accepted) == 1, f"{len(accepted)} connections: later tests waited for the server again"
    records = visdom_records(only_run_dir(pytester))
    assert len(records) == 3
    assert {r["server"] for r in records} == {None}
    assert {r["replay"].rsplit(" ", 1)[-1] for r in records} == {url}  # the logs replay there later
    assert all(r["windows"] == 2 for r in records)  # every event kept in the offline logs


# ---------------------------------------------------------------- without the [visdom] extra

WITHOUT_VISDOM = """
import sys

# What an install without the [visdom] extra looks like to Python: no importable visdom.
sys.modules["visdom"] = None
"""


@pytest.mark.parametrize("mode", ["offline", "server"])
def test_without_the_visdom_extra_the_fixture_names_the_extra_to_install(
    pytester: pytest.Pytester, mode: str
) -> None:
    pytester.makeconftest(WITHOUT_VISDOM)
    pytester.makepyfile(test_user="def test_logs(visdom_client):\n    visdom_client.text('never runs')\n")
    # In a subprocess: this process has visdom imported already.
    result = pytester.runpytest_subprocess(f"--modelviz-visdom={mode}")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    message = ("the visdom_client fixture needs visdom, which is not installed: "
               "pip install 'pytest-modelviz[visdom]'")
    result.stdout.fnmatch_lines([message])  # the whole report of the error: this one line
    assert "ModuleNotFoundError" not in out and "Traceback" not in out and "halted" not in out, out


# ---------------------------------------------------------------- an env that cannot be rebuilt


def test_an_env_that_cannot_be_rebuilt_warns_and_keeps_the_log(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="""
import json

def test_logs(visdom_client, modelviz_artifacts):
    visdom_client.text("kept")
    # An event visdom's server functions cannot turn into a window (no "data").
    with open(modelviz_artifacts.visdom_dir / "events.log", "a", encoding="utf-8") as log:
        log.write(json.dumps(["events", {"win": "broken", "eid": visdom_client.env}]) + "\\n")
"""
    )
    result = pytester.runpytest("--modelviz", "-rw")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*VisdomEnvWarning: no env JSON for test_user.py::test_logs: visdom * could "
                                 "not turn the events of *events.log into env *KeyError*"])
    [record] = visdom_records(only_run_dir(pytester))
    assert record["json"] is None and record["windows"] is None
    assert record["log"] == "visdom/events.log"
