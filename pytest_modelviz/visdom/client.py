"""Per-test visdom clients that log every event to a replayable file and never fail a test
because a server is unreachable: they warn once and go on offline, the log keeping everything."""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pytest_modelviz.artifacts import safe_dirname
from pytest_modelviz.errors import ModelvizUsageError

DEFAULT_PORT = 8097  # visdom's own default, used for a URL without a port
CONNECT_TIMEOUT_S = 3.0
# A server that accepts connections and never answers is given up on this soon at first contact;
# once it has answered, a slow reply (a large image) may take up to READ_TIMEOUT_S.
FIRST_REPLY_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0


class VisdomFallbackWarning(UserWarning):
    """A visdom server could not be reached; events went to the offline log instead."""


@dataclass(frozen=True)
class ServerAddress:
    """What ``visdom.Visdom`` wants: ``server`` (scheme and host), ``port`` and ``base_url``."""

    server: str
    port: int
    base_url: str

    @property
    def url(self) -> str:
        return f"{self.server}:{self.port}{self.base_url}"


def parse_url(url: str) -> ServerAddress:
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ModelvizUsageError(f"a visdom server URL looks like http://127.0.0.1:8097, got {url!r}")
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    base_url = parsed.path.rstrip("/")
    return ServerAddress(f"{parsed.scheme}://{host}", parsed.port or DEFAULT_PORT, base_url)


def env_name(nodeid: str) -> str:
    """The test's visdom env: its artifact folder's name, readable and unique per node id.

    Only ``[A-Za-z0-9._-]``, so it is also a safe ``<env>.json`` file name.
    """
    return safe_dirname(nodeid)


@functools.cache
def _client_class() -> type:
    from visdom import Visdom

    class FallbackVisdom(Visdom):
        """``visdom.Visdom`` that turns offline, with one warning, when its server goes away.

        visdom writes an event to ``log_to_filename`` before posting it, so an event whose post
        failed is already in the log: switching to offline mode loses nothing.
        """

        fell_back: bool = False
        read_timeout_s: float = FIRST_REPLY_TIMEOUT_S  # raised by open_client once the server answered
        # Set by visdom's __init__ but missing from its stub (visdom/__init__.pyi).
        session: Any  # a requests.Session
        server: str
        port: int
        base_url: str
        offline: bool
        log_to_filename: str | None

        def _handle_post(self, url: str, data: Any = None) -> str:
            # visdom posts without a timeout: an unroutable host would hang the test for minutes.
            reply = self.session.post(url, data={} if data is None else data,
                                      timeout=(CONNECT_TIMEOUT_S, self.read_timeout_s))
            text: str = reply.text
            return text

        def _send(self, msg: dict[str, Any], endpoint: str = "events", quiet: bool = False,
                  from_log: bool = False, create: bool = True) -> Any:
            try:
                # visdom's stub (__init__.pyi) leaves out `create`, which its _send takes.
                return super()._send(  # type: ignore[call-arg]
                    msg, endpoint, quiet=quiet, from_log=from_log, create=create
                )
            except ConnectionError:
                if self.offline or self.log_to_filename is None:
                    raise
                self._fall_back()
                return msg.get("win", True)

        def _fall_back(self) -> None:
            url = f"{self.server}:{self.port}{self.base_url}"
            self.offline = True
            self.fell_back = True
            warnings.warn(
                f"visdom server {url} is unreachable: visdom events go to each test's offline "
                "log instead (the test goes on). Start the server or pass --modelviz-visdom="
                "offline; replay a log later with: python -m pytest_modelviz.visdom.replay LOG "
                f"--server {url}",
                VisdomFallbackWarning,
                stacklevel=2,
            )

    return FallbackVisdom


def connect(address: ServerAddress, cls: type | None = None, **kwargs: Any) -> Any:
    """A ``visdom.Visdom`` (or ``cls``) on ``address`` without the incoming socket."""
    if cls is None:
        from visdom import Visdom

        cls = Visdom
    kwargs.setdefault("raise_exceptions", True)
    kwargs.setdefault("use_incoming_socket", False)
    with warnings.catch_warnings():
        # visdom calls the deprecated logger.warn when told not to open its incoming socket.
        warnings.filterwarnings("ignore", "The 'warn' method is deprecated", DeprecationWarning)
        return cls(server=address.server, port=address.port, base_url=address.base_url or "/", **kwargs)


def open_client(address: ServerAddress | None, env: str, log_path: Path) -> Any:
    """A client for ``env`` logging to ``log_path``: offline when ``address`` is None, else
    connected (or fallen back to offline with a ``VisdomFallbackWarning``: see ``fell_back``)."""
    cls = _client_class()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("", encoding="utf-8")  # visdom appends; a rerun starts a fresh log
    common: dict[str, Any] = dict(env=env, log_to_filename=str(log_path))
    if address is None:
        return cls(offline=True, raise_exceptions=True, **common)
    client = connect(address, cls, **common)
    if not client.offline:
        # A server outlives runs: start the env empty so appends never land on old curves.
        client.close(win=None, env=env)
    if not client.offline:
        client.read_timeout_s = READ_TIMEOUT_S
    return client

