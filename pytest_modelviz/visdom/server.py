"""A visdom server in a subprocess, bound to 127.0.0.1 on a free port, for one pytest process.

``python -m visdom.server`` first downloads the web UI's JS/CSS from CDNs (and dies offline), and
``visdom.server.run_server.start_server`` cannot say which port it bound when asked for port 0.
So the child runs ``serve`` below: visdom's own ``Application`` on a socket we bind ourselves, the
port written to a file once it listens. No port is picked first and bound later, so parallel
pytest processes cannot race for one.

The same server serves visdom's web UI when its JS/CSS files are installed
(``python -m pytest_modelviz.visdom.assets install``); without them the page is blank and
``VisdomServer.ui_note`` says how to install them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Sequence

from pytest_modelviz.errors import SinkError
from pytest_modelviz.visdom.assets import ui_note

if TYPE_CHECKING:
    from pytest_modelviz.session import ModelvizSession

LOOPBACK = "127.0.0.1"
PORT_FILE = "port"
LOG_FILE = "server.log"
SERVER_DIR = "visdom-server"  # under the run folder: the server's -env_path, one per process
START_DEADLINE_S = 60.0


class VisdomUIWarning(UserWarning):
    """The server runs and takes data, but its web page will not load (files to install)."""


@dataclass
class VisdomServer:
    process: subprocess.Popen[bytes]
    port: int
    env_path: Path
    log_path: Path
    _log: IO[bytes]
    ui_note: str | None = None  # why the web UI will not load and how to fix it; None: it will

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout)
        finally:
            self._log.close()


def start_server(env_path: Path, *, port: int = 0, deadline_s: float = START_DEADLINE_S) -> VisdomServer:
    """Start a loopback visdom server keeping its envs in ``env_path``; return once it answers.

    Raises ``SinkError`` with the tail of the server's output when it exits or stays silent
    past the deadline.
    """
    env_path = Path(env_path).resolve()
    env_path.mkdir(parents=True, exist_ok=True)
    port_file = env_path / PORT_FILE
    port_file.unlink(missing_ok=True)
    log_path = env_path / LOG_FILE
    # Output goes to a file, not a pipe: a pipe nobody drains would block the server.
    log = log_path.open("ab")
    cmd = [sys.executable, "-m", "pytest_modelviz.visdom.server", "--env-path", str(env_path),
           "--port", str(port), "--port-file", str(port_file)]
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + deadline_s
    try:
        note = ui_note()
        bound = _wait_for_port(process, port_file, deadline)
        server = VisdomServer(process, bound, env_path, log_path, log, note)
        _wait_until_answering(server, deadline)
    except BaseException:
        process.kill()
        process.wait()
        log.close()
        raise
    return server


def _wait_for_port(process: subprocess.Popen[bytes], port_file: Path, deadline: float) -> int:
    while True:
        if port_file.is_file():
            return int(port_file.read_text(encoding="utf-8"))
        _check_alive(process, port_file.parent / LOG_FILE, deadline, "to bind a port")
        time.sleep(0.05)  # polling step, bounded by the deadline


def _wait_until_answering(server: VisdomServer, deadline: float) -> None:
    import requests

    while True:
        try:
            # The endpoint visdom's own client probes for a connection; answers "false".
            reply = requests.post(f"{server.url}/win_exists", data='{"win": "", "eid": "main"}', timeout=2)
            if reply.ok:
                return
        except requests.RequestException:
            pass  # not accepting yet: poll again until the deadline
        _check_alive(server.process, server.log_path, deadline, f"to answer on {server.url}")
        time.sleep(0.05)


def _check_alive(process: subprocess.Popen[bytes], log_path: Path, deadline: float, waiting_for: str) -> None:
    code = process.poll()
    if code is not None:
        raise SinkError(
            f"the visdom server exited with code {code} before it started (waiting {waiting_for}). "
            f"Is visdom installed (pip install 'pytest-modelviz[visdom]')? Its output:\n{_tail(log_path)}"
        )
    if time.monotonic() > deadline:
        raise SinkError(
            f"the visdom server did not start in {START_DEADLINE_S:.0f} s (waiting {waiting_for}). "
            f"Its output:\n{_tail(log_path)}"
        )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no output: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


# ---------------------------------------------------------------- one server per pytest process

_SERVER_KEY = "visdom_server"  # in ModelvizSession.resources: the server, or why it did not start


def session_server(session: ModelvizSession) -> VisdomServer:
    """This process's server for ``--modelviz-visdom=server``, started on first use.

    Each xdist worker starts its own (a free port each), so the controller never needs to hand
    out a URL and a process whose tests never ask for visdom starts nothing. A server that failed
    to start is not retried: every later test gets the same error.
    """
    found = session.resources.get(_SERVER_KEY)
    if isinstance(found, SinkError):
        raise found
    if found is not None:
        return found
    try:
        server = start_server(_env_path_for(session))
    except SinkError as exc:
        session.resources[_SERVER_KEY] = exc
        raise
    session.resources[_SERVER_KEY] = server
    if server.ui_note is not None:
        # Once per server, not per test: the data API works, only the page a person opens does not.
        warnings.warn(VisdomUIWarning(f"{server.url}: {server.ui_note}"), stacklevel=2)

    def stop() -> None:
        session.resources.pop(_SERVER_KEY, None)
        server.stop()

    session.add_finalizer(stop)
    return server


def _env_path_for(session: ModelvizSession) -> Path:
    root = session.run_dir or session.scratch_dir
    if root is None:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="modelviz-visdom-"))
    return root / SERVER_DIR / os.environ.get("PYTEST_XDIST_WORKER", "main")


# ---------------------------------------------------------------- the child process


def serve(env_path: Path, port: int, port_file: Path | None) -> None:
    """Run visdom's server application on ``127.0.0.1:port`` (0: any free port) until killed."""
    import asyncio
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def run() -> None:
        from tornado import httpserver, netutil
        from visdom.server.app import Application

        sockets = netutil.bind_sockets(port, address=LOOPBACK)
        bound = sockets[0].getsockname()[1]
        app = Application(port=bound, env_path=str(env_path))
        server = httpserver.HTTPServer(app, max_buffer_size=1024**3)
        server.add_sockets(sockets)
        print(f"visdom server on http://{LOOPBACK}:{bound} (env_path {env_path})", flush=True)
        print(ui_note() or f"web UI: http://{LOOPBACK}:{bound}/", flush=True)
        if port_file is not None:
            tmp = port_file.with_name(port_file.name + ".tmp")
            tmp.write_text(str(bound), encoding="utf-8")
            os.replace(tmp, port_file)  # atomic: the parent never reads half a number
        await asyncio.Event().wait()

    asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a visdom server on 127.0.0.1 only.")
    parser.add_argument("--env-path", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, default=None)
    args = parser.parse_args(argv)
    serve(args.env_path, args.port, args.port_file)


if __name__ == "__main__":
    main()
