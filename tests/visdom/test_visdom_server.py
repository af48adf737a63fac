"""The plugin's own visdom server process: loopback only, a clear error when it cannot start,
and the replay CLI's ``--serve`` that starts one and stops it on Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import psutil

pytest.importorskip("visdom")

from visdom_testing import *  # noqa: E402,F401,F403  (the test server and its fixtures)

from pytest_modelviz.errors import SinkError  # noqa: E402
from pytest_modelviz.visdom.client import open_client  # noqa: E402
from pytest_modelviz.visdom.server import start_server  # noqa: E402
from pytest_modelviz.visdom.sink import VisdomSink, window_id  # noqa: E402


def test_start_server_binds_loopback_only_and_stops(tmp_path: Path, client_for: Callable[..., Any]) -> None:
    psutil = pytest.importorskip("psutil")
    server = start_server(tmp_path / "env")
    try:
        listening = {c.laddr.ip for c in psutil.Process(server.process.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {"127.0.0.1"}
        assert server.url == f"http://127.0.0.1:{server.port}"
        client = client_for(server.url, "e")
        sink = VisdomSink(client, flush_secs=0)  # every call sent when made
        sink.scalars(0, {"loss": 1.0})
        sink.close()
        client.save(["e"])  # the server keeps its envs in the folder it was given
        assert window_id("line", "loss") in json.loads((tmp_path / "env" / "e.json").read_text())["jsons"]
    finally:
        server.stop()
    assert server.process.returncode is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_a_server_that_cannot_start_raises_with_its_output(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        in_use = r"(?s)exited with code \d+ before it started.*Address already in use"
        with pytest.raises(SinkError, match=in_use):
            start_server(tmp_path / "env", port=taken.getsockname()[1])


@pytest.mark.slow
def test_replay_serve_starts_a_server_replays_and_stops_on_ctrl_c(
    tmp_path: Path, client_for: Callable[..., Any], poll: Callable[..., Any]
) -> None:
    log = tmp_path / "events.log"
    sink = VisdomSink(open_client(None, "served_env", log))
    sink.scalars(0, {"loss": 2.0})
    sink.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out.txt"
    with out.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest_modelviz.visdom.replay", str(log), "--serve", "--port", str(port),
             "--env-path", str(tmp_path / "served")],
            stdout=fh, stderr=subprocess.STDOUT,
        )
    try:
        poll(lambda: "Ctrl-C stops" in out.read_text() or proc.poll() is not None, 60, "the replay server")
        assert proc.poll() is None, out.read_text()
        served = json.loads(client_for(f"http://127.0.0.1:{port}").get_window_data(None, "served_env"))
        assert served[window_id("line", "loss")]["content"]["data"][0]["y"] == [2.0]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(OSError):  # the server it started went with it
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_server_that_dies_mid_test_turns_the_client_offline_losing_nothing(tmp_path: Path) -> None:
    from pytest_modelviz.visdom.client import VisdomFallbackWarning, parse_url
    from pytest_modelviz.visdom.replay import read_log

    server = start_server(tmp_path / "env")
    try:
        client = open_client(parse_url(server.url), "e", tmp_path / "events.log")
        sink = VisdomSink(client, flush_secs=0)  # every call sent when made
        sink.scalars(0, {"loss": 1.0})
    finally:
        server.stop()
    with pytest.warns(VisdomFallbackWarning, match=f"visdom server {server.url} is unreachable") as caught:
        sink.scalars(1, {"loss": 0.5})
        sink.scalars(2, {"loss": 0.25})
    assert len(caught) == 1 and client.offline
    assert [m["data"][0]["y"] for _, m in read_log(tmp_path / "events.log")] == [[1.0], [0.5], [0.25]]


# ---------------------------------------------------------------- the server dies with the session

BLOCKING_TEST = """
import threading
from pathlib import Path

def test_waits_to_be_stopped(visdom_client):
    Path("server-port").write_text(str(visdom_client.port))
    threading.Event().wait(600)
"""


def _gone(process: psutil.Process) -> bool:
    import psutil

    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT], ids=lambda s: s.name)
def test_the_session_server_dies_with_pytest_however_pytest_ends(
    pytester: pytest.Pytester, poll: Callable[..., Any], sig: signal.Signals
) -> None:
    psutil = pytest.importorskip("psutil")
    pytester.makepyfile(test_blocking=BLOCKING_TEST)
    ready = pytester.path / "server-port"
    out = pytester.path / "pytest-output.txt"
    with out.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--basetemp={pytester.path / 'tmp'}",
             "--modelviz-visdom=server", "test_blocking.py"],
            cwd=pytester.path, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
        )
    servers: list = []
    try:
        poll(lambda: ready.is_file() or proc.poll() is not None, 120,
             "the inner test to get its visdom client")
        assert proc.poll() is None, out.read_text()
        port = int(ready.read_text())
        servers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "pytest_modelviz.visdom.server" in p.cmdline()]
        assert len(servers) == 1, [p.cmdline() for p in servers]
        listening = {c.laddr.port for c in servers[0].net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN}
        assert port in listening
        os.kill(proc.pid, sig)
        proc.wait(120)
        poll(lambda: _gone(servers[0]), 60,
             f"the visdom server (pid {servers[0].pid}) to exit after pytest got {sig.name}")
    finally:
        for process in (proc, *servers):
            with contextlib.suppress(Exception):
                process.kill()
        proc.wait()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
