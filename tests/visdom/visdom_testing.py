"""A real visdom server for the session, started the way visdom itself starts one
(``visdom.server.run_server.main``, loopback only), and fixtures to read windows back.

Test modules import the fixtures they use from here (``from visdom_testing import *``). This is
not a ``conftest.py`` because a second module named ``conftest`` would replace the suite's root
one in ``sys.modules`` and break ``from conftest import ...`` there. An imported fixture is
registered once per importing module, so the server itself is cached for the process.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["visdom_url", "vis", "env", "env_client", "read_window", "read_env", "closed_port", "client_for",
           "poll"]
# Plain helpers (not fixtures), imported by name: require_ui, open_in_chromium.

START_DEADLINE_S = 60.0
# visdom's CLI without the CDN download that `python -m visdom.server` does first, and without
# torch, which visdom imports for its client when it can and a server never needs.
_SERVE = ("from pytest_modelviz.visdom.server import without_torch; without_torch(); "
          "from visdom.server.run_server import main; main()")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], deadline_s: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(0.05)


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.post(f"{url}/win_exists", data='{"win": "", "eid": "main"}', timeout=2).ok
    except requests.RequestException:
        return False


_STARTED: list[tuple[str, subprocess.Popen[bytes]]] = []  # this process's one test server


@pytest.fixture(scope="session")
def visdom_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("visdom")
    if _STARTED and _STARTED[0][1].poll() is None:
        yield _STARTED[0][0]
        return
    _STARTED.clear()
    env_path = tmp_path_factory.mktemp("visdom-env")
    log_path = env_path.parent / f"{env_path.name}.log"
    for _attempt in range(3):  # the free port may be taken between picking and binding it
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", _SERVE, "-port", str(port), "-bind_local", "-env_path", str(env_path),
                 "-logging_level", "WARNING"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            # Polled within this attempt, so the lambda sees this attempt's proc and url.
            wait_for(lambda: proc.poll() is not None or _answers(url),  # noqa: B023
                     START_DEADLINE_S, f"visdom at {url}")
            if proc.poll() is None:
                break
        except AssertionError:
            proc.kill()
            proc.wait()
            output = log_path.read_text(errors="replace")
            raise AssertionError(f"visdom server did not start:\n{output}") from None
    else:
        raise AssertionError(f"visdom server kept failing to start:\n{log_path.read_text(errors='replace')}")
    _STARTED.append((url, proc))
    try:
        yield url
    finally:
        _STARTED.clear()  # the module that started it stops it at session end
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def plain_client(url: str, env: str = "main") -> Any:
    from visdom import Visdom

    host, port = url.rsplit(":", 1)
    with warnings.catch_warnings():  # visdom's own logger.warn call, without the incoming socket
        warnings.filterwarnings("ignore", "The 'warn' method is deprecated", DeprecationWarning)
        return Visdom(server=host, port=int(port), env=env, raise_exceptions=True, use_incoming_socket=False)


@pytest.fixture
def vis(visdom_url: str) -> Any:
    """A plain visdom client on the test server."""
    return plain_client(visdom_url)


@pytest.fixture
def env_client(visdom_url: str, env: str) -> Any:
    """A plain visdom client whose default env is this test's, emptied first."""
    client = plain_client(visdom_url, env)
    client.close(win=None, env=env)
    return client


@pytest.fixture
def env(request: pytest.FixtureRequest) -> str:
    """An env name of this test's own on the shared server."""
    import re

    return "t_" + re.sub(r"[^A-Za-z0-9]+", "_", request.node.name)[:80]


def window(vis: Any, win: str, env: str) -> dict[str, Any]:
    import json

    return json.loads(vis.get_window_data(win, env))


def windows(vis: Any, env: str) -> dict[str, Any]:
    import json

    return json.loads(vis.get_window_data(None, env))


ReadWindow = Callable[[str, str], dict[str, Any]]  # read_window(win, env): the window as the server holds it
ReadEnv = Callable[[str], dict[str, Any]]  # read_env(env): all windows of an env


@pytest.fixture
def read_window(vis: Any) -> ReadWindow:
    return lambda win, env: window(vis, win, env)


@pytest.fixture
def read_env(vis: Any) -> ReadEnv:
    """All windows of an env, as the server holds them."""
    return lambda env: windows(vis, env)


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    return free_port()


@pytest.fixture
def client_for() -> Callable[..., Any]:
    """``client_for(url, env="main")``: a plain visdom client on any server."""
    return plain_client


@pytest.fixture
def poll() -> Callable[..., Any]:
    """``poll(predicate, deadline_s, what)``: wait for a condition without sleeping blindly."""
    return wait_for


# ---------------------------------------------------------------- the web UI in a real browser

SKIP_BROWSER_ENV = "MODELVIZ_SKIP_BROWSER"


def require_ui(static_dir: Path | None = None) -> None:
    """Fail (never skip silently) when visdom's web UI files are not installed, saying how to
    install them; skip only when browser checks were turned off on purpose."""
    import os

    from pytest_modelviz.visdom.assets import INSTALL_COMMAND, ui_problems

    problems = ui_problems(static_dir)
    if not problems:
        return
    if os.environ.get(SKIP_BROWSER_ENV) == "1":
        pytest.skip(f"{SKIP_BROWSER_ENV}=1: visdom web UI checks skipped")
    pytest.fail(
        f"visdom's web UI is not installed ({'; '.join(problems[:3])}). Install it with "
        f"`{INSTALL_COMMAND}` (needs npm), or set {SKIP_BROWSER_ENV}=1 to skip the browser checks.",
        pytrace=False,
    )


def open_in_chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Load ``url`` in headless Chromium with a virtual-time budget, so the page's scripts and
    its websocket have run before ``--dump-dom`` or ``--screenshot`` takes the result."""
    from report.headless_chromium import find_chromium

    cmd = [
        find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args, url,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"chromium failed on {url}:\n{result.stderr[-3000:]}"
    return result
