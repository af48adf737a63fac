"""The per-test tensorboardX writer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_modelviz.artifacts import ArtifactDir

if TYPE_CHECKING:
    from tensorboardX import SummaryWriter


def open_writer(artifacts: ArtifactDir) -> SummaryWriter:
    """A ``SummaryWriter`` logging into the test's TensorBoard run folder."""
    from tensorboardX import SummaryWriter

    artifacts.tensorboard_dir.mkdir(parents=True, exist_ok=True)
    return SummaryWriter(logdir=str(artifacts.tensorboard_dir), flush_secs=5)
