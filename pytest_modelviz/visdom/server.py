"""A visdom server in a subprocess, bound to 127.0.0.1 on a free port, for one pytest process.

``python -m visdom.server`` first downloads the web UI's JS/CSS from CDNs (and dies offline), and
``visdom.server.run_server.start_server`` cannot say which port it bound when asked for port 0.
So the child runs ``serve`` below: visdom's own ``Application`` on a socket we bind ourselves, the
port written to a file once it listens. No port is picked first and bound later, so parallel
pytest processes cannot race for one.

The same server serves visdom's web UI from pytest-modelviz's own UI folder when its files are
installed there (``python -m pytest_modelviz.visdom.assets install``); without them the page is
blank and ``VisdomServer.ui_note`` says how to install them.

The server never outlives the process that started it, however that process ends (a finalizer,
SIGTERM, SIGKILL): the child reads the pipe on its stdin, whose other end only the parent holds,
and exits at end-of-file; it also exits when it finds itself with another parent.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.abc
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pytest_modelviz.errors import SinkError, install_hint
from pytest_modelviz.visdom.assets import ui_dir, ui_note

if TYPE_CHECKING:
    from pytest_modelviz.session import ModelvizSession

LOOPBACK = "127.0.0.1"
PORT_FILE = "port"
LOG_FILE = "server.log"
SERVER_DIR = "visdom-server"  # under the run folder: the server's -env_path, one per process
START_DEADLINE_S = 60.0
PARENT_POLL_S = 1.0  # how often the server checks that its parent is still there


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
            if self.process.stdin is not None:
                self.process.stdin.close()  # end-of-file: the server stops by itself
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
           "--port", str(port), "--port-file", str(port_file), "--ui-dir", str(ui_dir()),
           "--exit-with-parent"]
    # Its own session: a Ctrl-C at the terminal reaches pytest, which then stops the server at
    # session end, instead of killing the server under tests that are still running.
    process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + deadline_s
    try:
        note = ui_note()
        bound = _wait_for_port(process, port_file, deadline)
        server = VisdomServer(process, bound, env_path, log_path, log, note)
        _wait_until_answering(server, deadline)
    except BaseException:
        process.kill()
        process.wait()
        if process.stdin is not None:
            process.stdin.close()
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
            f"Is visdom installed ({install_hint('visdom')})? Its output:\n{_tail(log_path)}"
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
    if isinstance(found, VisdomServer):
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


def serve(env_path: Path, port: int, port_file: Path | None, ui_folder: Path | None = None,
          exit_with_parent: bool = False) -> None:
    """Run visdom's server application on ``127.0.0.1:port`` (0: any free port) until killed, or,
    with ``exit_with_parent``, until the process that started it is gone."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    without_torch()

    async def run() -> None:
        from tornado import httpserver, netutil
        from visdom.server.app import Application

        sockets = netutil.bind_sockets(port, address=LOOPBACK)
        bound = sockets[0].getsockname()[1]
        app = Application(port=bound, env_path=str(env_path))
        if ui_folder is not None and ui_folder.is_dir():
            serve_static_from(app, ui_folder)
        server = httpserver.HTTPServer(app, max_buffer_size=1024**3)
        server.add_sockets(sockets)
        print(f"visdom server on http://{LOOPBACK}:{bound} (env_path {env_path})", flush=True)
        print(ui_note(ui_folder) or f"web UI: http://{LOOPBACK}:{bound}/", flush=True)
        if port_file is not None:
            tmp = port_file.with_name(port_file.name + ".tmp")
            tmp.write_text(str(bound), encoding="utf-8")
            os.replace(tmp, port_file)  # atomic: the parent never reads half a number
        parent_gone = asyncio.Event()
        watch = _watch_parent(asyncio.get_running_loop(), parent_gone) if exit_with_parent else None
        await parent_gone.wait()
        del watch
        print("the process that started this server is gone: stopping", flush=True)
        server.stop()

    asyncio.run(run())


class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(
                f"No module named {name!r} (a visdom server does without it)", name=name)
        return None


def without_torch() -> None:
    """Make ``import torch`` fail in this process, as if torch were not installed.

    visdom's package imports torch when it can, for its client's tensor arguments; a server never
    gets tensors, and torch would cost it seconds to start and to exit, and hundreds of MB. (Not
    ``sys.modules["torch"] = None``: libraries such as scipy take any ``torch`` key there for torch.)
    """
    if "torch" not in sys.modules and not any(isinstance(f, _NoTorch) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoTorch())


def serve_static_from(app: Any, folder: Path) -> None:
    """Serve ``app``'s ``/static/`` files from ``folder`` instead of visdom's package folder.

    visdom's ``Application`` fixes its static folder to the package's; tornado's public
    ``add_handlers`` puts this rule ahead of visdom's own, and ``static_url()`` in the page
    versions the files from ``settings["static_path"]``.
    """
    from tornado.web import StaticFileHandler

    base_url = getattr(app, "base_url", "")
    app.settings["static_path"] = str(folder)
    static_route = rf"{re.escape(base_url)}/static/(.*)"
    app.add_handlers(r".*", [(static_route, StaticFileHandler, {"path": str(folder)})])


def _watch_parent(loop: asyncio.AbstractEventLoop, parent_gone: asyncio.Event) -> asyncio.Task[None]:
    """Set ``parent_gone`` when stdin reaches end-of-file (the parent's end of the pipe closed:
    it stopped the server or died) or when this process gets another parent (the pipe's end may
    live on in a process the parent forked)."""
    parent = os.getppid()

    def read_to_eof() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass  # a closed or broken stdin means the same as end-of-file: the parent is gone
        loop.call_soon_threadsafe(parent_gone.set)

    async def poll_parent() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(PARENT_POLL_S)
        parent_gone.set()

    threading.Thread(target=read_to_eof, name="modelviz-visdom-parent-watch", daemon=True).start()
    return loop.create_task(poll_parent())  # the caller keeps it: the loop holds tasks weakly


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a visdom server on 127.0.0.1 only.")
    parser.add_argument("--env-path", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, default=None)
    parser.add_argument("--ui-dir", type=Path, default=None,
                        help="serve /static/ from this UI folder (default: where "
                        "python -m pytest_modelviz.visdom.assets install puts it)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="exit when stdin ends or the parent process is gone")
    args = parser.parse_args(argv)
    serve(args.env_path, args.port, args.port_file, args.ui_dir or ui_dir(), args.exit_with_parent)


if __name__ == "__main__":
    main()
