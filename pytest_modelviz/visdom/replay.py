"""Replay a visdom event log (what ``Visdom(log_to_filename=...)`` writes) into a server.

    python -m pytest_modelviz.visdom.replay LOG [LOG ...] --server http://127.0.0.1:8097
    python -m pytest_modelviz.visdom.replay LOG --serve          # start a loopback server first

Each log line is ``[endpoint, message]`` as visdom's client writes it; the messages keep their
window ids, so replaying twice redraws the same windows rather than adding new ones. ``--serve``
says where to open the page, or, when visdom's web UI files are not installed, how to install them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pytest_modelviz.errors import ModelvizUsageError

DEFAULT_SERVER = "http://127.0.0.1:8097"


def read_log(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The log's ``(endpoint, message)`` pairs; a bad line is an error naming the file and line."""
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                endpoint, msg = json.loads(line)
            except (json.JSONDecodeError, ValueError, TypeError):
                raise ModelvizUsageError(
                    f"{path}:{number} is not a visdom log line ([endpoint, message] JSON); "
                    "pass a file written by Visdom(log_to_filename=...) or the visdom_client fixture"
                ) from None
            yield str(endpoint), msg


def replay(log_path: Path, client: Any, env: str | None = None) -> int:
    """Send every event of the log through ``client``; return how many were sent.

    Like ``Visdom.replay_log``, plus ``env`` to replay into another env than the recorded one.
    """
    count = 0
    for endpoint, msg in read_log(log_path):
        if env is not None:
            msg["eid"] = env
        client._send(msg, endpoint, from_log=True)  # from_log: do not log the event again
        count += 1
    return count


def replay_command(log_path: Path, server: str | None) -> str:
    """The shell command that replays ``log_path``; into ``server``, or visdom's default one."""
    return shlex.join(["python", "-m", "pytest_modelviz.visdom.replay", str(log_path),
                       "--server", server or DEFAULT_SERVER])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_modelviz.visdom.replay",
        description="Replay visdom event logs (pytest-modelviz's visdom/events.log) into a server.",
    )
    parser.add_argument("logs", nargs="+", type=Path, metavar="LOG")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--server", default=None, help=f"server URL (default {DEFAULT_SERVER})")
    target.add_argument("--serve", action="store_true",
                        help="start a visdom server on 127.0.0.1 first and keep it running (Ctrl-C stops it)")
    parser.add_argument("--port", type=int, default=8097, help="port for --serve (default 8097)")
    parser.add_argument("--env-path", type=Path, default=Path(".visdom-replay"),
                        help="where --serve keeps its envs (default .visdom-replay)")
    parser.add_argument("--env", default=None, help="replay into this env instead of the recorded one")
    args = parser.parse_args(argv)
    for log in args.logs:
        if not log.is_file():
            parser.error(f"no such log file: {log}")

    server = None
    if args.serve:
        from pytest_modelviz.visdom.server import start_server

        server = start_server(args.env_path, port=args.port)
    url = server.url if server is not None else (args.server or DEFAULT_SERVER)
    try:
        from pytest_modelviz.visdom.client import connect, parse_url

        client = connect(parse_url(url))
        for log in args.logs:
            n = replay(log, client, env=args.env)
            print(f"replayed {n} events from {log} into {url}")
        if server is not None:
            print(f"serving on {url} (env files in {server.env_path}); Ctrl-C stops")
            if server.ui_note is not None:
                print(f"note: {server.ui_note}", file=sys.stderr)
            else:
                print(f"open {url}/env/{args.env} in a browser" if args.env else f"open {url} in a browser")
            server.process.wait()
    except ConnectionError as exc:
        print(f"error: cannot reach the visdom server at {url}: {exc}. Start one "
              "(python -m visdom.server) or pass --serve.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C is how --serve is meant to end
        print("stopping the visdom server", file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
