"""The test's env as the JSON file visdom saves (``{"jsons": {win: window}, "reload": {}}``):
fetched from the server when there is one, else rebuilt from the offline log.

A file like this dropped into a visdom server's ``-env_path`` shows the env again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_modelviz.visdom.replay import read_log


def fetch_env(client: Any, env: str) -> dict[str, Any] | None:
    """The env's windows as the server holds them; None when the server did not answer."""
    if client.offline:
        return None
    reply = client.get_window_data(win=None, env=env)
    if client.offline or not isinstance(reply, str):  # the server went away meanwhile
        return None
    try:
        windows = json.loads(reply)
    except json.JSONDecodeError:
        return None  # an error page, not data
    return {"jsons": windows, "reload": {}} if isinstance(windows, dict) else None


def rebuild_env(log_path: Path, env: str) -> dict[str, Any]:
    """The env a visdom server would hold after receiving the log's events.

    Uses the server's own functions that turn an event into a window and apply an update, so
    the windows are what a server builds (visdom's ``server_utils.window``, ``UpdateHandler.update``).
    """
    from visdom.server.handlers.web_handlers import UpdateHandler
    from visdom.utils.server_utils import extract_eid, window

    jsons: dict[str, Any] = {}

    def register(p: dict[str, Any]) -> None:
        # As visdom's register_window: a replaced window keeps its place in the layout.
        p["i"] = jsons[p["id"]]["i"] if p["id"] in jsons else len(jsons)
        jsons[p["id"]] = p

    for endpoint, msg in read_log(log_path):
        if extract_eid(msg) != env:
            continue
        if endpoint == "events":
            register(window(msg))
        elif endpoint == "update":
            if msg["win"] in jsons:
                jsons[msg["win"]] = UpdateHandler.update(jsons[msg["win"]], msg)
            elif msg.get("append"):
                register(window(msg))  # as the server: appending to a missing window creates it
    return {"jsons": jsons, "reload": {}}


def write_env(state: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, sort_keys=True), encoding="utf-8")
    return path
