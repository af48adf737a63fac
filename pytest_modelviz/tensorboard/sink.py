"""The per-test tensorboardX writer, and the ``MetricSink`` that logs training into it."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_modelviz.artifacts import ArtifactDir, WriteErrorHandler
from pytest_modelviz.sink import Histogram

if TYPE_CHECKING:
    import torch
    from tensorboardX import SummaryWriter

HPARAMS_RUN = "hparams"  # tensorboardX writes hparams as a sub-run of the test's run
FINAL_LOSS_TAG = "hparam/final_loss"
# Events a sink holds before handing them to the writer; a plain tensorboardX writer queues as
# many before a write waits for its thread.
MAX_PENDING_EVENTS = 100


def open_writer(artifacts: ArtifactDir) -> SummaryWriter:
    """A ``SummaryWriter`` logging into the test's TensorBoard run folder; an event file that
    cannot be written (a full disk) goes to ``artifacts.on_write_error``, as the test's other
    files do, or raises where it has none. The run folder is made by the event file, under
    that same rule."""
    return _writer_class()(logdir=str(artifacts.tensorboard_dir), flush_secs=5, max_queue=MAX_PENDING_EVENTS,
                           on_write_error=artifacts.on_write_error)


@functools.lru_cache(maxsize=1)
def _writer_class() -> type[SummaryWriter]:
    from tensorboardX import SummaryWriter

    from pytest_modelviz.tensorboard.events import caller_file_writer, is_caller_file_writer

    class TestSummaryWriter(SummaryWriter):  # type: ignore[misc]  # tensorboardX has no type information
        """A ``SummaryWriter`` whose events are written where they are logged (see ``events.py``),
        so its ``flush()`` leaves every event logged so far on disk.

        ``add_scalars`` gets such writers for its per-tag sub-runs too. A writer tensorboardX made
        itself (a version that names those sub-runs otherwise) queues its events: ``flush()``
        closes it, which drains the queue, and later writes go to a new file named apart by a
        counter (tensorboardX names files by the second and the host, so a second file in the
        same second would overwrite the first).
        """

        all_writers: dict[str, Any] | None  # set by SummaryWriter
        file_writer: Any
        _filename_suffix: str
        _flushes = 0

        def __init__(self, *args: Any, on_write_error: WriteErrorHandler | None = None, **kwargs: Any) -> None:
            self.on_write_error = on_write_error  # before SummaryWriter.__init__, which opens the file
            super().__init__(*args, **kwargs)

        def _get_file_writer(self) -> Any:
            if self.all_writers is None or self.file_writer is None:
                self.file_writer = caller_file_writer(self.logdir, self._filename_suffix, self.on_write_error)
                self.all_writers = {self.file_writer.get_logdir(): self.file_writer}
            return self.file_writer

        def add_scalars(self, main_tag: str, tag_scalar_dict: Mapping[str, Any], global_step: int | None = None,
                        walltime: float | None = None) -> None:
            logdir = self._get_file_writer().get_logdir()
            writers = self.all_writers
            assert writers is not None  # _get_file_writer made them
            for tag in tag_scalar_dict:
                run = os.path.join(str(logdir), main_tag, tag)  # where tensorboardX puts the sub-run
                if run not in writers:
                    writers[run] = caller_file_writer(run, self._filename_suffix, self.on_write_error)
            super().add_scalars(main_tag, tag_scalar_dict, global_step, walltime)

        def flush(self) -> None:
            if self.all_writers is None:
                return
            queued = [run for run, w in self.all_writers.items() if not is_caller_file_writer(w)]
            for run in queued:
                self.all_writers.pop(run).close()
            if queued:
                self._flushes += 1
                self._filename_suffix = f".{self._flushes}"
            super().flush()

    return TestSummaryWriter


class TensorBoardSink:
    """Training metrics into a ``SummaryWriter`` the caller owns (it is flushed, never closed here).

    ``hparams`` (e.g. model, seed) are written at ``close``, with the first ``train/lr`` seen as
    ``lr`` and the last ``train/loss`` as ``hparam/final_loss``, so TensorBoard's HParams tab
    compares runs.
    """

    def __init__(self, writer: SummaryWriter,
                 hparams: Mapping[str, bool | str | float | int] | None = None) -> None:
        self.writer = writer
        self.hparams = dict(hparams or {})
        self._last_loss: float | None = None
        self._first_lr: float | None = None
        self._pending: list[tuple[int, list[Any]]] = []  # events not yet written: (step, summary values)
        # The step of the last pending event, when it holds histograms.
        self._histogram_step: int | None = None

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        # What add_scalar writes, without its per-value numpy round trip.
        summaries = [Summary.Value(tag=tag, simple_value=float(value)) for tag, value in values.items()]
        self._pending.append((step, summaries))
        self._histogram_step = None
        if len(self._pending) >= MAX_PENDING_EVENTS:
            self._write_pending()
        if "train/loss" in values:
            self._last_loss = float(values["train/loss"])
        if "train/lr" in values and self._first_lr is None:
            self._first_lr = float(values["train/lr"])

    def histogram(self, step: int, tag: str, hist: Histogram) -> None:
        from tensorboardX.summary import histogram_raw

        if hist.num == 0:
            return  # TensorBoard cannot show an empty histogram
        if step != self._histogram_step:
            self._pending.append((step, []))
            self._histogram_step = step
        summary = histogram_raw(
            tag, min=hist.min, max=hist.max, num=hist.num, sum=hist.sum, sum_squares=hist.sum_squares,
            bucket_limits=list(hist.edges[1:]),  # TensorBoard takes each bucket's right edge
            bucket_counts=list(hist.counts),
        )
        self._pending[-1][1].extend(summary.value)

    def image_grid(self, step: int, tag: str, grid: torch.Tensor) -> None:
        """The event ``add_image(tag, grid, step, dataformats="CHW")`` writes, from the PNG the
        other sinks share (see ``pytest_modelviz.png``)."""
        from tensorboardX.proto.summary_pb2 import Summary

        from pytest_modelviz.png import grid_png

        png = grid_png(grid)
        image = Summary.Image(height=png.height, width=png.width, colorspace=3, encoded_image_string=png.data)
        self._write_pending()
        self.writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]),
                                                   global_step=step)

    def heatmap(self, step: int, tag: str, matrix: torch.Tensor) -> None:
        """TensorBoard has no heatmap panel; the parameter histograms carry the same weights."""

    def embedding(self, step: int, tag: str, features: torch.Tensor, labels: Sequence[int] | None,
                  images: torch.Tensor | None) -> None:
        """TensorBoard's projector: ``<step>/<tag>/`` with ``tensors.tsv``, ``metadata.tsv`` (the
        labels) and ``sprite.png`` (the images), listed in the run's ``projector_config.pbtxt``."""
        self._write_pending()
        self.writer.add_embedding(
            features, metadata=None if labels is None else [str(v) for v in labels], label_img=images,
            global_step=step, tag=tag,
        )

    def text(self, tag: str, text: str) -> None:
        self._write_pending()
        self.writer.add_text(tag, text)

    def close(self) -> None:
        self._write_pending()
        if self.hparams and self._last_loss is not None:
            hparams = dict(self.hparams)
            if self._first_lr is not None:
                hparams.setdefault("lr", self._first_lr)
            write_hparams(Path(self.writer.logdir) / HPARAMS_RUN, hparams, {FINAL_LOSS_TAG: self._last_loss},
                          on_error=getattr(self.writer, "on_write_error", None))
        self.writer.flush()

    # Every event is framed and checksummed, and with a plain tensorboardX writer also pickled
    # through its queue to its thread: one event per step holding all its values costs a
    # fraction of one event per value, which is what add_scalar and add_histogram_raw write.
    # Events are handed over in batches (before any other write, at close, or when
    # MAX_PENDING_EVENTS are held): such a writer's thread then wakes once per batch, not once
    # per training step.
    def _write_pending(self) -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        pending, self._pending = self._pending, []
        self._histogram_step = None
        file_writer = self.writer._get_file_writer()
        for step, values in pending:
            if values:
                file_writer.add_summary(Summary(value=values), global_step=step)


def write_hparams(run: Path, hparams: Mapping[str, bool | str | float | int], metrics: Mapping[str, float],
                  on_error: WriteErrorHandler | None = None) -> None:
    """The events ``SummaryWriter.add_hparams(hparams, metrics)`` writes into the sub-run ``run``,
    written here and now: ``add_hparams`` opens a whole ``SummaryWriter`` for them (a process
    queue and a writer thread, started and joined), which cost more than the rest of a training
    run's logging. The file is named apart from any already in ``run``: two runs in one second
    would otherwise share tensorboardX's file name and the second would overwrite the first. A
    file that cannot be written goes to ``on_error`` (see ``EventFile``)."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary
    from tensorboardX.summary import hparams as hparams_summaries

    from pytest_modelviz.tensorboard.events import EventFile

    events = EventFile(str(run), on_error=on_error)
    try:
        now = time.time()
        scalars = Summary(value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in metrics.items()])
        for summary in (*hparams_summaries(dict(hparams), dict(metrics)), scalars):
            events.write(Event(summary=summary, wall_time=now))
    finally:
        events.close()
