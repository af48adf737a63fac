"""What short_train logs each step, read back from the real sinks: bounded, complete, in order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboardX import SummaryWriter
from torch import nn
from train_models import batches, ce, sgd

from pytest_modelviz import short_train
from pytest_modelviz.tensorboard.sink import MAX_PENDING_EVENTS, TensorBoardSink
from pytest_modelviz.train.summaries import HEATMAP_MAX

pytest.importorskip("visdom")
ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

from pytest_modelviz.visdom.client import open_client  # noqa: E402
from pytest_modelviz.visdom.replay import read_log  # noqa: E402
from pytest_modelviz.visdom.sink import FLUSH_SECS, VisdomSink, window_id  # noqa: E402


def heatmaps(log: Path) -> dict[str, list[list[float]]]:
    return {
        msg["win"]: msg["data"][0]["z"]
        for _, msg in read_log(log)
        if msg.get("data") and msg["data"][0].get("type") == "heatmap"
    }


@pytest.mark.parametrize(("rows", "cols"), [(300, 4), (5, 4)], ids=["large", "small"])
def test_the_weight_heatmap_is_block_averaged_to_a_bounded_size(tmp_path: Path, rows: int, cols: int) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(cols, rows), nn.ReLU(), nn.Linear(rows, 2))
    first = model[0].weight.detach().clone()  # step 0 is logged before the first update
    log = tmp_path / "events.log"
    sink = VisdomSink(open_client(None, "heat", log), flush_secs=FLUSH_SECS)
    short_train(model, batches(), loss_fn=ce, optimizer=sgd, steps=1, device="cpu", sinks=[sink])
    [z] = heatmaps(log).values()
    expected = (
        first if rows <= HEATMAP_MAX
        else nn.functional.adaptive_avg_pool2d(first[None, None], (HEATMAP_MAX, cols))[0, 0]
    )
    assert (len(z), len(z[0])) == (min(rows, HEATMAP_MAX), cols)
    assert torch.tensor(z) == pytest.approx(expected, abs=1e-6)


def test_every_step_reaches_tensorboard_and_visdom_in_order(tmp_path: Path) -> None:
    """More steps than a sink holds before handing events over: every one is written, once."""
    steps = MAX_PENDING_EVENTS + 21
    writer = SummaryWriter(logdir=str(tmp_path / "tb"))
    log = tmp_path / "visdom" / "events.log"
    visdom = VisdomSink(open_client(None, "steps", log), flush_secs=FLUSH_SECS)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    result = short_train(model, batches(), loss_fn=ce, optimizer=sgd, steps=steps, device="cpu", log_every=50,
                         sinks=[TensorBoardSink(writer), visdom])
    writer.close()
    acc = ea.EventAccumulator(str(tmp_path / "tb"), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(steps))
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx(result.losses)
    assert [e.step for e in acc.Histograms("grads/0.weight")] == [0, 50, 100]
    lines = [msg for _, msg in read_log(log) if msg.get("win") == window_id("line", "train/loss")]
    assert [x for msg in lines for x in msg["data"][0]["x"]] == list(range(steps))
