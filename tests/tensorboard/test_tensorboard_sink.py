"""TensorBoardSink and short_train's logging, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboardX import SummaryWriter
from tensorboardX.summary import image as tensorboardx_image

# The tiny models live with the training tests; this folder may be collected before theirs.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from modelviz_testing import decode_png  # noqa: E402
from train_models import SmallCNN, blobs, ce, images, mlp, sgd  # noqa: E402

from pytest_modelviz import short_train  # noqa: E402
from pytest_modelviz.sink import Histogram  # noqa: E402
from pytest_modelviz.tensorboard.sink import TensorBoardSink  # noqa: E402

KEEP_ALL = {ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.IMAGES: 0, ea.TENSORS: 0, ea.COMPRESSED_HISTOGRAMS: 0}


def read_run(logdir: Path) -> ea.EventAccumulator:
    acc = ea.EventAccumulator(str(logdir), size_guidance=KEEP_ALL)
    acc.Reload()
    return acc


def test_sink_writes_scalars_histograms_images_text(tmp_path: Path) -> None:
    writer = SummaryWriter(logdir=str(tmp_path))
    sink = TensorBoardSink(writer)
    sink.scalars(0, {"train/loss": 2.0, "train/lr": 0.1})
    sink.scalars(1, {"train/loss": 1.5, "train/lr": 0.1})
    hist = Histogram(edges=[0.0, 1.0, 2.0], counts=[3.0, 1.0], min=0.1, max=1.9, num=4, sum=2.5,
                     sum_squares=4.0)
    sink.histogram(1, "params/w", hist)
    grid = torch.rand(3, 10, 12)
    sink.image_grid(0, "inputs/first_batch", grid)
    sink.text("train/config", "steps: 2")
    sink.close()
    writer.close()
    acc = read_run(tmp_path)
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(0, 2.0), (1, 1.5)]
    [event] = acc.Histograms("params/w")
    assert event.step == 1
    value = event.histogram_value
    assert (value.min, value.max, value.num) == pytest.approx((0.1, 1.9, 4))
    assert list(value.bucket_limit) == [1.0, 2.0]
    assert list(value.bucket) == [3.0, 1.0]
    [image] = acc.Images("inputs/first_batch")
    assert (image.step, image.width, image.height) == (0, 12, 10)
    # The pixels tensorboardX's own add_image writes.
    theirs = tensorboardx_image("inputs/first_batch", grid.numpy(), dataformats="CHW").value[0].image
    assert np.array_equal(decode_png(image.encoded_image_string), decode_png(theirs.encoded_image_string))
    [text] = acc.Tensors("train/config/text_summary")
    assert text.tensor_proto.string_val == [b"steps: 2"]


def test_short_train_logs_every_tag_step_and_value(tmp_path: Path) -> None:
    writer = SummaryWriter(logdir=str(tmp_path))
    x, y = images(16)

    def accuracy(model: torch.nn.Module, step: int) -> dict[str, float]:
        return {"accuracy": (model(x).argmax(1) == y).float().mean().item()}

    result = short_train(SmallCNN(), (x, y), loss_fn=ce, optimizer=sgd, steps=7, device="cpu", log_every=3,
                         eval_fn=accuracy, eval_every=3,
                         sinks=[TensorBoardSink(writer, hparams={"model": "cnn"})])
    writer.close()
    acc = read_run(tmp_path)
    steps = list(range(7))
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert scalars["train/loss"] == [(s, pytest.approx(v)) for s, v in zip(steps, result.losses, strict=True)]
    assert scalars["train/lr"] == [(s, pytest.approx(0.1)) for s in steps]
    grad_norms = [(s, pytest.approx(v)) for s, v in zip(steps, result.grad_norms, strict=True)]
    assert scalars["train/grad_norm"] == grad_norms
    assert scalars["eval/accuracy"] == [(s, pytest.approx(v)) for s, v in result.eval["accuracy"]]
    assert [s for s, _ in result.eval["accuracy"]] == [2, 5, 6]
    names = [n for n, _ in SmallCNN().named_parameters()]
    expected_hists = {f"params/{n}" for n in names} | {f"grads/{n}" for n in names}
    assert set(acc.Tags()["histograms"]) == expected_hists
    for tag in expected_hists:
        assert [e.step for e in acc.Histograms(tag)] == [0, 3, 6]
    # The logged histogram of a parameter at step 0 is that of its initial values.
    init = SmallCNN().head.weight.detach().numpy().ravel()
    first = acc.Histograms("params/head.weight")[0].histogram_value
    assert first.num == init.size
    assert first.min == pytest.approx(init.min()) and first.max == pytest.approx(init.max())
    assert first.sum == pytest.approx(init.sum(), rel=1e-5)
    assert sum(first.bucket) == init.size
    [grid] = acc.Images("inputs/first_batch")
    assert grid.step == 0
    hparams_run = read_run(tmp_path / "hparams")
    [final] = hparams_run.Scalars("hparam/final_loss")
    assert final.value == pytest.approx(result.losses[-1])


def test_no_images_for_non_image_inputs(tmp_path: Path) -> None:
    writer = SummaryWriter(logdir=str(tmp_path))
    short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=2, device="cpu", writer=writer)
    writer.close()
    acc = read_run(tmp_path)
    assert acc.Tags()["images"] == []
    assert len(acc.Scalars("train/loss")) == 2
    assert np.isfinite([e.value for e in acc.Scalars("train/grad_norm")]).all()


def test_one_event_holds_a_steps_scalars_and_one_its_histograms(tmp_path: Path) -> None:
    """Each event goes through tensorboardX's queue and writer thread: a step's values share one."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    hist = Histogram(edges=[0.0, 1.0, 2.0], counts=[1.0, 1.0], min=0.5, max=1.5, num=2, sum=2.0,
                     sum_squares=2.5)
    writer = SummaryWriter(logdir=str(tmp_path))
    sink = TensorBoardSink(writer)
    sink.histogram(0, "params/a", hist)
    sink.histogram(0, "params/b", hist)
    sink.histogram(1, "params/a", hist)  # a new step writes the last one's histograms
    sink.scalars(1, {"train/loss": 1.0, "train/lr": 0.1, "train/grad_norm": 2.0})
    sink.histogram(1, "grads/a", hist)
    sink.close()  # and closing writes what is left
    writer.close()
    [events_file] = tmp_path.glob("events.out.tfevents.*")
    events = [e for e in EventFileLoader(str(events_file)).Load() if e.HasField("summary")]
    assert [(e.step, [v.tag for v in e.summary.value]) for e in events] == [
        (0, ["params/a", "params/b"]),
        (1, ["params/a"]),
        (1, ["train/loss", "train/lr", "train/grad_norm"]),
        (1, ["grads/a"]),
    ]
    acc = read_run(tmp_path)
    assert [(e.step, e.value) for e in acc.Scalars("train/grad_norm")] == [(1, 2.0)]
    assert [e.step for e in acc.Histograms("params/a")] == [0, 1]


def test_tb_writer_flush_leaves_every_event_readable(tmp_path) -> None:  # noqa: ANN001
    from pytest_modelviz.artifacts import ArtifactDir
    from pytest_modelviz.tensorboard.sink import open_writer

    art = ArtifactDir("t::flush", tmp_path / "t", persist=True)
    writer = open_writer(art)
    try:
        for round_, stop in enumerate((200, 260)):
            for i in range(stop - 60 if round_ else 0, stop):
                writer.add_scalar("x", float(i), i)
                writer.add_scalars("pair", {"a": float(i), "b": -float(i)}, i)
            writer.flush()  # no sleep: everything logged so far is on disk now
            assert [e.step for e in read_run(art.tensorboard_dir).Scalars("x")] == list(range(stop))
            for sub, sign in (("a", 1), ("b", -1)):
                acc = read_run(art.tensorboard_dir / "pair" / sub)
                assert [(e.step, e.value) for e in acc.Scalars("pair")] == [(i, sign * i) for i in range(stop)]
        # One file per run, written where the events are logged: flushes open no new files.
        assert len(list(art.tensorboard_dir.glob("events.*"))) == 1
        assert len(list((art.tensorboard_dir / "pair" / "a").glob("events.*"))) == 1
    finally:
        writer.close()


def test_tb_writer_starts_no_thread_and_writers_opened_in_one_second_keep_both_files(tmp_path) -> None:  # noqa: ANN001
    import threading

    from pytest_modelviz.artifacts import ArtifactDir
    from pytest_modelviz.tensorboard.sink import open_writer

    art = ArtifactDir("t::same", tmp_path / "t", persist=True)
    threads = threading.active_count()
    first, second = open_writer(art), open_writer(art)  # tensorboardX would give both one file name
    try:
        first.add_scalar("x", 1.0, 0)
        second.add_scalar("x", 2.0, 1)
        first.add_image("img", np.ones((3, 4, 4), dtype=np.float32), 0)
        assert threading.active_count() == threads, "no writer thread is started"
    finally:
        first.close()
        second.close()
    files = sorted(p.name for p in art.tensorboard_dir.glob("events.*"))
    assert len(files) == 2 and files[1] == files[0] + ".1", files
    acc = read_run(art.tensorboard_dir)
    assert sorted((e.step, e.value) for e in acc.Scalars("x")) == [(0, 1.0), (1, 2.0)]
    assert [e.step for e in acc.Images("img")] == [0]


def test_tb_writer_events_of_a_killed_test_process_are_on_disk(pytester: pytest.Pytester) -> None:
    """What a test logged and flushed survives the process dying on the spot (no exit handlers,
    no fixture teardown): nothing waits in a queue or a thread."""
    pytester.makepyfile(
        """
        import os

        def test_dies(tb_writer):
            for i in range(5):
                tb_writer.add_scalar("loss", 1.0 / (i + 1), i)
            tb_writer.flush()
            os._exit(3)
        """
    )
    result = pytester.runpytest_subprocess("--modelviz", "--modelviz-dir", "mv", "-p", "no:cacheprovider")
    assert result.ret == 3
    (run,) = (pytester.path / "mv").glob("run-*/*/tensorboard")
    acc = read_run(run)
    assert [e.step for e in acc.Scalars("loss")] == list(range(5))
    assert [e.value for e in acc.Scalars("loss")] == pytest.approx([1.0 / (i + 1) for i in range(5)])


def test_hparams_of_two_runs_in_one_writer_are_both_kept_and_read_by_tensorboard(tmp_path: Path) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    writer = SummaryWriter(logdir=str(tmp_path))
    finals = []
    for label in ("first", "second"):  # well within one second: the files must not share a name
        result = short_train(mlp(), blobs(), loss_fn=ce, optimizer=sgd, steps=2, device="cpu",
                             sinks=[TensorBoardSink(writer, hparams={"model": label, "seed": 0})])
        finals.append(result.losses[-1])
    writer.close()
    files = sorted((tmp_path / "hparams").iterdir())
    assert len(files) == 2
    sessions, losses = [], []
    for path in files:
        acc = ea.EventAccumulator(str(path), size_guidance={ea.TENSORS: 0, ea.SCALARS: 0})
        acc.Reload()
        content = acc.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        sessions.append({k: v.string_value or v.number_value for k, v in start.session_start_info.hparams.items()})
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
        assert [m.name.tag for m in experiment.metric_infos] == ["hparam/final_loss"]
        [final] = acc.Scalars("hparam/final_loss")
        losses.append(final.value)
    assert sorted(s["model"] for s in sessions) == ["first", "second"]
    assert all(s["lr"] == pytest.approx(0.1) for s in sessions)
    assert sorted(losses) == pytest.approx(sorted(finals))
