"""VisdomSink against a real visdom server: every MetricSink call lands in a window we read back."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from modelviz_testing import decode_png  # noqa: E402
from visdom_testing import *  # noqa: E402,F401,F403  (the test server and its fixtures)
from visdom_testing import ReadWindow  # noqa: E402

from pytest_modelviz.sink import Histogram, MetricSink  # noqa: E402
from pytest_modelviz.visdom.sink import VisdomSink, window_id  # noqa: E402


@pytest.fixture
def sink(env_client: Any) -> VisdomSink:
    return VisdomSink(env_client)


def test_window_ids_are_stable_readable_and_distinct() -> None:
    assert window_id("line", "train/loss") == window_id("line", "train/loss")
    assert window_id("line", "train/loss").startswith("line-train_loss-")
    assert window_id("line", "train/loss") != window_id("line", "train_loss")
    assert window_id("line", "x") != window_id("hist", "x")
    assert window_id("text", "<>").startswith("text-tag-")


def test_the_sink_satisfies_the_protocol(sink: VisdomSink) -> None:
    as_protocol: MetricSink = sink
    as_protocol.close()


def test_scalars_append_one_line_per_tag(sink: VisdomSink, read_window: ReadWindow, env: str) -> None:
    for step, loss in enumerate([2.0, 1.5, 1.25]):
        sink.scalars(step, {"train/loss": loss, "train/lr": 0.1})
    loss = read_window(window_id("line", "train/loss"), env)
    trace = loss["content"]["data"]
    assert len(trace) == 1
    assert trace[0]["x"] == [0, 1, 2]
    assert trace[0]["y"] == [2.0, 1.5, 1.25]
    assert loss["title"] == "train/loss"
    assert loss["content"]["layout"]["xaxis"]["title"] == "step"
    assert read_window(window_id("line", "train/lr"), env)["content"]["data"][0]["y"] == [0.1] * 3


def test_per_layer_scalars_share_one_window_per_metric_with_a_line_per_layer(
    sink: VisdomSink, read_window: ReadWindow, read_env: Any, env: str
) -> None:
    for step in (0, 10):
        sink.scalars(step, {"health/grad_norm/fc1": 1.0 + step, "health/grad_norm/fc2": 2.0 + step,
                            "health/update_ratio/fc1": 1e-3})
    win = read_window(window_id("line", "health/grad_norm"), env)
    assert win["title"] == "health/grad_norm"
    lines = {t["name"]: (t["x"], t["y"]) for t in win["content"]["data"]}
    assert lines == {"fc1": ([0, 10], [1.0, 11.0]), "fc2": ([0, 10], [2.0, 12.0])}
    assert [t["name"] for t in read_window(window_id("line", "health/update_ratio"), env)["content"]["data"]] == ["fc1"]
    assert window_id("line", "health/grad_norm/fc1") not in read_env(env)  # not one window per layer


def test_histogram_draws_the_precomputed_counts_as_bars(
    sink: VisdomSink, read_window: ReadWindow, env: str
) -> None:
    hist = Histogram(edges=[0.0, 1.0, 2.0, 4.0], counts=[3, 0, 5], min=0.1, max=3.9, num=8, sum=13.0,
                     sum_squares=40.0)
    sink.histogram(5, "params/fc.weight", hist)
    win = read_window(window_id("hist", "params/fc.weight"), env)
    bars = win["content"]["data"][0]
    assert bars["type"] == "bar"
    assert bars["y"] == [3.0, 0.0, 5.0]
    assert bars["x"] == [0.5, 1.5, 3.0]
    assert win["title"] == "params/fc.weight (step 5)"
    sink.histogram(6, "params/fc.weight", hist)  # the same window shows the latest step
    assert read_window(window_id("hist", "params/fc.weight"), env)["title"].endswith("(step 6)")


def test_with_flush_secs_steps_only_buffer_until_flush_or_close(tmp_path: Path) -> None:
    """Per-step calls cost no visdom event; close sends each line with all its points and only
    the latest histogram and heatmap of each tag, as they were when logged."""
    from pytest_modelviz.visdom.client import open_client
    from pytest_modelviz.visdom.replay import read_log

    log = tmp_path / "events.log"
    sink = VisdomSink(open_client(None, "buffered", log), flush_secs=60.0)
    hist = Histogram(edges=[0.0, 1.0, 2.0], counts=[1, 2], min=0.0, max=2.0, num=3, sum=3.0, sum_squares=5.0)
    for step in range(5):
        sink.scalars(step, {"train/loss": 1.0 / (step + 1)})
        sink.histogram(step, "params/w", hist)
        matrix = torch.full((2, 2), float(step))
        sink.heatmap(step, "weights/w", matrix)
        matrix += 10  # changed after logging: the heatmap keeps what was logged
    assert list(read_log(log)) == []
    sink.close()
    events = {msg["win"]: msg for _, msg in read_log(log)}
    assert len(events) == 3
    line = events[window_id("line", "train/loss")]
    assert line["data"][0]["x"] == [0, 1, 2, 3, 4]
    assert line["data"][0]["y"] == pytest.approx([1.0, 0.5, 1 / 3, 0.25, 0.2])
    assert events[window_id("hist", "params/w")]["layout"]["title"] == "params/w (step 4)"
    assert events[window_id("heatmap", "weights/w")]["data"][0]["z"] == [[4.0, 4.0], [4.0, 4.0]]
    sink.scalars(5, {"train/loss": 0.1})
    sink.close()  # a second batch appends to the window the first one created
    [(endpoint, update)] = list(read_log(log))[3:]
    assert endpoint == "update" and update["win"] == window_id("line", "train/loss")


def test_histogram_with_mismatched_edges_names_the_tag(sink: VisdomSink) -> None:
    bad = Histogram(edges=[0.0, 1.0], counts=[1, 2], min=0, max=1, num=3, sum=1.0, sum_squares=1.0)
    with pytest.raises(ValueError, match=r"'grads/w' at step 3.*2 edges and 2 counts"):
        sink.histogram(3, "grads/w", bad)


def test_image_grid_and_heatmap(sink: VisdomSink, read_window: ReadWindow, env: str) -> None:
    grid = torch.rand(3, 4, 6, generator=torch.Generator().manual_seed(0))
    grid[0, 0] = 1.0
    sink.image_grid(2, "inputs", grid)
    image = read_window(window_id("image", "inputs"), env)
    # The window visdom's own client.image draws from the same picture.
    sink.client.image(grid.numpy(), win="theirs", opts={"title": "inputs", "caption": "inputs (step 2)"})
    theirs = read_window("theirs", env)
    assert image["type"] == theirs["type"] == "image"
    assert image["content"]["caption"] == theirs["content"]["caption"] == "inputs (step 2)"
    assert (image["title"], image["width"], image["height"]) == ("inputs", 6, 4)
    assert (theirs["title"], theirs["width"], theirs["height"]) == ("inputs", 6, 4)
    prefix = "data:image/png;base64,"
    assert image["content"]["src"].startswith(prefix) and theirs["content"]["src"].startswith(prefix)
    ours, visdoms = (decode_png(base64.b64decode(w["content"]["src"][len(prefix):])) for w in (image, theirs))
    assert np.array_equal(ours, visdoms)

    matrix = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    sink.heatmap(2, "weights/fc", matrix)
    heat = read_window(window_id("heatmap", "weights/fc"), env)["content"]["data"][0]
    assert heat["type"] == "heatmap"
    assert heat["z"] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    with pytest.raises(ValueError, match="2-D matrix"):
        sink.heatmap(2, "weights/conv", torch.zeros(2, 2, 2))


def test_text_is_escaped_html(sink: VisdomSink, read_window: ReadWindow, env: str) -> None:
    sink.text("summary", "Linear <in=2> & <script>alert(1)</script>")
    content = read_window(window_id("text", "summary"), env)["content"]
    assert "<script>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "&lt;in=2&gt; &amp;" in content
