"""The ``visdom_client`` fixture's body: pick the server for the mode, open the test's client,
and at teardown keep the env as JSON next to the log and record both for the run report.

A server that could not be reached is remembered for the rest of the run: later tests log
offline from the start instead of each waiting for it again.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_modelviz.artifacts import ArtifactDir
from pytest_modelviz.errors import SinkError
from pytest_modelviz.records import VisdomRecord
from pytest_modelviz.visdom.client import ServerAddress, env_name, open_client, parse_url
from pytest_modelviz.visdom.envfile import VisdomEnvWarning, fetch_env, rebuild_env, write_env
from pytest_modelviz.visdom.replay import replay_command

if TYPE_CHECKING:
    from pytest_modelviz.session import ModelvizSession

LOG_FILE = "events.log"
_UNREACHABLE_KEY = "visdom_unreachable"  # in ModelvizSession.resources: server URLs given up this run


def server_address(session: ModelvizSession) -> ServerAddress | None:
    """None in offline mode; this process's own server in server mode; else the given URL."""
    mode = session.settings.visdom
    if mode == "offline":
        return None
    if mode == "server":
        from pytest_modelviz.visdom.server import session_server

        return parse_url(session_server(session).url)
    return parse_url(mode)


def visdom_client_for_test(
    request: pytest.FixtureRequest, session: ModelvizSession, artifacts: ArtifactDir
) -> Generator[Any, None, None]:
    error: str | None
    try:
        address = server_address(session)
    except SinkError as exc:  # the server of --modelviz-visdom=server did not start
        error = str(exc)
    else:
        error = None
    if error is not None:
        pytest.fail(error, pytrace=False)  # the reason and its output, not a traceback
    env = env_name(artifacts.nodeid)
    log_path = artifacts.visdom_dir / LOG_FILE
    given_up: set[str] = session.resources.setdefault(_UNREACHABLE_KEY, set())
    reachable = address if address is not None and address.url not in given_up else None
    client = open_client(reachable, env, log_path)
    # A server this run started is gone after the run: its logs replay into a default one.
    replay_to = address.url if address is not None and session.settings.visdom != "server" else None
    try:
        yield client
    finally:
        if address is not None and client.fell_back:
            given_up.add(address.url)
        _keep_env(client, env, artifacts, replay_to)


def _keep_env(client: Any, env: str, artifacts: ArtifactDir, replay_to: str | None) -> None:
    """Write ``visdom/<env>.json`` and record it with the log and the command that replays it."""
    log_path = artifacts.visdom_dir / LOG_FILE
    json_path: Path | None = None
    windows: int | None = None
    try:
        state = fetch_env(client, env) or rebuild_env(log_path, env)
    except SinkError as exc:
        # The env JSON is a convenience; the log holds every event. The test's outcome stands.
        warnings.warn(VisdomEnvWarning(f"no env JSON for {artifacts.nodeid}: {exc}"), stacklevel=2)
    else:
        json_path = write_env(state, artifacts.visdom_dir / f"{env}.json")
        windows = len(state["jsons"])
    artifacts.record(VisdomRecord(
        env=env,
        json=None if json_path is None else artifacts.relative(json_path),
        log=artifacts.relative(log_path),
        # Relative to the run folder, like every command the run report shows, so it still works
        # after the folder is uploaded as a CI artifact and opened elsewhere.
        replay=replay_command(Path(artifacts.root.name) / artifacts.relative(log_path), replay_to),
        server=None if client.offline else f"{client.server}:{client.port}{client.base_url}",
        windows=windows,
    ))

