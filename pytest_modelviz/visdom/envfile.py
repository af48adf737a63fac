"""The test's env as the JSON file visdom saves (``{"jsons": {win: window}, "reload": {}}``):
fetched from the server when there is one, else rebuilt from the offline log.

A file like this dropped into a visdom server's ``-env_path`` shows the env again.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_modelviz.errors import SinkError
from pytest_modelviz.visdom.replay import read_log

Window = dict[str, Any]


class VisdomEnvWarning(UserWarning):
    """The env JSON could not be made; the event log, which replays the env, is kept."""


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

    Raises ``SinkError`` when the installed visdom's server functions do not fit (a visdom
    release this module does not know).
    """
    new_window, update_window, eid_of = server_functions()
    jsons: dict[str, Window] = {}

    def register(p: Window) -> None:
        # As visdom's register_window: a replaced window keeps its place in the layout.
        p["i"] = jsons[p["id"]]["i"] if p["id"] in jsons else len(jsons)
        jsons[p["id"]] = p

    for endpoint, msg in read_log(log_path):
        if eid_of(msg) != env:
            continue
        try:
            if endpoint == "events":
                register(new_window(msg))
            elif endpoint == "update":
                if msg["win"] in jsons:
                    jsons[msg["win"]] = update_window(jsons[msg["win"]], msg)
                elif msg.get("append"):
                    register(new_window(msg))  # as the server: appending to a missing window creates it
        except (TypeError, KeyError, AttributeError) as exc:
            raise SinkError(
                f"visdom {_visdom_version()} could not turn the events of {log_path} into env {env!r} "
                f"({type(exc).__name__}: {exc}); the log is kept and replays the env "
                "(python -m pytest_modelviz.visdom.replay)"
            ) from exc
    return {"jsons": jsons, "reload": {}}


def server_functions() -> tuple[Callable[[Window], Window], Callable[[Window, Window], Window],
                                Callable[[Window], str]]:
    """``(new_window, update_window, eid_of)``: the visdom server's own functions that turn an
    event into a window, apply an update to one and name an event's env.

    visdom's client has no API for this and its server keeps these functions internal, so they
    are used here, and only here, as the installed release defines them: 0.3 added the server's
    history limits to ``UpdateHandler.update``, passed as the server passes its defaults.
    """
    from visdom.server.handlers.web_handlers import UpdateHandler
    from visdom.utils.server_utils import extract_eid, window

    limits = list(inspect.signature(UpdateHandler.update).parameters)[2:]
    values: list[Any] = []
    if limits:
        from visdom.server import defaults

        try:
            values = [getattr(defaults, f"DEFAULT_{name.upper()}") for name in limits]
        except AttributeError as exc:
            raise SinkError(
                f"visdom {_visdom_version()}'s server asks for {', '.join(limits)} to update a window and "
                f"has no default for one of them ({exc}); the env JSON cannot be rebuilt from the log"
            ) from exc

    def update(p: Window, msg: Window) -> Window:
        updated: Window = UpdateHandler.update(p, msg, *values)
        return updated

    return window, update, extract_eid


def _visdom_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("visdom")
    except PackageNotFoundError:
        return "(version unknown)"


def write_env(state: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, sort_keys=True), encoding="utf-8")
    return path
