"""Offline logs: written by the client, replayed into a real server (API and CLI), and rebuilt
into the env JSON a server would hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from visdom_testing import *  # noqa: E402,F401,F403  (the test server and its fixtures)
from visdom_testing import ReadEnv, ReadWindow  # noqa: E402

from pytest_modelviz.errors import ModelvizUsageError  # noqa: E402
from pytest_modelviz.sink import Histogram  # noqa: E402
from pytest_modelviz.visdom.client import open_client, parse_url  # noqa: E402
from pytest_modelviz.visdom.envfile import fetch_env, rebuild_env  # noqa: E402
from pytest_modelviz.visdom.replay import main, read_log, replay, replay_command  # noqa: E402
from pytest_modelviz.visdom.sink import VisdomSink, window_id  # noqa: E402

HIST = Histogram(edges=[0.0, 1.0, 2.0], counts=[4, 6], min=0.0, max=2.0, num=10, sum=11.0, sum_squares=15.0)


def log_some_training(sink: VisdomSink) -> None:
    for step in range(4):
        sink.scalars(step, {"train/loss": 1.0 / (step + 1)})
    sink.histogram(3, "params/w", HIST)
    sink.heatmap(3, "weights/w", torch.eye(2))
    sink.text("summary", "a <b>")
    sink.text("summary", "replaced")


@pytest.fixture
def offline_log(tmp_path: Path) -> Path:
    log = tmp_path / "visdom" / "events.log"
    client = open_client(None, "recorded_env", log)
    log_some_training(VisdomSink(client))
    return log


def test_offline_client_logs_every_event_and_contacts_nothing(offline_log: Path) -> None:
    entries = list(read_log(offline_log))
    assert [e for e, _ in entries] == ["events", *["update"] * 3, *["events"] * 4]
    assert {m["eid"] for _, m in entries} == {"recorded_env"}
    assert entries[0][1]["win"] == window_id("line", "train/loss")


def test_replay_into_a_real_server_redraws_the_windows(
    offline_log: Path, vis: Any, read_window: ReadWindow, env: str
) -> None:
    vis.close(win=None, env=env)
    assert replay(offline_log, vis, env=env) == 8
    line = read_window(window_id("line", "train/loss"), env)["content"]["data"][0]
    assert line["x"] == [0, 1, 2, 3]
    assert line["y"] == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
    assert read_window(window_id("hist", "params/w"), env)["content"]["data"][0]["y"] == [4.0, 6.0]
    assert "replaced" in read_window(window_id("text", "summary"), env)["content"]


def test_rebuilt_env_matches_what_the_server_holds(offline_log: Path, vis: Any, env: str) -> None:
    vis.close(win=None, env=env)
    replay(offline_log, vis, env=env)
    served = json.loads(vis.get_window_data(None, env))
    rebuilt = rebuild_env(offline_log, "recorded_env")["jsons"]
    assert sorted(rebuilt) == sorted(served) and len(rebuilt) == 4

    def comparable(win: dict) -> dict:
        return {k: v for k, v in win.items() if k != "contentID"}  # random per server update

    for win_id, win in served.items():
        assert comparable(rebuilt[win_id]) == comparable(win), win_id
    assert rebuild_env(offline_log, "another_env")["jsons"] == {}


def test_fetch_env_reads_the_server_and_is_none_offline(
    offline_log: Path, vis: Any, env: str, tmp_path: Path
) -> None:
    vis.close(win=None, env=env)
    replay(offline_log, vis, env=env)
    host, port = vis.server, vis.port
    online = open_client(parse_url(f"{host}:{port}"), env + "_other", tmp_path / "other.log")
    assert fetch_env(online, env)["jsons"].keys() == json.loads(vis.get_window_data(None, env)).keys()
    assert fetch_env(open_client(None, env, tmp_path / "off.log"), env) is None


def test_cli_replays_into_the_server_named(
    offline_log: Path,
    visdom_url: str,
    read_env: ReadEnv,
    env: str,
    vis: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vis.close(win=None, env=env)
    assert main([str(offline_log), "--server", visdom_url, "--env", env]) == 0
    assert f"replayed 8 events from {offline_log} into {visdom_url}" in capsys.readouterr().out
    assert window_id("line", "train/loss") in read_env(env)


@pytest.mark.slow
def test_replay_command_is_a_runnable_shell_line(
    offline_log: Path, visdom_url: str, read_env: ReadEnv
) -> None:
    command = replay_command(offline_log, visdom_url)
    assert command.startswith("python -m pytest_modelviz.visdom.replay ")
    assert command.endswith(f" --server {visdom_url}")
    proc = subprocess.run(command.replace("python", sys.executable, 1), shell=True, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert window_id("hist", "params/w") in read_env("recorded_env")  # the recorded env by default
    assert replay_command(Path("/a b/events.log"), None).split(" ", 3)[3] == "'/a b/events.log' --server http://127.0.0.1:8097"


def test_cli_with_an_unreachable_server_says_so(
    offline_log: Path, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(offline_log), "--server", f"http://127.0.0.1:{closed_port}"]) == 1
    assert f"cannot reach the visdom server at http://127.0.0.1:{closed_port}" in capsys.readouterr().err


def test_a_corrupt_log_names_file_and_line(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    log.write_text('["events", {"eid": "e"}]\nnot json\n', encoding="utf-8")
    with pytest.raises(ModelvizUsageError, match=r"events.log:2 is not a visdom log line"):
        list(read_log(log))


@pytest.mark.parametrize(
    ("url", "server", "port", "base_url"),
    [
        ("http://127.0.0.1:8123", "http://127.0.0.1", 8123, ""),
        ("https://viz.example.org/visdom/", "https://viz.example.org", 8097, "/visdom"),
        ("http://[::1]:9000", "http://[::1]", 9000, ""),
    ],
)
def test_parse_url(url: str, server: str, port: int, base_url: str) -> None:
    address = parse_url(url)
    assert (address.server, address.port, address.base_url) == (server, port, base_url)


def test_parse_url_rejects_what_is_not_a_server_url() -> None:
    with pytest.raises(ModelvizUsageError, match="looks like http://127.0.0.1:8097"):
        parse_url("localhost:8097")
