"""The ``visdom_client`` fixture's body: pick the server for the mode, open the test's client,
and at teardown keep the env as JSON next to the log and record both for the run report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Generator

from pytest_modelviz.artifacts import ArtifactDir
from pytest_modelviz.visdom.client import ServerAddress, env_name, open_client, parse_url
from pytest_modelviz.visdom.envfile import fetch_env, rebuild_env, write_env
from pytest_modelviz.visdom.replay import replay_command

if TYPE_CHECKING:
    import pytest

    from pytest_modelviz.session import ModelvizSession

LOG_FILE = "events.log"


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
    env = env_name(artifacts.nodeid)
    log_path = artifacts.visdom_dir / LOG_FILE
    address = server_address(session)
    client = open_client(address, env, log_path)
    # A server this run started is gone after the run: its logs replay into a default one.
    replay_to = address.url if address is not None and session.settings.visdom != "server" else None
    try:
        yield client
    finally:
        _keep_env(client, env, artifacts, replay_to)


def _keep_env(client: Any, env: str, artifacts: ArtifactDir, replay_to: str | None) -> None:
    """Write ``visdom/<env>.json`` and record it with the log and the command that replays it."""
    log_path = artifacts.visdom_dir / LOG_FILE
    state = fetch_env(client, env) or rebuild_env(log_path, env)
    json_path = write_env(state, artifacts.visdom_dir / f"{env}.json")
    artifacts.record(
        "visdom",
        env=env,
        json=artifacts.relative(json_path),
        log=artifacts.relative(log_path),
        # Relative to the run folder, like every command the run report shows, so it still works
        # after the folder is uploaded as a CI artifact and opened elsewhere.
        replay=replay_command(Path(artifacts.root.name) / artifacts.relative(log_path), replay_to),
        server=None if client.offline else f"{client.server}:{client.port}{client.base_url}",
        windows=len(state["jsons"]),
    )

