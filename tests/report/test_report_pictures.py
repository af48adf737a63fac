"""Pictures drawn at the end of the run, as users meet them: in the run report, in pytest-html's
page, under pytest-xdist, and when the session never drew them; every output of a layer."""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

import pytest
from fake_report_run import HOSTILE, make_run, write_records
from modelviz_testing import run_dir_of
from user_runs import USER_PRELUDE, folder_of, read_records, train_record

from pytest_modelviz.render import graphviz as gv
from pytest_modelviz.report.html import write_report

PURE = Path(sys.executable).parent / gv.PURE_NAME

GRAPH_AND_TRAINING = USER_PRELUDE + """

class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(out[:, -1])


def test_graph(graph_snapshot):
    graph_snapshot(Recurrent(), torch.zeros(2, 3, 4))


def test_trains(short_train):
    short_train(make_model(), make_data(), loss_fn=F.cross_entropy, optimizer=sgd, steps=3, name="run <b>&")
"""


def test_pytest_html_shows_the_curves_inline_and_links_the_pictures_drawn_at_the_end(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gv.ENV_VAR, str(PURE))
    pytester.makepyfile(test_user=GRAPH_AND_TRAINING)
    result = pytester.runpytest_subprocess("--modelviz", "--modelviz-device=cpu", "--snapshot-update",
                                           "-p", "no:cacheprovider", "--html=html/report.html")
    result.assert_outcomes(passed=2)
    run = run_dir_of(pytester)
    page = (pytester.path / "html" / "report.html").read_text(encoding="utf-8")

    # The curves are an SVG made in the test: pytest-html shows it as an image (an asset it wrote).
    curves = folder_of(run, "test_trains") / train_record(folder_of(run, "test_trains"))["curves"]
    assets = {p.suffix: p for p in (pytester.path / "html" / "assets").iterdir()}
    assert assets[".svg"].read_bytes() == curves.read_bytes()
    assert "run &lt;b&gt;&amp;" in curves.read_text()

    # Graph pictures are drawn when the run ends: linked, relative to pytest-html's page, and there.
    graph = folder_of(run, "test_graph")
    [render] = [r for r in read_records(graph) if r["kind"] == "graph_render"]
    for key in ("svg", "png", "hiddenlayer_svg", "hiddenlayer_png", "torchviz_svg"):
        target = graph / render["files"][key]
        assert target.is_file(), key
        rel = Path("..") / target.relative_to(pytester.path)
        assert html.escape(rel.as_posix()) in page or rel.as_posix() in page, key
    assert "graph-Recurrent/graph.svg (drawn when the run ends)" in page

    # The run report: every output of the LSTM in the layer table, the pictures zoomable.
    report = (run / "report.html").read_text(encoding="utf-8")
    assert '<td class="layer">lstm</td><td>LSTM</td><td class="shape">2×3×8<br>1×2×8<br>1×2×8</td>' in report
    assert report.count('<figure class="zoomable">') == 3 and "open full size" in report
    assert "could not be drawn" not in report and "was not drawn" not in report


XDIST_TESTS = USER_PRELUDE + """
import pytest


@pytest.mark.parametrize("width", [4, 6, 8, 10])
def test_graph(graph_snapshot, width):
    graph_snapshot(nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2)), torch.zeros(1, 4))
"""

# A renderer that logs who ran it before handing over to graphviz-pure.
LOGGING_RENDERER = """#!/bin/sh
echo "$PPID $*" >> "{log}"
exec "{pure}" "$@"
"""


# Each process notes whether it is the controller or a worker, and its pid.
PROCESS_LOG_CONFTEST = """
import os


def pytest_configure(config):
    role = "worker" if hasattr(config, "workerinput") else "controller"
    with open({log!r}, "a") as fh:
        fh.write(f"{{role}} {{os.getpid()}}\\n")
"""


def _log_renders_and_processes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A renderer that logs its parent's pid, and a conftest that logs each process's role:
    the two logs say which process drew each picture."""
    pytest.importorskip("xdist")
    log = pytester.path / "renders.log"
    renderer = pytester.path / "bin" / "dot"
    renderer.parent.mkdir()
    renderer.write_text(LOGGING_RENDERER.format(log=log, pure=PURE), encoding="utf-8")
    renderer.chmod(0o755)
    monkeypatch.setenv(gv.ENV_VAR, str(renderer))
    processes = pytester.path / "processes.log"
    pytester.makeconftest(PROCESS_LOG_CONFTEST.format(log=str(processes)))
    return log, processes


def _drawers(log: Path, processes: Path) -> list[str]:
    """The role of the process that drew each picture, in the order drawn."""
    roles = dict(reversed(line.split()) for line in processes.read_text().splitlines())
    return [roles[line.split()[0]] for line in log.read_text().splitlines()]


def test_under_xdist_each_picture_is_drawn_once_by_the_worker_that_ran_its_test(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    log, processes = _log_renders_and_processes(pytester, monkeypatch)
    pytester.makepyfile(test_user=XDIST_TESTS)
    result = pytester.runpytest_subprocess("--modelviz", "--snapshot-update", "-p", "no:cacheprovider",
                                           "-n", "2")
    result.assert_outcomes(passed=4)
    lines = log.read_text().splitlines()
    outputs = [line.split()[3] for line in lines]  # "<ppid> -T<fmt> -o <out> <dot>"
    assert len(outputs) == len(set(outputs)) == 4 * 5, "each picture drawn exactly once"
    assert sorted(line.split()[0] for line in processes.read_text().splitlines()) == ["controller", "worker", "worker"]
    assert set(_drawers(log, processes)) == {"worker"}, "drawn by the workers, not the controller"
    run = run_dir_of(pytester)
    for folder in (p for p in run.iterdir() if p.is_dir()):
        states = [json.loads(line)["state"] for line in (folder / "pictures.jsonl").read_text().splitlines()]
        assert states == ["drawn"] * 6, folder.name  # hiddenlayer's DOT, then five Graphviz pictures
    # The queue is bookkeeping, like the records: not one of the test's artifacts.
    assert "pictures.jsonl" not in (run / "report.html").read_text(encoding="utf-8")


CRASHING_WORKER = USER_PRELUDE + """
import os


def test_graph(graph_snapshot):
    graph_snapshot(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)), torch.zeros(1, 4))


def test_worker_dies():
    os._exit(3)
"""


def test_pictures_of_a_worker_that_died_are_drawn_by_the_controller(pytester: pytest.Pytester,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    log, processes = _log_renders_and_processes(pytester, monkeypatch)
    pytester.makepyfile(test_user=CRASHING_WORKER)
    # One worker runs both tests in file order: it queues the graph's pictures, then dies.
    result = pytester.runpytest_subprocess("--modelviz", "--snapshot-update", "-p", "no:cacheprovider",
                                           "-n", "1", "--max-worker-restart", "0")
    result.assert_outcomes(passed=1, failed=1)
    drawers = _drawers(log, processes)
    assert drawers == ["controller"] * 5, "the dead worker drew nothing; the controller drew what it left"
    folder = folder_of(run_dir_of(pytester), "test_graph")
    states = [json.loads(line)["state"] for line in (folder / "pictures.jsonl").read_text().splitlines()]
    assert states == ["drawn"] * 6


# On the workers only, drawing the pictures raises.
BROKEN_WORKER_DRAWING = """
import pytest_modelviz.render.pending as pending


def pytest_configure(config):
    if hasattr(config, "workerinput"):
        def broken(test_dirs, **kwargs):
            raise RuntimeError("worker boom")

        pending.draw_pending = broken
"""


def test_a_worker_that_fails_to_draw_is_named_and_the_controller_draws_instead(
        pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makeconftest(BROKEN_WORKER_DRAWING)
    pytester.makepyfile(test_user=XDIST_TESTS)
    result = pytester.runpytest_subprocess("--modelviz", "--snapshot-update", "-p", "no:cacheprovider",
                                           "-n", "2")
    result.assert_outcomes(passed=4)
    assert "drawing the pictures on a worker failed: RuntimeError: worker boom" in result.stdout.str()
    run = run_dir_of(pytester)
    for folder in (p for p in run.iterdir() if p.is_dir()):
        states = [json.loads(line)["state"] for line in (folder / "pictures.jsonl").read_text().splitlines()]
        assert states == ["drawn"] * 6, folder.name


def test_pictures_a_killed_session_never_drew_are_named_in_the_report(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    test_dir = next(p for p in run.iterdir()
                    if p.is_dir() and p.name.startswith("tests_test_models.py--test_convnet"))
    pending = {"kind": "graphviz", "subject": f"graph '{HOSTILE}'", "source": "graph/model.dot",
               "output": "graph/model.png", "state": "pending", "message": ""}
    failed = {**pending, "output": "graph/model.svg", "state": "failed", "message": f"dot said {HOSTILE}"}
    outside = {**pending, "output": "../../elsewhere.png"}  # never trusted: not shown, never drawn
    lines = [json.dumps(p) for p in (pending, failed, outside)]
    (test_dir / "pictures.jsonl").write_text("\n".join(lines) + "\n")
    page = write_report(run).read_text(encoding="utf-8")
    assert html.escape(f"picture graph/model.png (graph '{HOSTILE}') was not drawn: the run ended before "
                       "its pictures were drawn") in page
    failure = f"picture graph/model.svg (graph '{HOSTILE}') could not be drawn: dot said {HOSTILE}"
    assert html.escape(failure) in page
    assert "elsewhere.png" not in page.split("All artifacts")[0] and HOSTILE not in page


def test_a_layer_table_without_its_architecture_text_shows_first_outputs(tmp_path: Path) -> None:
    run = tmp_path / "run-20250101-000000-abcdef"
    row = {"name": "lstm", "type": "LSTM", "output_shape": [2, 3, 8], "params": 448, "macs": 0}
    record = {"kind": "architecture", "name": "net", "rows": [row], "text": "graph/architecture.txt"}
    write_records(run / "t", record)
    page = write_report(run).read_text(encoding="utf-8")
    assert '<td class="shape">2×3×8</td>' in page


CTRL_C = USER_PRELUDE + """
import os
import signal


def test_graph_then_ctrl_c(graph_snapshot):
    graph_snapshot(make_model(), torch.zeros(1, 4))
    os.kill(os.getpid(), signal.SIGINT)
"""


def test_after_ctrl_c_the_session_stops_without_drawing_and_the_report_says_so(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gv.ENV_VAR, str(PURE))
    pytester.makepyfile(test_user=CTRL_C)
    result = pytester.runpytest_subprocess("--modelviz", "--snapshot-update", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    run = run_dir_of(pytester)
    folder = folder_of(run, "test_graph_then_ctrl_c")
    pictures = [json.loads(line) for line in (folder / "pictures.jsonl").read_text().splitlines()]
    states = {p["output"]: p["state"] for p in pictures}
    assert set(states.values()) == {"pending"} and "graph-Sequential/graph.svg" in states
    assert not (folder / "graph-Sequential" / "graph.svg").exists()
    report = (run / "report.html").read_text(encoding="utf-8")
    assert html.escape("picture graph-Sequential/graph.svg (graph 'Sequential') was not drawn: the run ended "
                       "before its pictures were drawn") in report
